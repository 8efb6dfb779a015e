// TCP plumbing for Connection/Listener: non-blocking sockets driven by poll(2) with deadlines,
// optionally under TLS (detail/tls.hpp) between the socket and the frames.
#include "pepita/transport/connection.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "detail/tls.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"

namespace pepita::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kMaxHandshakePayload = 1024;  // Hello is at most 100 bytes
constexpr std::string_view kUseTlsBoth = "use --tls on both sides or on neither";

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1 << 30));
}

void tune(int fd) {
  // Frames are small and latency-bound: never wait for Nagle to coalesce them.
  (void)sys::set_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  (void)sys::set_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
}

std::string describe(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    // SAFETY: ss_family says the storage holds a sockaddr_in.
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    // SAFETY: ss_family says the storage holds a sockaddr_in6.
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    // Appended piece by piece: g++ 12 -O3 reports a false -Wrestrict in `"[" + std::string`.
    std::string out = "[";
    out.append(host).append("]:").append(std::to_string(port));
    return out;
  }
  return "?";
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const noexcept { ::freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

Result<AddrInfoPtr> resolve(const Endpoint& ep, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* out = nullptr;
  const std::string port = std::to_string(ep.port);
  const int rc = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &out);
  if (rc != 0) {
    return fail(ErrorCode::NotFound,
                "cannot resolve " + ep.to_string() + ": " + ::gai_strerror(rc));
  }
  return AddrInfoPtr(out);
}

}  // namespace

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorCode::InvalidArgument,
                "bad address '" + std::string(text) +
                    "': expected host:port, e.g. 127.0.0.1:7070 or [::1]:7070");
  };
  Endpoint ep;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad();
    }
    ep.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return bad();
    ep.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (ep.host.empty() || port.empty() || port.size() > 5) return bad();
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad();
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return bad();
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  const std::string h(host);
  if (::inet_pton(AF_INET, h.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
  return false;
}

Result<Listener> Listener::bind(const Endpoint& at, bool allow_non_loopback) {
  if (!allow_non_loopback && !is_loopback_host(at.host)) {
    return fail(ErrorCode::PermissionDenied,
                "refusing to listen on non-loopback address " + at.to_string() +
                    ": a worker runs arbitrary binaries for whoever authenticates; pass a key "
                    "file and allow remote listening explicitly");
  }
  auto ai = PEPITA_TRY(resolve(at, true));
  int last_err = EADDRNOTAVAIL;
  for (addrinfo* p = ai.get(); p != nullptr; p = p->ai_next) {
    const int s = sys::socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK);
    if (s < 0) {
      last_err = -s;
      continue;
    }
    UniqueFd fd(s);
    (void)sys::set_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    int rc = sys::bind(fd.get(), p->ai_addr, p->ai_addrlen);
    if (rc == 0) rc = sys::listen(fd.get(), 128);
    if (rc < 0) {
      last_err = -rc;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    // SAFETY: getsockname writes at most `len` bytes into the sockaddr_storage.
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    Endpoint bound = at;
    bound.port = PEPITA_TRY(parse_endpoint(describe(ss))).port;
    return Listener(std::move(fd), std::move(bound));
  }
  return fail_errno(last_err, "bind " + at.to_string());
}

Result<UniqueFd> Listener::accept(std::string& peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  // SAFETY: accept4 writes at most `len` bytes into the sockaddr_storage.
  UniqueFd fd = PEPITA_TRY(sys::check_fd(
      sys::accept(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK), "accept"));
  tune(fd.get());
  peer = describe(ss);
  return fd;
}

Connection::Connection(Private, UniqueFd fd, std::string peer, const ConnectionOptions& options)
    : fd_(std::move(fd)), peer_(std::move(peer)), options_(options) {}

Connection::~Connection() = default;

Result<UniqueFd> dial(const Endpoint& to, std::chrono::milliseconds timeout) {
  auto ai = PEPITA_TRY(resolve(to, false));
  UniqueFd fd;
  int last_err = ECONNREFUSED;
  for (addrinfo* p = ai.get(); p != nullptr && !fd; p = p->ai_next) {
    const int sfd = sys::socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK);
    if (sfd < 0) {
      last_err = -sfd;
      continue;
    }
    UniqueFd s(sfd);
    if (const int rc = sys::connect(s.get(), p->ai_addr, p->ai_addrlen); rc != 0) {
      if (rc != -EINPROGRESS) {
        last_err = -rc;
        continue;
      }
      pollfd pfd{s.get(), POLLOUT, 0};
      const int n = sys::poll(&pfd, 1, static_cast<int>(timeout.count()));
      if (n <= 0) {
        last_err = n == 0 ? ETIMEDOUT : -n;
        continue;
      }
      const int err = -sys::socket_error(s.get());
      if (err != 0) {
        last_err = err;
        continue;
      }
    }
    fd = std::move(s);
  }
  if (!fd) {
    Error e = Error::from_errno(last_err, "connect " + to.to_string());
    // A refused or unreachable worker is a peer that is not there: Disconnected, retriable.
    return std::unexpected(Error(ErrorCode::Disconnected, e.message(), last_err));
  }
  tune(fd.get());
  return fd;
}

