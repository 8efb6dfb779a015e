#pragma once
// ZramDisk: a ZramStore served as a blk_mq BlockDevice (the kernel's /dev/zramN). Lives in the zram
// module because it needs the store; the block interface itself is blk_mq's.
//
//   auto disk = PEPITA_TRY(ZramDisk::create({.store = {.disksize = 1 << 30}, .queues = 4}));
//   blk_mq::TagSet tags(disk->info().tag_set);
//   PEPITA_TRY(blk_mq::execute(*disk, tags, q, blk_mq::Op::Write, sector, buffer));

#include <memory>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {

struct ZramDiskConfig {
  ZramConfig store;
  uint32_t logical_block_size = 4096;  // zram's; 512 allows sub-page (read-modify-write) I/O
  uint32_t queues = 1;
  uint32_t queue_depth = 128;
};

/// Requests complete inline on the submitting thread; the store's per-page locks let queues run
/// in parallel. Discard and WriteZeroes free whole pages at once (zeroes read back) and zero the
/// partial pages at the edges. Over mem_limit a write completes with -ENOSPC.
class ZramDisk final : public blk_mq::BlockDevice {
 public:
  static Result<std::unique_ptr<ZramDisk>> create(const ZramDiskConfig& config);

  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t queue, const blk_mq::Request& req) noexcept override;

  ZramStore& store() noexcept { return *store_; }

 private:
  struct Token {};

 public:
  ZramDisk(Token, blk_mq::DeviceInfo info, std::unique_ptr<ZramStore> store)
      : info_(info), store_(std::move(store)) {}

 private:
  int run(const blk_mq::Request& req) noexcept;

  blk_mq::DeviceInfo info_;
  std::unique_ptr<ZramStore> store_;
};

}  // namespace pepita::zram
