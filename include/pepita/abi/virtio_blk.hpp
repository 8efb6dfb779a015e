#pragma once
// virtio-blk ABI (virtio 1.2 spec section 5.2; Linux include/uapi/linux/virtio_blk.h): request
// header, discard/write-zeroes segment, config space, request types, status codes, feature bits.

#include <stddef.h>
#include <stdint.h>

namespace pepita::abi::virtio_blk {

/// First (device-readable) descriptor of every request.
enum class RequestType : uint32_t;

struct RequestHeader {
  uint32_t type;  // T_*
  uint32_t ioprio;
  uint64_t sector;  // in 512-byte units, regardless of blk_size

  // The reference crate's BlockRequestHeader (defined below the T_* table).
  static constexpr size_t SIZE = 16;
  static constexpr RequestHeader read(uint64_t sector);
  static constexpr RequestHeader write(uint64_t sector);
  static constexpr RequestHeader flush();
  /// The request type as the enum; a value outside it is what the driver sent (the device
  /// answers S_UNSUPP), not mapped to a default.
  constexpr RequestType get_type() const;
};
static_assert(sizeof(RequestHeader) == 16);

/// Payload element of T_DISCARD / T_WRITE_ZEROES / T_SECURE_ERASE.
struct DiscardWriteZeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;  // WRITE_ZEROES_FLAG_UNMAP
};
static_assert(sizeof(DiscardWriteZeroes) == 16);

struct Geometry {
  uint16_t cylinders;
  uint8_t heads;
  uint8_t sectors;
};

struct ZonedCharacteristics {
  uint32_t zone_sectors;
  uint32_t max_open_zones;
  uint32_t max_active_zones;
  uint32_t max_append_sectors;
  uint32_t write_granularity;
  uint8_t model;
  uint8_t unused2[3];
};

/// Device configuration space (packed, read by the driver through the transport).
struct __attribute__((packed)) Config {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  Geometry geometry;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t wce;
  uint8_t unused;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
  ZonedCharacteristics zoned;
};

inline constexpr uint32_t ID_BYTES = 20;

inline constexpr uint32_t T_IN = 0;
inline constexpr uint32_t T_OUT = 1;
inline constexpr uint32_t T_FLUSH = 4;
inline constexpr uint32_t T_GET_ID = 8;
inline constexpr uint32_t T_DISCARD = 11;
inline constexpr uint32_t T_WRITE_ZEROES = 13;
inline constexpr uint32_t T_SECURE_ERASE = 14;
inline constexpr uint32_t T_ZONE_APPEND = 15;
inline constexpr uint32_t T_ZONE_REPORT = 16;
inline constexpr uint32_t T_ZONE_OPEN = 18;
inline constexpr uint32_t T_ZONE_CLOSE = 20;
inline constexpr uint32_t T_ZONE_FINISH = 22;
inline constexpr uint32_t T_ZONE_RESET = 24;
inline constexpr uint32_t T_ZONE_RESET_ALL = 26;

/// The crate's BlockRequestType, with the spec's values (VIRTIO_BLK_T_*).
enum class RequestType : uint32_t {
  In = T_IN,
  Out = T_OUT,
  Flush = T_FLUSH,
  GetId = T_GET_ID,
  Discard = T_DISCARD,
  WriteZeroes = T_WRITE_ZEROES,
  SecureErase = T_SECURE_ERASE,
};

constexpr RequestHeader RequestHeader::read(uint64_t sector) {
  return RequestHeader{T_IN, 0, sector};
}
constexpr RequestHeader RequestHeader::write(uint64_t sector) {
  return RequestHeader{T_OUT, 0, sector};
}
constexpr RequestHeader RequestHeader::flush() { return RequestHeader{T_FLUSH, 0, 0}; }
constexpr RequestType RequestHeader::get_type() const { return static_cast<RequestType>(type); }

inline constexpr uint8_t S_OK = 0;
inline constexpr uint8_t S_IOERR = 1;
inline constexpr uint8_t S_UNSUPP = 2;
inline constexpr uint8_t S_ZONE_INVALID_CMD = 3;
inline constexpr uint8_t S_ZONE_UNALIGNED_WP = 4;
inline constexpr uint8_t S_ZONE_OPEN_RESOURCE = 5;
inline constexpr uint8_t S_ZONE_ACTIVE_RESOURCE = 6;

inline constexpr uint32_t WRITE_ZEROES_FLAG_UNMAP = 1;

// Feature bit numbers.
inline constexpr uint32_t F_SIZE_MAX = 1;
inline constexpr uint32_t F_SEG_MAX = 2;
inline constexpr uint32_t F_GEOMETRY = 4;
inline constexpr uint32_t F_RO = 5;
inline constexpr uint32_t F_BLK_SIZE = 6;
inline constexpr uint32_t F_FLUSH = 9;
inline constexpr uint32_t F_TOPOLOGY = 10;
inline constexpr uint32_t F_CONFIG_WCE = 11;
inline constexpr uint32_t F_MQ = 12;
inline constexpr uint32_t F_DISCARD = 13;
inline constexpr uint32_t F_WRITE_ZEROES = 14;
inline constexpr uint32_t F_SECURE_ERASE = 16;
inline constexpr uint32_t F_ZONED = 17;

}  // namespace pepita::abi::virtio_blk
