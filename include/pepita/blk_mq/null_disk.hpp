#pragma once
// NullDisk: a BlockDevice that stores nothing (the kernel's null_blk). Reads complete without
// touching the buffer (whatever it held is returned, as null_blk does), writes are dropped;
// every request is still checked against the geometry, so it measures the layers above it.
//
//   NullDisk disk(info);  // or zram::make_target(parse_target_spec("null:1G"))
//   blk_mq::TagSet tags(disk.info().tag_set);
//   PEPITA_TRY(execute(disk, tags, 0, Op::Write, 0, buffer));

#include <cstdint>

#include "pepita/blk_mq/block_device.hpp"

namespace pepita::blk_mq {

/// Requests complete inline on the submitting thread.
class NullDisk final : public BlockDevice {
 public:
  explicit NullDisk(const DeviceInfo& info) : info_(info) {}
  const DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t queue, const Request& req) noexcept override;

 private:
  DeviceInfo info_;
};

}  // namespace pepita::blk_mq
