// TLS 1.3 with an external PSK over a non-blocking socket (detail/tls.hpp): one SSL_CTX per
// role for the process, a BIO that sends with MSG_NOSIGNAL (a peer that resets must not raise
// SIGPIPE in a library) and remembers the first bytes received, and the mapping of OpenSSL's
// errors to what went wrong and what to do about it.
#include "detail/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <algorithm>
#include <cstring>

#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"

namespace pepita::transport::detail {
namespace {

using Clock = std::chrono::steady_clock;

// The TLS PSK is not the raw key: a distinct HKDF label keeps it independent of the keys the
// pepita handshake derives from the same secret.
constexpr std::string_view kPskLabel = "pepita/1 tls13 external psk";
// The one PSK identity offered and accepted. Sent in clear in the ClientHello; it names the
// scheme, not the key.
constexpr std::string_view kPskIdentity = "pepita/1 tls-psk";
// Both suites hash with SHA-256, the hash the PSK is bound to (a PSK is usable only with
// suites of its own hash). AES-GCM first; ChaCha20 for hosts without AES instructions.
constexpr const char* kCipherSuites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
constexpr unsigned char kPskCipher[2] = {0x13, 0x01};  // TLS_AES_128_GCM_SHA256

constexpr std::byte kPlainMagic[4] = {std::byte{0x50}, std::byte{0x50}, std::byte{0x54},
                                      std::byte{0x31}};  // kFrameMagic as sent ("PPT1")

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1 << 30));
}

TlsChannel::SocketState* state_of(BIO* b) {
  return static_cast<TlsChannel::SocketState*>(BIO_get_data(b));
}

int bio_write(BIO* b, const char* data, int len) {
  auto* s = state_of(b);
  BIO_clear_retry_flags(b);
  const long n = sys::send(s->fd, data, static_cast<std::size_t>(len));
  if (n >= 0) return static_cast<int>(n);
  if (n == -EAGAIN || n == -EINTR) {
    BIO_set_retry_write(b);
  } else {
    s->last_errno = static_cast<int>(-n);
  }
  return -1;
}

int bio_read(BIO* b, char* out, int len) {
  auto* s = state_of(b);
  BIO_clear_retry_flags(b);
  const long n = sys::recv(s->fd, out, static_cast<std::size_t>(len), 0);
  if (n > 0) {
    const auto keep =
        std::min<std::size_t>(sizeof s->first - s->first_len, static_cast<std::size_t>(n));
    std::memcpy(s->first + s->first_len, out, keep);
    s->first_len += keep;
    return static_cast<int>(n);
  }
  if (n == 0) {
    s->eof = true;
    s->last_errno = 0;
    return 0;
  }
  if (n == -EAGAIN || n == -EINTR) {
    BIO_set_retry_read(b);
  } else {
    s->last_errno = static_cast<int>(-n);
  }
  return -1;
}

long bio_ctrl(BIO* b, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // send() has no user-space buffer to flush
    case BIO_CTRL_DUP: return 1;
    case BIO_CTRL_EOF: return state_of(b)->eof ? 1 : 0;
    default: return 0;
  }
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

// Process-wide, made once, never freed (OpenSSL objects still referenced at exit are fine).
BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pepita socket");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

