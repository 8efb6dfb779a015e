// Message, the crate-spelled view of one protocol message: every constructor survives the real
// frame codec; type names, wire values and bad input (wrong type, truncation, trailing bytes,
// MAC'd frames, a flipped bit) behave as documented.
#include "pepita/transport/message.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <set>

namespace pepita::transport {
namespace {

Message round_trip(const Message& m) {
  auto wire = m.to_bytes();
  EXPECT_TRUE(wire) << wire.error().to_string();
  EXPECT_EQ(wire->size(), m.size());
  auto back = Message::from_bytes(*wire);
  EXPECT_TRUE(back) << back.error().to_string();
  return *back;
}

TEST(Message, HeartbeatCarriesTheSendersClockAndSlots) {
  const Message m = round_trip(Message::heartbeat());
  EXPECT_EQ(m.message_type(), MessageType::Heartbeat);
  const auto hb = m.as_heartbeat();
  ASSERT_TRUE(hb) << hb.error().to_string();
  EXPECT_GT(hb->sent_ns, 0u);
  const HeartbeatPayload full{.sent_ns = 7, .free_slots = 3, .running = 5};
  EXPECT_EQ(round_trip(Message::heartbeat_full(full)).as_heartbeat().value(), full);
}

TEST(Message, TaskResultRegisterErrorCancelAndShutdownRoundTrip) {
  const TaskResultPayload r{.attempt = 2,
                            .status = TaskStatus::Failed,
                            .exit_code = 3,
                            .wall_ns = 1'000'000,
                            .stdout_data = "out",
                            .error = "exit 3"};
  const Message res = round_trip(Message::task_result(42, r));
  EXPECT_EQ(res.message_type(), MessageType::TaskResult);
  EXPECT_EQ(res.header.request_id, 42u);
  EXPECT_EQ(res.as_task_result().value(), r);

  const RegisterPayload reg{.slots = 4, .backends = {"process", "cpu"}, .name = "node-1"};
  EXPECT_EQ(round_trip(Message::register_worker(reg)).as_register().value(), reg);

  const ErrorMsg e =
      round_trip(Message::error("bad key", ErrorCode::PermissionDenied)).as_error().value();
  EXPECT_EQ(e.reason, "bad key");
  EXPECT_EQ(e.code, static_cast<std::uint16_t>(ErrorCode::PermissionDenied));

  const Message cancel = round_trip(Message::task_cancel(9));
  EXPECT_EQ(cancel.message_type(), MessageType::TaskCancel);
  EXPECT_EQ(cancel.header.request_id, 9u);
  EXPECT_TRUE(cancel.payload.empty());

  EXPECT_EQ(round_trip(Message::shutdown()).message_type(), MessageType::Drain);
  const Message any = round_trip(Message::make(MessageType::Submit, encode(SubmitMsg{}), 5));
  EXPECT_EQ(any.message_type(), MessageType::TaskSubmit);
  EXPECT_EQ(decode_submit(any.payload).value(), SubmitMsg{});
}

TEST(Message, CrateTypeNamesAreTheProtocolsFrames) {
  EXPECT_EQ(MessageType::TaskSubmit, MessageType::Submit);
  EXPECT_EQ(MessageType::TaskResult, MessageType::Result);
  EXPECT_EQ(MessageType::TaskCancel, MessageType::Cancel);
  EXPECT_EQ(MessageType::Deregister, MessageType::Drain);
  EXPECT_EQ(MessageType::Shutdown, MessageType::Drain);
  std::set<MessageType> seen;
  for (int v = 0; v <= 255; ++v) {
    const auto t = message_type_from_u8(static_cast<std::uint8_t>(v));
    EXPECT_EQ(t.has_value(), v >= 1 && v <= kMaxMessageType) << v;
    if (t) {
      EXPECT_EQ(as_u8(*t), v);
      EXPECT_NE(to_string(*t), "unknown") << v;
      seen.insert(*t);
    }
  }
  EXPECT_EQ(seen.size(), kMaxMessageType);
}

TEST(Message, ReadingAsTheWrongTypeNamesBoth) {
  const Message hb = Message::heartbeat();
  auto r = hb.as_task_result();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("heartbeat"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("result"), std::string::npos) << r.error().message();
  EXPECT_FALSE(hb.as_register());
  EXPECT_FALSE(hb.as_error());
  EXPECT_FALSE(Message::shutdown().as_heartbeat());
  // The right type with a malformed payload is the codec's Protocol error.
  Message bad = Message::make(MessageType::Heartbeat, Bytes(3, std::byte{1}));
  EXPECT_EQ(bad.as_heartbeat().error().code(), ErrorCode::Protocol);
}

TEST(Message, FromBytesRefusesPartialTrailingMacdAndCorruptFrames) {
  const Bytes wire = Message::task_result(1, {.stdout_data = "hello"}).to_bytes().value();
  for (std::size_t n = 0; n < wire.size(); ++n) {
    auto r = Message::from_bytes(ByteSpan(wire).first(n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol) << n;
  }
  Bytes two = wire;
  two.insert(two.end(), wire.begin(), wire.end());
  auto trailing = Message::from_bytes(two);
  ASSERT_FALSE(trailing);
  EXPECT_NE(trailing.error().message().find("trailing"), std::string::npos);

  Bytes flipped = wire;
  flipped.back() ^= std::byte{0x40};
  EXPECT_EQ(Message::from_bytes(flipped).error().code(), ErrorCode::Corrupted);

  Bytes macd;
  const Bytes payload = encode(HeartbeatMsg{});
  ASSERT_TRUE(encode_frame({.type = MessageType::Heartbeat, .flags = kFlagMac}, payload, macd));
  macd.resize(macd.size() + kMacSize);
  auto m = Message::from_bytes(macd);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("Connection"), std::string::npos) << m.error().message();
}

RC_GTEST_PROP(Message, AnyPayloadAndRequestIdRoundTrip, (std::uint64_t id, std::string data)) {
  const auto type = static_cast<MessageType>(*rc::gen::inRange<int>(1, kMaxMessageType + 1));
  const ByteSpan b = as_bytes(data);
  const Message m = Message::make(type, Bytes(b.begin(), b.end()), id);
  const auto back = Message::from_bytes(m.to_bytes().value());
  RC_ASSERT(back.has_value());
  RC_ASSERT(back->message_type() == type);
  RC_ASSERT(back->header.request_id == id);
  RC_ASSERT(back->payload == m.payload);
}

}  // namespace
}  // namespace pepita::transport
