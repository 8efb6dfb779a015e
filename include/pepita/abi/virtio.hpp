#pragma once
// virtio common ABI: split virtqueue layout (descriptor table, available and used rings), device
// status bits, transport feature bits and device IDs. Follows the virtio 1.2 spec (section 2.7)
// and Linux include/uapi/linux/virtio_ring.h / virtio_config.h. Little-endian only (x86-64).

#include <stddef.h>
#include <stdint.h>

namespace pepita::abi::virtio {

/// One entry of the descriptor table (spec 2.7.5). 16-byte aligned table.
struct Desc {
  uint64_t addr;  // guest-physical buffer address
  uint32_t len;
  uint16_t flags;  // DESC_F_*
  uint16_t next;   // valid when flags has DESC_F_NEXT

  // The reference crate's VirtqDesc: its flag constants (DESC_F_* below), new() as make(), and
  // the flag predicates.
  static constexpr uint16_t F_NEXT = 1;
  static constexpr uint16_t F_WRITE = 2;
  static constexpr uint16_t F_INDIRECT = 4;
  static constexpr Desc make(uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    return Desc{addr, len, flags, next};
  }
  constexpr bool has_next() const { return (flags & F_NEXT) != 0; }
  /// The device writes this buffer (the driver reads it).
  constexpr bool is_write_only() const { return (flags & F_WRITE) != 0; }
  constexpr bool is_indirect() const { return (flags & F_INDIRECT) != 0; }
};
static_assert(sizeof(Desc) == 16);

/// Header of the available ring (driver → device); `uint16_t ring[size]` follows at offset 4,
/// then `uint16_t used_event` when EVENT_IDX is negotiated.
struct AvailHeader {
  uint16_t flags;  // AVAIL_F_NO_INTERRUPT
  uint16_t idx;    // where the driver puts the next entry, free-running
};
inline constexpr size_t AVAIL_RING_OFFSET = 4;

/// One entry of the used ring (device → driver).
struct UsedElem {
  uint32_t id;   // head index of the descriptor chain
  uint32_t len;  // bytes the device wrote into the chain
};

/// Header of the used ring; `UsedElem ring[size]` follows at offset 4, then `uint16_t avail_event`.
struct UsedHeader {
  uint16_t flags;  // USED_F_NO_NOTIFY
  uint16_t idx;
};
inline constexpr size_t USED_RING_OFFSET = 4;

inline constexpr size_t DESC_ALIGN = 16;
inline constexpr size_t AVAIL_ALIGN = 2;
inline constexpr size_t USED_ALIGN = 4;
inline constexpr uint16_t MAX_QUEUE_SIZE = 32768;

constexpr size_t desc_table_bytes(uint16_t queue_size) { return sizeof(Desc) * queue_size; }
/// Available ring size including the trailing used_event field.
constexpr size_t avail_ring_bytes(uint16_t queue_size) {
  return AVAIL_RING_OFFSET + 2u * queue_size + 2u;
}
/// Used ring size including the trailing avail_event field.
constexpr size_t used_ring_bytes(uint16_t queue_size) {
  return USED_RING_OFFSET + sizeof(UsedElem) * queue_size + 2u;
}

/// Event-index suppression test (spec 2.7.10): notify when new_idx passed event_idx since old.
constexpr bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

inline constexpr uint16_t DESC_F_NEXT = 1;
inline constexpr uint16_t DESC_F_WRITE = 2;  // device writes (driver reads) this buffer
inline constexpr uint16_t DESC_F_INDIRECT = 4;
static_assert(Desc::F_NEXT == DESC_F_NEXT && Desc::F_WRITE == DESC_F_WRITE &&
              Desc::F_INDIRECT == DESC_F_INDIRECT);
inline constexpr uint16_t USED_F_NO_NOTIFY = 1;
inline constexpr uint16_t AVAIL_F_NO_INTERRUPT = 1;

// Device status (spec 2.1).
inline constexpr uint8_t STATUS_ACKNOWLEDGE = 1;
inline constexpr uint8_t STATUS_DRIVER = 2;
inline constexpr uint8_t STATUS_DRIVER_OK = 4;
inline constexpr uint8_t STATUS_FEATURES_OK = 8;
inline constexpr uint8_t STATUS_NEEDS_RESET = 0x40;
inline constexpr uint8_t STATUS_FAILED = 0x80;

// Feature bit numbers (spec 6).
inline constexpr uint32_t F_NOTIFY_ON_EMPTY = 24;
inline constexpr uint32_t F_ANY_LAYOUT = 27;
inline constexpr uint32_t F_RING_INDIRECT_DESC = 28;
inline constexpr uint32_t F_RING_EVENT_IDX = 29;
inline constexpr uint32_t F_VERSION_1 = 32;
inline constexpr uint32_t F_ACCESS_PLATFORM = 33;
inline constexpr uint32_t F_RING_PACKED = 34;
inline constexpr uint32_t F_IN_ORDER = 35;
inline constexpr uint32_t F_ORDER_PLATFORM = 36;
inline constexpr uint32_t F_SR_IOV = 37;
inline constexpr uint32_t F_NOTIFICATION_DATA = 38;
inline constexpr uint32_t F_NOTIF_CONFIG_DATA = 39;
inline constexpr uint32_t F_RING_RESET = 40;
inline constexpr uint32_t F_ADMIN_VQ = 41;
inline constexpr uint32_t TRANSPORT_F_START = 28;
inline constexpr uint32_t TRANSPORT_F_END = 42;

constexpr uint64_t feature_bit(uint32_t bit) { return 1ull << bit; }

// Device IDs (spec 5).
inline constexpr uint32_t ID_NET = 1;
inline constexpr uint32_t ID_BLOCK = 2;
inline constexpr uint32_t ID_CONSOLE = 3;
inline constexpr uint32_t ID_RNG = 4;
inline constexpr uint32_t ID_VSOCK = 19;

}  // namespace pepita::abi::virtio
