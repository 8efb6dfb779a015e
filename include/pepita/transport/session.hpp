#pragma once
// The authenticated session: a mutual HMAC-SHA256 challenge-response over a pre-shared key, then
// HKDF-SHA256 session keys bound to both nonces (one key per direction), then every frame sealed
// with an HMAC over header + payload whose header carries a strictly increasing sequence number.
// Pure state machines over bytes: no sockets, so every step is unit-testable and fuzzable.
// Message flow and byte layouts: docs/protocol.md, "Handshake".
//
//   auto [client, hello] = PEPITA_TRY(ClientHandshake::start(key, "driver"));   // send hello
//   auto [server, challenge] = PEPITA_TRY(ServerHandshake::on_hello(key, hello));
//   auto [auth, client_session] = PEPITA_TRY(client.on_challenge(challenge));    // send auth
//   auto server_session = PEPITA_TRY(server.on_auth(auth));
//   Bytes wire = PEPITA_TRY(server_session.seal(MessageType::AuthOk, 0, {}));

#include <cstdint>
#include <string>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/frame.hpp"

namespace pepita::transport {

inline constexpr std::size_t kNonceSize = 32;

/// Seals outgoing frames and opens incoming ones for one established connection. Not
/// thread-safe: callers serialise seal() (one sender at a time) and open() (one reader).
class Session {
 public:
  /// Session keys for each direction are HKDF(psk, salt = client_nonce || server_nonce,
  /// info = "pepita/1 c2s" or "pepita/1 s2c").
  static Session derive(const Key& key, ByteSpan client_nonce, ByteSpan server_nonce,
                        bool is_client);

  /// Encodes a frame with the next send sequence number and its MAC trailer.
  Result<Bytes> seal(MessageType type, std::uint64_t request_id, ByteSpan payload);
  /// Appends the sealed frame to `out` instead of returning it.
  Result<void> seal_into(MessageType type, std::uint64_t request_id, ByteSpan payload, Bytes& out);

  /// Appends a bulk frame's head (header, meta_len, `meta`) for `bulk_len` bytes of data with the
  /// next send sequence number, and returns its MAC: the caller writes the head, the data, then
  /// the MAC. The MAC covers the head only; the data is proved by its end-to-end SHA-256.
  Result<Digest> seal_bulk_head(MessageType type, std::uint64_t request_id, ByteSpan meta,
                                std::size_t bulk_len, Bytes& out);

  /// Checks a decoded frame: it must carry a MAC, its sequence must be exactly the next one
  /// expected (a replayed, dropped or reordered frame fails) and the MAC must verify. Protocol
  /// error otherwise; the connection must then be closed (the sequence does not advance). A bulk
  /// frame's MAC covers its header and metadata (FrameView::covered), not its data.
  Result<void> open(const FrameView& frame);

  std::uint64_t next_send_sequence() const noexcept { return send_seq_; }
  std::uint64_t next_recv_sequence() const noexcept { return recv_seq_; }

 private:
  Session(Digest send_key, Digest recv_key) : send_key_(send_key), recv_key_(recv_key) {}
  Digest send_key_;
  Digest recv_key_;
  std::uint64_t send_seq_ = 0;
  std::uint64_t recv_seq_ = 0;
};

/// Client side of the handshake: Hello -> (Challenge) -> Auth.
class ClientHandshake {
 public:
  /// Makes a fresh nonce and the Hello payload to send (cleartext frame, sequence 0).
  static Result<std::pair<ClientHandshake, Bytes>> start(const Key& key, std::string_view name);
  /// Verifies the worker's proof in a Challenge payload. Returns the Auth payload to send and
  /// the session. PermissionDenied when the proof is wrong (the worker holds another key),
  /// Protocol when the payload is malformed.
  Result<std::pair<Bytes, Session>> on_challenge(ByteSpan challenge);

 private:
  ClientHandshake(Key key, Bytes nonce) : key_(std::move(key)), nonce_(std::move(nonce)) {}
  Key key_;
  Bytes nonce_;
};

/// Worker side of the handshake.
class ServerHandshake {
 public:
  /// Parses Hello and makes the Challenge payload (worker nonce + proof over both nonces).
  /// Protocol when the Hello is malformed or speaks another protocol version.
  static Result<std::pair<ServerHandshake, Bytes>> on_hello(const Key& key, ByteSpan hello);
  /// Verifies the client's proof. PermissionDenied when it is wrong (client has another key).
  Result<Session> on_auth(ByteSpan auth);
  /// The name the client gave in Hello (printable ASCII, at most 64 bytes), for logs.
  const std::string& client_name() const noexcept { return client_name_; }

 private:
  ServerHandshake(Key key, Bytes cn, Bytes sn, std::string name)
      : key_(std::move(key)),
        client_nonce_(std::move(cn)),
        server_nonce_(std::move(sn)),
        client_name_(std::move(name)) {}
  Key key_;
  Bytes client_nonce_;
  Bytes server_nonce_;
  std::string client_name_;
};

}  // namespace pepita::transport
