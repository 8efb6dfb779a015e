// zram::make_target (block_target.hpp): one constructor for every kind of block target.
#include "pepita/zram/block_target.hpp"

#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/null_disk.hpp"
#include "pepita/zram/zram_disk.hpp"

namespace pepita::zram {

using blk_mq::BlockDevice;
using blk_mq::TargetKind;

Result<std::unique_ptr<BlockDevice>> make_target(const blk_mq::TargetSpec& spec) {
  PEPITA_TRY_VOID(blk_mq::validate_target(spec));
  switch (spec.kind) {
    case TargetKind::Null: {
      namespace features = blk_mq::features;
      blk_mq::DeviceInfo info;
      info.capacity_sectors = spec.size_bytes >> blk_mq::kSectorShift;
      info.logical_block_size = 512;
      info.physical_block_size = 4096;
      info.max_sectors = 2048;  // 1 MiB
      info.discard_granularity = 4096;
      info.features = features::kDiscard | features::kWriteZeroes;
      info.tag_set = {spec.queues, spec.queue_depth};
      return std::make_unique<blk_mq::NullDisk>(info);
    }
    case TargetKind::Mem: {
      auto disk = PEPITA_TRY(blk_mq::MemDisk::create({.capacity_bytes = spec.size_bytes,
                                                      .logical_block_size = 512,
                                                      .queues = spec.queues,
                                                      .queue_depth = spec.queue_depth}));
      return std::unique_ptr<BlockDevice>(std::move(disk));
    }
    case TargetKind::File: {
      auto disk =
          PEPITA_TRY(blk_mq::FileDisk::create({.path = spec.path,
                                               .capacity_bytes = spec.size_bytes,
                                               .direct = spec.direct,
                                               .logical_block_size = spec.direct ? 4096u : 512u,
                                               .queues = spec.queues,
                                               .queue_depth = spec.queue_depth}));
      return std::unique_ptr<BlockDevice>(std::move(disk));
    }
    case TargetKind::Zram: {
      const Algorithm algorithm = PEPITA_TRY(parse_algorithm(spec.compression));
      auto disk = PEPITA_TRY(
          ZramDisk::create({.store = {.disksize = spec.size_bytes, .algorithm = algorithm},
                            .logical_block_size = kPageSize,
                            .queues = spec.queues,
                            .queue_depth = spec.queue_depth}));
      return std::unique_ptr<BlockDevice>(std::move(disk));
    }
  }
  return fail(ErrorCode::InvalidArgument, "unknown block target");
}

}  // namespace pepita::zram
