// DmaBuffer: mmap (optionally MAP_HUGETLB), mlock with an RLIMIT_MEMLOCK-aware error, and the
// direction check every device-side user applies.
#include "pepita/memory/dma_buffer.hpp"

#include <linux/mman.h>  // MAP_HUGE_2MB
#include <sys/mman.h>

#include <cerrno>
#include <string>
#include <utility>

#include "pepita/core/size.hpp"
#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/memory.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::memory {
namespace {

constexpr std::size_t kHugePageSize = abi::HUGE_PAGE_SIZE;

std::string limit_text(uint64_t bytes) {
  return bytes == ~uint64_t{0} ? std::string("unlimited") : format_size(bytes);
}

std::unexpected<Error> lock_failed(int rc, std::size_t bytes) {
  uint64_t limit = 0;
  const bool known = sys::memlock_limit(&limit) == 0;
  if (rc == -ENOMEM || rc == -EPERM)
    return fail(ErrorCode::ResourceExhausted,
                fmt("DmaBuffer: cannot lock {} in RAM: RLIMIT_MEMLOCK is {}; raise it (`ulimit -l "
                    "unlimited`, LimitMEMLOCK= in a systemd unit, memlock in "
                    "/etc/security/limits.conf, or run with CAP_IPC_LOCK) or allocate with "
                    "DmaOptions{.lock = MemLock::BestEffort}",
                    format_size(bytes), known ? limit_text(limit) : std::string("unknown")),
                -rc);
  return fail_errno(rc, "DmaBuffer: mlock");
}

}  // namespace

std::string_view to_string(DmaDirection d) noexcept {
  switch (d) {
    case DmaDirection::ToDevice: return "to-device";
    case DmaDirection::FromDevice: return "from-device";
    case DmaDirection::Bidirectional: return "bidirectional";
    case DmaDirection::None: return "none";
  }
  return "invalid";
}

