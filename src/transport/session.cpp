// Handshake proofs, session key derivation and per-frame MAC + sequence checks.
#include "pepita/transport/session.hpp"

#include <string>

namespace pepita::transport {
namespace {

// Distinct labels keep a worker's proof from being reflected back as a client's proof.
constexpr std::string_view kServerProofLabel = "pepita/1 worker proof";
constexpr std::string_view kClientProofLabel = "pepita/1 client proof";
constexpr std::size_t kMaxNameLen = 64;

Digest proof(const Key& key, std::string_view label, ByteSpan cn, ByteSpan sn) {
  return hmac_sha256(key.bytes(), {as_bytes(label), cn, sn});
}

}  // namespace

Session Session::derive(const Key& key, ByteSpan client_nonce, ByteSpan server_nonce,
                        bool is_client) {
  Bytes salt(client_nonce.begin(), client_nonce.end());
  salt.insert(salt.end(), server_nonce.begin(), server_nonce.end());
  Digest c2s = hkdf_sha256(key.bytes(), salt, "pepita/1 c2s");
  Digest s2c = hkdf_sha256(key.bytes(), salt, "pepita/1 s2c");
  return is_client ? Session(c2s, s2c) : Session(s2c, c2s);
}

Result<void> Session::seal_into(MessageType type, std::uint64_t request_id, ByteSpan payload,
                                Bytes& out) {
  const std::size_t start = out.size();
  FrameHeader h{.type = type, .flags = kFlagMac, .request_id = request_id, .sequence = send_seq_};
  PEPITA_TRY_VOID(encode_frame(h, payload, out));
  Digest mac = hmac_sha256(send_key_, {ByteSpan(out).subspan(start)});
  out.insert(out.end(), mac.begin(), mac.end());
  ++send_seq_;
  return {};
}

Result<Digest> Session::seal_bulk_head(MessageType type, std::uint64_t request_id, ByteSpan meta,
                                       std::size_t bulk_len, Bytes& out) {
  const std::size_t start = out.size();
  FrameHeader h{.type = type, .flags = kFlagMac, .request_id = request_id, .sequence = send_seq_};
  PEPITA_TRY_VOID(encode_bulk_head(h, meta, bulk_len, out));
  const Digest mac = hmac_sha256(send_key_, {ByteSpan(out).subspan(start)});
  ++send_seq_;
  return mac;
}

Result<Bytes> Session::seal(MessageType type, std::uint64_t request_id, ByteSpan payload) {
  Bytes out;
  PEPITA_TRY_VOID(seal_into(type, request_id, payload, out));
  return out;
}

Result<void> Session::open(const FrameView& frame) {
  if ((frame.header.flags & kFlagMac) == 0 || frame.mac.size() != kMacSize) {
    return fail(ErrorCode::Protocol, std::string(to_string(frame.header.type)) +
                                         " frame without a MAC after the handshake");
  }
  if (frame.header.sequence != recv_seq_) {
    return fail(ErrorCode::Protocol, "frame sequence " + std::to_string(frame.header.sequence) +
                                         ", expected " + std::to_string(recv_seq_) +
                                         ": replayed, dropped or reordered frame");
  }
  // A bulk frame's MAC covers its header and metadata; decode_frame refused the flag on any
  // other type and on an unsealed frame.
  const ByteSpan covered = (frame.header.flags & kFlagBulk) != 0 ? frame.covered : frame.payload;
  Digest mac = hmac_sha256(recv_key_, {frame.header_bytes, covered});
  if (!constant_time_equal(mac, frame.mac)) {
    return fail(ErrorCode::Protocol, std::string(to_string(frame.header.type)) +
                                         " frame MAC does not verify: tampered or forged frame");
  }
  ++recv_seq_;
  return {};
}

Result<std::pair<ClientHandshake, Bytes>> ClientHandshake::start(const Key& key,
                                                                 std::string_view name) {
  Bytes nonce(kNonceSize);
  PEPITA_TRY_VOID(random_bytes(nonce));
  if (name.size() > kMaxNameLen) name = name.substr(0, kMaxNameLen);
  Bytes hello;
  put_u16(hello, kProtocolVersion);
  hello.insert(hello.end(), nonce.begin(), nonce.end());
  put_u16(hello, static_cast<std::uint16_t>(name.size()));
  ByteSpan nb = as_bytes(name);
  hello.insert(hello.end(), nb.begin(), nb.end());
  return std::pair{ClientHandshake(key, std::move(nonce)), std::move(hello)};
}

Result<std::pair<Bytes, Session>> ClientHandshake::on_challenge(ByteSpan challenge) {
  if (challenge.size() != kNonceSize + kMacSize) {
    return fail(ErrorCode::Protocol, "challenge payload of " + std::to_string(challenge.size()) +
                                         " bytes, expected " +
                                         std::to_string(kNonceSize + kMacSize));
  }
  ByteSpan sn = challenge.first(kNonceSize);
  Digest expect = proof(key_, kServerProofLabel, nonce_, sn);
  if (!constant_time_equal(expect, challenge.subspan(kNonceSize))) {
    return fail(ErrorCode::PermissionDenied,
                "the worker failed to prove it holds our key: it was given a different key "
                "file (or is not the worker you meant)");
  }
  Digest mine = proof(key_, kClientProofLabel, nonce_, sn);
  Bytes auth(mine.begin(), mine.end());
  return std::pair{std::move(auth), Session::derive(key_, nonce_, sn, /*is_client=*/true)};
}

Result<std::pair<ServerHandshake, Bytes>> ServerHandshake::on_hello(const Key& key,
                                                                    ByteSpan hello) {
  if (hello.size() < 2 + kNonceSize + 2) {
    return fail(ErrorCode::Protocol, "hello payload truncated");
  }
  const std::uint16_t version = get_u16(hello.data());
  if (version != kProtocolVersion) {
    return fail(ErrorCode::Protocol, "client speaks protocol " + std::to_string(version) +
                                         ", this worker speaks " +
                                         std::to_string(kProtocolVersion));
  }
  ByteSpan cn = hello.subspan(2, kNonceSize);
  const std::uint16_t name_len = get_u16(hello.data() + 2 + kNonceSize);
  if (name_len > kMaxNameLen || hello.size() != 2 + kNonceSize + 2 + std::size_t{name_len}) {
    return fail(ErrorCode::Protocol, "hello payload has a bad name length");
  }
  std::string name(as_text(hello.subspan(2 + kNonceSize + 2)));
  for (char& c : name) {
    if (c < 0x20 || c > 0x7e) c = '?';  // the name lands in logs; keep it printable
  }
  Bytes sn(kNonceSize);
  PEPITA_TRY_VOID(random_bytes(sn));
  Digest p = proof(key, kServerProofLabel, cn, sn);
  Bytes challenge(sn.begin(), sn.end());
  challenge.insert(challenge.end(), p.begin(), p.end());
  return std::pair{
      ServerHandshake(key, Bytes(cn.begin(), cn.end()), std::move(sn), std::move(name)),
      std::move(challenge)};
}

Result<Session> ServerHandshake::on_auth(ByteSpan auth) {
  Digest expect = proof(key_, kClientProofLabel, client_nonce_, server_nonce_);
  if (auth.size() != kMacSize || !constant_time_equal(expect, auth)) {
    return fail(ErrorCode::PermissionDenied,
                "client '" + client_name_ + "' failed authentication: it holds a different key");
  }
  return Session::derive(key_, client_nonce_, server_nonce_, /*is_client=*/false);
}

}  // namespace pepita::transport
