#pragma once
// Thin syscall layer for the ublk server: results or a negative errno, so nothing above reads
// errno (liburing's syscall.h convention).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

namespace pepita::ublk::sys {

inline int open(const char* path, int flags) {
  const int fd = ::open(path, flags | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

/// open() that waits up to `timeout` for a device node to appear (udev may create it after the
/// ioctl that made the device returned; devtmpfs does it synchronously).
inline int open_device_node(const char* path, int flags, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const int fd = open(path, flags);
    if (fd != -ENOENT || std::chrono::steady_clock::now() >= deadline) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// pread/pwrite of exactly `len` bytes (looping over short transfers, retrying EINTR): bytes moved
/// (fewer only at end of file) or -errno. UBLK_F_USER_COPY moves request data this way.
inline int64_t pread_full(int fd, std::byte* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}
inline int64_t pwrite_full(int fd, const std::byte* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}

}  // namespace pepita::ublk::sys
