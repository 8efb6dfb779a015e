#pragma once
// virtio-vsock ABI (virtio 1.2 spec section 5.10; Linux include/uapi/linux/virtio_vsock.h):
// the 44-byte packed packet header, config, event, types, operations and flags.

#include <stdint.h>

namespace pepita::abi::virtio_vsock {

struct __attribute__((packed)) Header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;   // payload bytes following the header
  uint16_t type;  // TYPE_*
  uint16_t op;    // OP_*
  uint32_t flags;
  uint32_t buf_alloc;  // sender's receive buffer size (credit)
  uint32_t fwd_cnt;    // bytes the sender has consumed
};
static_assert(sizeof(Header) == 44);

struct __attribute__((packed)) Config {
  uint64_t guest_cid;
};

struct __attribute__((packed)) Event {
  uint32_t id;
};

inline constexpr uint32_t F_SEQPACKET = 1;
inline constexpr uint64_t CID_HOST = 2;

inline constexpr uint32_t EVENT_TRANSPORT_RESET = 0;
inline constexpr uint16_t TYPE_STREAM = 1;
inline constexpr uint16_t TYPE_SEQPACKET = 2;

inline constexpr uint16_t OP_INVALID = 0;
inline constexpr uint16_t OP_REQUEST = 1;
inline constexpr uint16_t OP_RESPONSE = 2;
inline constexpr uint16_t OP_RST = 3;
inline constexpr uint16_t OP_SHUTDOWN = 4;
inline constexpr uint16_t OP_RW = 5;
inline constexpr uint16_t OP_CREDIT_UPDATE = 6;
inline constexpr uint16_t OP_CREDIT_REQUEST = 7;

inline constexpr uint32_t SHUTDOWN_RCV = 1;
inline constexpr uint32_t SHUTDOWN_SEND = 2;
inline constexpr uint32_t SEQ_EOM = 1;
inline constexpr uint32_t SEQ_EOR = 2;

}  // namespace pepita::abi::virtio_vsock
