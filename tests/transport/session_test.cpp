// Handshake and session: mutual proof, wrong key, replay, tamper, reorder, reflection.
#include "pepita/transport/session.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace pepita::transport {
namespace {

Key key_of(char c) { return Key::from_bytes(as_bytes(std::string(32, c))).value(); }

struct Pair {
  Session client;
  Session server;
};

Pair handshake(const Key& ck, const Key& sk) {
  auto [client, hello] = ClientHandshake::start(ck, "tester").value();
  auto [server, challenge] = ServerHandshake::on_hello(sk, hello).value();
  auto [auth, cs] = client.on_challenge(challenge).value();
  auto ss = server.on_auth(auth).value();
  return {std::move(cs), std::move(ss)};
}

FrameView decode(const Bytes& wire) {
  auto d = decode_frame(wire);
  EXPECT_TRUE(d && d->frame);
  return *d->frame;
}

TEST(Session, MutualHandshakeThenSealedFramesBothWays) {
  Key k = key_of('k');
  auto [c, s] = handshake(k, k);
  for (int i = 0; i < 3; ++i) {
    Bytes w = c.seal(MessageType::Submit, 10 + i, as_bytes("task")).value();
    FrameView f = decode(w);
    ASSERT_TRUE(s.open(f)) << i;
    EXPECT_EQ(f.header.sequence, static_cast<std::uint64_t>(i));
    Bytes back = s.seal(MessageType::Result, 10 + i, as_bytes("done")).value();
    ASSERT_TRUE(c.open(decode(back)));
  }
}

TEST(Session, WrongKeyFailsOnBothSides) {
  Key good = key_of('g'), bad = key_of('b');
  // Client with the wrong key: it rejects the worker's proof.
  auto [client, hello] = ClientHandshake::start(bad, "x").value();
  auto [server, challenge] = ServerHandshake::on_hello(good, hello).value();
  auto r = client.on_challenge(challenge);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::PermissionDenied);
  // A client that skips verification and answers anyway: the worker rejects its proof.
  auto [c2, hello2] = ClientHandshake::start(good, "y").value();
  auto [s2, ch2] = ServerHandshake::on_hello(good, hello2).value();
  auto [auth, cs] = c2.on_challenge(ch2).value();
  (void)cs;
  auto [s3, ch3] = ServerHandshake::on_hello(bad, hello2).value();
  (void)ch3;
  auto rejected = s3.on_auth(auth);
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code(), ErrorCode::PermissionDenied);
}

TEST(Session, ReflectedWorkerProofIsNotAClientProof) {
  Key k = key_of('r');
  auto [client, hello] = ClientHandshake::start(k, "x").value();
  auto [server, challenge] = ServerHandshake::on_hello(k, hello).value();
  // An attacker without the key echoes the worker's own proof back as Auth.
  auto r = server.on_auth(ByteSpan(challenge).subspan(kNonceSize));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::PermissionDenied);
}

TEST(Session, MalformedHandshakePayloads) {
  Key k = key_of('m');
  EXPECT_FALSE(ServerHandshake::on_hello(k, {}));
  Bytes hello(2 + kNonceSize + 2, std::byte{0});
  hello[0] = std::byte{kProtocolVersion};
  EXPECT_TRUE(ServerHandshake::on_hello(k, hello));
  hello[0] = std::byte{kProtocolVersion + 1};  // another protocol version
  EXPECT_FALSE(ServerHandshake::on_hello(k, hello));
  hello[0] = std::byte{2};  // a protocol-2 driver, which could not place resource requests
  auto old = ServerHandshake::on_hello(k, hello);
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message().find("client speaks protocol 2, this worker speaks 6"),
            std::string::npos)
      << old.error().message();
  hello[0] = std::byte{kProtocolVersion};
  hello.back() = std::byte{5};  // name length 5*256 but no bytes follow
  EXPECT_FALSE(ServerHandshake::on_hello(k, hello));
  auto [client, h] = ClientHandshake::start(k, "x").value();
  EXPECT_FALSE(client.on_challenge(ByteSpan(h).first(10)));
  auto [server, ch] = ServerHandshake::on_hello(k, h).value();
  EXPECT_FALSE(server.on_auth({}));
}

TEST(Session, ReplayedFrameIsRejected) {
  Key k = key_of('p');
  auto [c, s] = handshake(k, k);
  Bytes w = c.seal(MessageType::Submit, 1, as_bytes("run")).value();
  ASSERT_TRUE(s.open(decode(w)));
  auto again = s.open(decode(w));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::Protocol);
  EXPECT_NE(again.error().message().find("replayed"), std::string::npos);
}

TEST(Session, FrameFromAnotherSessionIsRejected) {
  Key k = key_of('o');
  auto [c1, s1] = handshake(k, k);
  auto [c2, s2] = handshake(k, k);
  Bytes w = c1.seal(MessageType::Submit, 1, as_bytes("run")).value();
  EXPECT_FALSE(s2.open(decode(w)));  // same key, other nonces: other session keys
  EXPECT_TRUE(s1.open(decode(w)));
}

