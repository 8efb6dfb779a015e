#pragma once
// The block devices a ublk server can expose: null (completes every request without storing
// anything, like the kernel's null_blk), mem (blk_mq::MemDisk), file (blk_mq::FileDisk) and zram
// (zram::ZramDisk: compressed RAM, lz4 or zstd, 4 KiB logical blocks as the kernel's zram).
//
//   auto disk = PEPITA_TRY(make_target({.kind = TargetKind::Zram, .size_bytes = 1ull << 30,
//                                       .compression = "zstd"}));

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/error.hpp"

namespace pepita::ublk {

enum class TargetKind : uint8_t { Null, Mem, File, Zram };

/// "null", "mem", "file", "zram"; InvalidArgument lists the accepted names.
Result<TargetKind> parse_target_kind(std::string_view name);
const char* target_name(TargetKind kind) noexcept;

/// Parses a size: a byte count with an optional K, M, G or T suffix (powers of 1024, "iB"/"B"
/// accepted), e.g. "1G", "512MiB", "4096". InvalidArgument on junk, zero or overflow.
Result<uint64_t> parse_size(std::string_view text);

struct TargetSpec {
  TargetKind kind = TargetKind::Null;
  uint64_t size_bytes = 0;          // for file: 0 keeps an existing file's size
  std::string path;                 // file target only
  bool direct = false;              // file target: O_DIRECT
  std::string compression = "lz4";  // zram target: "lz4" or "zstd"
  uint32_t queues = 1;
  uint32_t queue_depth = 128;
};

/// Checks `spec` without allocating or opening anything: a size where the kind needs one, in
/// whole blocks (4096 for null and zram, 512 for mem and file, 4096 for a direct file), a --file
/// for the file target, lz4 or zstd for zram, a valid tag set. InvalidArgument naming the option
/// to fix; a command that serves a target reports it as a usage error before creating anything.
Result<void> validate_target(const TargetSpec& spec);

/// Creates the target (validate_target first). InvalidArgument for a spec validate_target
/// refuses; I/O errors opening a file target; Unsupported for zram when this build has no zram
/// module.
Result<std::unique_ptr<blk_mq::BlockDevice>> make_target(const TargetSpec& spec);

/// The null target: reads complete without touching the buffer (whatever it held is returned,
/// as null_blk does), writes are dropped. Every request is still validated.
class NullDisk final : public blk_mq::BlockDevice {
 public:
  explicit NullDisk(const blk_mq::DeviceInfo& info) : info_(info) {}
  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t queue, const blk_mq::Request& req) noexcept override;

 private:
  blk_mq::DeviceInfo info_;
};

}  // namespace pepita::ublk
