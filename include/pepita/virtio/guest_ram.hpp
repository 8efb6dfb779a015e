#pragma once
// GuestRam: the bounds-checked view of guest RAM that virtqueues and devices use. Two backings:
// FlatRam over one memory::GuestMemory (our own VMM) and MemoryTable, the fd-backed regions a
// vhost-user frontend sends with SET_MEM_TABLE (vhost-user spec, "Memory regions description").
//
//   MemoryTable table;
//   PEPITA_TRY_VOID(table.add(std::move(memfd), {.gpa = 0, .size = 512 << 20, .uva = qemu_va}));
//   auto bytes = PEPITA_TRY(table.span(abi::PhysAddr(0x1000), 512));
//   auto gpa = PEPITA_TRY(table.uva_to_gpa(vring_desc_user_addr, 16 * 256));

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "pepita/abi/memory.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"

namespace pepita::virtio {

using abi::PhysAddr;

/// Guest RAM as a device sees it. span() is the only translation: it checks the whole range
/// [gpa, gpa + len) with overflow-checked arithmetic and fails (InvalidArgument) when any byte is
/// outside one region. The guest may change the bytes at any time: copy, then validate.
class GuestRam {
 public:
  virtual ~GuestRam() = default;
  virtual Result<std::span<std::byte>> span(PhysAddr gpa, uint64_t len) const = 0;

  /// Copies one trivially copyable T out of / into guest RAM (any alignment).
  template <typename T>
  Result<T> read(PhysAddr gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto bytes = PEPITA_TRY(span(gpa, sizeof(T)));
    T value;
    std::memcpy(&value, bytes.data(), sizeof(T));
    return value;
  }
  template <typename T>
  Result<void> write(PhysAddr gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto bytes = PEPITA_TRY(span(gpa, sizeof(T)));
    std::memcpy(bytes.data(), &value, sizeof(T));
    return {};
  }
};

/// GuestRam over one contiguous memory::GuestMemory (borrowed: it must outlive this view).
class FlatRam final : public GuestRam {
 public:
  explicit FlatRam(const memory::GuestMemory& memory) noexcept : memory_(&memory) {}
  Result<std::span<std::byte>> span(PhysAddr gpa, uint64_t len) const override {
    return memory_->span(gpa, len);
  }

 private:
  const memory::GuestMemory* memory_;
};

/// Where a vhost-user frontend placed one region: guest-physical start, size, the frontend's
/// own virtual address of it (vring addresses arrive in that space) and the offset of the region
/// inside the fd.
struct RegionDesc {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t uva = 0;
  uint64_t mmap_offset = 0;
};

/// Guest RAM as a set of shared fd mappings (memfd, hugetlbfs). Regions must not overlap in
/// guest-physical or frontend-virtual space. Move-only; unmaps and closes on destruction.
class MemoryTable final : public GuestRam {
 public:
  static constexpr size_t kMaxRegions = 8;  // VHOST_MEMORY_BASELINE_NREGIONS

  /// Maps `fd` shared read-write (mmap_offset + size bytes from offset 0, as libvhost-user does)
  /// and adds the region. InvalidArgument for a zero size, overflowing ranges, overlap, more
  /// than kMaxRegions, a gpa or mmap_offset that is not a multiple of kRegionAlign, or a region
  /// reaching past the end of a regular file; the errno of mmap otherwise. Takes the fd either
  /// way. The alignment rule makes span(gpa) as aligned as gpa (up to kRegionAlign), which the
  /// virtqueue's atomic index accesses rely on.
  static constexpr uint64_t kRegionAlign = 4096;
  Result<void> add(UniqueFd fd, const RegionDesc& desc);

  Result<std::span<std::byte>> span(PhysAddr gpa, uint64_t len) const override;

  /// Translates a frontend virtual address range (vring addresses) to guest-physical; the range
  /// must lie inside one region.
  Result<PhysAddr> uva_to_gpa(uint64_t uva, uint64_t len) const;

  size_t size() const noexcept { return regions_.size(); }
  const RegionDesc& region(size_t i) const noexcept { return regions_[i].desc; }

 private:
  struct Region {
    RegionDesc desc;
    // Destroyed in reverse order: the mapping goes before its fd closes.
    UniqueFd fd;
    Mapping mapping;
  };
  std::vector<Region> regions_;
};

}  // namespace pepita::virtio
