#pragma once
// virtio-vsock wire format (virtio 1.2 section 5.10): queue indices, CIDs, feature bits, packet
// header, ops and flags. Dependency-free (<stdint.h> only) so the freestanding guest runtime's
// driver (guest/runtime/vsock_driver.cpp) shares it with the device (pepita/virtio/vsock.hpp).
#include <stdint.h>

namespace pepita::virtio::vsock {

inline constexpr uint16_t kRxq = 0;
inline constexpr uint16_t kTxq = 1;
inline constexpr uint16_t kEventq = 2;

/// Well-known CIDs (spec 5.10.4): the host is 2; guests get 3 and above.
inline constexpr uint64_t kHostCid = 2;
inline constexpr uint64_t kMinGuestCid = 3;
/// The largest payload one packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
inline constexpr uint32_t kMaxPayload = 64 * 1024;

// Feature bits (spec 5.10.3).
inline constexpr uint32_t F_STREAM = 0;
inline constexpr uint32_t F_SEQPACKET = 1;

// Packet types and operations (spec 5.10.6).
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
/// SHUTDOWN flags: the sender will receive (RCV) / send (SEND) no more data.
inline constexpr uint32_t SHUTDOWN_RCV = 1;
inline constexpr uint32_t SHUTDOWN_SEND = 2;
/// struct virtio_vsock_event id (eventq).
inline constexpr uint32_t EVENT_TRANSPORT_RESET = 0;

/// struct virtio_vsock_hdr (spec 5.10.6), little-endian, packed: 44 bytes.
struct [[gnu::packed]] Header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;  // payload bytes following the header
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;  // the sender's receive buffer for this connection
  uint32_t fwd_cnt;    // bytes the sender has consumed from it, free-running
};
static_assert(sizeof(Header) == 44);

/// struct virtio_vsock_config (spec 5.10.4).
struct Config {
  uint64_t guest_cid;
};
static_assert(sizeof(Config) == 8);

}  // namespace pepita::virtio::vsock
