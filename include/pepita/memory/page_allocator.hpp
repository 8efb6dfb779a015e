#pragma once
// Page allocation, spelled as the reference crate's memory module: AllocFlags, Protection, the
// PageAllocator interface (alloc_pages(order, flags) / free_pages(pfn, order) / free_count), and
// PagePool, a real allocator of user-space pages behind it. PagePool reserves one span of address
// space (mmap PROT_NONE, so the reservation costs no memory), commits it chunk by chunk as it
// grows (mprotect, advised for transparent huge pages), hands out runs of contiguous pages from
// exact-length free lists or the committed frontier (segregated fit, as the zram page arena it
// replaces did), and checks every free against an allocated/run-head bitmap, so a double free or
// a foreign frame is an error instead of a corrupted free list. zram's ZsPool takes its zspages
// from it.
//
//   PagePool pool({.reserve_pages = 1 << 16});
//   Pfn pfn = PEPITA_TRY(pool.alloc_pages(2, AllocFlags::ZERO));   // 4 zeroed pages
//   std::byte* bytes = pool.data(pfn);
//   PEPITA_TRY_VOID(pool.protect(pfn, 4, Protection::READ));       // writes now fault
//   PEPITA_TRY_VOID(pool.free_pages(pfn, 2));

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "pepita/core/mapping.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/address.hpp"

namespace pepita::memory {

/// How an allocation behaves (the crate's AllocFlags, after the kernel's gfp_t). What each flag
/// does in PagePool:
///   WAIT     when the pool is exhausted, block until pages are freed (up to
///            PagePoolConfig::wait_limit) instead of failing at once with ResourceExhausted.
///   ZERO     the pages read as zero (fresh and released pages already do; reused resident ones
///            are cleared).
///   DMA      the pages are locked in RAM (mlock), as a DmaBuffer is; unlocked when freed.
///   HIGHMEM  accepted and has no effect: x86-64 user space has no high memory, every page is
///            directly addressable.
struct AllocFlags {
  uint32_t bits = 0;

  static const AllocFlags NONE;
  static const AllocFlags WAIT;
  static const AllocFlags ZERO;
  static const AllocFlags DMA;
  static const AllocFlags HIGHMEM;
  static constexpr uint32_t kKnownBits = 0xf;

  /// No flags (the crate's AllocFlags::new).
  constexpr AllocFlags() = default;
  constexpr explicit AllocFlags(uint32_t b) : bits(b) {}
  constexpr AllocFlags with_wait() const { return AllocFlags(bits | 1u); }
  constexpr AllocFlags with_zero() const { return AllocFlags(bits | 2u); }
  constexpr AllocFlags with_dma() const { return AllocFlags(bits | 4u); }
  constexpr bool can_wait() const { return (bits & 1u) != 0; }
  constexpr bool should_zero() const { return (bits & 2u) != 0; }
  constexpr bool needs_dma() const { return (bits & 4u) != 0; }
  constexpr AllocFlags operator|(AllocFlags other) const { return AllocFlags(bits | other.bits); }
  constexpr bool operator==(const AllocFlags&) const = default;
};
inline constexpr AllocFlags AllocFlags::NONE{0};
inline constexpr AllocFlags AllocFlags::WAIT{1u << 0};
inline constexpr AllocFlags AllocFlags::ZERO{1u << 1};
inline constexpr AllocFlags AllocFlags::DMA{1u << 2};
inline constexpr AllocFlags AllocFlags::HIGHMEM{1u << 3};

/// Page protection (the crate's Protection), applied with mprotect(2) by PagePool::protect.
struct Protection {
  uint32_t bits = 0;

  static const Protection NONE;
  static const Protection READ;
  static const Protection WRITE;
  static const Protection EXEC;
  static const Protection READ_WRITE;

