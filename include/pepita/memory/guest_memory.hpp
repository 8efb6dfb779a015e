#pragma once
// GuestMemory: guest-physical RAM as a set of non-overlapping regions, and the only way pepita code
// reads or writes it. Every access checks the whole range with overflow-checked arithmetic and
// returns Result, after rust-vmm's vm-memory (GuestMemoryMmap) as used by Firecracker. One type
// serves our own VMM (anonymous or memfd RAM it maps) and virtio/vhost-user (the fd-backed regions
// a frontend sends with SET_MEM_TABLE, vhost-user spec "Memory regions description").
//
//   auto mem = PEPITA_TRY(GuestMemory::anonymous(abi::PhysAddr(0), 16 << 20));
//   PEPITA_TRY_VOID(mem.write<uint64_t>(abi::PhysAddr(0x1000), 42));
//   uint64_t v = PEPITA_TRY(mem.read<uint64_t>(abi::PhysAddr(0x1000)));
//   auto bytes = PEPITA_TRY(mem.span(abi::PhysAddr(0x2000), 64));  // std::span<std::byte>
//   GuestMemory table;  // vhost-user: the regions a frontend sent with SET_MEM_TABLE
//   PEPITA_TRY_VOID(table.add_fd_region(std::move(memfd), {.gpa = 0, .size = 1 << 30, .uva = va}));
//   PhysAddr desc = PEPITA_TRY(table.uva_to_gpa(vring_desc_user_addr, 16 * 256));

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "pepita/abi/memory.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::memory {

using abi::PhysAddr;

/// Where a vhost-user frontend placed one fd-backed region: guest-physical start, size, the
/// frontend's own virtual address of it (vring addresses arrive in that space) and the offset of
/// the region inside the fd.
struct FdRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t uva = 0;
  uint64_t mmap_offset = 0;
};

/// A guest-physical range [gpa, gpa + size).
struct GuestRange {
  uint64_t gpa = 0;
  uint64_t size = 0;
};

/// Guest RAM: regions sorted by guest-physical address, none overlapping. Move-only; each
/// region's host mapping is unmapped (then its fd closed) when the last GuestMemory using it (this
/// one or a `view` of it) goes.
///
/// Range rule: an access [gpa, gpa + len) must lie wholly inside ONE region, even when two regions
/// are adjacent. vm-memory has this rule for slices; applying it to copies as well keeps one check
/// for every access, so span, read and write always agree. len 0 at a region's end is inside.
class GuestMemory {
 private:
  struct Backing;  // the mapping and fd a region lives in (guest_memory.cpp)

 public:
  /// Upper bound on regions, so that the linear lookup on the hot path stays a few compares
  /// (vhost-user sends at most 8; our VMM uses one, and its device view a handful).
  static constexpr size_t kMaxRegions = 64;
  /// gpa and mmap_offset of fd regions are multiples of this, so span(gpa) is as aligned as gpa
  /// (up to 4096), which the virtqueue's atomic index accesses rely on.
  static constexpr uint64_t kRegionAlign = 4096;

  /// One region of guest RAM: [base, base + size) at host bytes host().
  class Region {
   public:
    PhysAddr base() const noexcept { return PhysAddr(gpa_); }
    uint64_t size() const noexcept { return size_; }
    PhysAddr end() const noexcept { return PhysAddr(gpa_ + size_); }
    /// The region's host bytes, for registering RAM with the kernel (a KVM memory slot).
    std::span<std::byte> host() const noexcept { return {host_, size_}; }
    /// Whether the region has a frontend virtual address (add_fd_region), and which.
    bool has_uva() const noexcept { return has_uva_; }
    uint64_t uva() const noexcept { return uva_; }

   private:
    friend class GuestMemory;
    // Only after find() checked [gpa, gpa + len) lies in this region.
    std::span<std::byte> host_span(uint64_t gpa, uint64_t len) const noexcept {
      return {host_ + (gpa - gpa_), len};
    }

