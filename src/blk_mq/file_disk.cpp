// FileDisk: block requests mapped onto file syscalls, one submitting thread per hardware queue.
#include "pepita/blk_mq/file_disk.hpp"

#include <linux/falloc.h>

#include <algorithm>
#include <vector>

#include "detail/file_disk_uring.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/memory/dma_buffer.hpp"

namespace pepita::blk_mq {

Result<std::unique_ptr<FileDisk>> FileDisk::create(const FileDiskConfig& config) {
  if (config.path.empty()) return fail(ErrorCode::InvalidArgument, "FileDisk needs a file path");
  PEPITA_TRY_VOID(validate_tag_set({config.queues, config.queue_depth}));
  int flags = config.read_only ? O_RDONLY : O_RDWR;
  if (config.capacity_bytes != 0 && !config.read_only) flags |= O_CREAT;
  if (config.direct) flags |= O_DIRECT;
  const int fd = sys::open(config.path.c_str(), flags, 0600);
  if (fd == -EINVAL && config.direct)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: the filesystem does not support O_DIRECT; open it without "
                    "direct or put the file on ext4/xfs",
                    config.path),
                EINVAL);
  if (fd < 0) return fail_errno(fd, fmt("open {}", config.path));
  UniqueFd owned(fd);
  int64_t size = sys::file_size(fd);
  if (size < 0) return fail_errno(static_cast<int>(size), fmt("stat {}", config.path));
  if (config.capacity_bytes != 0 && static_cast<uint64_t>(size) < config.capacity_bytes) {
    if (config.read_only)
      return fail(ErrorCode::InvalidArgument,
                  fmt("{} holds {} bytes, less than the requested capacity {}", config.path, size,
                      config.capacity_bytes));
    if (int rc = sys::ftruncate(fd, config.capacity_bytes); rc < 0)
      return fail_errno(rc, fmt("extend {} to {} bytes", config.path, config.capacity_bytes));
    size = static_cast<int64_t>(config.capacity_bytes);
  }
  const uint64_t capacity =
      config.capacity_bytes != 0 ? config.capacity_bytes : static_cast<uint64_t>(size);
  if (auto ok = validate_geometry(capacity, config.logical_block_size); !ok)
    return std::unexpected(std::move(ok.error().with_context(config.path)));
  uint32_t feats = features::kFlush | features::kFua | features::kDiscard | features::kWriteZeroes;
  if (config.read_only) feats |= features::kReadOnly;
  DeviceInfo info{.capacity_sectors = capacity >> kSectorShift,
                  .logical_block_size = config.logical_block_size,
                  .physical_block_size = std::max(config.logical_block_size, 4096u),
                  .max_sectors = 2048,
                  .discard_granularity = 4096,
                  .features = feats,
                  .tag_set = {config.queues, config.queue_depth}};
  auto disk = std::make_unique<FileDisk>(Token{}, info, std::move(owned), config.direct);
  if (config.engine != FileEngine::Sync) {
    auto uring = Uring::create(disk->fd_.get(), info);
    if (uring) {
      disk->uring_ = std::move(*uring);
      disk->engine_ = FileEngine::IoUring;
    } else if (config.engine == FileEngine::IoUring) {
      return std::unexpected(std::move(uring.error().with_context("FileDisk io_uring engine")));
    }
  }
  return disk;
}

FileDisk::FileDisk(Token, DeviceInfo info, UniqueFd fd, bool direct)
    : info_(info), fd_(std::move(fd)), direct_(direct) {}

FileDisk::~FileDisk() = default;

int zero_file_range(int fd, uint64_t offset, uint64_t length, bool punch) noexcept {
  const int mode = punch ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;
  int rc = sys::fallocate(fd, mode, offset, length);
  if (rc != -EOPNOTSUPP) return rc;
  // The filesystem cannot do it in place (e.g. tmpfs lacks ZERO_RANGE): write zeros instead.
  // A DmaBuffer: page-aligned, so it also satisfies O_DIRECT, and ToDevice: the file only reads
  // it. Locked when RLIMIT_MEMLOCK allows; this fallback does not need the pages pinned.
  constexpr uint64_t kBlock = 64 * 1024;
  auto zeros = memory::DmaBuffer::allocate(kBlock, memory::DmaDirection::ToDevice,
                                           {.lock = memory::MemLock::BestEffort});
  if (!zeros) return -ENOMEM;
  for (uint64_t pos = offset; pos < offset + length;) {
    const uint64_t chunk = std::min<uint64_t>(kBlock, offset + length - pos);
    if (!zeros->check_device_access(/*device_writes=*/false, 0, chunk, "FileDisk zero fill"))
      return -EINVAL;
    const int64_t n = sys::pwrite_full(fd, zeros->data(), chunk, pos, 0);
    if (n < 0) return static_cast<int>(n);
    pos += chunk;
  }
  return 0;
}

int FileDisk::run_sync(const Request& req) noexcept {
  const uint64_t offset = req.byte_offset();
  const uint64_t length = req.byte_length();
  switch (req.op) {
    case Op::Read: {
      const int64_t n = sys::pread_full(fd_.get(), req.data, length, offset);
      if (n < 0) return static_cast<int>(n);
      // A block device file never ends early; a regular file may have been truncated under us.
      if (static_cast<uint64_t>(n) < length)
        std::fill(req.data + n, req.data + length, std::byte{0});
      return static_cast<int>(length);
    }
    case Op::Write: {
      const int rwf = (req.flags & req_flags::kFua) != 0 ? RWF_DSYNC : 0;
      const int64_t n = sys::pwrite_full(fd_.get(), req.data, length, offset, rwf);
      return n < 0 ? static_cast<int>(n) : static_cast<int>(length);
    }
    case Op::Flush: return sys::fdatasync(fd_.get());
    case Op::Discard: return zero_file_range(fd_.get(), offset, length, true);
    case Op::WriteZeroes:
      return zero_file_range(fd_.get(), offset, length, (req.flags & req_flags::kNoUnmap) == 0);
    default: return -EOPNOTSUPP;
  }
}

void FileDisk::submit(uint32_t queue, const Request& req) noexcept {
  RequestCheck check = check_request(req, info_);
  if (check && queue >= info_.tag_set.nr_hw_queues) check = {-EINVAL, "no such queue"};
  // SAFETY: the pointer is only inspected for alignment, never dereferenced through the integer.
  if (check && direct_ && req.data != nullptr &&
      reinterpret_cast<uintptr_t>(req.data) % info_.logical_block_size != 0)
    check = {-EINVAL, "O_DIRECT buffer not aligned to the logical block size"};
  if (!check) {
    req.completion->complete(check.neg_errno);
    return;
  }
  if (uring_) {
    uring_->submit(queue, req);
    return;
  }
  req.completion->complete(run_sync(req));
}

}  // namespace pepita::blk_mq
