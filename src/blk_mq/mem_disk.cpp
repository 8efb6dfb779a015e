// MemDisk: RAM block device over one anonymous mapping, locked per 4 KiB page stripe.
#include "pepita/blk_mq/mem_disk.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "pepita/abi/memory.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"

namespace pepita::blk_mq {

using abi::PAGE_SIZE;

Result<void> validate_geometry(uint64_t capacity_bytes, uint32_t logical_block_size) {
  if (logical_block_size < 512 || logical_block_size > 4096 ||
      !abi::is_power_of_two(logical_block_size))
    return fail(
        ErrorCode::InvalidArgument,
        fmt("logical block size {} is invalid; use 512, 1024, 2048 or 4096", logical_block_size));
  if (capacity_bytes == 0 || capacity_bytes % logical_block_size != 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("capacity {} bytes must be a non-zero multiple of the block size {}",
                    capacity_bytes, logical_block_size));
  return {};
}

Result<std::unique_ptr<MemDisk>> MemDisk::create(const MemDiskConfig& config) {
  PEPITA_TRY_VOID(validate_geometry(config.capacity_bytes, config.logical_block_size));
  PEPITA_TRY_VOID(validate_tag_set({config.queues, config.queue_depth}));
  // MAP_NORESERVE: a sparse disk should not need its whole size committed up front.
  auto memory = PEPITA_TRY(
      Mapping::map(abi::align_up(config.capacity_bytes, PAGE_SIZE), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "MemDisk backing memory"));
  DeviceInfo info{.capacity_sectors = config.capacity_bytes >> kSectorShift,
                  .logical_block_size = config.logical_block_size,
                  .physical_block_size = static_cast<uint32_t>(PAGE_SIZE),
                  .max_sectors = 2048,
                  .discard_granularity = static_cast<uint32_t>(PAGE_SIZE),
                  .features = features::kDiscard | features::kWriteZeroes,
                  .tag_set = {config.queues, config.queue_depth}};
  return std::make_unique<MemDisk>(Token{}, info, std::move(memory));
}

int MemDisk::do_discard(uint64_t offset, uint64_t length, bool zero_only) noexcept {
  const uint64_t end = offset + length;
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t page = pos / PAGE_SIZE;
    const uint64_t chunk = std::min(end, (page + 1) * PAGE_SIZE) - pos;
    std::unique_lock lock(stripe(page));
    if (!zero_only && chunk == PAGE_SIZE) {
      // Whole page: hand the memory back; the next read of it sees zeros.
      if (int rc = sys::madvise(memory_.bytes() + pos, PAGE_SIZE, MADV_DONTNEED); rc < 0) return rc;
    } else {
      std::memset(memory_.bytes() + pos, 0, chunk);
    }
    pos += chunk;
  }
  return 0;
}

void MemDisk::submit(uint32_t queue, const Request& req) noexcept {
  RequestCheck check = check_request(req, info_);
  if (check && queue >= info_.tag_set.nr_hw_queues) check = {-EINVAL, "no such queue"};
  if (!check) {
    req.completion->complete(check.neg_errno);
    return;
  }
  const uint64_t offset = req.byte_offset();
  const uint64_t length = req.byte_length();
  int res = 0;
  switch (req.op) {
    case Op::Read:
    case Op::Write:
      for (uint64_t pos = offset; pos < offset + length;) {
        const uint64_t page = pos / PAGE_SIZE;
        const uint64_t chunk = std::min(offset + length, (page + 1) * PAGE_SIZE) - pos;
        std::byte* disk = memory_.bytes() + pos;
        std::byte* user = req.data + (pos - offset);
        if (req.op == Op::Read) {
          std::shared_lock lock(stripe(page));
          std::memcpy(user, disk, chunk);
        } else {
          std::unique_lock lock(stripe(page));
          std::memcpy(disk, user, chunk);
        }
        pos += chunk;
      }
      res = static_cast<int>(length);
      break;
    case Op::Discard: res = do_discard(offset, length, false); break;
    case Op::WriteZeroes:
      res = do_discard(offset, length, (req.flags & req_flags::kNoUnmap) != 0);
      break;
    default: res = 0; break;  // Flush: RAM has no volatile cache
  }
  req.completion->complete(res);
}

}  // namespace pepita::blk_mq
