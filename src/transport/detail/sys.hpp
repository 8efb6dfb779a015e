#pragma once
// Thin syscall layer for the transport: each call returns the result or a negative errno, and
// nothing above this file reads errno.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace pepita::transport::sys {

inline long ret(long r) noexcept { return r < 0 ? -errno : r; }

inline long read(int fd, void* buf, std::size_t n) noexcept { return ret(::read(fd, buf, n)); }
inline long send(int fd, const void* buf, std::size_t n) noexcept {
  return ret(::send(fd, buf, n, MSG_NOSIGNAL));
}
inline long recv(int fd, void* buf, std::size_t n, int flags) noexcept {
  return ret(::recv(fd, buf, n, flags));
}
inline long write(int fd, const void* buf, std::size_t n) noexcept {
  return ret(::write(fd, buf, n));
}
inline int poll(pollfd* fds, nfds_t n, int timeout_ms) noexcept {
  return static_cast<int>(ret(::poll(fds, n, timeout_ms)));
}
inline int pidfd_open(pid_t pid) noexcept {
  return static_cast<int>(ret(::syscall(SYS_pidfd_open, pid, 0)));
}
inline int set_nonblocking(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  return static_cast<int>(ret(::fcntl(fd, F_SETFL, flags | O_NONBLOCK)));
}

}  // namespace pepita::transport::sys
