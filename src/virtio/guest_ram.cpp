// MemoryTable: fd-backed guest RAM regions from a vhost-user frontend, range-checked.
#include "pepita/virtio/guest_ram.hpp"

#include <sys/mman.h>

#include <cstdio>
#include <string>

#include "detail/sys.hpp"

namespace pepita::virtio {
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// True when [a, a + alen) and [b, b + blen) overlap; callers checked that neither end overflows.
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

}  // namespace

Result<void> MemoryTable::add(UniqueFd fd, const RegionDesc& d) {
  uint64_t gpa_end = 0, uva_end = 0, map_len = 0;
  if (d.size == 0 || __builtin_add_overflow(d.gpa, d.size, &gpa_end) ||
      __builtin_add_overflow(d.uva, d.size, &uva_end) ||
      __builtin_add_overflow(d.mmap_offset, d.size, &map_len)) {
    return fail(ErrorCode::InvalidArgument,
                "memory region gpa " + hex(d.gpa) + " size " + hex(d.size) +
                    " is empty or wraps the address space; the frontend sent a bad memory table");
  }
  // Host address = page-aligned mapping + mmap_offset + (gpa - d.gpa): with both page-aligned it
  // is as aligned as the gpa Queue::activate checked. An odd mmap_offset made the ring indices'
  // std::atomic_ref accesses misaligned (found by fuzz_vhost_user). QEMU's regions are pages.
  if (d.gpa % kRegionAlign != 0 || d.mmap_offset % kRegionAlign != 0) {
    return fail(ErrorCode::InvalidArgument, "memory region gpa " + hex(d.gpa) + " mmap_offset " +
                                                hex(d.mmap_offset) +
                                                " is not page-aligned; the frontend sent a bad "
                                                "memory table");
  }
  if (regions_.size() >= kMaxRegions) {
    return fail(ErrorCode::InvalidArgument, "more than 8 memory regions in the memory table");
  }
  for (const auto& r : regions_) {
    if (overlaps(d.gpa, d.size, r.desc.gpa, r.desc.size) ||
        overlaps(d.uva, d.size, r.desc.uva, r.desc.size)) {
      return fail(ErrorCode::InvalidArgument,
                  "memory region at gpa " + hex(d.gpa) + " overlaps the one at " + hex(r.desc.gpa));
    }
  }
  // The region must lie inside its file: a shared mapping may reach past the end of the file,
  // but every access there raises SIGBUS, which would kill the backend at the first ring read
  // (found by fuzz_vhost_user). Non-regular fds (devices) have no size to check.
  if (const int64_t file_size = sys::regular_file_size(fd.get());
      file_size >= 0 && map_len > static_cast<uint64_t>(file_size)) {
    return fail(ErrorCode::InvalidArgument,
                "memory region gpa " + hex(d.gpa) + " needs " + hex(map_len) +
                    " bytes of its fd (mmap_offset + size) but the file has " +
                    hex(static_cast<uint64_t>(file_size)) +
                    "; the frontend sent a memory table larger than its memory");
  }
  // SAFETY: a fresh shared mapping of the frontend's RAM fd; we only ever reach into it through
  // span(), which checks every range against desc.size.
  auto mapping =
      PEPITA_TRY(Mapping::map(map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(),
                              0, "mmap guest memory region"));
  regions_.push_back(Region{d, std::move(fd), std::move(mapping)});
  return {};
}

Result<std::span<std::byte>> MemoryTable::span(PhysAddr gpa, uint64_t len) const {
  const uint64_t a = gpa.raw();
  for (const auto& r : regions_) {
    if (a < r.desc.gpa) continue;
    const uint64_t off = a - r.desc.gpa;
    // off < size and len <= size - off: no sum that can overflow.
    if (off < r.desc.size && len <= r.desc.size - off) {
      return std::span<std::byte>(r.mapping.bytes() + r.desc.mmap_offset + off, len);
    }
    if (off < r.desc.size) break;  // starts here but runs past the region's end
  }
  return fail(ErrorCode::InvalidArgument,
              "guest range " + hex(a) + "+" + hex(len) + " is not inside guest RAM");
}

Result<PhysAddr> MemoryTable::uva_to_gpa(uint64_t uva, uint64_t len) const {
  for (const auto& r : regions_) {
    if (uva < r.desc.uva) continue;
    const uint64_t off = uva - r.desc.uva;
    if (off < r.desc.size && len <= r.desc.size - off) return PhysAddr(r.desc.gpa + off);
  }
  return fail(ErrorCode::InvalidArgument,
              "frontend address " + hex(uva) + "+" + hex(len) + " is in no memory region");
}

}  // namespace pepita::virtio
