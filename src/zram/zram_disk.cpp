// ZramDisk: block requests split into page operations on a ZramStore.
#include "pepita/zram/zram_disk.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pepita/blk_mq/mem_disk.hpp"  // validate_geometry
#include "pepita/blk_mq/tag_allocator.hpp"

namespace pepita::zram {

using blk_mq::Op;

Result<std::unique_ptr<ZramDisk>> ZramDisk::create(const ZramDiskConfig& config) {
  PEPITA_TRY_VOID(blk_mq::validate_geometry(config.store.disksize, config.logical_block_size));
  PEPITA_TRY_VOID(blk_mq::validate_tag_set({config.queues, config.queue_depth}));
  auto store = PEPITA_TRY(ZramStore::create(config.store));
  blk_mq::DeviceInfo info{.capacity_sectors = config.store.disksize >> blk_mq::kSectorShift,
                          .logical_block_size = config.logical_block_size,
                          .physical_block_size = kPageSize,
                          .max_sectors = 2048,
                          .discard_granularity = kPageSize,
                          .features = blk_mq::features::kDiscard | blk_mq::features::kWriteZeroes,
                          .tag_set = {config.queues, config.queue_depth}};
  return std::make_unique<ZramDisk>(Token{}, info, std::move(store));
}

int ZramDisk::run(const blk_mq::Request& req) noexcept {
  static constexpr std::byte kZeros[kPageSize] = {};
  const uint64_t offset = req.byte_offset();
  const uint64_t length = req.byte_length();
  if (req.op == Op::Flush) return 0;  // RAM: nothing volatile to flush
  alignas(64) std::byte page[kPageSize];
  for (uint64_t done = 0; done < length;) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / kPageSize;
    const auto in_page = static_cast<uint32_t>(pos % kPageSize);
    const auto chunk =
        static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, length - done));
    const bool whole = chunk == kPageSize;
    int rc = 0;
    switch (req.op) {
      case Op::Read:
        rc = store_->read_page(index, whole ? req.data + done : page);
        if (rc == 0 && !whole) std::memcpy(req.data + done, page + in_page, chunk);
        break;
      case Op::Write:
        rc = whole ? store_->write_page(index, req.data + done)
                   : store_->write_partial(index, in_page, req.data + done, chunk);
        break;
      case Op::Discard:
      case Op::WriteZeroes:
        rc = whole ? store_->discard_page(index)
                   : store_->write_partial(index, in_page, kZeros, chunk);
        break;
      default: rc = -EOPNOTSUPP; break;
    }
    if (rc < 0) return rc;
    done += chunk;
  }
  return req.op == Op::Read || req.op == Op::Write ? static_cast<int>(length) : 0;
}

void ZramDisk::submit(uint32_t queue, const blk_mq::Request& req) noexcept {
  blk_mq::RequestCheck check = blk_mq::check_request(req, info_);
  if (check && queue >= info_.tag_set.nr_hw_queues) check = {-EINVAL, "no such queue"};
  req.completion->complete(check ? run(req) : check.neg_errno);
}

}  // namespace pepita::zram