SSL_SESSION* psk_session(SSL* ssl) {
  const auto* self = static_cast<const TlsChannel*>(SSL_get_app_data(ssl));
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipher);
  SSL_SESSION* s = SSL_SESSION_new();
  const ByteSpan psk = self->psk();
  // SAFETY: std::byte and unsigned char have the same representation; OpenSSL copies the key.
  const auto* bytes = reinterpret_cast<const unsigned char*>(psk.data());
  if (s == nullptr || cipher == nullptr || SSL_SESSION_set1_master_key(s, bytes, psk.size()) != 1 ||
      SSL_SESSION_set_cipher(s, cipher) != 1 ||
      SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

// Client: offer the PSK. OpenSSL takes ownership of the returned session.
int use_psk(SSL* ssl, const EVP_MD* /*md*/, const unsigned char** id, std::size_t* idlen,
            SSL_SESSION** sess) {
  *sess = psk_session(ssl);
  if (*sess == nullptr) return 0;
  // SAFETY: char and unsigned char share a representation; the identity is a static literal.
  *id = reinterpret_cast<const unsigned char*>(kPskIdentity.data());
  *idlen = kPskIdentity.size();
  return 1;
}

// Server: accept only our identity; an unknown one gets no PSK, and with no certificate the
// handshake then fails. The binder check that follows proves the client holds the same PSK.
int find_psk(SSL* ssl, const unsigned char* id, std::size_t idlen, SSL_SESSION** sess) {
  *sess = nullptr;
  if (idlen != kPskIdentity.size() || std::memcmp(id, kPskIdentity.data(), idlen) != 0) return 1;
  *sess = psk_session(ssl);
  return *sess != nullptr ? 1 : 0;
}

SSL_CTX* make_context(TlsChannel::Role role) {
  const bool server = role == TlsChannel::Role::Server;
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return nullptr;
  const bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
                  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
                  SSL_CTX_set_ciphersuites(ctx, kCipherSuites) == 1;
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  // Length-prefixed, MAC'd frames already detect truncation, so a TCP EOF without close_notify
  // is an ordinary end of stream. Writes may complete a record at a time (the caller tracks
  // progress for its stall deadline).
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Issue 27: read whatever the socket holds into OpenSSL's buffer, not a 5-byte record header
  // and then its body: one recv per record (or per several) instead of two. Bytes buffered
  // here are announced by SSL_has_pending (TlsChannel::has_pending), which read_frame consults
  // before it polls.
  SSL_CTX_set_read_ahead(ctx, 1);
  if (server) {
    SSL_CTX_set_num_tickets(ctx, 0);  // no resumption: every connection proves the key afresh
    SSL_CTX_set_psk_find_session_callback(ctx, find_psk);
  } else {
    SSL_CTX_set_psk_use_session_callback(ctx, use_psk);
    // No trust store: a server that answers with a certificate instead of the PSK fails.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

Result<SSL_CTX*> context(TlsChannel::Role role) {
  static SSL_CTX* const client = make_context(TlsChannel::Role::Client);
  static SSL_CTX* const server = make_context(TlsChannel::Role::Server);
  SSL_CTX* ctx = role == TlsChannel::Role::Server ? server : client;
  if (ctx == nullptr || socket_bio_method() == nullptr) {
    return fail(ErrorCode::Internal,
                "cannot set up TLS 1.3 with OpenSSL (libssl too old or broken?); run without "
                "--tls on both sides");
  }
  return ctx;
}

// The reason text of an OpenSSL error code.
std::string openssl_reason(unsigned long code) {
  const char* r = ERR_reason_error_string(code);
  return r != nullptr ? std::string(r) : "error " + std::to_string(code);
}

const std::string kUseTlsBoth = "use --tls on both sides or on neither";

}  // namespace

bool looks_like_tls(ByteSpan bytes) noexcept {
  return bytes.size() >= 2 && bytes[0] == std::byte{0x16} && bytes[1] == std::byte{0x03};
}

Result<FirstByte> peek_first_byte(int fd, const std::string& peer, Clock::time_point deadline) {
  for (;;) {
    std::byte b{};
    const long n = sys::recv(fd, &b, 1, MSG_PEEK);
    if (n == 1) {
      if (b == std::byte{0x16}) return FirstByte::Tls;
      return b == kPlainMagic[0] ? FirstByte::PlainPepita : FirstByte::Other;
    }
    if (n == 0) {
      return fail(ErrorCode::Disconnected, "peer " + peer + " closed before the TLS handshake");
    }
    if (n != -EAGAIN && n != -EINTR) {
      Error e = Error::from_errno(static_cast<int>(-n), "read from " + peer);
      return std::unexpected(Error(ErrorCode::Disconnected, e.message(), static_cast<int>(-n)));
    }
    pollfd p{fd, POLLIN, 0};
    const int r = sys::poll(&p, 1, ms_until(deadline));
    if (r == 0) {
      return fail(ErrorCode::TimedOut,
                  "peer " + peer + " sent nothing within the handshake timeout");
    }
    if (r < 0 && r != -EINTR) return fail_errno(-r, "poll " + peer);
  }
}

TlsChannel::TlsChannel(Private, int fd, const Key& key, std::string peer)
    : psk_(hkdf_sha256(key.bytes(), {}, kPskLabel)), peer_(std::move(peer)) {
  sock_.fd = fd;
}

TlsChannel::~TlsChannel() {
  if (ssl_ != nullptr) {
    if (established_ && !failed_) {
      // Best effort close_notify; never waits (the socket is non-blocking).
      (void)SSL_shutdown(ssl_);
    }
    SSL_free(ssl_);
    ERR_clear_error();
  }
  OPENSSL_cleanse(psk_.data(), psk_.size());
}

Result<std::unique_ptr<TlsChannel>> TlsChannel::handshake(int fd, const Key& key, Role role,
                                                          const std::string& peer,
                                                          Clock::time_point deadline) {
  SSL_CTX* ctx = PEPITA_TRY(context(role));
  auto ch = std::make_unique<TlsChannel>(Private{}, fd, key, peer);
  ch->ssl_ = SSL_new(ctx);
  BIO* bio = ch->ssl_ != nullptr ? BIO_new(socket_bio_method()) : nullptr;
  if (bio == nullptr) {
    ERR_clear_error();
    return fail(ErrorCode::ResourceExhausted, "cannot allocate a TLS connection for " + peer);
  }
  BIO_set_data(bio, &ch->sock_);
  SSL_set_bio(ch->ssl_, bio, bio);  // one reference, owned by the SSL from here on
  SSL_set_app_data(ch->ssl_, ch.get());
  if (role == Role::Client) {
    SSL_set_connect_state(ch->ssl_);
  } else {
    SSL_set_accept_state(ch->ssl_);
  }
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ch->ssl_);
    if (r == 1) break;
    const int e = SSL_get_error(ch->ssl_, r);
    short wait = 0;
    if (e == SSL_ERROR_WANT_READ) wait = POLLIN;
    if (e == SSL_ERROR_WANT_WRITE) wait = POLLOUT;
    if (wait == 0) return std::unexpected(ch->handshake_error(e, role));
    pollfd p{fd, wait, 0};
    const int n = sys::poll(&p, 1, ms_until(deadline));
    if (n == 0) {
      return fail(ErrorCode::TimedOut, "TLS handshake with " + peer +
                                           " did not finish within the handshake timeout (" +
                                           kUseTlsBoth + ")");
    }
    if (n < 0 && n != -EINTR) return fail_errno(-n, "poll " + peer);
  }
  // With the PSK accepted OpenSSL reports the session as resumed; anything else would be a
  // certificate handshake, which we never configured and must not accept.
  if (SSL_session_reused(ch->ssl_) != 1) {
    ch->failed_ = true;
    return fail(ErrorCode::PermissionDenied,
                "TLS handshake with " + peer + " did not use the pre-shared key");
  }
  ch->established_ = true;
  return ch;
}

