#pragma once
// The one block-device interface pepita serves (ublk server, virtio-blk device) and implements
// (MemDisk, FileDisk, ZramDisk). It follows the kernel's blk-mq model: a device exposes a tag set
// of hardware queues, each request carries its queue's tag, and completion is asynchronous.
//
//   pepita::blk_mq::MemDisk disk = PEPITA_TRY(MemDisk::create({.capacity_bytes = 1 << 20}));
//   pepita::blk_mq::TagSet tags(disk.info().tag_set);
//   std::vector<std::byte> page(4096);
//   PEPITA_TRY(execute(disk, tags, /*queue=*/0, Op::Write, /*sector=*/8, page));
//   PEPITA_TRY(execute(disk, tags, 0, Op::Read, 8, page));

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "pepita/abi/blk_mq.hpp"
#include "pepita/error.hpp"

namespace pepita::blk_mq {

using abi::blk_mq::kSectorShift;
using abi::blk_mq::kSectorSize;
using abi::blk_mq::Op;
using abi::blk_mq::TagSetConfig;
namespace req_flags = abi::blk_mq::flags;

class TagSet;

/// Receives the result of one request, exactly once: res >= 0 is the number of bytes moved (0 for
/// flush/discard/write-zeroes), res < 0 is a negative errno. It may run on the submitting thread
/// before submit() returns or on a device thread later; it must not block.
class Completion {
 public:
  virtual void complete(int res) noexcept = 0;

 protected:
  ~Completion() = default;
};

/// One block request. `data` points to nr_sectors * 512 bytes: the destination of a Read, the
/// source of a Write (never modified), unused (may be null) for other ops. The submitter keeps the
/// request, its buffer and its completion alive until complete() has run.
struct Request {
  Op op = Op::Read;
  uint32_t flags = 0;   // abi::blk_mq::flags::k*
  uint64_t sector = 0;  // in 512-byte units, whatever the logical block size
  uint32_t nr_sectors = 0;
  uint32_t tag = 0;  // the submitting queue's tag; unique among that queue's in-flight requests
  std::byte* data = nullptr;
  Completion* completion = nullptr;

  uint64_t byte_offset() const noexcept { return sector << kSectorShift; }
  uint64_t byte_length() const noexcept { return uint64_t{nr_sectors} << kSectorShift; }

  // The reference crate's Request API. Its tag()/op()/flags()/sector()/nr_sectors() accessors are
  // the fields above; its queue_id is the `queue` argument of BlockDevice::submit.
  /// A Read of `nr_sectors` at `sector` into `data` (nr_sectors * 512 bytes) with tag `tag`.
  static Request read(uint32_t tag, uint64_t sector, uint32_t nr_sectors,
                      std::byte* data) noexcept {
    return Request{
        .op = Op::Read, .sector = sector, .nr_sectors = nr_sectors, .tag = tag, .data = data};
  }
  /// A Write of `nr_sectors` at `sector` from `data`.
  static Request write(uint32_t tag, uint64_t sector, uint32_t nr_sectors,
                       std::byte* data) noexcept {
    return Request{
        .op = Op::Write, .sector = sector, .nr_sectors = nr_sectors, .tag = tag, .data = data};
  }
  void set_sector_range(uint64_t first, uint32_t count) noexcept {
    sector = first;
    nr_sectors = count;
  }
  void set_flags(abi::blk_mq::RequestFlags request_flags) noexcept { flags = request_flags.bits(); }
  /// Points the request at `segment` and sizes it to the segment: nr_sectors = len / 512.
  /// InvalidArgument (naming bio_vec.len) when len is not a whole number of sectors.
  Result<void> set_bio_vec(const abi::blk_mq::BioVec& segment);
  uint64_t byte_len() const noexcept { return byte_length(); }
};

/// Optional capabilities a device advertises in DeviceInfo::features.
namespace features {
inline constexpr uint32_t kFlush = 1u << 0;  // has a volatile cache: Flush and FUA mean something
inline constexpr uint32_t kFua = 1u << 1;
inline constexpr uint32_t kDiscard = 1u << 2;
inline constexpr uint32_t kWriteZeroes = 1u << 3;
inline constexpr uint32_t kReadOnly = 1u << 4;
}  // namespace features

/// What a device is: its size, block sizes, queue shape and capabilities. Fixed for its lifetime.
struct DeviceInfo {
  uint64_t capacity_sectors = 0;
  uint32_t logical_block_size = 512;  // power of two, 512..4096; requests align to it
  uint32_t physical_block_size = 4096;
  uint32_t max_sectors = 2048;          // largest request, in sectors
  uint32_t discard_granularity = 4096;  // bytes actually freed by a discard
  uint32_t features = 0;
  TagSetConfig tag_set{1, 128};

