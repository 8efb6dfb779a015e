// The reference crate's transport module example (transport.rs) in C++: a heartbeat message
// turned into bytes and parsed back as a Heartbeat. pepita's wire format is a framed, checksummed
// header plus a typed payload (docs/protocol.md); a flipped byte is refused, not misread.
#include <cstdio>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::transport;
  // Message::heartbeat(42) -> to_bytes()
  const HeartbeatMsg heartbeat{.sent_ns = 42, .free_slots = 0, .running = 0};
  Bytes bytes;
  if (auto sent = encode_frame({.type = MessageType::Heartbeat}, encode(heartbeat), bytes); !sent) {
    std::fprintf(stderr, "encode: %s\n", sent.error().to_string().c_str());
    return 1;
  }
  // Message::from_bytes(&bytes) -> message_type() == Heartbeat
  auto decoded = decode_frame(bytes);
  if (!decoded || !decoded->frame) {
    std::fprintf(stderr, "decode: %s\n",
                 decoded ? "incomplete" : decoded.error().to_string().c_str());
    return 1;
  }
  auto parsed = decode_heartbeat(decoded->frame->payload);
  if (!parsed) {
    std::fprintf(stderr, "heartbeat: %s\n", parsed.error().to_string().c_str());
    return 1;
  }
  std::printf("%zu bytes, type %s, heartbeat %llu, equal %d\n", bytes.size(),
              std::string(to_string(decoded->frame->header.type)).c_str(),
              static_cast<unsigned long long>(parsed->sent_ns), *parsed == heartbeat ? 1 : 0);
  // One flipped payload byte: the checksum refuses the frame.
  bytes.back() ^= std::byte{1};
  auto corrupt = decode_frame(bytes);
  std::printf("corrupted frame refused %d\n", corrupt ? 0 : 1);
  return *parsed == heartbeat && !corrupt ? 0 : 1;
}