Error TlsChannel::handshake_error(int ssl_error, Role role) {
  failed_ = true;
  const unsigned long code = ERR_peek_error();
  const int reason = ERR_GET_REASON(code);
  ERR_clear_error();
  const bool client = role == Role::Client;
  const std::string who = (client ? "worker " : "driver ") + peer_;
  if (client && sock_.first_len == sizeof kPlainMagic &&
      std::memcmp(sock_.first, kPlainMagic, sizeof kPlainMagic) == 0) {
    return Error(
        ErrorCode::Protocol,
        who + " answered in the plain pepita protocol: it runs without TLS; " + kUseTlsBoth);
  }
  if (ssl_error == SSL_ERROR_ZERO_RETURN || ssl_error == SSL_ERROR_SYSCALL ||
      reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    const int err = sock_.last_errno;
    return Error(ErrorCode::Disconnected,
                 who + " closed the connection during the TLS handshake" +
                     (err != 0 ? " (" + std::string(std::strerror(err)) + ")" : "") +
                     (client ? "; if it runs without --tls, " + kUseTlsBoth : ""),
                 err);
  }
  if (!client && reason == SSL_R_BINDER_DOES_NOT_VERIFY) {
    return Error(ErrorCode::PermissionDenied,
                 who + " holds another key (its TLS pre-shared key binder does not verify)");
  }
  // OpenSSL answers a binder that does not verify with an illegal_parameter alert (RFC 8446
  // suggests decrypt_error); between two pepita ends configured alike, either means the keys
  // differ.
  if (client && (reason == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER ||
                 reason == SSL_R_TLSV1_ALERT_DECRYPT_ERROR)) {
    return Error(ErrorCode::PermissionDenied,
                 who + " refused our TLS pre-shared key: it holds another key");
  }
  return Error(ErrorCode::Protocol, "TLS handshake with " + who +
                                        " failed: " + openssl_reason(code) + " (" + kUseTlsBoth +
                                        ", with the same key)");
}

