// Frame codec: round trips (rapidcheck), incomplete input, and every malformed-header path.
#include "pepita/transport/frame.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>

namespace pepita::transport {
namespace {

Bytes make(MessageType type, std::uint64_t rid, std::string_view payload, std::uint16_t flags = 0) {
  Bytes out;
  EXPECT_TRUE(encode_frame({.type = type, .flags = flags, .request_id = rid, .sequence = 7},
                           as_bytes(payload), out));
  if (flags & kFlagMac) out.resize(out.size() + kMacSize, std::byte{0xAA});
  return out;
}

TEST(Frame, RoundTrip) {
  Bytes wire = make(MessageType::Submit, 42, "hello");
  ASSERT_EQ(wire.size(), kHeaderSize + 5);
  auto d = decode_frame(wire);
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(d->frame);
  EXPECT_EQ(d->consumed, wire.size());
  EXPECT_EQ(d->frame->header.type, MessageType::Submit);
  EXPECT_EQ(d->frame->header.request_id, 42u);
  EXPECT_EQ(d->frame->header.sequence, 7u);
  EXPECT_EQ(as_text(d->frame->payload), "hello");
  EXPECT_TRUE(d->frame->mac.empty());
}

TEST(Frame, MacTrailerIsPartOfTheFrame) {
  Bytes wire = make(MessageType::Heartbeat, 1, "x", kFlagMac);
  auto d = decode_frame(wire);
  ASSERT_TRUE(d && d->frame);
  EXPECT_EQ(d->frame->mac.size(), kMacSize);
  EXPECT_EQ(d->consumed, kHeaderSize + 1 + kMacSize);
  // Without the trailer the frame is incomplete, not an error.
  auto short_d = decode_frame(ByteSpan(wire).first(wire.size() - 1));
  ASSERT_TRUE(short_d);
  EXPECT_FALSE(short_d->frame);
  EXPECT_EQ(short_d->needed, wire.size());
}

TEST(Frame, EveryTruncationIsIncompleteNotAnError) {
  Bytes wire = make(MessageType::Result, 9, "some payload bytes");
  for (std::size_t n = 0; n < wire.size(); ++n) {
    auto d = decode_frame(ByteSpan(wire).first(n));
    ASSERT_TRUE(d) << n;
    EXPECT_FALSE(d->frame) << n;
    EXPECT_GT(d->needed, n);
  }
}

TEST(Frame, BadMagicVersionTypeFlags) {
  Bytes wire = make(MessageType::Hello, 0, "abc");
  auto corrupt = [&](std::size_t at, std::byte v) {
    Bytes b = wire;
    b[at] = v;
    return decode_frame(b);
  };
  auto m = corrupt(0, std::byte{'X'});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), ErrorCode::Protocol);
  EXPECT_NE(m.error().message().find("magic"), std::string::npos);
  auto v = corrupt(4, std::byte{9});
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message().find("version"), std::string::npos);
  auto v1 = corrupt(4, std::byte{1});  // a protocol-1 peer (Result without cpu and rss)
  ASSERT_FALSE(v1);
  EXPECT_NE(v1.error().message().find("unsupported protocol version 1 (this build speaks 6)"),
            std::string::npos)
      << v1.error().message();
  auto v2 = corrupt(4, std::byte{2});  // a protocol-2 peer (no inventory, allocation, peak)
  ASSERT_FALSE(v2);
  EXPECT_NE(v2.error().message().find("unsupported protocol version 2 (this build speaks 6)"),
            std::string::npos)
      << v2.error().message();
  auto v3 = corrupt(4, std::byte{3});  // a protocol-3 peer (Submit without the sandbox)
  ASSERT_FALSE(v3);
  EXPECT_NE(v3.error().message().find("unsupported protocol version 3 (this build speaks 6)"),
            std::string::npos)
      << v3.error().message();
  EXPECT_FALSE(corrupt(5, std::byte{0}));
  EXPECT_FALSE(corrupt(5, std::byte{kMaxMessageType + 1}));
  auto f = corrupt(6, std::byte{0x80});
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message().find("flags"), std::string::npos);
}

