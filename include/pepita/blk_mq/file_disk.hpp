#pragma once
// FileDisk: a BlockDevice backed by a regular file or a block device node (the kernel's loop
// driver), optionally with O_DIRECT. Flush is fdatasync, FUA is RWF_DSYNC, discard punches holes.
//
//   auto disk = PEPITA_TRY(FileDisk::create({.path = "/var/tmp/disk.img",
//                                            .capacity_bytes = 1 << 30, .direct = true}));
//
// Engines: io_uring (pepita::io_uring::EventLoop, one per hardware queue; a per-queue reaper
// thread completes requests asynchronously when the ring's eventfd fires), or synchronous
// pread/pwritev2 on the submitting thread, used where io_uring is unavailable (ENOSYS, or
// disabled by the kernel.io_uring_disabled sysctl) or when asked for.

#include <memory>
#include <string>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::blk_mq {

enum class FileEngine : uint8_t {
  Auto,     // io_uring when the kernel allows it, else Sync
  IoUring,  // fail creation if io_uring is unavailable
  Sync,
};

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
  FileEngine engine = FileEngine::Auto;
};

class FileDisk final : public BlockDevice {
 public:
  /// NotFound when the file is missing and no capacity was given; InvalidArgument for bad
  /// geometry or when the filesystem refuses O_DIRECT; other errors name the failing syscall.
  static Result<std::unique_ptr<FileDisk>> create(const FileDiskConfig& config);

  /// Waits for requests still in flight, then stops the reaper threads.
  ~FileDisk() override;

  const DeviceInfo& info() const noexcept override { return info_; }
  /// With io_uring, completion runs on the queue's reaper thread; with Sync, before submit()
  /// returns.
  void submit(uint32_t queue, const Request& req) noexcept override;

  /// The engine actually in use (Auto resolved).
  FileEngine engine() const noexcept { return engine_; }

  class Uring;  // the io_uring engine (file_disk_uring.cpp)

 private:
  struct Token {};

 public:
  FileDisk(Token, DeviceInfo info, UniqueFd fd, bool direct);

 private:
  int run_sync(const Request& req) noexcept;

  DeviceInfo info_;
  UniqueFd fd_;
  bool direct_;
  FileEngine engine_ = FileEngine::Sync;
  // Declared after fd_: destroyed first, so its threads are gone before the fd closes.
  std::unique_ptr<Uring> uring_;
};

/// Zeroes [offset, offset+length) of `fd` with fallocate (punching a hole when `punch`), or by
/// writing zeros where the filesystem cannot (EOPNOTSUPP). 0 or a negative errno.
int zero_file_range(int fd, uint64_t offset, uint64_t length, bool punch) noexcept;

}  // namespace pepita::blk_mq
