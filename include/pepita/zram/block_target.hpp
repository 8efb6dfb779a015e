#pragma once
// Builds the block device a blk_mq::TargetSpec describes: NullDisk, MemDisk, FileDisk or ZramDisk.
// It lives in zram, the lowest module that sees all four (zram links blk_mq), so ublk, virtio and
// the vmm (through virtio) share one constructor; the spec and its parser are blk_mq's.
//
//   auto spec = PEPITA_TRY(blk_mq::parse_target_spec("zram:1G,zstd"));
//   std::unique_ptr<blk_mq::BlockDevice> disk = PEPITA_TRY(zram::make_target(spec));

#include <memory>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/error.hpp"

namespace pepita::zram {

/// Creates the device (blk_mq::validate_target first, so nothing is created for a bad spec).
/// Logical blocks: 512 for null, mem and file (4096 for a direct file), 4096 for zram (the
/// kernel's). InvalidArgument for a spec validate_target refuses; for a file, the errors of
/// blk_mq::FileDisk::create (NotFound when it is missing and the spec gives no size). A new file
/// is created and left in place; removing it on a later failure is the caller's call.
Result<std::unique_ptr<blk_mq::BlockDevice>> make_target(const blk_mq::TargetSpec& spec);

}  // namespace pepita::zram