Result<std::unique_ptr<Connection>> Connection::connect(const Endpoint& to, const Key& key,
                                                        const ConnectionOptions& options) {
  return client(PEPITA_TRY(dial(to, options.connect_timeout)), to.to_string(), key, options);
}

Result<std::unique_ptr<Connection>> Connection::client(UniqueFd fd, std::string peer,
                                                       const Key& key,
                                                       const ConnectionOptions& options) {
  auto conn = std::make_unique<Connection>(Private{}, std::move(fd), peer, options);
  conn->remote_name_ = peer;
  const auto deadline = Clock::now() + options.handshake_timeout;
  if (options.tls) PEPITA_TRY_VOID(conn->start_tls(true, key, deadline));

  auto [client, hello] = PEPITA_TRY(ClientHandshake::start(key, options.name));
  Bytes wire;
  PEPITA_TRY_VOID(encode_frame({.type = MessageType::Hello}, hello, wire));
  PEPITA_TRY_VOID(conn->write_all(wire));
  Message challenge = PEPITA_TRY(conn->expect_cleartext(MessageType::Challenge, deadline));
  auto [auth, session] = PEPITA_TRY(client.on_challenge(challenge.payload));
  wire.clear();
  PEPITA_TRY_VOID(encode_frame({.type = MessageType::Auth, .sequence = 1}, auth, wire));
  PEPITA_TRY_VOID(conn->write_all(wire));
  conn->session_.emplace(std::move(session));
  auto ok = PEPITA_TRY(conn->receive(std::chrono::milliseconds(ms_until(deadline))));
  if (!ok) return fail(ErrorCode::TimedOut, "worker " + peer + " did not confirm auth");
  if (ok->header.type != MessageType::AuthOk) {
    return fail(ErrorCode::Protocol, "expected auth-ok from " + peer + ", got " +
                                         std::string(to_string(ok->header.type)));
  }
  return conn;
}