TEST(Session, TamperedFrameIsRejected) {
  Key k = key_of('t');
  auto [c, s] = handshake(k, k);
  Bytes w = c.seal(MessageType::Submit, 1, as_bytes("/bin/true")).value();
  // Rewrite the payload and fix up the CRC, as an active attacker would: the MAC still fails.
  Bytes payload(as_bytes("/bin/evil").begin(), as_bytes("/bin/evil").end());
  Bytes forged;
  ASSERT_TRUE(
      encode_frame({.type = MessageType::Submit, .flags = kFlagMac, .request_id = 1, .sequence = 0},
                   payload, forged));
  forged.insert(forged.end(), w.end() - kMacSize, w.end());
  auto r = s.open(decode(forged));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("MAC"), std::string::npos);
  // The genuine frame still opens: a failed open does not advance the sequence.
  EXPECT_TRUE(s.open(decode(w)));
}

// A bulk frame as Connection::send_bulk writes it: sealed head, the data, the MAC.
Bytes bulk_wire(Session& s, MessageType type, std::string_view meta, std::string_view data) {
  Bytes w;
  const Digest mac = s.seal_bulk_head(type, 3, as_bytes(meta), data.size(), w).value();
  w.insert(w.end(), as_bytes(data).begin(), as_bytes(data).end());
  w.insert(w.end(), mac.begin(), mac.end());
  return w;
}

TEST(Session, BulkFrameOpensWithItsMetadataAndDataApart) {
  Key k = key_of('b');
  auto [c, s] = handshake(k, k);
  const Bytes w = bulk_wire(c, MessageType::BlobChunk, "meta", "the chunk's bytes");
  const FrameView f = decode(w);
  EXPECT_NE(f.header.flags & kFlagBulk, 0);
  EXPECT_EQ(as_text(f.payload), "meta");
  EXPECT_EQ(as_text(f.bulk), "the chunk's bytes");
  EXPECT_TRUE(s.open(f));
}

TEST(Session, BulkFrameUnderAnotherKeyIsRejected) {
  Pair sender = handshake(key_of('x'), key_of('x'));
  Pair receiver = handshake(key_of('y'), key_of('y'));
  const Bytes w = bulk_wire(sender.client, MessageType::OutputChunk, "meta", "bytes");
  auto r = receiver.server.open(decode(w));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("MAC does not verify"), std::string::npos)
      << r.error().message();
}

TEST(Session, BulkFrameWithForgedMetadataIsRejected) {
  Key k = key_of('m');
  auto [c, s] = handshake(k, k);
  const Bytes w = bulk_wire(c, MessageType::BlobChunk, "offset=0", "bytes");
  // An active attacker rewrites the metadata (same length) and fixes up the CRC: the MAC, which
  // covers header and metadata, fails.
  Bytes forged;
  ASSERT_TRUE(encode_bulk_head(
      {.type = MessageType::BlobChunk, .flags = kFlagMac, .request_id = 3, .sequence = 0},
      as_bytes("offset=9"), 5, forged));
  forged.insert(forged.end(), w.begin() + static_cast<std::ptrdiff_t>(forged.size()), w.end());
  ASSERT_EQ(forged.size(), w.size());
  auto r = s.open(decode(forged));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("MAC"), std::string::npos);
  EXPECT_TRUE(s.open(decode(w)));
}

TEST(Session, BulkFrameDataIsLeftToTheEndToEndHash) {
  // By design (docs/protocol.md, "Bulk frames"): a changed data byte passes the frame's CRC and
  // MAC; the receiver's SHA-256 of the whole blob or output catches it (staging_test).
  Key k = key_of('d');
  auto [c, s] = handshake(k, k);
  Bytes w = bulk_wire(c, MessageType::BlobChunk, "meta", "bytes");
  w[w.size() - kMacSize - 1] ^= std::byte{1};
  const FrameView f = decode(w);
  EXPECT_TRUE(s.open(f));
  EXPECT_EQ(as_text(f.bulk), "byter");
}

TEST(Session, UnsealedFrameAfterHandshakeIsRejected) {
  Key k = key_of('u');
  auto [c, s] = handshake(k, k);
  Bytes plain;
  ASSERT_TRUE(encode_frame({.type = MessageType::Submit}, as_bytes("x"), plain));
  EXPECT_FALSE(s.open(decode(plain)));
}

TEST(Session, ReorderedFramesAreRejected) {
  Key k = key_of('q');
  auto [c, s] = handshake(k, k);
  Bytes a = c.seal(MessageType::Heartbeat, 0, {}).value();
  Bytes b = c.seal(MessageType::Heartbeat, 0, {}).value();
  EXPECT_FALSE(s.open(decode(b)));
  EXPECT_TRUE(s.open(decode(a)));
  EXPECT_TRUE(s.open(decode(b)));
}

RC_GTEST_PROP(SessionProp, AnySingleBitFlipIsDetected, (std::string payload, std::size_t pick)) {
  Key k = key_of('z');
  auto [c, s] = handshake(k, k);
  Bytes w = c.seal(MessageType::Result, 5, as_bytes(payload)).value();
  const std::size_t bit = pick % (w.size() * 8);
  w[bit / 8] ^= static_cast<std::byte>(1 << (bit % 8));
  auto d = decode_frame(w);
  // Either framing/CRC rejects it, it looks incomplete (length grew), or the MAC does.
  if (d && d->frame && d->consumed == w.size()) RC_ASSERT(!s.open(*d->frame).has_value());
}

}  // namespace
}  // namespace pepita::transport
