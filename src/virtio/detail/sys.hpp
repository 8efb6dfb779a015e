#pragma once
// Thin syscall layer for the vhost-user transport: each call returns a value >= 0 or -errno;
// nothing above it reads errno.
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace pepita::virtio::sys {

inline int ret(long r) { return r < 0 ? -errno : static_cast<int>(r); }

inline int make_eventfd() { return ret(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }
inline int eventfd_signal(int fd) {
  uint64_t one = 1;
  return ret(::write(fd, &one, sizeof one));
}
inline int eventfd_drain(int fd) {
  uint64_t v = 0;
  return ret(::read(fd, &v, sizeof v));
}
inline int poll2(int a, int b, int timeout_ms, bool& a_ready, bool& b_ready) {
  pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  int r = ret(::poll(p, 2, timeout_ms));
  a_ready = r > 0 && p[0].revents != 0;
  b_ready = r > 0 && p[1].revents != 0;
  return r;
}

/// Listens on the unix socket `path`. A socket left there by a server that died is replaced;
/// -EEXIST when `path` is something else (never deleted), -EADDRINUSE when a live server still
/// accepts on it.
inline int unix_listen(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return -ENAMETOOLONG;
  int fd = ret(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd < 0) return fd;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ::close(fd);
      return -EEXIST;
    }
    // A non-blocking probe: a live server accepts it or has a full backlog (EAGAIN); only a
    // dead one refuses it. The live server sees the probe as a frontend that hung up at once.
    const int probe = ret(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (probe < 0) {
      ::close(fd);
      return probe;
    }
    // SAFETY: sockaddr_un is the sockaddr variant connect expects for AF_UNIX.
    const int connected = ret(::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
    ::close(probe);
    if (connected == 0 || connected == -EAGAIN) {
      ::close(fd);
      return -EADDRINUSE;
    }
    ::unlink(path.c_str());
  }
  // SAFETY: sockaddr_un is the sockaddr variant bind expects for AF_UNIX.
  if (int r = ret(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr)); r < 0) {
    ::close(fd);
    return r;
  }
  if (int r = ret(::listen(fd, 1)); r < 0) {
    ::close(fd);
    return r;
  }
  return fd;
}
inline int accept_cloexec(int fd) { return ret(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC)); }

/// Receives exactly `len` bytes (or 0 on orderly EOF before any byte) and up to `max_fds`
/// descriptors into fds[]; *nfds is set. -EPROTO when the peer closes mid-message.
inline int recv_with_fds(int sock, void* buf, size_t len, int* fds, size_t max_fds, size_t* nfds) {
  *nfds = 0;
  size_t got = 0;
  while (got < len) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{static_cast<char*>(buf) + got, len - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    long r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (*nfds < max_fds) {
          fds[(*nfds)++] = fd;
        } else {
          ::close(fd);
        }
      }
    }
    if (r == 0) return got == 0 ? 0 : -EPROTO;
    got += static_cast<size_t>(r);
  }
  return static_cast<int>(got);
}
inline int send_all(int sock, const void* buf, size_t len) {
  size_t sent = 0;
  while (sent < len) {
    long r = ::send(sock, static_cast<const char*>(buf) + sent, len - sent, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    sent += static_cast<size_t>(r);
  }
  return static_cast<int>(sent);
}

}  // namespace pepita::virtio::sys
