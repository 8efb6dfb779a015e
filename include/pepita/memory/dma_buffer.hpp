#pragma once
// DmaBuffer: memory a device (the kernel on a device's behalf: io_uring fixed buffers, O_DIRECT,
// ublk USER_COPY) reads or writes directly. Page-aligned anonymous memory, locked in RAM
// (mlock(2)) so it is never swapped out under a transfer, optionally on 2 MiB huge pages
// (MAP_HUGETLB), with a DmaDirection that every device-side user checks (the Linux DMA API's
// dma_data_direction: DMA_TO_DEVICE buffers are only read by the device, DMA_FROM_DEVICE only
// written). The reference crate's DmaBuffer is a descriptor; this one owns its memory (RAII).
//
//   auto buf = PEPITA_TRY(DmaBuffer::allocate(64 << 10, DmaDirection::FromDevice));
//   PEPITA_TRY_VOID(io_uring::register_dma_buffers(ring, {{&buf}}));      // fixed buffer 0
//   PEPITA_TRY_VOID(io_uring::prep_read_fixed(*ring.get_sqe(), fd, buf, 0, 0, 4096, 0));
//   // ToDevice buffers are refused for READ_FIXED: the device may not write them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "pepita/core/mapping.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/address.hpp"

namespace pepita::memory {

/// Which way data moves between the buffer and the device (the kernel's dma_data_direction).
enum class DmaDirection : uint8_t {
  ToDevice = 0,       // host fills it, the device only reads it (a write to a file or disk)
  FromDevice = 1,     // the device fills it, the host reads it (a read from a file or disk)
  Bidirectional = 2,  // both
  None = 3,           // no device access at all (refused by every device-side user)
};

/// The device may read the buffer (the crate's DmaDirection::to_device).
constexpr bool to_device(DmaDirection d) {
  return d == DmaDirection::ToDevice || d == DmaDirection::Bidirectional;
}
/// The device may write the buffer (the crate's DmaDirection::from_device).
constexpr bool from_device(DmaDirection d) {
  return d == DmaDirection::FromDevice || d == DmaDirection::Bidirectional;
}
/// "to-device", "from-device", "bidirectional" or "none".
std::string_view to_string(DmaDirection d) noexcept;

/// Whether allocate() locks the buffer in RAM.
enum class MemLock : uint8_t {
  Required,    // mlock or fail with ResourceExhausted saying how to raise RLIMIT_MEMLOCK
  BestEffort,  // mlock when the limit allows, else keep the (populated) pages unlocked
  No,          // never lock (pages are still populated at allocation)
};

/// Whether allocate() uses 2 MiB huge pages (hugetlbfs pages reserved in
/// /proc/sys/vm/nr_hugepages; the size is rounded up to a multiple of 2 MiB).
enum class HugePages : uint8_t {
  No,
  Prefer,   // huge pages when reserved ones are free, else 4 KiB pages advised for THP
  Require,  // huge pages or ResourceExhausted saying how to reserve them
};

struct DmaOptions {
  MemLock lock = MemLock::Required;
  HugePages huge = HugePages::No;
  /// Fault every page in at allocation (MAP_POPULATE), so the first transfer takes no page
  /// faults. Only meaningful with MemLock::No: locking faults the pages in anyway.
  bool populate = true;
};

/// An owned DMA buffer. Move-only; unlocks and unmaps when destroyed.
class DmaBuffer {
 public:
  /// Maps `size` bytes (rounded up to the page, or huge page, size), zero-filled and (unless
  /// options.populate is false) populated, then locks them as `options` says. Errors:
  /// InvalidArgument for size 0 or a direction outside the enum; ResourceExhausted when locking is
  /// over RLIMIT_MEMLOCK (MemLock::Required) or no huge pages are free (HugePages::Require), each
  /// saying how to fix it; the errno of mmap else.
  static Result<DmaBuffer> allocate(std::size_t size, DmaDirection direction,
                                    DmaOptions options = {});

  DmaBuffer() = default;
  DmaBuffer(DmaBuffer&& other) noexcept;
  DmaBuffer& operator=(DmaBuffer&& other) noexcept;
  DmaBuffer(const DmaBuffer&) = delete;
  DmaBuffer& operator=(const DmaBuffer&) = delete;
  ~DmaBuffer();

  /// Holds memory (false after a move or for a default-constructed buffer).
  bool is_valid() const noexcept { return mapping_.valid(); }
  /// Start and size are multiples of PAGE_SIZE (true for every valid buffer: allocate rounds up).
  bool is_page_aligned() const noexcept {
    return is_valid() && virt().is_page_aligned() && mapping_.size() % PAGE_SIZE == 0;
  }
  /// Pages of PAGE_SIZE the requested size covers.
  std::size_t page_count() const noexcept { return (size_ + PAGE_SIZE - 1) / PAGE_SIZE; }

  /// Bytes asked for in allocate(); bytes() and the fixed-buffer registration cover this many.
  std::size_t size() const noexcept { return size_; }
  /// Bytes mapped (size() rounded up to the page or huge-page size).
  std::size_t mapped_size() const noexcept { return mapping_.size(); }
  DmaDirection direction() const noexcept { return direction_; }
  bool locked() const noexcept { return locked_; }
  bool huge_pages() const noexcept { return huge_; }

  std::byte* data() const noexcept { return mapping_.bytes(); }
  std::span<std::byte> bytes() const noexcept { return {mapping_.bytes(), size_}; }
  /// The buffer's address in this process.
  VirtAddr virt() const noexcept { return VirtAddr::from_ptr(mapping_.bytes()); }
  /// The host-physical address of byte `offset` (from /proc/self/pagemap; a locked page stays
  /// put). PermissionDenied without CAP_SYS_ADMIN (the kernel then reports frame 0);
  /// InvalidArgument for an offset outside the buffer.
  Result<PhysAddr> phys(std::size_t offset = 0) const;

  /// Ok when the device may access [offset, offset + len) in the named way: writing needs
  /// from_device(direction()), reading to_device(direction()). InvalidArgument naming `user`, the
  /// direction or the range otherwise. Every device-side user (io_uring fixed buffers, FileDisk,
  /// the ublk server) calls this before handing the bytes to the kernel.
  Result<void> check_device_access(bool device_writes, uint64_t offset, uint64_t len,
                                   std::string_view user) const;

 private:
  Mapping mapping_;  // unlocked (munlock) in the destructor before the mapping is unmapped
  std::size_t size_ = 0;
  DmaDirection direction_ = DmaDirection::None;
  bool locked_ = false;
  bool huge_ = false;
};

}  // namespace pepita::memory
