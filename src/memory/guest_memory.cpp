// GuestMemory: range checks with overflow-checked arithmetic, memfd-backed images and
// copy-on-write views for VM snapshots.
#include "pepita/memory/guest_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace pepita::memory {
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<void> GuestMemory::check_layout(PhysAddr base, uint64_t size) {
  if (size == 0 || !abi::is_aligned(size, abi::PAGE_SIZE))
    return fail(ErrorCode::InvalidArgument,
                "guest memory size " + hex(size) + " must be a non-zero multiple of 4096");
  if (!base.is_page_aligned())
    return fail(ErrorCode::InvalidArgument,
                "guest memory base " + hex(base.raw()) + " must be page-aligned");
  bool overflow = false;
  (void)base.checked_add(size, overflow);
  if (overflow)
    return fail(ErrorCode::InvalidArgument, "guest memory [" + hex(base.raw()) + ", +" + hex(size) +
                                                ") wraps the address space");
  return {};
}

Result<GuestMemory> GuestMemory::anonymous(PhysAddr base, uint64_t size) {
  PEPITA_TRY_VOID(check_layout(base, size));
  auto mapping =
      PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "guest memory"));
  return GuestMemory(base, size, std::move(mapping), UniqueFd());
}

Result<GuestMemory> GuestMemory::shared(PhysAddr base, uint64_t size, const char* name) {
  PEPITA_TRY_VOID(check_layout(base, size));
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return fail_errno(errno, "memfd_create for guest memory");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return fail_errno(errno, "ftruncate guest memory memfd to " + hex(size));
  // SAFETY: a fresh shared mapping of our own memfd, exactly `size` bytes long.
  auto mapping = PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                                         fd.get(), 0, "guest memory (memfd)"));
  return GuestMemory(base, size, std::move(mapping), std::move(fd));
}

Result<GuestMemory> GuestMemory::copy_on_write(PhysAddr base, uint64_t size, int image_fd) {
  PEPITA_TRY_VOID(check_layout(base, size));
  struct stat st {};
  if (::fstat(image_fd, &st) != 0) return fail_errno(errno, "fstat snapshot image");
  if (static_cast<uint64_t>(st.st_size) < size)
    return fail(ErrorCode::InvalidArgument, "snapshot image holds " + hex(st.st_size) +
                                                " bytes, fewer than the " + hex(size) + " mapped");
  // SAFETY: MAP_PRIVATE: writes make private copies; the sealed image itself never changes.
  auto mapping = PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
                                         image_fd, 0, "guest memory (copy-on-write)"));
  return GuestMemory(base, size, std::move(mapping), UniqueFd());
}

Result<void> GuestMemory::reset_copy_on_write(int image_fd) {
  if (!valid()) return fail(ErrorCode::InvalidArgument, "reset of empty guest memory");
  if (fd_) return fail(ErrorCode::InvalidArgument, "reset_copy_on_write on memfd-shared memory");
  // SAFETY: MAP_FIXED over our own mapping of the same length: the host range stays ours, only its
  // pages are replaced by a fresh private view of the image.
  void* addr = ::mmap(mapping_.data(), mapping_.size(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, image_fd, 0);
  if (addr == MAP_FAILED) {
    int err = errno;
    mapping_.reset();  // the old range may be gone; never leave a half-valid object
    return fail_errno(err, "mmap copy-on-write reset of guest memory");
  }
  return {};
}

Result<UniqueFd> GuestMemory::into_sealed_image() && {
  if (!fd_) return fail(ErrorCode::InvalidArgument, "only memfd-backed guest memory can be sealed");
  mapping_.reset();  // F_SEAL_WRITE fails while a shared writable mapping exists
  if (::fcntl(fd_.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) !=
      0)
    return fail_errno(errno, "seal guest memory image");
  size_ = 0;
  return std::move(fd_);
}

bool GuestMemory::contains(PhysAddr gpa, uint64_t len) const noexcept {
  if (!valid() || gpa < base_) return false;
  uint64_t offset = gpa.raw() - base_.raw();
  return offset <= size_ && len <= size_ - offset;
}

Result<std::span<std::byte>> GuestMemory::span(PhysAddr gpa, uint64_t len) const {
  if (!contains(gpa, len))
    return fail(ErrorCode::InvalidArgument, "guest range [" + hex(gpa.raw()) + ", +" + hex(len) +
                                                ") is outside guest memory [" + hex(base_.raw()) +
                                                ", " + hex(end().raw()) + ")");
  return std::span<std::byte>(mapping_.bytes() + (gpa.raw() - base_.raw()), len);
}

Result<void> GuestMemory::read_bytes(PhysAddr gpa, std::span<std::byte> out) const {
  auto src = PEPITA_TRY(span(gpa, out.size()));
  if (!out.empty()) std::memcpy(out.data(), src.data(), out.size());
  return {};
}

Result<void> GuestMemory::write_bytes(PhysAddr gpa, std::span<const std::byte> in) const {
  auto dst = PEPITA_TRY(span(gpa, in.size()));
  if (!in.empty()) std::memcpy(dst.data(), in.data(), in.size());
  return {};
}

Result<void> GuestMemory::fill_zero(PhysAddr gpa, uint64_t len) const {
  auto dst = PEPITA_TRY(span(gpa, len));
  if (len != 0) std::memset(dst.data(), 0, len);
  return {};
}

}  // namespace pepita::memory
