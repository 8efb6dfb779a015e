// Message constructors and readers over the frame and payload codecs (frame.cpp, messages.cpp).
#include "pepita/transport/message.hpp"

#include <chrono>

#include "pepita/core/format.hpp"

namespace pepita::transport {
namespace {

Result<void> expect_type(const Message& m, MessageType want) {
  if (m.header.type == want) return {};
  return fail(ErrorCode::InvalidArgument,
              pepita::fmt("the message is a {} frame, not {}: check message_type() first",
                          to_string(m.header.type), to_string(want)));
}

}  // namespace

Message Message::make(MessageType type, Bytes payload, std::uint64_t request_id) {
  return Message{.header = {.type = type, .request_id = request_id}, .payload = std::move(payload)};
}

Message Message::heartbeat() {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  return heartbeat_full(
      HeartbeatPayload{.sent_ns = static_cast<std::uint64_t>(
                           std::chrono::duration_cast<std::chrono::nanoseconds>(now).count())});
}

Message Message::heartbeat_full(const HeartbeatPayload& hb) {
  return make(MessageType::Heartbeat, encode(hb));
}

Message Message::task_result(std::uint64_t task_id, const TaskResultPayload& result) {
  return make(MessageType::Result, encode(result), task_id);
}

Message Message::register_worker(const RegisterPayload& reg) {
  return make(MessageType::Register, encode(reg));
}

Message Message::error(std::string reason, ErrorCode code) {
  return make(MessageType::Error, encode(ErrorMsg{.code = static_cast<std::uint16_t>(code),
                                                  .reason = std::move(reason)}));
}

Message Message::shutdown() { return make(MessageType::Drain, {}); }

Message Message::task_cancel(std::uint64_t task_id) {
  return make(MessageType::Cancel, {}, task_id);
}

Result<HeartbeatPayload> Message::as_heartbeat() const {
  PEPITA_TRY_VOID(expect_type(*this, MessageType::Heartbeat));
  return decode_heartbeat(payload);
}

Result<TaskResultPayload> Message::as_task_result() const {
  PEPITA_TRY_VOID(expect_type(*this, MessageType::Result));
  return decode_result(payload);
}

Result<RegisterPayload> Message::as_register() const {
  PEPITA_TRY_VOID(expect_type(*this, MessageType::Register));
  return decode_register(payload);
}

Result<ErrorMsg> Message::as_error() const {
  PEPITA_TRY_VOID(expect_type(*this, MessageType::Error));
  return decode_error(payload);
}

Result<Bytes> Message::to_bytes() const {
  Bytes out;
  FrameHeader h{.type = header.type, .request_id = header.request_id, .sequence = header.sequence};
  PEPITA_TRY_VOID(encode_frame(h, payload, out));
  return out;
}

Result<Message> Message::from_bytes(ByteSpan bytes) {
  const Decoded d = PEPITA_TRY(decode_frame(bytes));
  if (!d.frame) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("incomplete frame: {} bytes given, {} needed", bytes.size(), d.needed));
  }
  if (d.frame->header.flags & kFlagMac) {
    return fail(
        ErrorCode::Protocol,
        "the frame carries a session MAC; receive it through a Connection, which checks it");
  }
  if (d.consumed != bytes.size()) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("{} trailing bytes after the frame: pass exactly one frame",
                            bytes.size() - d.consumed));
  }
  return Message{.header = d.frame->header,
                 .payload = Bytes(d.frame->payload.begin(), d.frame->payload.end())};
}

}  // namespace pepita::transport
