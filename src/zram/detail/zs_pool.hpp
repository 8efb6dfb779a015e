#pragma once
// ZsPool: the size-class slab allocator behind ZramStore, after the kernel's zsmalloc
// (mm/zsmalloc.c). Objects of 32..4096 bytes are rounded up to 16-byte size classes; each class
// carves objects out of "zspages" of 1..8 contiguous pages, the count chosen per class to waste the
// least; classes with the same shape are merged. Zspages sit in fullness groups so allocation
// fills the fullest ones first and compaction empties the sparsest ones.
//
// Unlike zsmalloc, objects carry no in-band handle: each zspage keeps a side table of the owning
// zram page per object, so a 100-byte object takes a 112-byte slot, not 112 + 8.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "detail/page_arena.hpp"

namespace pepita::zram::detail {

inline constexpr uint32_t kZsPageSize = 4096;
inline constexpr uint32_t kZsMinAlloc = 32;
inline constexpr uint32_t kZsClassDelta = 16;
inline constexpr uint32_t kZsMaxPagesPerZspage = 8;  // the kernel's CONFIG_ZSMALLOC_CHAIN_SIZE
inline constexpr uint32_t kZsNumSizes = (kZsPageSize - kZsMinAlloc) / kZsClassDelta + 1;
inline constexpr uint32_t kZsFullnessGroups = 11;  // inuse ratio 0-9 (x10%) partial, 10 = full

struct SizeClass;

/// One slab: `pages` contiguous pages holding `objs` equal slots of one class.
struct Zspage {
  std::byte* memory = nullptr;  // page-aligned run from the pool's PageArena
  // owner[i]: the zram page owning object i, or kFree | next free index.
  std::unique_ptr<uint32_t[]> owner;
  SizeClass* size_class = nullptr;
  uint32_t inuse = 0;
  uint32_t free_head = 0;
  uint32_t group = 0;      // fullness group
  uint32_t group_pos = 0;  // index inside the group's vector

  static constexpr uint32_t kFree = 0x8000'0000u;
  static constexpr uint32_t kEnd = 0x7fff'ffffu;
};

/// Where an object lives. Stable while the owning page's lock is held (compaction needs that lock
/// to move it).
struct ObjRef {
  Zspage* zspage = nullptr;
  uint32_t obj = 0;
  bool valid() const noexcept { return zspage != nullptr; }
};

struct SizeClass {
  std::mutex lock;
  uint32_t size = 0;            // slot size
  uint32_t pages = 0;           // pages per zspage
  uint32_t objs = 0;            // objects per zspage
  uint64_t allocated_objs = 0;  // slots in all zspages of the class
  uint64_t used_objs = 0;
  std::vector<std::unique_ptr<Zspage>> groups[kZsFullnessGroups];
};

/// The owner side of compaction: ZramStore locks the page that owns an object and repoints it.
class Relocator {
 public:
  /// Locks page `owner` if it can without waiting AND the page still refers to `from` (an object
  /// allocated but not yet installed must not move). True: caller must call moved() or unlock().
  virtual bool try_lock_owner(uint32_t owner, ObjRef from) noexcept = 0;
  /// The object now lives at `to`; repoint the page and unlock it.
  virtual void moved(uint32_t owner, ObjRef to) noexcept = 0;

 protected:
  ~Relocator() = default;
};

class ZsPool {
 public:
  /// limit_pages: the most pages the pool may hold; 0 = unlimited.
  explicit ZsPool(uint64_t limit_pages);
  ~ZsPool();

  /// Allocates a slot for `size` (1..4096) bytes owned by zram page `owner`. 0, -ENOSPC when a new
  /// zspage would pass the limit, -ENOMEM when the system is out of memory.
  int alloc(uint32_t size, uint32_t owner, ObjRef& out) noexcept;
  void free(ObjRef ref) noexcept;
  /// Bytes of the object; valid while the owner's lock is held.
  static std::byte* address(ObjRef ref) noexcept {
    return ref.zspage->memory + size_t{ref.obj} * ref.zspage->size_class->size;
  }
  /// Slot size of the class serving `size`.
  uint32_t class_size(uint32_t size) const noexcept { return class_for(size)->size; }
  /// Smallest size served by a class holding one object per single page: storing such an object
  /// compressed saves nothing over storing the page raw.
  uint32_t huge_class_size() const noexcept { return huge_class_size_; }

  uint64_t total_pages() const noexcept { return total_pages_.load(std::memory_order_relaxed); }
  uint64_t max_pages() const noexcept { return max_pages_.load(std::memory_order_relaxed); }
  uint64_t limit_pages() const noexcept { return limit_pages_; }
  uint64_t pages_compacted() const noexcept {
    return pages_compacted_.load(std::memory_order_relaxed);
  }

  /// Compacts every class; returns pages freed.
  uint64_t compact(Relocator& relocator) noexcept;

 private:
  SizeClass* class_for(uint32_t size) const noexcept;
  bool reserve_pages(uint32_t pages) noexcept;
  Zspage* new_zspage(SizeClass& cls) noexcept;
  void place(SizeClass& cls, std::unique_ptr<Zspage> zspage, uint32_t group) noexcept;
  std::unique_ptr<Zspage> unlink(SizeClass& cls, Zspage* zspage) noexcept;
  void regroup(SizeClass& cls, Zspage* zspage) noexcept;
  uint32_t obj_alloc(SizeClass& cls, Zspage* zspage, uint32_t owner) noexcept;
  // Frees object `obj`; releases the zspage when it empties. Returns true when it did.
  bool obj_free(SizeClass& cls, Zspage* zspage, uint32_t obj) noexcept;
  uint64_t compact_class(SizeClass& cls, Relocator& relocator) noexcept;

  // Declared first: destroyed last, after every zspage pointing into it.
  PageArena arena_;
  std::vector<std::unique_ptr<SizeClass>> classes_;  // distinct physical classes
  SizeClass* by_size_[kZsNumSizes] = {};  // size index -> class (merged classes share one)
  uint32_t huge_class_size_ = kZsPageSize;
  uint64_t limit_pages_;
  std::atomic<uint64_t> total_pages_{0};
  std::atomic<uint64_t> max_pages_{0};
  std::atomic<uint64_t> pages_compacted_{0};
};

}  // namespace pepita::zram::detail