  uint64_t capacity_bytes() const noexcept { return capacity_sectors << kSectorShift; }
};

/// A block device. Requests on one queue are submitted by one thread at a time; different queues
/// may be driven concurrently. Flush is always accepted (a no-op without kFlush). Unsupported ops
/// complete with -EOPNOTSUPP; malformed requests with the errno check_request() gives.
class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  virtual const DeviceInfo& info() const noexcept = 0;
  /// Starts `req` on hardware queue `queue` (< info().tag_set.nr_hw_queues). The device calls
  /// req.completion->complete(res) exactly once.
  virtual void submit(uint32_t queue, const Request& req) noexcept = 0;
};

/// Why check_request() refused a request: a negative errno for the completion and a sentence for
/// the user. neg_errno == 0 means the request is well formed for the device.
struct RequestCheck {
  int neg_errno = 0;
  std::string_view reason;
  explicit operator bool() const noexcept { return neg_errno == 0; }
};

/// The validation every device applies before touching data, with overflow-checked arithmetic:
/// unknown/unsupported op -> EOPNOTSUPP; unknown flags, a tag >= queue depth, zero length, a
/// length on Flush,
/// misalignment to the logical block size or more than max_sectors -> EINVAL; a range past the
/// capacity -> EIO (as the kernel's bio_check_eod); missing data buffer -> EFAULT; a write to a
/// read-only device -> EROFS.
RequestCheck check_request(const Request& req, const DeviceInfo& info) noexcept;

/// A Completion a thread can wait on: the plain way to run one request synchronously.
class SyncCompletion final : public Completion {
 public:
  void complete(int res) noexcept override;
  /// Blocks until complete() ran; returns its res. Call once per request.
  int wait() noexcept;
  void reset() noexcept { done_.store(false, std::memory_order_relaxed); }

 private:
  int res_ = 0;
  std::atomic<bool> done_{false};
};

/// Runs one request to completion on `queue` with a tag from `tags`, converting a negative result
/// into an Error that names the op and range. Returns bytes moved. `data` must hold the request:
/// for Read/Write its size defines nr_sectors (a multiple of 512); for Discard/WriteZeroes pass
/// `nr_sectors` and an empty span.
Result<uint32_t> execute(BlockDevice& device, TagSet& tags, uint32_t queue, Op op, uint64_t sector,
                         std::span<std::byte> data, uint32_t nr_sectors = 0, uint32_t flags = 0);

/// "read", "write", ... for messages.
std::string_view op_name(Op op) noexcept;

// ---- The reference crate's blk_mq names (docs/seed-map.md) ----------------------------------
using RequestOp = Op;
using abi::blk_mq::BioVec;
using abi::blk_mq::RequestFlags;
/// The crate's BlockOps trait is this interface: queue_rq is submit(), and a device completes
/// (or batches) requests itself, so there is no separate commit_rqs.
using BlockOps = BlockDevice;
inline constexpr uint16_t BLK_MQ_MAX_DEPTH = abi::blk_mq::kMaxDepth;
inline constexpr uint16_t BLK_MQ_MAX_HW_QUEUES = abi::blk_mq::kMaxQueues;

constexpr bool is_read(RequestOp op) noexcept { return abi::blk_mq::op_reads_data(op); }
constexpr bool is_write(RequestOp op) noexcept { return abi::blk_mq::op_writes_data(op); }
/// Read, Write and their zoned/report forms move data; Flush, Discard, WriteZeroes do not.
constexpr bool has_data(RequestOp op) noexcept { return is_read(op) || is_write(op); }
using abi::blk_mq::is_zone_op;
/// The op with wire code `raw` (UBLK_IO_OP_* values), or nullopt for a code no kernel sends.
constexpr std::optional<RequestOp> request_op_from_u8(uint8_t raw) noexcept {
  if (!abi::blk_mq::is_valid_op(raw)) return std::nullopt;
  return static_cast<RequestOp>(raw);
}

}  // namespace pepita::blk_mq
