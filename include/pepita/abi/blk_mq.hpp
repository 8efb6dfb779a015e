#pragma once
// The blk-mq request model shared by every pepita block device, the ublk server and virtio-blk:
// request operations, request flags and the tag-set shape (hardware queues x depth). Operation
// codes and flag bits follow the kernel's ublk UAPI (linux/ublk_cmd.h, `ublksrv_io_desc.op_flags`),
// which is how blk-mq hands a request to user space. Freestanding: no hosted headers.

#include <stddef.h>
#include <stdint.h>

namespace pepita::abi::blk_mq {

/// A request's operation. Values equal UBLK_IO_OP_* so an op_flags word from the kernel decodes
/// without a table.
enum class Op : uint8_t {
  Read = 0,
  Write = 1,
  Flush = 2,
  Discard = 3,
  WriteSame = 4,
  WriteZeroes = 5,
  ZoneOpen = 10,
  ZoneClose = 11,
  ZoneFinish = 12,
  ZoneAppend = 13,
  ZoneResetAll = 14,
  ZoneReset = 15,
  ReportZones = 18,
};

/// True for the codes above; anything else from a peer is a protocol error.
constexpr bool is_valid_op(uint8_t raw) {
  return raw <= 5 || (raw >= 10 && raw <= 15) || raw == 18;
}
/// Ops that move data from the caller to the device.
constexpr bool op_writes_data(Op op) {
  return op == Op::Write || op == Op::WriteSame || op == Op::ZoneAppend;
}
/// Ops that move data from the device to the caller.
constexpr bool op_reads_data(Op op) { return op == Op::Read || op == Op::ReportZones; }
/// Zoned-device management ops (no data unless ReportZones).
constexpr bool is_zone_op(Op op) { return static_cast<uint8_t>(op) >= 10; }

/// Request flags. Bits 8..16 are the kernel's UBLK_IO_F_* bits; Sync and NoWait are the block
/// layer's REQ_SYNC / REQ_NOWAIT, which ublk does not export, so they sit above bit 16.
namespace flags {
inline constexpr uint32_t kFailfastDev = 1u << 8;
inline constexpr uint32_t kFailfastTransport = 1u << 9;
inline constexpr uint32_t kFailfastDriver = 1u << 10;
inline constexpr uint32_t kMeta = 1u << 11;
/// Forced unit access: the data is durable when the request completes.
inline constexpr uint32_t kFua = 1u << 13;
/// WriteZeroes must leave the range allocated (no deallocation / unmap).
inline constexpr uint32_t kNoUnmap = 1u << 15;
inline constexpr uint32_t kSwap = 1u << 16;
/// The submitter waits for this request (a hint to prefer latency over batching).
inline constexpr uint32_t kSync = 1u << 20;
/// Fail with -EAGAIN instead of blocking for a tag or a resource.
inline constexpr uint32_t kNoWait = 1u << 21;
inline constexpr uint32_t kAll = kFailfastDev | kFailfastTransport | kFailfastDriver | kMeta |
                                 kFua | kNoUnmap | kSwap | kSync | kNoWait;
}  // namespace flags

/// The reference crate's RequestFlags: a typed set of the flag bits above, built by chaining
/// (RequestFlags::NONE.with_fua().with_sync()) and stored in a request as bits().
class RequestFlags {
 public:
  static const RequestFlags NONE;
  static const RequestFlags FUA;
  static const RequestFlags META;
  static const RequestFlags SYNC;
  static const RequestFlags NOWAIT;

  constexpr RequestFlags() = default;
  constexpr explicit RequestFlags(uint32_t bits) : bits_(bits & flags::kAll) {}
  constexpr RequestFlags with_fua() const { return RequestFlags(bits_ | flags::kFua); }
  constexpr RequestFlags with_sync() const { return RequestFlags(bits_ | flags::kSync); }
  constexpr RequestFlags with_nowait() const { return RequestFlags(bits_ | flags::kNoWait); }
  constexpr bool is_fua() const { return (bits_ & flags::kFua) != 0; }
  constexpr bool is_sync() const { return (bits_ & flags::kSync) != 0; }
  constexpr bool is_nowait() const { return (bits_ & flags::kNoWait) != 0; }
  constexpr uint32_t bits() const { return bits_; }
  constexpr bool operator==(const RequestFlags&) const = default;