Result<std::unique_ptr<Connection>> Connection::accept(UniqueFd fd, std::string peer,
                                                       const Key& key,
                                                       const ConnectionOptions& options) {
  auto conn = std::make_unique<Connection>(Private{}, std::move(fd), std::move(peer), options);
  const auto deadline = Clock::now() + options.handshake_timeout;
  if (options.tls) PEPITA_TRY_VOID(conn->start_tls(false, key, deadline));
  auto first = conn->expect_cleartext(MessageType::Hello, deadline);
  if (!first) {
    if (!options.tls && detail::looks_like_tls(conn->pending())) {
      Bytes err;
      const std::string why = "this worker does not use TLS: " + std::string(kUseTlsBoth);
      if (encode_frame({.type = MessageType::Error}, as_bytes(why), err)) {
        (void)conn->write_all(err);
      }
      return fail(ErrorCode::Protocol, "peer " + conn->peer_ +
                                           " started a TLS handshake but this worker runs "
                                           "without TLS: " +
                                           std::string(kUseTlsBoth));
    }
    if (const ByteSpan got = conn->pending();
        got.size() > 4 && get_u32(got.data()) == kFrameMagic &&
        std::to_integer<std::uint8_t>(got[4]) != kProtocolVersion) {
      // Another protocol version: say so in a frame of ours, whose header an older driver's
      // decoder refuses with "unsupported protocol version N (this build speaks M)".
      Bytes err;
      const std::string why = "this worker speaks pepita protocol " +
                              std::to_string(kProtocolVersion) + ", the driver protocol " +
                              std::to_string(std::to_integer<std::uint8_t>(got[4])) +
                              ": upgrade one side";
      if (encode_frame({.type = MessageType::Error}, as_bytes(why), err)) {
        (void)conn->write_all(err);
      }
    }
    return std::unexpected(std::move(first).error());
  }
  Message hello = std::move(*first);
  auto [server, challenge] = PEPITA_TRY(ServerHandshake::on_hello(key, hello.payload));
  conn->remote_name_ = server.client_name();
  Bytes wire;
  PEPITA_TRY_VOID(encode_frame({.type = MessageType::Challenge}, challenge, wire));
  PEPITA_TRY_VOID(conn->write_all(wire));
  Message auth = PEPITA_TRY(conn->expect_cleartext(MessageType::Auth, deadline));
  auto session = server.on_auth(auth.payload);
  if (!session) {
    // Tell the peer why before closing; it proved nothing, so it learns nothing else.
    Bytes err;
    if (encode_frame({.type = MessageType::Error}, as_bytes("authentication failed"), err)) {
      (void)conn->write_all(err);
    }
    return std::unexpected(std::move(session).error());
  }
  conn->session_.emplace(std::move(*session));
  PEPITA_TRY_VOID(conn->send(MessageType::AuthOk, 0, {}));
  return conn;
}

Result<void> Connection::start_tls(bool client, const Key& key, Clock::time_point deadline) {
  if (!client) {
    // A TLS client speaks first; its first byte tells a plain pepita driver from a TLS one,
    // so the former can be told why (in a frame it understands) instead of a TLS alert.
    const auto first = PEPITA_TRY(detail::peek_first_byte(fd_.get(), peer_, deadline));
    if (first == detail::FirstByte::PlainPepita) {
      // Consume its Hello first: closing with unread input would reset the connection and
      // could discard our answer before the driver reads it.
      std::byte sink[4096];
      (void)sys::recv(fd_.get(), sink, sizeof sink, 0);
      Bytes err;
      const std::string why = "this worker requires TLS: " + std::string(kUseTlsBoth);
      if (encode_frame({.type = MessageType::Error}, as_bytes(why), err)) (void)write_all(err);
      return fail(ErrorCode::Protocol, "peer " + peer_ +
                                           " speaks plain pepita but this worker requires "
                                           "TLS: " +
                                           std::string(kUseTlsBoth));
    }
    if (first == detail::FirstByte::Other) {
      return fail(ErrorCode::Protocol,
                  "peer " + peer_ + " sent bytes that are neither TLS nor pepita; closing");
    }
  }
  tls_ = PEPITA_TRY(detail::TlsChannel::handshake(
      fd_.get(), key, client ? detail::TlsChannel::Role::Client : detail::TlsChannel::Role::Server,
      peer_, deadline));
  return {};
}

Result<long> Connection::read_some(std::byte* out, std::size_t n, short& wait) {
  if (!tls_) return sys::read(fd_.get(), out, n);
  const auto step = PEPITA_TRY(tls_->read(out, n));
  if (step.bytes >= 0) return step.bytes;
  wait = step.wait;
  return -EAGAIN;
}