    uint64_t gpa_ = 0;
    uint64_t size_ = 0;
    std::byte* host_ = nullptr;  // inside backing_'s mapping, valid while backing_ lives
    uint64_t uva_ = 0;
    bool has_uva_ = false;
    std::shared_ptr<Backing> backing_;
  };

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) noexcept = default;
  GuestMemory& operator=(GuestMemory&&) noexcept = default;
  GuestMemory(const GuestMemory&) = delete;  // share RAM explicitly, with view()
  GuestMemory& operator=(const GuestMemory&) = delete;

  /// Zero-filled private anonymous RAM, reserved lazily (MAP_NORESERVE): a page costs host memory
  /// only once touched. `size` must be a non-zero multiple of the page size, and base page-aligned.
  static Result<GuestMemory> anonymous(PhysAddr base, uint64_t size);

  /// Zero-filled RAM backed by a sealable memfd shared mapping, so it can later become a snapshot
  /// image (`into_sealed_image`) that other VMs map copy-on-write.
  static Result<GuestMemory> shared(PhysAddr base, uint64_t size, const char* name);

  /// Copy-on-write view of a sealed image fd (from `into_sealed_image`): reads see the image,
  /// writes go to private pages of this mapping and never reach the image.
  static Result<GuestMemory> copy_on_write(PhysAddr base, uint64_t size, int image_fd);

  /// Adds a region of zero-filled anonymous RAM (rules of `anonymous`). InvalidArgument when it
  /// overlaps a region or there would be more than kMaxRegions.
  Result<void> add_anonymous(PhysAddr base, uint64_t size);

  /// Maps `fd` shared read-write (mmap_offset + size bytes from offset 0, as libvhost-user does)
  /// and adds the region, translatable from the frontend's address space by uva_to_gpa.
  /// InvalidArgument for a zero size, overflowing ranges, overlap in guest-physical or frontend
  /// space, more than kMaxRegions, a gpa or mmap_offset that is not a multiple of kRegionAlign, or
  /// a region reaching past the end of a regular file (its pages would raise SIGBUS); the errno of
  /// mmap otherwise. Takes the fd either way.
  Result<void> add_fd_region(UniqueFd fd, const FdRegion& desc);

  /// A GuestMemory holding only `ranges` of this one (each inside one region of it; none
  /// overlapping; empty ranges are left out), sharing this memory's host mappings: the view keeps
  /// them mapped however long it lives. Our VMM hands its devices such a view, so device DMA can
  /// only reach what the guest itself may touch. InvalidArgument naming a bad range.
  Result<GuestMemory> view(std::span<const GuestRange> ranges) const;

  /// Re-maps this memory copy-on-write over `image_fd` in place (same host address, so a KVM
  /// memory slot on it stays valid and the kernel invalidates its shadow pages). Drops every
  /// private page written since the last reset. Only for one region not shared with a memfd.
  Result<void> reset_copy_on_write(int image_fd);

  /// Ends this memory's mapping and returns its memfd sealed against writes, growth and
  /// shrinking. Only for memory made by `shared` with no live `view`; the result can be mapped by
  /// `copy_on_write`.
  Result<UniqueFd> into_sealed_image() &&;

  /// The lowest guest address in RAM (0 when empty).
  PhysAddr base() const noexcept;
  /// Bytes of RAM over all regions (gaps not counted).
  uint64_t size() const noexcept;
  /// One past the last byte of the highest region (never overflows: checked when added).
  PhysAddr end() const noexcept;
  bool valid() const noexcept { return !regions_.empty(); }
  /// The regions, sorted by guest-physical address.
  std::span<const Region> regions() const noexcept { return regions_; }

  /// True when [gpa, gpa + len) lies wholly inside one region (the range rule above).
  bool contains(PhysAddr gpa, uint64_t len) const noexcept { return find(gpa.raw(), len); }

  /// Bytes [gpa, gpa + len) as a host span; InvalidArgument naming the range when it is not inside
  /// one region. The span stays valid while the region's mapping lives (this memory or a view of
  /// it) and until reset_copy_on_write. The guest may change these bytes concurrently: copy before
  /// validating (no double fetch).
  Result<std::span<std::byte>> span(PhysAddr gpa, uint64_t len) const {
    if (const Region* r = find(gpa.raw(), len)) [[likely]]
      return r->host_span(gpa.raw(), len);
    return outside(gpa, len);
  }

  /// Copies guest bytes out / in, range-checked as `span`.
  Result<void> read_bytes(PhysAddr gpa, std::span<std::byte> out) const;
  Result<void> write_bytes(PhysAddr gpa, std::span<const std::byte> in) const;
  /// Sets [gpa, gpa + len) to zero.
  Result<void> fill_zero(PhysAddr gpa, uint64_t len) const;

  /// Reads one trivially copyable T at gpa (any alignment: copied with memcpy).
  template <typename T>
  Result<T> read(PhysAddr gpa) const {
    static_assert(std::is_trivially_copyable_v<T>, "guest reads copy bytes");
    const Region* r = find(gpa.raw(), sizeof(T));
    if (r == nullptr) [[unlikely]]
      return outside(gpa, sizeof(T));
    T value;
    std::memcpy(&value, r->host_span(gpa.raw(), sizeof(T)).data(), sizeof(T));
    return value;
  }

  /// Writes one trivially copyable T at gpa (any alignment).
  template <typename T>
  Result<void> write(PhysAddr gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>, "guest writes copy bytes");
    const Region* r = find(gpa.raw(), sizeof(T));
    if (r == nullptr) [[unlikely]]
      return outside(gpa, sizeof(T));
    std::memcpy(r->host_span(gpa.raw(), sizeof(T)).data(), &value, sizeof(T));
    return {};
  }

  /// Translates a frontend virtual address range (vring addresses) to guest-physical; the range
  /// must lie inside one region added by add_fd_region (or a view of one). Unlike the range rule
  /// for guest-physical accesses, `uva` itself must be a byte of the region even when `len` is 0:
  /// a frontend address at a region's end translates to nothing.
  Result<PhysAddr> uva_to_gpa(uint64_t uva, uint64_t len) const;

  /// The host mapping of a one-region memory, for handing to the hypervisor
  /// (KVM_SET_USER_MEMORY_REGION); empty when there is not exactly one region (use regions()).
  /// Not a guest-address translation: callers that follow guest-supplied addresses use
  /// span/read/write.
  std::span<std::byte> backing() const noexcept;

 private:
  const Region* find(uint64_t gpa, uint64_t len) const noexcept;
  std::unexpected<Error> outside(PhysAddr gpa, uint64_t len) const;
  static Result<void> check_layout(PhysAddr base, uint64_t size);
  Result<void> insert(Region region);
  static Result<GuestMemory> single(PhysAddr base, uint64_t size, std::shared_ptr<Backing> b);

  std::vector<Region> regions_;
};

// Regions are sorted by gpa and never overlap, so the first region starting above gpa ends the
// search. The checks are off <= size and len <= size - off: no sum that can overflow.
inline const GuestMemory::Region* GuestMemory::find(uint64_t gpa, uint64_t len) const noexcept {
  for (const Region& r : regions_) {
    if (gpa < r.gpa_) return nullptr;
    const uint64_t off = gpa - r.gpa_;
    if (off <= r.size_ && len <= r.size_ - off) return &r;
  }
  return nullptr;
}

}  // namespace pepita::memory
