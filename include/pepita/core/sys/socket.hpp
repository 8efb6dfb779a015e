#pragma once
// Socket system calls with the flags pepita always wants: CLOEXEC on every new fd, MSG_NOSIGNAL
// on every send (EPIPE instead of SIGPIPE), full-length send/recv loops, unix listeners and
// SCM_RIGHTS fd passing (vhost-user). Each returns a value >= 0 or a negative errno.

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "pepita/core/sys/check.hpp"

namespace pepita::sys {

/// socket(2) with SOCK_CLOEXEC added to `type`: the fd or -errno.
int socket(int domain, int type, int protocol = 0) noexcept;
/// accept4(2) with SOCK_CLOEXEC added to `flags`: the connection's fd or -errno (-EAGAIN when
/// none is pending on a non-blocking listener). EINTR is returned.
int accept(int fd, sockaddr* addr = nullptr, socklen_t* len = nullptr, int flags = 0) noexcept;
/// connect(2), bind(2), listen(2): 0 or -errno (-EINPROGRESS for a non-blocking connect).
int connect(int fd, const sockaddr* addr, socklen_t len) noexcept;
int bind(int fd, const sockaddr* addr, socklen_t len) noexcept;
int listen(int fd, int backlog) noexcept;
/// setsockopt(2) of an int option: 0 or -errno.
int set_option(int fd, int level, int name, int value) noexcept;
/// The pending error of a socket (SO_ERROR) as -errno, 0 when none (e.g. after a non-blocking
/// connect completed).
int socket_error(int fd) noexcept;

/// One send(2) with MSG_NOSIGNAL added / one recv(2): bytes moved or -errno, -EINTR included.
long send(int fd, const void* buf, std::size_t len, int flags = 0) noexcept;
long recv(int fd, void* buf, std::size_t len, int flags = 0) noexcept;
/// Sends all `len` bytes (MSG_NOSIGNAL), retrying EINTR and short sends: `len` or -errno.
int64_t send_all(int fd, const void* buf, std::size_t len) noexcept;
/// Receives until `len` bytes or an orderly shutdown, retrying EINTR: bytes received (fewer only
/// when the peer closed) or -errno.
int64_t recv_full(int fd, void* buf, std::size_t len) noexcept;

/// Listens on the unix stream socket `path` (backlog `backlog`). A socket left there by a server
/// that died is replaced; -EEXIST when `path` is something else (never deleted), -EADDRINUSE when
/// a live server still accepts on it, -ENAMETOOLONG when it does not fit sun_path.
int unix_listen(const std::string& path, int backlog = 1) noexcept;
/// Connects to the unix stream socket `path`: the fd or -errno.
int unix_connect(const std::string& path) noexcept;

/// Receives exactly `len` bytes (or 0 on orderly EOF before any byte) and up to `max_fds`
/// descriptors (SCM_RIGHTS, CLOEXEC) into fds[]; *nfds is set and the caller owns them; extra
/// descriptors are closed. -EPROTO when the peer closes mid-message. EINTR is retried.
int recv_with_fds(int sock, void* buf, std::size_t len, int* fds, std::size_t max_fds,
                  std::size_t* nfds) noexcept;
/// Sends `len` bytes with `nfds` descriptors attached to the first byte (SCM_RIGHTS, at most 8):
/// `len` or -errno.
int64_t send_with_fds(int sock, const void* buf, std::size_t len, const int* fds,
                      std::size_t nfds) noexcept;

}  // namespace pepita::sys