Result<Message> Connection::expect_cleartext(MessageType type, Clock::time_point deadline) {
  auto frame = PEPITA_TRY(read_frame(deadline, -1));
  if (!frame) {
    return fail(ErrorCode::TimedOut, "handshake with " + peer_ + " timed out waiting for " +
                                         std::string(to_string(type)));
  }
  if (frame->header.type == MessageType::Error && type != MessageType::Error) {
    return fail(ErrorCode::PermissionDenied, "peer " + peer_ + " refused the handshake: " +
                                                 std::string(as_text(frame->payload)));
  }
  if (frame->header.type != type || (frame->header.flags & kFlagMac) != 0) {
    return fail(ErrorCode::Protocol, "handshake with " + peer_ + ": expected " +
                                         std::string(to_string(type)) + ", got " +
                                         std::string(to_string(frame->header.type)));
  }
  Message m{frame->header, Bytes(frame->payload.begin(), frame->payload.end())};
  start_ += frame->header.payload_len + kHeaderSize;
  return m;
}

Result<std::optional<FrameView>> Connection::read_frame(Clock::time_point deadline, int wake_fd) {
  // Before the session exists only tiny handshake frames are legal; refusing anything larger
  // from the header keeps an unauthenticated peer from making us buffer up to max_payload.
  const DecodeLimits limits{.max_payload = session_ ? options_.max_payload : kMaxHandshakePayload};
  short wait = POLLIN;     // what the socket must report before the next read
  bool must_poll = false;  // TLS: set once a read found nothing, so a partial record is polled
  for (;;) {
    if (start_ > 0 && start_ == fill_) start_ = fill_ = 0;
    auto d = PEPITA_TRY(decode_frame(pending(), limits));
    if (d.frame) {
      partial_since_.reset();
      return d.frame;
    }
    const std::size_t have = fill_ - start_;
    // Under TLS, OpenSSL may hold decrypted bytes the socket will never announce again (read
    // them before polling), or part of a record (a frame under way, for the stall deadline).
    const bool tls_pending = tls_ && tls_->has_pending();
    if ((have > 0 || tls_pending) && !partial_since_) partial_since_ = Clock::now();
    Clock::time_point until = deadline;
    if (partial_since_) until = std::min(until, *partial_since_ + options_.io_timeout);
    if (!tls_pending || must_poll) {
      pollfd pfds[2] = {{fd_.get(), wait, 0}, {wake_fd, POLLIN, 0}};
      const int n = sys::poll(pfds, wake_fd >= 0 ? 2 : 1, ms_until(until));
      if (n < 0 && n != -EINTR) return fail_errno(-n, "poll " + peer_);
      if (n <= 0) {
        if (partial_since_ && Clock::now() >= *partial_since_ + options_.io_timeout) {
          return fail(ErrorCode::TimedOut,
                      "peer " + peer_ + " sent " +
                          (have > 0 ? std::to_string(have) + " bytes of a frame"
                                    : std::string("part of a TLS record")) +
                          " then stalled (slowloris?)");
        }
        if (Clock::now() >= deadline) return std::optional<FrameView>();
        continue;
      }
      if (wake_fd >= 0 && (pfds[1].revents & POLLIN) != 0 && (pfds[0].revents & wait) == 0) {
        return std::optional<FrameView>();
      }
    }
    // Move the unconsumed bytes to the front when the frame under way would not fit behind
    // them, so the buffer stays about one frame (plus a read) however long the connection lives.
    const std::size_t want = std::max<std::size_t>(d.needed > have ? d.needed - have : 0, 64 << 10);
    if (start_ > 0 && fill_ + want > buf_.size()) {
      std::memmove(buf_.data(), buf_.data() + start_, have);
      start_ = 0;
      fill_ = have;
    }
    // Grown only when the frame under way needs it; a resize zero-fills, so never per read.
    if (fill_ + want > buf_.size()) buf_.resize(fill_ + want);
    wait = POLLIN;
    auto got = read_some(buf_.data() + fill_, buf_.size() - fill_, wait);
    const long r = got ? *got : -1;
    fill_ += static_cast<std::size_t>(std::max<long>(r, 0));
    if (!got) return std::unexpected(std::move(got).error());
    must_poll = r == -EAGAIN;
    if (r == 0) {
      return fail(ErrorCode::Disconnected,
                  "peer " + peer_ + " closed the connection" +
                      (have > 0 ? " in the middle of a frame (truncated frame)" : ""));
    }
    if (r < 0 && r != -EAGAIN && r != -EINTR) {
      Error e = Error::from_errno(static_cast<int>(-r), "read from " + peer_);
      return std::unexpected(Error(ErrorCode::Disconnected, e.message(), static_cast<int>(-r)));
    }
  }
}

