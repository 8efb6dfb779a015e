#pragma once
// Message: one whole protocol message — a frame header (type, request id) and its owned payload
// — as Connection sends and receives it, with constructors and typed readers in the reference
// crate's spelling (transport::Message, MessageType, HeartbeatPayload, ...). Everything goes
// through the one wire codec (frame.hpp, messages.hpp, docs/protocol.md); nothing here is a
// second format.
//
//   Message m = Message::task_result(42, ResultMsg{.status = TaskStatus::Succeeded});
//   Bytes wire = PEPITA_TRY(m.to_bytes());          // a cleartext frame, CRC32C included
//   Message back = PEPITA_TRY(Message::from_bytes(wire));
//   ResultMsg r = PEPITA_TRY(back.as_task_result());  // back.header.request_id == 42

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/transport/frame.hpp"
#include "pepita/transport/messages.hpp"

namespace pepita::transport {

// --- The crate's payload names: our message structs, encoded by messages.hpp --------------------
/// The crate's HeartbeatPayload: sender's monotonic time, free slots, running tasks. (A
/// heartbeat names no worker: the authenticated connection does.)
using HeartbeatPayload = HeartbeatMsg;
/// The crate's TaskResultPayload: how one attempt ended (the task id is the frame's request id).
using TaskResultPayload = ResultMsg;
/// The crate's RegisterPayload: slots, backends, labels and the worker's name.
using RegisterPayload = RegisterMsg;

/// The crate's MessageType::from_u8: the message type with wire value `value`, nullopt for a
/// value no frame may carry.
constexpr std::optional<MessageType> message_type_from_u8(std::uint8_t value) noexcept {
  if (value == 0 || value > kMaxMessageType) return std::nullopt;
  return static_cast<MessageType>(value);
}
/// The crate's MessageType::as_u8: the wire value.
constexpr std::uint8_t as_u8(MessageType type) noexcept { return std::to_underlying(type); }

/// One received or to-be-sent message. Its payload is owned.
struct Message {
  FrameHeader header;
  Bytes payload;  // a bulk frame's metadata (kFlagBulk), else the whole payload
  /// A bulk frame's data, not copied: a view into the receiving Connection's buffer, valid only
  /// until that connection's next receive(). Empty for other frames.
  ByteSpan bulk{};

  // --- The crate's constructors (issue 21) -----------------------------------------------------
  /// Any message (the crate's Message::new).
  static Message make(MessageType type, Bytes payload, std::uint64_t request_id = 0);
  /// A heartbeat stamped with the sender's monotonic clock now.
  static Message heartbeat();
  /// A heartbeat carrying `hb` as given.
  static Message heartbeat_full(const HeartbeatPayload& hb);
  /// The result of task `task_id`'s attempt (worker -> driver).
  static Message task_result(std::uint64_t task_id, const TaskResultPayload& result);
  /// A worker's registration (the crate's Message::register; `register` is a C++ keyword).
  static Message register_worker(const RegisterPayload& reg);
  /// An error report; the peer closes the connection after it.
  static Message error(std::string reason, ErrorCode code = ErrorCode::Protocol);
  /// The crate's shutdown signal: our Drain (a worker shutting down, send it no more work).
  static Message shutdown();
  /// Stop task `task_id` (driver -> worker).
  static Message task_cancel(std::uint64_t task_id);

  // --- Readers ---------------------------------------------------------------------------------
  MessageType message_type() const noexcept { return header.type; }
  /// The decoded payload; InvalidArgument when the message is of another type, Protocol when
  /// the payload is malformed.
  Result<HeartbeatPayload> as_heartbeat() const;
  Result<TaskResultPayload> as_task_result() const;
  Result<RegisterPayload> as_register() const;
  Result<ErrorMsg> as_error() const;

  /// The message as one cleartext frame (header with CRC32C, then the payload). Frames of an
  /// authenticated session are sealed by Connection::send instead. InvalidArgument when the
  /// payload exceeds kMaxPayload.
  Result<Bytes> to_bytes() const;
  /// Exactly one whole cleartext frame. Protocol for an incomplete frame, trailing bytes, a
  /// MAC'd frame (only a Connection can check it) or a bad header; Corrupted for a CRC mismatch.
  static Result<Message> from_bytes(ByteSpan bytes);
  /// Bytes the message occupies on the wire as a cleartext frame.
  std::size_t size() const noexcept { return kHeaderSize + payload.size(); }
};

}  // namespace pepita::transport