Result<TlsStep> TlsChannel::step_error(int ssl_error, const char* what) {
  switch (ssl_error) {
    case SSL_ERROR_WANT_READ: return TlsStep{-1, POLLIN};
    case SSL_ERROR_WANT_WRITE: return TlsStep{-1, POLLOUT};
    case SSL_ERROR_ZERO_RETURN: return TlsStep{0, 0};
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (sock_.last_errno == 0) return TlsStep{0, 0};
      {
        Error e = Error::from_errno(sock_.last_errno, std::string(what) + " " + peer_);
        return std::unexpected(Error(ErrorCode::Disconnected, e.message(), sock_.last_errno));
      }
    default: break;
  }
  failed_ = true;
  const unsigned long code = ERR_peek_error();
  ERR_clear_error();
  return fail(ErrorCode::Protocol, "TLS error on the connection with " + peer_ + ": " +
                                       openssl_reason(code) +
                                       " (the stream was altered in transit or the peer broke)");
}

Result<TlsStep> TlsChannel::read(std::byte* out, std::size_t n) {
  std::lock_guard lock(mu_);
  if (failed_) return fail(ErrorCode::Disconnected, "TLS connection with " + peer_ + " failed");
  ERR_clear_error();
  std::size_t got = 0;
  const int r = SSL_read_ex(ssl_, out, n, &got);
  if (r == 1) return TlsStep{static_cast<long>(got), 0};
  return step_error(SSL_get_error(ssl_, r), "read from");
}

Result<TlsStep> TlsChannel::write(const std::byte* in, std::size_t n) {
  std::lock_guard lock(mu_);
  if (failed_) return fail(ErrorCode::Disconnected, "TLS connection with " + peer_ + " failed");
  ERR_clear_error();
  std::size_t put = 0;
  const int r = SSL_write_ex(ssl_, in, n, &put);
  if (r == 1) return TlsStep{static_cast<long>(put), 0};
  auto step = PEPITA_TRY(step_error(SSL_get_error(ssl_, r), "send to"));
  if (step.bytes == 0) {
    return fail(ErrorCode::Disconnected, "peer " + peer_ + " closed the TLS connection");
  }
  return step;
}

bool TlsChannel::has_pending() {
  std::lock_guard lock(mu_);
  return !failed_ && SSL_has_pending(ssl_) == 1;
}

}  // namespace pepita::transport::detail