  constexpr Protection() = default;
  constexpr explicit Protection(uint32_t b) : bits(b) {}
  constexpr bool is_readable() const { return (bits & 1u) != 0; }
  constexpr bool is_writable() const { return (bits & 2u) != 0; }
  constexpr bool is_executable() const { return (bits & 4u) != 0; }
  constexpr Protection operator|(Protection other) const { return Protection(bits | other.bits); }
  constexpr bool operator==(const Protection&) const = default;
  /// The PROT_* bits of mmap/mprotect.
  int to_prot() const noexcept;
};
inline constexpr Protection Protection::NONE{0};
inline constexpr Protection Protection::READ{1u << 0};
inline constexpr Protection Protection::WRITE{1u << 1};
inline constexpr Protection Protection::EXEC{1u << 2};
inline constexpr Protection Protection::READ_WRITE{(1u << 0) | (1u << 1)};

/// An allocator of page frames (the crate's PageAllocator trait). Orders are powers of two:
/// order k is 2^k contiguous pages. Implementations are thread-safe.
class PageAllocator {
 public:
  virtual ~PageAllocator() = default;
  /// 2^order contiguous pages; the Pfn of the first. ResourceExhausted when none are left,
  /// InvalidArgument for an order or flag the allocator does not support.
  virtual Result<Pfn> alloc_pages(uint32_t order, AllocFlags flags) = 0;
  /// Returns pages from alloc_pages with the same order. InvalidArgument (and nothing changes)
  /// for a frame this allocator did not hand out, one already freed, or a different order.
  virtual Result<void> free_pages(Pfn pfn, uint32_t order) = 0;
  /// Pages that can still be allocated one at a time (a longer run may still fail when the free
  /// pages are not contiguous).
  virtual std::size_t free_count() const = 0;
};

struct PagePoolConfig {
  /// Address space reserved up front (PROT_NONE, no memory until committed): the most pages the
  /// pool can ever hand out at once. Beyond it allocations are ResourceExhausted.
  uint64_t reserve_pages = uint64_t{16} << 20;  // 64 GiB of address space
  /// Pages committed (made read-write) at a time as the pool grows.
  uint32_t chunk_pages = 1024;  // 4 MiB: two transparent huge pages
  /// Longest run alloc_run serves (alloc_pages: order <= log2 of it).
  uint32_t max_run_pages = 1024;
  /// Freed runs kept resident for reuse: up to max(cache_floor_pages, in-use pages / 4); beyond
  /// that a freed run's memory goes back to the kernel at once (MADV_DONTNEED).
  uint64_t cache_floor_pages = 2048;
  /// Frame number of the first page: 1, so that Pfn 0 stays null.
  uint64_t first_pfn = 1;
  /// How long an AllocFlags::WAIT allocation waits for frees before TimedOut.
  std::chrono::milliseconds wait_limit{10'000};
};

/// Pages of this process handed out as frame numbers relative to the pool (PagePoolConfig::
/// first_pfn is the first reserved page). Thread-safe (one mutex). The reservation is made on the
/// first allocation, so constructing a pool never fails.
class PagePool final : public PageAllocator {
 public:
  explicit PagePool(PagePoolConfig config = {});
  PagePool(const PagePool&) = delete;
  PagePool& operator=(const PagePool&) = delete;
  ~PagePool() override;

  Result<Pfn> alloc_pages(uint32_t order, AllocFlags flags) override;
  Result<void> free_pages(Pfn pfn, uint32_t order) override;
  std::size_t free_count() const override;

  /// `pages` contiguous pages (1..max_run_pages, any count, not only powers of two).
  Result<Pfn> alloc_run(uint32_t pages, AllocFlags flags = {});
  /// Returns a run from alloc_run with the same `pages` (errors as free_pages).
  Result<void> free_run(Pfn pfn, uint32_t pages);
  /// mprotect(2) on an allocated run (the whole run: `pages` must be its length). A freed run
  /// gets its read-write protection back. InvalidArgument for a run not allocated.
  Result<void> protect(Pfn pfn, uint32_t pages, Protection protection);

  /// First byte of an allocated frame (unchecked: pfn must come from alloc_*).
  std::byte* data(Pfn pfn) const noexcept {
    return base_ + ((pfn.raw() - config_.first_pfn) << PAGE_SHIFT);
  }
  /// The frame holding `byte` (unchecked: `byte` must lie in an allocated run).
  Pfn pfn_of(const std::byte* byte) const noexcept {
    return Pfn(config_.first_pfn + (static_cast<uint64_t>(byte - base_) >> PAGE_SHIFT));
  }
  /// Checked form of data(): the bytes of an allocated run of `pages` pages at `pfn`.
  Result<std::span<std::byte>> span(Pfn pfn, uint32_t pages) const;
  /// The frame's address in this process.
  VirtAddr virt(Pfn pfn) const noexcept { return VirtAddr::from_ptr(data(pfn)); }

  /// Pages handed out and not freed.
  uint64_t in_use_pages() const;
  /// Pages of freed runs still resident (cached for reuse).
  uint64_t cached_pages() const;
  const PagePoolConfig& config() const noexcept { return config_; }

 private:
  struct FreeRun {
    uint64_t index;  // page index in the reservation
    bool resident;
  };
  Result<uint64_t> take_run(uint32_t pages, AllocFlags flags);              // under lock_
  Result<void> grow(uint64_t at_least);                                     // under lock_
  Result<void> check_run(Pfn pfn, uint32_t pages, const char* what) const;  // under lock_
  bool test(const std::vector<uint64_t>& bits, uint64_t i) const noexcept {
    return (bits[i / 64] >> (i % 64) & 1u) != 0;
  }
  void mark(uint64_t index, uint32_t pages, bool allocated) noexcept;

  PagePoolConfig config_;
  Mapping reservation_;  // the whole reserved span; unmapped last
  std::byte* base_ = nullptr;
  uint64_t committed_ = 0;       // pages made read-write, from the start of the reservation
  uint64_t frontier_ = 0;        // pages below this were handed out at least once
  std::vector<uint64_t> used_;   // bit per committed page: allocated
  std::vector<uint64_t> head_;   // bit per committed page: first page of an allocated run
  std::vector<uint8_t> locked_;  // per committed page: mlock'ed by AllocFlags::DMA (run heads)
  std::vector<std::vector<FreeRun>> free_;  // by run length
  uint64_t in_use_ = 0;
  uint64_t free_listed_ = 0;  // pages in free_
  uint64_t resident_cached_ = 0;
  mutable std::mutex lock_;
  std::condition_variable freed_;
};

}  // namespace pepita::memory
