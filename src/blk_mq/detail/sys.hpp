#pragma once
// Thin syscall layer for the block devices: each call returns the result or a negative errno, so
// nothing above reads errno (liburing's syscall.h convention).

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace pepita::blk_mq::sys {

inline int open(const char* path, int flags, mode_t mode) {
  const int fd = ::open(path, flags | O_CLOEXEC, mode);
  return fd < 0 ? -errno : fd;
}
/// Reads or writes exactly `len` bytes at `offset` (looping over short transfers); a read past EOF
/// returns the bytes it got. Returns bytes moved or -errno.
inline int64_t pread_full(int fd, std::byte* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}
inline int64_t pwrite_full(int fd, const std::byte* buf, size_t len, uint64_t offset, int rwf) {
  size_t done = 0;
  while (done < len) {
    // SAFETY: iov_base is declared void* but pwritev2 only reads from it.
    iovec iov{const_cast<std::byte*>(buf + done), len - done};
    const ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset + done), rwf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}
inline int fdatasync(int fd) { return ::fdatasync(fd) < 0 ? -errno : 0; }
inline int fallocate(int fd, int mode, uint64_t offset, uint64_t len) {
  return ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) < 0 ? -errno
                                                                                        : 0;
}
inline int ftruncate(int fd, uint64_t size) {
  return ::ftruncate(fd, static_cast<off_t>(size)) < 0 ? -errno : 0;
}
inline int64_t file_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return -errno;
  return st.st_size;
}
inline int eventfd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}
/// Blocks until the eventfd's counter is non-zero and resets it; 0 or -errno (EINTR retried).
inline int eventfd_wait(int fd) {
  uint64_t value = 0;
  while (::read(fd, &value, sizeof(value)) < 0) {
    if (errno != EINTR) return -errno;
  }
  return 0;
}
inline int eventfd_signal(int fd) {
  const uint64_t one = 1;
  return ::write(fd, &one, sizeof(one)) < 0 ? -errno : 0;
}
inline int madvise(void* addr, size_t len, int advice) {
  return ::madvise(addr, len, advice) < 0 ? -errno : 0;
}

}  // namespace pepita::blk_mq::sys
