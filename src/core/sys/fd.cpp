// File-descriptor and eventfd system calls (see pepita/core/sys/fd.hpp, sys/eventfd.hpp): the
// only place besides sys/check.hpp that reads errno for them.
#include "pepita/core/sys/fd.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <cerrno>

#include "pepita/core/sys/eventfd.hpp"

namespace pepita::sys {

int open(const char* path, int flags, mode_t mode) noexcept {
  return static_cast<int>(ret(::open(path, flags | O_CLOEXEC, mode)));
}

int pipe(int fds[2], int flags) noexcept {
  return static_cast<int>(ret(::pipe2(fds, flags | O_CLOEXEC)));
}

long read(int fd, void* buf, std::size_t len) noexcept { return ret(::read(fd, buf, len)); }

long write(int fd, const void* buf, std::size_t len) noexcept { return ret(::write(fd, buf, len)); }

namespace {

// The loop every *_full call shares: `step(done)` moves bytes from offset `done` of the buffer and
// returns what read/write would; EINTR is retried, other errors come back as -errno, and a
// zero-byte step ends a read (end of file) or fails a write (-EIO: the device took nothing).
template <bool Write, typename Step>
int64_t transfer_full(std::size_t len, Step step) noexcept {
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = step(done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) {
      if constexpr (Write) return -EIO;
      break;  // end of file
    }
    done += static_cast<std::size_t>(n);
  }
  return static_cast<int64_t>(done);
}

}  // namespace

int64_t read_full(int fd, void* buf, std::size_t len) noexcept {
  auto* p = static_cast<std::byte*>(buf);
  return transfer_full<false>(len,
                              [&](std::size_t done) { return ::read(fd, p + done, len - done); });
}

int64_t write_full(int fd, const void* buf, std::size_t len) noexcept {
  const auto* p = static_cast<const std::byte*>(buf);
  return transfer_full<true>(len,
                             [&](std::size_t done) { return ::write(fd, p + done, len - done); });
}

int64_t pread_full(int fd, void* buf, std::size_t len, uint64_t offset) noexcept {
  auto* p = static_cast<std::byte*>(buf);
  return transfer_full<false>(len, [&](std::size_t done) {
    return ::pread(fd, p + done, len - done, static_cast<off_t>(offset + done));
  });
}

int64_t pwrite_full(int fd, const void* buf, std::size_t len, uint64_t offset, int rwf) noexcept {
  const auto* p = static_cast<const std::byte*>(buf);
  return transfer_full<true>(len, [&](std::size_t done) {
    if (rwf == 0) return ::pwrite(fd, p + done, len - done, static_cast<off_t>(offset + done));
    // SAFETY: iov_base is declared void* but pwritev2 only reads from it.
    iovec iov{const_cast<std::byte*>(p + done), len - done};
    return ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset + done), rwf);
  });
}

int fsync(int fd) noexcept { return static_cast<int>(ret(::fsync(fd))); }
int fdatasync(int fd) noexcept { return static_cast<int>(ret(::fdatasync(fd))); }

int ftruncate(int fd, uint64_t size) noexcept {
  return static_cast<int>(ret(::ftruncate(fd, static_cast<off_t>(size))));
}

int fallocate(int fd, int mode, uint64_t offset, uint64_t len) noexcept {
  return static_cast<int>(
      ret(::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len))));
}

int fstat(int fd, struct stat* st) noexcept { return static_cast<int>(ret(::fstat(fd, st))); }

int64_t lseek(int fd, int64_t offset, int whence) noexcept {
  return ret(::lseek(fd, static_cast<off_t>(offset), whence));
}

int64_t file_size(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return -errno;
  return st.st_size;
}

int64_t regular_file_size(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return -errno;
  return S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : -EINVAL;
}

int set_nonblocking(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  if ((flags & O_NONBLOCK) != 0) return 0;
  return static_cast<int>(ret(::fcntl(fd, F_SETFL, flags | O_NONBLOCK)));
}

int poll(pollfd* fds, nfds_t n, int timeout_ms) noexcept {
  return static_cast<int>(ret(::poll(fds, n, timeout_ms)));
}

int madvise(void* addr, std::size_t len, int advice) noexcept {
  return static_cast<int>(ret(::madvise(addr, len, advice)));
}

int ioctl(int fd, unsigned long request, unsigned long arg) noexcept {
  return static_cast<int>(ret(::ioctl(fd, request, arg)));
}

// ---- eventfd ----------------------------------------------------------------------------------

int eventfd(unsigned initval, int flags) noexcept {
  return static_cast<int>(ret(::eventfd(initval, flags | EFD_CLOEXEC)));
}

Result<UniqueFd> make_eventfd(int flags) {
  return check_fd(eventfd(0, flags), "eventfd (a wake-up counter)");
}

int eventfd_signal(int fd, uint64_t n) noexcept {
  for (;;) {
    if (::write(fd, &n, sizeof n) == static_cast<ssize_t>(sizeof n)) return 0;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : -errno;  // a full counter wakes the reader anyway
  }
}

int64_t eventfd_drain(int fd) noexcept {
  uint64_t value = 0;
  for (;;) {
    if (::read(fd, &value, sizeof value) == static_cast<ssize_t>(sizeof value)) {
      return static_cast<int64_t>(value);
    }
    if (errno != EINTR) return -errno;
  }
}

}  // namespace pepita::sys
