#pragma once
// TLS 1.3 under a Connection (docs/protocol.md, "Transport security"): an external PSK derived
// from the pre-shared key (RFC 8446 §4.2.11, psk_dhe_ke only, so every connection also runs an
// ECDHE exchange and has forward secrecy), no certificates, OpenSSL 3's libssl driven
// non-blocking over the connection's own socket. The pepita handshake and sealed frames run
// unchanged inside it.

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "pepita/error.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/frame.hpp"

struct ssl_st;

namespace pepita::transport::detail {

/// One step of non-blocking TLS I/O: `bytes` > 0 moved, 0 the peer ended the stream (reads
/// only), < 0 nothing moved yet: poll the socket for `wait` (POLLIN or POLLOUT) and retry with
/// the same arguments.
struct TlsStep {
  long bytes = 0;
  short wait = 0;
};

/// What the socket of a TLS connection carries before the TLS handshake, as far as the first
/// byte tells: a TLS record, a plain pepita frame, or neither.
enum class FirstByte : std::uint8_t { Tls, PlainPepita, Other };

/// Waits (until `deadline`) for the first byte a client sends and classifies it without
/// consuming it. TimedOut when nothing comes, Disconnected when the peer closes first.
Result<FirstByte> peek_first_byte(int fd, const std::string& peer,
                                  std::chrono::steady_clock::time_point deadline);

/// True when `bytes` start like a TLS handshake record (content type 22, version 3.x).
bool looks_like_tls(ByteSpan bytes) noexcept;

/// A TLS 1.3 session over a connected, non-blocking socket it does not own (the Connection does,
/// and destroys this first). read() and write() may be called from two threads at once — one
/// reader, one sender — because every call into OpenSSL holds one mutex; neither ever blocks.
class TlsChannel {
 public:
  enum class Role : std::uint8_t { Client, Server };

  /// Runs the TLS handshake (the driver is the client, the worker the server, whoever dialed)
  /// until `deadline`. PermissionDenied when the peer holds another key; Protocol when it does
  /// not speak TLS (the message says to use --tls on both sides); Disconnected/TimedOut when it
  /// goes away or stalls.
  static Result<std::unique_ptr<TlsChannel>> handshake(
      int fd, const Key& key, Role role, const std::string& peer,
      std::chrono::steady_clock::time_point deadline);

  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  /// Decrypts up to `n` bytes into `out`. Protocol when a record fails to authenticate (the
  /// stream was altered in transit), Disconnected on a socket error.
  Result<TlsStep> read(std::byte* out, std::size_t n);
  /// Encrypts and sends up to `n` bytes (at least one record's worth when any moves).
  Result<TlsStep> write(const std::byte* in, std::size_t n);
  /// True when OpenSSL holds bytes it read from the socket and has not returned yet —
  /// decrypted plaintext or part of a record — so read() may succeed without polling.
  bool has_pending();
  /// The TLS PSK (for the OpenSSL callbacks that build its session).
  ByteSpan psk() const noexcept { return psk_; }

  // Socket state the custom BIO reads and writes (see tls.cpp); public for its callbacks.
  struct SocketState {
    int fd = -1;
    int last_errno = 0;       // of the last failed send/recv, 0 for end of stream
    bool eof = false;         // recv returned 0
    std::byte first[4] = {};  // the first bytes the peer sent, to name a protocol mismatch
    std::size_t first_len = 0;
  };
  struct Private {
    explicit Private() = default;
  };
  TlsChannel(Private, int fd, const Key& key, std::string peer);

 private:
  Error handshake_error(int ssl_error, Role role);
  Result<TlsStep> step_error(int ssl_error, const char* what);

  std::mutex mu_;  // OpenSSL objects are not thread-safe: one reader and one sender share ssl_
  SocketState sock_;
  Digest psk_;  // the TLS PSK, HKDF of the key; wiped on destruction
  std::string peer_;
  ssl_st* ssl_ = nullptr;
  bool established_ = false;
  bool failed_ = false;  // a fatal TLS error happened: no close_notify may follow
};

}  // namespace pepita::transport::detail
