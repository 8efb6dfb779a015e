// Socket system calls (see pepita/core/sys/socket.hpp): CLOEXEC on every new fd, MSG_NOSIGNAL on
// every send, full-length loops that retry EINTR, unix listeners and SCM_RIGHTS passing.
#include "pepita/core/sys/socket.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pepita/core/unique_fd.hpp"

namespace pepita::sys {
namespace {

constexpr std::size_t kMaxPassedFds = 8;

// Fills `addr` for `path`; false when it does not fit sun_path (or is empty).
bool unix_address(const std::string& path, sockaddr_un& addr) {
  addr = {};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

const sockaddr* as_sockaddr(const sockaddr_un& addr) {
  // SAFETY: sockaddr_un is the sockaddr variant the socket calls expect for AF_UNIX.
  return reinterpret_cast<const sockaddr*>(&addr);
}

}  // namespace

int socket(int domain, int type, int protocol) noexcept {
  return static_cast<int>(ret(::socket(domain, type | SOCK_CLOEXEC, protocol)));
}

int accept(int fd, sockaddr* addr, socklen_t* len, int flags) noexcept {
  return static_cast<int>(ret(::accept4(fd, addr, len, flags | SOCK_CLOEXEC)));
}

int connect(int fd, const sockaddr* addr, socklen_t len) noexcept {
  return static_cast<int>(ret(::connect(fd, addr, len)));
}

int bind(int fd, const sockaddr* addr, socklen_t len) noexcept {
  return static_cast<int>(ret(::bind(fd, addr, len)));
}

int listen(int fd, int backlog) noexcept { return static_cast<int>(ret(::listen(fd, backlog))); }

int set_option(int fd, int level, int name, int value) noexcept {
  return static_cast<int>(ret(::setsockopt(fd, level, name, &value, sizeof value)));
}

int socket_error(int fd) noexcept {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return -err;
}

long send(int fd, const void* buf, std::size_t len, int flags) noexcept {
  return ret(::send(fd, buf, len, flags | MSG_NOSIGNAL));
}

long recv(int fd, void* buf, std::size_t len, int flags) noexcept {
  return ret(::recv(fd, buf, len, flags));
}

int64_t send_all(int fd, const void* buf, std::size_t len) noexcept {
  const auto* p = static_cast<const char*>(buf);
  std::size_t sent = 0;
  while (sent < len) {
    const ssize_t n = ::send(fd, p + sent, len - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    sent += static_cast<std::size_t>(n);
  }
  return static_cast<int64_t>(sent);
}

int64_t recv_full(int fd, void* buf, std::size_t len) noexcept {
  auto* p = static_cast<char*>(buf);
  std::size_t got = 0;
  while (got < len) {
    const ssize_t n = ::recv(fd, p + got, len - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;  // orderly shutdown
    got += static_cast<std::size_t>(n);
  }
  return static_cast<int64_t>(got);
}

int unix_listen(const std::string& path, int backlog) noexcept {
  sockaddr_un addr;
  if (!unix_address(path, addr)) return -ENAMETOOLONG;
  const int raw = socket(AF_UNIX, SOCK_STREAM);
  if (raw < 0) return raw;
  UniqueFd fd(raw);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return -EEXIST;
    // A non-blocking probe: a live server accepts it or has a full backlog (EAGAIN); only a
    // dead one refuses it. The live server sees the probe as a client that hung up at once.
    const int probe_raw = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
    if (probe_raw < 0) return probe_raw;
    UniqueFd probe(probe_raw);
    const int connected = sys::connect(probe.get(), as_sockaddr(addr), sizeof addr);
    if (connected == 0 || connected == -EAGAIN) return -EADDRINUSE;
    ::unlink(path.c_str());
  }
  if (const int r = sys::bind(fd.get(), as_sockaddr(addr), sizeof addr); r < 0) return r;
  if (const int r = sys::listen(fd.get(), backlog); r < 0) return r;
  return fd.release();
}

int unix_connect(const std::string& path) noexcept {
  sockaddr_un addr;
  if (!unix_address(path, addr)) return -ENAMETOOLONG;
  const int raw = socket(AF_UNIX, SOCK_STREAM);
  if (raw < 0) return raw;
  UniqueFd fd(raw);
  for (;;) {
    const int r = sys::connect(fd.get(), as_sockaddr(addr), sizeof addr);
    if (r == 0) return fd.release();
    if (r != -EINTR) return r;
  }
}

int recv_with_fds(int sock, void* buf, std::size_t len, int* fds, std::size_t max_fds,
                  std::size_t* nfds) noexcept {
  *nfds = 0;
  std::size_t got = 0;
  while (got < len) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
    iovec iov{static_cast<char*>(buf) + got, len - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
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
    got += static_cast<std::size_t>(r);
  }
  return static_cast<int>(got);
}

int64_t send_with_fds(int sock, const void* buf, std::size_t len, const int* fds,
                      std::size_t nfds) noexcept {
  if (nfds > kMaxPassedFds) return -EINVAL;
  if (nfds == 0) return send_all(sock, buf, len);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  // SAFETY: iov_base is declared void* but sendmsg only reads from it.
  iovec iov{const_cast<void*>(buf), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  // The descriptors went with the first byte; the rest is plain data.
  const auto sent = static_cast<std::size_t>(n);
  if (sent == len) return static_cast<int64_t>(len);
  const int64_t rest = send_all(sock, static_cast<const char*>(buf) + sent, len - sent);
  return rest < 0 ? rest : static_cast<int64_t>(len);
}

}  // namespace pepita::sys
