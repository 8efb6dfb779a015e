// Request validation and the synchronous helpers on top of the asynchronous BlockDevice interface.
#include "pepita/blk_mq/block_device.hpp"

#include <cerrno>

#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/format.hpp"

namespace pepita::blk_mq {

std::string_view op_name(Op op) noexcept {
  switch (op) {
    case Op::Read: return "read";
    case Op::Write: return "write";
    case Op::Flush: return "flush";
    case Op::Discard: return "discard";
    case Op::WriteSame: return "write-same";
    case Op::WriteZeroes: return "write-zeroes";
    case Op::ZoneOpen: return "zone-open";
    case Op::ZoneClose: return "zone-close";
    case Op::ZoneFinish: return "zone-finish";
    case Op::ZoneAppend: return "zone-append";
    case Op::ZoneResetAll: return "zone-reset-all";
    case Op::ZoneReset: return "zone-reset";
    case Op::ReportZones: return "report-zones";
  }
  return "unknown-op";
}

RequestCheck check_request(const Request& req, const DeviceInfo& info) noexcept {
  const auto raw = static_cast<uint8_t>(req.op);
  if (!abi::blk_mq::is_valid_op(raw)) return {-EOPNOTSUPP, "unknown request op"};
  if ((req.flags & ~req_flags::kAll) != 0) return {-EINVAL, "unknown request flag bits"};
  if (req.tag >= info.tag_set.queue_depth) return {-EINVAL, "tag outside the queue depth"};
  if (req.op == Op::Flush) {
    if (req.nr_sectors != 0) return {-EINVAL, "flush carries no data range"};
    return {};
  }
  switch (req.op) {
    case Op::Read:
    case Op::Write: break;
    case Op::Discard:
      if ((info.features & features::kDiscard) == 0) return {-EOPNOTSUPP, "device has no discard"};
      break;
    case Op::WriteZeroes:
      if ((info.features & features::kWriteZeroes) == 0)
        return {-EOPNOTSUPP, "device has no write-zeroes"};
      break;
    default: return {-EOPNOTSUPP, "op not supported by this device (not zoned, no write-same)"};
  }
  if (req.op != Op::Read && (info.features & features::kReadOnly) != 0)
    return {-EROFS, "device is read-only"};
  if (req.nr_sectors == 0) return {-EINVAL, "zero-length request"};
  if (req.nr_sectors > info.max_sectors) return {-EINVAL, "request longer than max_sectors"};
  const uint64_t lbs_sectors = info.logical_block_size >> kSectorShift;
  if (lbs_sectors > 1 && ((req.sector % lbs_sectors) != 0 || (req.nr_sectors % lbs_sectors) != 0))
    return {-EINVAL, "request not aligned to the logical block size"};
  uint64_t end = 0;
  if (__builtin_add_overflow(req.sector, uint64_t{req.nr_sectors}, &end) ||
      end > info.capacity_sectors)
    return {-EIO, "request beyond the end of the device"};
  if ((req.op == Op::Read || req.op == Op::Write) && req.data == nullptr)
    return {-EFAULT, "data request without a buffer"};
  return {};
}

void SyncCompletion::complete(int res) noexcept {
  res_ = res;
  // The waiter reads res_ after observing done_ (acquire in wait()).
  done_.store(true, std::memory_order_release);
  done_.notify_one();
}

int SyncCompletion::wait() noexcept {
  done_.wait(false, std::memory_order_acquire);
  return res_;
}

Result<uint32_t> execute(BlockDevice& device, TagSet& tags, uint32_t queue, Op op, uint64_t sector,
                         std::span<std::byte> data, uint32_t nr_sectors, uint32_t flags) {
  const DeviceInfo& info = device.info();
  if (queue >= info.tag_set.nr_hw_queues || queue >= tags.config().nr_hw_queues)
    return fail(ErrorCode::InvalidQueueId,
                fmt("queue {} does not exist: the device has {} hardware queues", queue,
                    info.tag_set.nr_hw_queues));
  if (op == Op::Read || op == Op::Write) {
    if (data.size() % kSectorSize != 0 || data.size() / kSectorSize > UINT32_MAX)
      return fail(ErrorCode::InvalidArgument,
                  fmt("{} buffer of {} bytes is not a whole number of 512-byte sectors",
                      op_name(op), data.size()));
    nr_sectors = static_cast<uint32_t>(data.size() / kSectorSize);
  }
  TagAllocator& allocator = tags.queue(queue);
  const uint32_t tag = PEPITA_TRY(allocator.get((flags & req_flags::kNoWait) != 0));
  SyncCompletion done;
  Request req{.op = op,
              .flags = flags,
              .sector = sector,
              .nr_sectors = nr_sectors,
              .tag = tag,
              .data = data.empty() ? nullptr : data.data(),
              .completion = &done};
  device.submit(queue, req);
  const int res = done.wait();
  PEPITA_TRY_VOID(allocator.put(tag));
  if (res < 0) {
    const RequestCheck why = check_request(req, info);
    Error error = Error::from_errno(
        res, fmt("{} of {} sectors at sector {} (device has {} sectors, block size {})",
                 op_name(op), nr_sectors, sector, info.capacity_sectors, info.logical_block_size));
    if (!why && why.neg_errno == res) error.with_context(why.reason);
    return std::unexpected(std::move(error));
  }
  return static_cast<uint32_t>(res);
}

}  // namespace pepita::blk_mq