TEST(Frame, BulkFrameSplitsMetadataFromData) {
  Bytes w;
  ASSERT_TRUE(encode_bulk_head({.type = MessageType::OutputChunk, .flags = kFlagMac},
                               as_bytes("meta"), 4, w));
  w.insert(w.end(), as_bytes("data").begin(), as_bytes("data").end());
  w.resize(w.size() + kMacSize);
  auto d = decode_frame(w);
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_TRUE(d->frame);
  EXPECT_EQ(d->consumed, w.size());
  EXPECT_EQ(as_text(d->frame->payload), "meta");
  EXPECT_EQ(as_text(d->frame->bulk), "data");
  EXPECT_EQ(d->frame->covered.size(), kBulkPrefix + 4);
  // The CRC covers the metadata: a changed metadata byte is damage.
  Bytes meta_hit = w;
  meta_hit[kHeaderSize + kBulkPrefix] ^= std::byte{1};
  auto m = decode_frame(meta_hit);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), ErrorCode::Corrupted);
}

TEST(Frame, BulkFlagIsRefusedWhereItDoesNotBelong) {
  Bytes w;
  EXPECT_FALSE(encode_bulk_head({.type = MessageType::Submit, .flags = kFlagMac}, {}, 1, w));
  // On another type, on an unsealed frame, or announcing more metadata than the payload holds.
  auto header_with = [](MessageType t, std::uint16_t flags) {
    return make(t, 0, std::string(8, '\0'), flags);
  };
  auto other = decode_frame(header_with(MessageType::Submit, kFlagMac | kFlagBulk));
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message().find("bulk"), std::string::npos) << other.error().message();
  auto unsealed = decode_frame(header_with(MessageType::BlobChunk, kFlagBulk));
  ASSERT_FALSE(unsealed);
  EXPECT_NE(unsealed.error().message().find("unsealed"), std::string::npos);
  Bytes over;
  ASSERT_TRUE(encode_bulk_head({.type = MessageType::BlobChunk, .flags = kFlagMac},
                               as_bytes("meta"), 0, over));
  over[kHeaderSize] = std::byte{200};  // meta_len 200 in a 8-byte payload
  over.resize(over.size() + kMacSize);
  auto bad = decode_frame(over);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::Protocol);
  EXPECT_NE(bad.error().message().find("metadata bytes"), std::string::npos)
      << bad.error().message();
}

TEST(Frame, OversizedLengthRefusedFromHeaderAlone) {
  Bytes wire = make(MessageType::Upload, 0, "");
  // Announce 64 MiB + 1 without sending any payload: refused right away.
  const std::uint32_t huge = kMaxPayload + 1;
  std::memcpy(wire.data() + 24, &huge, 4);
  auto d = decode_frame(ByteSpan(wire).first(kHeaderSize));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::Protocol);
  EXPECT_NE(d.error().message().find("exceeds"), std::string::npos);
  // A lower configured limit applies too.
  Bytes ok = make(MessageType::Upload, 0, std::string(100, 'a'));
  EXPECT_FALSE(decode_frame(ok, {.max_payload = 99}));
  EXPECT_TRUE(decode_frame(ok, {.max_payload = 100}));
}

TEST(Frame, CrcCatchesAnyFlippedBit) {
  Bytes wire = make(MessageType::Submit, 3, "payload");
  // Flip each bit of the request id, sequence and payload: all must fail the CRC.
  for (std::size_t byte = 8; byte < wire.size(); ++byte) {
    if (byte >= 24 && byte < 32) continue;  // length / crc fields change the framing itself
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = wire;
      b[byte] ^= static_cast<std::byte>(1 << bit);
      auto d = decode_frame(b);
      ASSERT_FALSE(d) << byte << ":" << bit;
      EXPECT_EQ(d.error().code(), ErrorCode::Corrupted);
    }
  }
}