Result<std::optional<Message>> Connection::receive(std::chrono::milliseconds timeout, int wake_fd) {
  if (!session_) return fail(ErrorCode::Internal, "receive before the handshake finished");
  auto frame = PEPITA_TRY(read_frame(Clock::now() + timeout, wake_fd));
  if (!frame) return std::optional<Message>();
  PEPITA_TRY_VOID(session_->open(*frame));
  Message m{frame->header, Bytes(frame->payload.begin(), frame->payload.end()), frame->bulk};
  // The bytes stay in buf_ (start_ only moves past them) until the next read_frame.
  start_ += kHeaderSize + frame->header.payload_len + frame->mac.size();
  return std::optional<Message>(std::move(m));
}

Result<void> Connection::write_all(ByteSpan bytes) {
  std::size_t done = 0;
  auto stalled_since = Clock::now();
  while (done < bytes.size()) {
    short wait = POLLOUT;
    long n = 0;
    if (tls_) {
      const auto step = PEPITA_TRY(tls_->write(bytes.data() + done, bytes.size() - done));
      n = step.bytes >= 0 ? step.bytes : -EAGAIN;
      if (step.bytes < 0) wait = step.wait;
    } else {
      n = sys::send(fd_.get(), bytes.data() + done, bytes.size() - done);
    }
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      stalled_since = Clock::now();
      continue;
    }
    if (n == -EINTR) continue;
    if (n != -EAGAIN) {
      Error e = Error::from_errno(static_cast<int>(-n), "send to " + peer_);
      return std::unexpected(Error(ErrorCode::Disconnected, e.message(), static_cast<int>(-n)));
    }
    pollfd pfd{fd_.get(), wait, 0};
    const int p = sys::poll(&pfd, 1, ms_until(stalled_since + options_.io_timeout));
    if (p == 0) {
      return fail(ErrorCode::TimedOut, "peer " + peer_ + " stopped reading for " +
                                           std::to_string(options_.io_timeout.count()) + " ms");
    }
  }
  return {};
}

Result<void> Connection::send(MessageType type, std::uint64_t request_id, ByteSpan payload) {
  std::lock_guard lock(send_mu_);
  if (!session_) return fail(ErrorCode::Internal, "send before the handshake finished");
  send_buf_.clear();
  PEPITA_TRY_VOID(session_->seal_into(type, request_id, payload, send_buf_));
  return write_all(send_buf_);
}

Result<void> Connection::send_all(std::span<const Outgoing> frames) {
  std::lock_guard lock(send_mu_);
  if (!session_) return fail(ErrorCode::Internal, "send before the handshake finished");
  send_buf_.clear();
  for (const Outgoing& f : frames) {
    if (auto sealed = session_->seal_into(f.type, f.request_id, f.payload, send_buf_); !sealed) {
      // The frames sealed so far took their sequence numbers: they must still go, or the peer
      // would see a gap and close the connection.
      if (!send_buf_.empty()) PEPITA_TRY_VOID(write_all(send_buf_));
      return sealed;
    }
  }
  return write_all(send_buf_);
}