Result<DmaBuffer> DmaBuffer::allocate(std::size_t size, DmaDirection direction,
                                      DmaOptions options) {
  if (size == 0)
    return fail(ErrorCode::InvalidArgument, "DmaBuffer: size is 0; ask for at least one byte");
  if (static_cast<uint8_t>(direction) > static_cast<uint8_t>(DmaDirection::None))
    return fail(ErrorCode::InvalidArgument, fmt("DmaBuffer: direction {} is not a DmaDirection",
                                                static_cast<unsigned>(direction)));
  const uint64_t limit = ~uint64_t{0} - kHugePageSize;
  if (size > limit)
    return fail(ErrorCode::InvalidArgument,
                fmt("DmaBuffer: size {} cannot be rounded up to whole pages", size));

  DmaBuffer buf;
  buf.size_ = size;
  buf.direction_ = direction;
  constexpr int kProt = PROT_READ | PROT_WRITE;
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS |
                    (options.populate || options.lock != MemLock::No ? MAP_POPULATE : 0);
  if (options.huge != HugePages::No) {
    const std::size_t bytes = abi::align_up(size, kHugePageSize);
    void* addr = nullptr;
    const int rc = sys::mmap(&addr, bytes, kProt, flags | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (rc == 0) {
      buf.mapping_ = Mapping(addr, bytes);
      buf.huge_ = true;
    } else if (options.huge == HugePages::Require) {
      if (rc != -ENOMEM && rc != -EINVAL) return fail_errno(rc, "DmaBuffer: mmap MAP_HUGETLB");
      return fail(ErrorCode::ResourceExhausted,
                  fmt("DmaBuffer: no {} free 2 MiB huge pages for {}; reserve them as root "
                      "(`echo {} > /proc/sys/vm/nr_hugepages`, see HugePages_Free in "
                      "/proc/meminfo) or allocate with HugePages::Prefer",
                      bytes / kHugePageSize, format_size(size), bytes / kHugePageSize),
                  -rc);
    }
  }
  if (!buf.mapping_.valid()) {
    buf.mapping_ =
        PEPITA_TRY(Mapping::map(abi::align_up(size, PAGE_SIZE), kProt, flags, -1, 0, "DmaBuffer"));
    // Best effort: transparent huge pages cut TLB misses where huge pages were not reserved.
    if (options.huge == HugePages::Prefer && buf.mapping_.size() >= kHugePageSize)
      (void)sys::madvise(buf.mapping_.data(), buf.mapping_.size(), MADV_HUGEPAGE);
  }
  if (options.lock != MemLock::No) {
    const int rc = sys::mlock(buf.mapping_.data(), buf.mapping_.size());
    if (rc == 0)
      buf.locked_ = true;
    else if (options.lock == MemLock::Required)
      return lock_failed(rc, buf.mapping_.size());
  }
  return buf;
}

DmaBuffer::DmaBuffer(DmaBuffer&& other) noexcept
    : mapping_(std::move(other.mapping_)),
      size_(std::exchange(other.size_, 0)),
      direction_(std::exchange(other.direction_, DmaDirection::None)),
      locked_(std::exchange(other.locked_, false)),
      huge_(std::exchange(other.huge_, false)) {}

DmaBuffer& DmaBuffer::operator=(DmaBuffer&& other) noexcept {
  if (this != &other) {
    if (locked_ && mapping_.valid()) (void)sys::munlock(mapping_.data(), mapping_.size());
    mapping_ = std::move(other.mapping_);
    size_ = std::exchange(other.size_, 0);
    direction_ = std::exchange(other.direction_, DmaDirection::None);
    locked_ = std::exchange(other.locked_, false);
    huge_ = std::exchange(other.huge_, false);
  }
  return *this;
}

DmaBuffer::~DmaBuffer() {
  // munmap unlocks too; unlocking first keeps the lock accounting explicit and in order.
  if (locked_ && mapping_.valid()) (void)sys::munlock(mapping_.data(), mapping_.size());
}

Result<PhysAddr> DmaBuffer::phys(std::size_t offset) const {
  if (!is_valid() || offset >= size_)
    return fail(ErrorCode::InvalidArgument,
                fmt("DmaBuffer::phys: offset {} is outside the {}-byte buffer", offset, size_));
  const uint64_t va = virt().raw() + offset;
  UniqueFd pagemap = PEPITA_TRY(
      sys::check_fd(sys::open("/proc/self/pagemap", O_RDONLY), "open /proc/self/pagemap"));
  uint64_t entry = 0;
  const int64_t n =
      sys::pread_full(pagemap.get(), &entry, sizeof(entry), (va >> PAGE_SHIFT) * sizeof(entry));
  if (n < 0) return fail_errno(static_cast<int>(n), "read /proc/self/pagemap");
  if (n != sizeof(entry))
    return fail(ErrorCode::Io, "read /proc/self/pagemap: short read of the buffer's entry");
  // pagemap entry (Documentation/admin-guide/mm/pagemap.rst): bit 63 present, bits 0-54 the PFN.
  const bool present = (entry >> 63) != 0;
  const uint64_t pfn = entry & ((uint64_t{1} << 55) - 1);
  if (!present)
    return fail(ErrorCode::Internal,
                "DmaBuffer::phys: the page is not present although it was populated");
  if (pfn == 0)
    return fail(ErrorCode::PermissionDenied,
                "DmaBuffer::phys: /proc/self/pagemap hides frame numbers from this process; run "
                "with CAP_SYS_ADMIN");
  return Pfn(pfn).to_addr().add(va & (PAGE_SIZE - 1));
}

Result<void> DmaBuffer::check_device_access(bool device_writes, uint64_t offset, uint64_t len,
                                            std::string_view user) const {
  if (!is_valid())
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: the DmaBuffer holds no memory (moved from or never allocated)", user));
  const bool allowed = device_writes ? from_device(direction_) : to_device(direction_);
  if (!allowed)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: the device would {} a {} DmaBuffer; allocate it as {} or bidirectional",
                    user, device_writes ? "write" : "read", to_string(direction_),
                    device_writes ? "from-device" : "to-device"));
  if (offset > size_ || len > size_ - offset)
    return fail(
        ErrorCode::InvalidArgument,
        fmt("{}: bytes [{}, +{}) are outside the {}-byte DmaBuffer", user, offset, len, size_));
  return {};
}

}  // namespace pepita::memory
