#pragma once
// Authenticated, framed connections over TCP: address parsing, a loopback-by-default listener,
// and Connection, which runs the handshake (session.hpp) and then sends and receives sealed
// frames with deadlines, so a peer that stalls mid-frame (slowloris) is cut off. Optionally all
// of it runs inside TLS 1.3 keyed by the same pre-shared key (docs/protocol.md, "Transport
// security"), for confidentiality on untrusted networks.
//
//   auto conn = PEPITA_TRY(Connection::connect(PEPITA_TRY(parse_endpoint("127.0.0.1:7070")),
//                                              key, {.name = "driver"}));
//   PEPITA_TRY_VOID(conn->send(MessageType::Heartbeat, 0, encode(HeartbeatMsg{})));
//   auto msg = PEPITA_TRY(conn->receive(1s));  // nullopt: nothing within 1 s

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/frame.hpp"
#include "pepita/transport/message.hpp"
#include "pepita/transport/session.hpp"

namespace pepita::transport {

namespace detail {
class TlsChannel;
}

/// "host:port"; host is an IPv4/IPv6 literal (IPv6 in brackets) or a name resolved at connect.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
};

/// Parses "host:port" or "[v6]:port"; InvalidArgument with the accepted forms otherwise.
Result<Endpoint> parse_endpoint(std::string_view text);

/// True when `host` names only loopback addresses (127.0.0.0/8, ::1, "localhost").
bool is_loopback_host(std::string_view host);

/// A listening TCP socket.
class Listener {
 public:
  /// Binds and listens. Refuses (PermissionDenied) a non-loopback address unless
  /// `allow_non_loopback` — workers run arbitrary binaries, so exposure must be deliberate.
  static Result<Listener> bind(const Endpoint& at, bool allow_non_loopback);
  /// Accepts one connection, non-blocking and close-on-exec; WouldBlock when none is pending.
  Result<UniqueFd> accept(std::string& peer);
  int fd() const noexcept { return fd_.get(); }
  /// The bound address, with the real port when 0 was asked for.
  const Endpoint& endpoint() const noexcept { return bound_; }

 private:
  Listener(UniqueFd fd, Endpoint bound) : fd_(std::move(fd)), bound_(std::move(bound)) {}
  UniqueFd fd_;
  Endpoint bound_;
};

/// Opens a TCP connection (non-blocking, close-on-exec, TCP_NODELAY) within `timeout`.
/// Disconnected (retriable) when the peer refuses, is unreachable or does not answer in time.
Result<UniqueFd> dial(const Endpoint& to, std::chrono::milliseconds timeout);

struct ConnectionOptions {
  std::string name = "pepita";                        // sent in Hello, shows in worker logs
  std::chrono::milliseconds handshake_timeout{5000};  // whole handshake, either side
  std::chrono::milliseconds connect_timeout{3000};    // TCP connect
  std::chrono::milliseconds io_timeout{10000};        // a started frame must finish within it
  std::uint32_t max_payload = kMaxPayload;
  /// Run the connection inside TLS 1.3 (external PSK derived from the key, ECDHE, no
  /// certificates), so frames are also encrypted. Both ends must agree: a TLS end meeting a
  /// plain one fails the handshake with a message saying to use --tls on both sides.
  bool tls = false;
};

/// An authenticated connection. send() is thread-safe; receive() must be called by one thread.
class Connection {
 public:
  /// Connects and runs the client side of the handshake. PermissionDenied when the worker holds
  /// another key; Disconnected/TimedOut/Protocol when it is unreachable, stalls or misbehaves.
  static Result<std::unique_ptr<Connection>> connect(const Endpoint& to, const Key& key,
                                                     const ConnectionOptions& options);
  /// Runs the client (driver) side of the handshake on a socket that is already connected —
  /// used for workers that dialed in (`pepita worker --connect`, Slurm pilot jobs).
  static Result<std::unique_ptr<Connection>> client(UniqueFd fd, std::string peer, const Key& key,
                                                    const ConnectionOptions& options);
  /// Runs the worker side of the handshake on an accepted (or dialed-out) socket and sends AuthOk.
  /// The peer gets no frame past Challenge unless it proves the key.
  static Result<std::unique_ptr<Connection>> accept(UniqueFd fd, std::string peer, const Key& key,
                                                    const ConnectionOptions& options);