Result<void> Connection::send_bulk(MessageType type, std::uint64_t request_id, ByteSpan meta,
                                   ByteSpan data) {
  std::lock_guard lock(send_mu_);
  if (!session_) return fail(ErrorCode::Internal, "send before the handshake finished");
  send_buf_.clear();
  const Digest mac =
      PEPITA_TRY(session_->seal_bulk_head(type, request_id, meta, data.size(), send_buf_));
  // Three writes, no copy of the data: the frame's head, the caller's bytes, the MAC trailer.
  PEPITA_TRY_VOID(write_all(send_buf_));
  PEPITA_TRY_VOID(write_all(data));
  return write_all(mac);
}

Result<void> Connection::send_bulk_file(MessageType type, std::uint64_t request_id, ByteSpan meta,
                                        int fd, std::uint64_t offset, std::size_t len,
                                        std::string_view what) {
  if (tls_) {
    return fail(
        ErrorCode::InvalidArgument,
        "send_bulk_file under TLS: the bytes must be encrypted; read them and use send_bulk");
  }
  std::lock_guard lock(send_mu_);
  if (!session_) return fail(ErrorCode::Internal, "send before the handshake finished");
  send_buf_.clear();
  const Digest mac = PEPITA_TRY(session_->seal_bulk_head(type, request_id, meta, len, send_buf_));
  PEPITA_TRY_VOID(write_all(send_buf_));
  PEPITA_TRY_VOID(sendfile_all(fd, offset, len, what));
  return write_all(mac);
}

// The data of a bulk frame straight from a file: sendfile(2) hands the socket references to
// the page cache, the one copy is the peer's receive (on loopback) or the NIC's DMA.
Result<void> Connection::sendfile_all(int fd, std::uint64_t offset, std::size_t len,
                                      std::string_view what) {
  // sendfile has no MSG_NOSIGNAL: hold SIGPIPE off this thread while it runs, and take back
  // one it raised (a peer gone is Disconnected, as for send) unless one was pending before.
  sigset_t pipe_set;
  sigset_t old;
  sigset_t pending_before;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  sigpending(&pending_before);
  const bool had_pipe = sigismember(&pending_before, SIGPIPE) == 1;
  auto restore = [&] {
    if (!had_pipe) {
      sigset_t now;
      sigpending(&now);
      if (sigismember(&now, SIGPIPE) == 1) {
        const timespec zero{};
        ::sigtimedwait(&pipe_set, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  };
  auto off = static_cast<off_t>(offset);
  std::size_t left = len;
  auto stalled_since = Clock::now();
  while (left > 0) {
    const ssize_t n = ::sendfile(fd_.get(), fd, &off, std::min<std::size_t>(left, 1 << 30));
    if (n > 0) {
      left -= static_cast<std::size_t>(n);
      stalled_since = Clock::now();
      continue;
    }
    const int err = n == 0 ? 0 : errno;
    if (n == 0) {
      restore();
      return fail(ErrorCode::Io, pepita::fmt("{} ended {} bytes short while it was sent to {}; "
                                             "the frame cannot be finished, closing",
                                             what, left, peer_));
    }
    if (err == EINTR) continue;
    if (err != EAGAIN) {
      restore();
      Error e = Error::from_errno(err, "sendfile to " + peer_);
      return std::unexpected(Error(ErrorCode::Disconnected, e.message(), err));
    }
    pollfd pfd{fd_.get(), POLLOUT, 0};
    if (sys::poll(&pfd, 1, ms_until(stalled_since + options_.io_timeout)) == 0) {
      restore();
      return fail(ErrorCode::TimedOut, "peer " + peer_ + " stopped reading for " +
                                           std::to_string(options_.io_timeout.count()) + " ms");
    }
  }
  restore();
  return {};
}

void Connection::shutdown() noexcept { ::shutdown(fd_.get(), SHUT_RDWR); }

}  // namespace pepita::transport
