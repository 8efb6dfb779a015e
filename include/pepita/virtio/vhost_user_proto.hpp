#pragma once
// vhost-user wire format (QEMU docs/interop/vhost-user.rst, protocol version 1): message header,
// request codes, feature bits and payloads the backend side handles. Little-endian, packed as the
// spec lays them out (every field naturally aligned, so no packing attribute is needed).
#include <cstdint>

namespace pepita::virtio::vhost_user {

struct Header {
  uint32_t request;
  uint32_t flags;  // kVersion | kReplyFlag | kNeedReply
  uint32_t size;   // payload bytes after the header
};
static_assert(sizeof(Header) == 12);

inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kReplyFlag = 1u << 2;
inline constexpr uint32_t kNeedReply = 1u << 3;
inline constexpr uint32_t kMaxPayload = 4096;  // our bound; the largest message we take is ~300 B
inline constexpr uint32_t kMaxFds = 8;

enum Request : uint32_t {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GET_MAX_MEM_SLOTS = 36,
  SET_STATUS = 39,  // u64 virtio device status (protocol::STATUS)
  GET_STATUS = 40,  // reply: u64 status, NEEDS_RESET included once a queue broke
};

/// Virtio feature bit 30, reused by vhost-user: the backend speaks protocol features.
inline constexpr uint32_t F_PROTOCOL_FEATURES = 30;

namespace protocol {
inline constexpr uint32_t MQ = 0;
inline constexpr uint32_t REPLY_ACK = 3;
inline constexpr uint32_t CONFIG = 9;
inline constexpr uint32_t INFLIGHT_SHMFD = 12;  // GET_INFLIGHT_FD / SET_INFLIGHT_FD
inline constexpr uint32_t STATUS = 16;          // SET_STATUS / GET_STATUS
}  // namespace protocol

struct VringState {
  uint32_t index;
  uint32_t num;
};
struct VringAddr {
  uint32_t index;
  uint32_t flags;  // VHOST_VRING_F_LOG
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

/// SET_VRING_KICK / CALL / ERR payload: index in bits 0-7, bit 8 = no fd attached.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 1u << 8;

struct MemoryRegion {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};
/// Regions one SET_MEM_TABLE may carry (VHOST_MEMORY_BASELINE_NREGIONS).
inline constexpr uint32_t kMaxMemRegions = 8;
struct Memory {
  uint32_t nregions;
  uint32_t padding;
  MemoryRegion regions[kMaxMemRegions];
};
static_assert(sizeof(Memory) == 8 + 8 * 32);

/// GET_INFLIGHT_FD / SET_INFLIGHT_FD payload (VhostUserInflight): the region is num_queues slices
/// of virtio::inflight_queue_bytes(queue_size), mapped from the attached fd at mmap_offset.
struct Inflight {
  uint64_t mmap_size;
  uint64_t mmap_offset;
  uint16_t num_queues;
  uint16_t queue_size;
  uint32_t padding;  // QEMU's struct is not packed: 24 bytes on the wire
};
static_assert(sizeof(Inflight) == 24);
/// The shortest Inflight payload we take (without the trailing padding).
inline constexpr uint32_t kInflightMinPayload = 20;

struct ConfigHeader {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
};
inline constexpr uint32_t kMaxConfigSize = 256;

}  // namespace pepita::virtio::vhost_user