 private:
  uint32_t bits_ = 0;
};
inline constexpr RequestFlags RequestFlags::NONE{};
inline constexpr RequestFlags RequestFlags::FUA{flags::kFua};
inline constexpr RequestFlags RequestFlags::META{flags::kMeta};
inline constexpr RequestFlags RequestFlags::SYNC{flags::kSync};
inline constexpr RequestFlags RequestFlags::NOWAIT{flags::kNoWait};

/// The reference crate's BioVec: one contiguous data segment of a request, `len` bytes at
/// `addr + offset` in the submitter's address space.
struct BioVec {
  uint64_t addr = 0;
  uint32_t len = 0;
  uint32_t offset = 0;

  static constexpr BioVec with_offset(uint64_t addr, uint32_t len, uint32_t offset) {
    return BioVec{addr, len, offset};
  }
  constexpr uint64_t effective_addr() const { return addr + offset; }
  constexpr bool is_empty() const { return len == 0; }
};

/// ublk packs the op in the low 8 bits of op_flags and the flags above it.
inline constexpr uint32_t kOpMask = 0xffu;
constexpr uint32_t encode_op_flags(Op op, uint32_t request_flags) {
  return static_cast<uint32_t>(op) | (request_flags & ~kOpMask);
}
constexpr Op decode_op(uint32_t op_flags) { return static_cast<Op>(op_flags & kOpMask); }
constexpr uint32_t decode_flags(uint32_t op_flags) { return op_flags & ~kOpMask; }

inline constexpr uint32_t kSectorShift = 9;
inline constexpr uint32_t kSectorSize = 1u << kSectorShift;

/// Shape of a device's request queues, as blk_mq_tag_set: nr_hw_queues x queue_depth tags.
inline constexpr uint32_t kMinQueues = 1;
inline constexpr uint32_t kMaxQueues = 128;
inline constexpr uint32_t kMinDepth = 1;
inline constexpr uint32_t kMaxDepth = 32768;

enum class TagSetError : uint8_t;

struct TagSetConfig {
  uint32_t nr_hw_queues;
  uint32_t queue_depth;

  // The reference crate's TagSetConfig::{validate, total_tags}; new(q, d) is TagSetConfig{q, d}.
  // blk_mq::validate_tag_set() turns the result into an Error that names the field.
  constexpr TagSetError validate() const;
  constexpr uint32_t total_tags() const;
};

enum class TagSetError : uint8_t {
  Ok = 0,
  TooFewQueues,
  TooManyQueues,
  DepthTooSmall,
  DepthTooLarge,
};

/// Checks a tag-set shape against the limits above; Ok when usable.
constexpr TagSetError validate(const TagSetConfig& config) {
  if (config.nr_hw_queues < kMinQueues) return TagSetError::TooFewQueues;
  if (config.nr_hw_queues > kMaxQueues) return TagSetError::TooManyQueues;
  if (config.queue_depth < kMinDepth) return TagSetError::DepthTooSmall;
  if (config.queue_depth > kMaxDepth) return TagSetError::DepthTooLarge;
  return TagSetError::Ok;
}

/// Total tags in the set; never overflows for a validated config (128 x 32768 = 2^22).
constexpr uint32_t total_tags(const TagSetConfig& config) {
  return config.nr_hw_queues * config.queue_depth;
}

constexpr TagSetError TagSetConfig::validate() const { return abi::blk_mq::validate(*this); }
constexpr uint32_t TagSetConfig::total_tags() const { return abi::blk_mq::total_tags(*this); }

}  // namespace pepita::abi::blk_mq
