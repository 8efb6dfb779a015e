#pragma once
// FileDisk: a BlockDevice backed by a regular file or a block device node (the kernel's loop
// driver), optionally with O_DIRECT. Flush is fdatasync, FUA is RWF_DSYNC, discard punches holes.
//
//   auto disk = PEPITA_TRY(FileDisk::create({.path = "/var/tmp/disk.img",
//                                            .capacity_bytes = 1 << 30, .direct = true}));
//
// Engine: synchronous pread/pwritev2 on the submitting thread (each hardware queue is one
// submitting thread, so queues still run in parallel). The io_uring engine replaces this when it
// lands; the interface does not change.

#include <memory>
#include <string>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::blk_mq {

struct FileDiskConfig {
  std::string path;
  /// 0: use the existing file's size. Otherwise the file is created if missing and extended
  /// (sparsely) to this size; it is never shrunk.
  uint64_t capacity_bytes = 0;
  /// O_DIRECT: bypass the page cache. Buffers must then be aligned to logical_block_size.
  bool direct = false;
  bool read_only = false;
  uint32_t logical_block_size = 512;  // 4096 recommended with direct
  uint32_t queues = 1;
  uint32_t queue_depth = 128;
};

class FileDisk final : public BlockDevice {
 public:
  /// NotFound when the file is missing and no capacity was given; InvalidArgument for bad
  /// geometry or when the filesystem refuses O_DIRECT; other errors name the failing syscall.
  static Result<std::unique_ptr<FileDisk>> create(const FileDiskConfig& config);

  const DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t queue, const Request& req) noexcept override;

 private:
  struct Token {};

 public:
  FileDisk(Token, DeviceInfo info, UniqueFd fd, bool direct)
      : info_(info), fd_(std::move(fd)), direct_(direct) {}

 private:
  int run(const Request& req) noexcept;
  int zero_range(uint64_t offset, uint64_t length, bool punch) noexcept;

  DeviceInfo info_;
  UniqueFd fd_;
  bool direct_;
};

}  // namespace pepita::blk_mq