TEST(Frame, EncodeRefusesOversizedPayload) {
  Bytes out;
  std::vector<std::byte> big(kMaxPayload + 1);
  auto r = encode_frame({.type = MessageType::Upload}, big, out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
}

TEST(Frame, TwoFramesBackToBack) {
  Bytes a = make(MessageType::Started, 1, "a");
  Bytes b = make(MessageType::Result, 1, "bb");
  a.insert(a.end(), b.begin(), b.end());
  auto d1 = decode_frame(a);
  ASSERT_TRUE(d1 && d1->frame);
  auto d2 = decode_frame(ByteSpan(a).subspan(d1->consumed));
  ASSERT_TRUE(d2 && d2->frame);
  EXPECT_EQ(as_text(d2->frame->payload), "bb");
}

RC_GTEST_PROP(FrameProp, EncodeDecodeRoundTrip,
              (std::uint8_t type_raw, std::uint64_t rid, std::uint64_t seq, std::string payload)) {
  const auto type = static_cast<MessageType>(1 + type_raw % kMaxMessageType);
  Bytes out;
  RC_ASSERT(encode_frame({.type = type, .request_id = rid, .sequence = seq}, as_bytes(payload), out)
                .has_value());
  auto d = decode_frame(out);
  RC_ASSERT(d.has_value());
  RC_ASSERT(d->frame.has_value());
  RC_ASSERT(d->frame->header.type == type);
  RC_ASSERT(d->frame->header.request_id == rid);
  RC_ASSERT(d->frame->header.sequence == seq);
  RC_ASSERT(as_text(d->frame->payload) == payload);
  RC_ASSERT(d->consumed == out.size());
}

RC_GTEST_PROP(FrameProp, ArbitraryBytesNeverCrashAndStayInBounds, (std::vector<std::uint8_t> raw)) {
  // Garbage: the decoder returns an error or "incomplete", or a frame lying inside the buffer.
  Bytes b(raw.size());
  if (!raw.empty()) std::memcpy(b.data(), raw.data(), raw.size());
  auto d = decode_frame(b);
  if (d && d->frame) {
    RC_ASSERT(d->consumed <= b.size());
    RC_ASSERT(d->frame->payload.data() >= b.data());
    RC_ASSERT(d->frame->payload.data() + d->frame->payload.size() <= b.data() + b.size());
  }
}

RC_GTEST_PROP(FrameProp, GarbagePrefixedToValidFrameIsRejected, (std::vector<std::uint8_t> junk)) {
  RC_PRE(!junk.empty());
  RC_PRE(junk[0] != 'P');
  Bytes b(junk.size());
  std::memcpy(b.data(), junk.data(), junk.size());
  Bytes f = make(MessageType::Heartbeat, 0, "hb");
  b.insert(b.end(), f.begin(), f.end());
  auto d = decode_frame(b);
  RC_ASSERT(!(d && d->frame && d->consumed == b.size()));
  if (b.size() >= kHeaderSize) RC_ASSERT(!d.has_value());
}

TEST(Frame, HeaderDecoderRefusesAShortHeaderAndAnUnknownType) {
  const Bytes wire = make(MessageType::Hello, 0, "abc");
  auto short_header = decode_header(ByteSpan(wire).first(kHeaderSize - 1));
  ASSERT_FALSE(short_header);
  EXPECT_EQ(short_header.error().code(), ErrorCode::Protocol);
  EXPECT_NE(short_header.error().message().find(
                "frame header truncated: " + std::to_string(kHeaderSize - 1) + " of " +
                std::to_string(kHeaderSize) + " bytes"),
            std::string::npos)
      << short_header.error().message();
  Bytes unknown(wire.begin(), wire.begin() + kHeaderSize);
  unknown[5] = std::byte{kMaxMessageType + 1};
  auto type = decode_header(unknown);
  ASSERT_FALSE(type);
  EXPECT_EQ(type.error().code(), ErrorCode::Protocol);
  EXPECT_NE(
      type.error().message().find("unknown message type " + std::to_string(kMaxMessageType + 1)),
      std::string::npos)
      << type.error().message();
  EXPECT_EQ(to_string(static_cast<MessageType>(kMaxMessageType + 1)), "unknown");
}

TEST(Frame, BulkHeadRefusesDataPastTheTransportLimit) {
  Bytes out;
  auto big = encode_bulk_head({.type = MessageType::BlobChunk, .flags = kFlagMac}, as_bytes("meta"),
                              kMaxPayload, out);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(big.error().message().find("exceeds the transport limit of 64 MiB"), std::string::npos)
      << big.error().message();
  EXPECT_TRUE(out.empty()) << "a refused head wrote bytes";
}

}  // namespace
}  // namespace pepita::transport