  /// Seals and writes one frame. Disconnected when the peer is gone, TimedOut when it stops
  /// reading for io_timeout.
  Result<void> send(MessageType type, std::uint64_t request_id, ByteSpan payload);
  /// Same, for a whole Message (its type, request id and payload; header flags are the
  /// session's).
  Result<void> send(const Message& m) {
    return send(m.header.type, m.header.request_id, m.payload);
  }

  /// One frame of a batch for send_all().
  struct Outgoing {
    MessageType type;
    std::uint64_t request_id = 0;
    ByteSpan payload{};
  };
  /// Seals `frames` in order and writes them with one send, so a worker's Started and Result
  /// for a task that finished at once leave in one segment: one syscall here, one wake-up and
  /// one read at the peer. Errors as send().
  Result<void> send_all(std::span<const Outgoing> frames);

  /// Sends one bulk frame (protocol 6, BlobChunk or OutputChunk): header and `meta` sealed, then
  /// `data` written straight from the caller's buffer (no copy into a frame), then the MAC. The
  /// data is not MAC'd: the receiver proves it by the end-to-end SHA-256 of the blob or output
  /// it belongs to. Errors as send().
  Result<void> send_bulk(MessageType type, std::uint64_t request_id, ByteSpan meta, ByteSpan data);

  /// Same, with the data `len` bytes of file `fd` from `offset`, moved by sendfile(2) from the
  /// page cache to the socket (no copy in user space; SIGPIPE held off, EPIPE is Disconnected).
  /// Only without TLS (InvalidArgument under it: read the bytes and use send_bulk). The caller
  /// checked that the file holds them; if it shrinks meanwhile the frame cannot be finished:
  /// Io naming `what`, and the connection must be closed.
  Result<void> send_bulk_file(MessageType type, std::uint64_t request_id, ByteSpan meta, int fd,
                              std::uint64_t offset, std::size_t len, std::string_view what);

  /// Waits up to `timeout` for one whole frame; nullopt when none arrived in time or `wake_fd`
  /// (an eventfd, optional) became readable. Errors (close the connection): Disconnected on EOF,
  /// Protocol/Corrupted on a bad or forged frame, TimedOut when a frame stays half-sent for
  /// io_timeout. A bulk frame's data stays in this connection's buffer (Message::bulk) until the
  /// next receive().
  Result<std::optional<Message>> receive(std::chrono::milliseconds timeout, int wake_fd = -1);

  /// Shuts the socket down both ways; a blocked receive() returns Disconnected. Thread-safe.
  void shutdown() noexcept;

  const std::string& peer() const noexcept { return peer_; }
  /// The name the client gave in Hello (worker side), or the worker's address as dialed (client
  /// side: the worker sends no name).
  const std::string& remote_name() const noexcept { return remote_name_; }

  struct Private {
    explicit Private() = default;
  };
  Connection(Private, UniqueFd fd, std::string peer, const ConnectionOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// True when the connection runs inside TLS.
  bool encrypted() const noexcept { return tls_ != nullptr; }

 private:
  Result<std::optional<FrameView>> read_frame(std::chrono::steady_clock::time_point deadline,
                                              int wake_fd);
  Result<void> write_all(ByteSpan bytes);
  Result<void> sendfile_all(int fd, std::uint64_t offset, std::size_t len, std::string_view what);
  Result<Message> expect_cleartext(MessageType type,
                                   std::chrono::steady_clock::time_point deadline);

  Result<long> read_some(std::byte* out, std::size_t n, short& wait);
  Result<void> start_tls(bool client, const Key& key,
                         std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  // Declared after fd_ so it is destroyed first: its close_notify still needs the socket.
  std::unique_ptr<detail::TlsChannel> tls_;
  std::string peer_;
  std::string remote_name_;
  ConnectionOptions options_;
  std::optional<Session> session_;
  // Receive side (one reader thread). buf_[start_, fill_) holds received bytes not yet consumed;
  // buf_.size() is capacity (grown, never shrunk by a read, so no read zero-fills it again).
  ByteSpan pending() const noexcept { return ByteSpan(buf_).subspan(start_, fill_ - start_); }
  Bytes buf_;
  std::size_t start_ = 0;
  std::size_t fill_ = 0;
  std::optional<std::chrono::steady_clock::time_point> partial_since_;
  // Send side.
  std::mutex send_mu_;
  Bytes send_buf_;
};

}  // namespace pepita::transport
