#pragma once
// MemDisk: a RAM-backed BlockDevice (the kernel's brd): one anonymous mapping, pages materialise
// on first write, discard returns whole pages to the kernel at once (MADV_DONTNEED).
//
//   auto disk = PEPITA_TRY(MemDisk::create({.capacity_bytes = 64 << 20, .queues = 4}));
//   TagSet tags(disk->info().tag_set);
//   PEPITA_TRY(execute(*disk, tags, 0, Op::Write, 0, buffer));

#include <memory>
#include <shared_mutex>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/core/mapping.hpp"

namespace pepita::blk_mq {

struct MemDiskConfig {
  uint64_t capacity_bytes = 0;  // > 0, a multiple of logical_block_size
  uint32_t logical_block_size = 512;
  uint32_t queues = 1;
  uint32_t queue_depth = 128;
};

/// Requests complete inline on the submitting thread. Concurrent requests to the same page from
/// different queues are serialised per page stripe, so a reader sees a page's old or new content
/// for each 4 KiB page, never a torn mix inside one page.
class MemDisk final : public BlockDevice {
 public:
  /// InvalidArgument for a zero/misaligned capacity, bad block size or queue shape;
  /// ResourceExhausted when the mapping cannot be made.
  static Result<std::unique_ptr<MemDisk>> create(const MemDiskConfig& config);

  const DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t queue, const Request& req) noexcept override;

 private:
  struct Token {};

 public:
  MemDisk(Token, DeviceInfo info, Mapping memory) : info_(info), memory_(std::move(memory)) {}

 private:
  std::shared_mutex& stripe(uint64_t page) noexcept { return stripes_[page % kStripes]; }
  int do_discard(uint64_t offset, uint64_t length, bool zero_only) noexcept;

  static constexpr size_t kStripes = 256;
  DeviceInfo info_;
  Mapping memory_;
  std::unique_ptr<std::shared_mutex[]> stripes_ = std::make_unique<std::shared_mutex[]>(kStripes);
};

/// Checks logical_block_size (power of two in 512..4096) and capacity (non-zero multiple of it).
Result<void> validate_geometry(uint64_t capacity_bytes, uint32_t logical_block_size);

}  // namespace pepita::blk_mq
