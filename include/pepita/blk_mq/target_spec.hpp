#pragma once
// The one block-target spec every command that serves a block device reads (`pepita ublk add`,
// `pepita vhost-user-blk`, `pepita vm run --virtio-blk`): null:1G, mem:64M, file:PATH[,SIZE],
// zram:1G[,lz4|zstd]. Parsing and checking are pure: nothing is opened or allocated here;
// zram::make_target (pepita/zram/block_target.hpp) builds the device a spec describes.
//
//   TargetSpec spec = PEPITA_TRY(parse_target_spec("zram:1G,zstd"));
//   spec.queues = 4;
//   PEPITA_TRY_VOID(validate_target(spec));         // a usage error: nothing created yet
//   auto disk = PEPITA_TRY(zram::make_target(spec));  // unique_ptr<BlockDevice>

#include <cstdint>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita::blk_mq {

enum class TargetKind : uint8_t {
  Null,  // completes every request, stores nothing (the kernel's null_blk): NullDisk
  Mem,   // RAM (the kernel's brd): MemDisk
  File,  // a regular file or block device node: FileDisk
  Zram,  // compressed RAM (the kernel's zram): zram::ZramDisk
};

/// "null", "mem", "file", "zram"; InvalidArgument lists the accepted names.
Result<TargetKind> parse_target_kind(std::string_view name);
/// The name parse_target_kind() reads back.
const char* target_name(TargetKind kind) noexcept;
/// The spec form of one kind, for messages: "zram:SIZE[,lz4|zstd]".
const char* target_form(TargetKind kind) noexcept;

/// Every form, for messages: "null:SIZE, mem:SIZE, file:PATH[,SIZE] or zram:SIZE[,lz4|zstd]".
inline constexpr std::string_view kTargetForms =
    "null:SIZE, mem:SIZE, file:PATH[,SIZE] or zram:SIZE[,lz4|zstd]";

struct TargetSpec {
  TargetKind kind = TargetKind::Null;
  uint64_t size_bytes = 0;          // file: 0 takes the existing file's size
  std::string path;                 // file only
  bool direct = false;              // file: O_DIRECT (an open flag, not part of the text form)
  std::string compression = "lz4";  // zram: "lz4" or "zstd"
  uint32_t queues = 1;              // the queue shape is the command's, not part of the text form
  uint32_t queue_depth = 128;
};

/// Parses the text form KIND:ARGS (SIZE as pepita::parse_size reads it: 4096, 64M, 1G):
///   null:SIZE   mem:SIZE   zram:SIZE   zram:SIZE,lz4   zram:SIZE,zstd
///   file:PATH   (the size is the file's)   file:PATH,SIZE   (created or extended to SIZE)
/// PATH is everything after "file:" but a trailing ",SIZE": a last comma followed by a digit
/// starts a size (and a bad one is an error), so "file:/a,b" is the path "/a,b" while a path that
/// itself ends in ",1M" must be written with its size ("file:/a,1M,1M"). Fills
/// kind, size_bytes, path and compression; the rest keeps its defaults. InvalidArgument quoting
/// the text and the accepted form for an empty text, an unknown kind, a missing or bad size (zero,
/// overflow, unknown suffix), a missing path, or a compressor other than lz4 and zstd. Block-size
/// multiples and queue shape are validate_target()'s.
Result<TargetSpec> parse_target_spec(std::string_view text);

/// The text form parse_target_spec() reads back as the same kind, size, path and compression:
/// "zram:1G,zstd", "file:/var/tmp/disk.img,64M", "file:/dev/sdb" (size 0). The size is written
/// as format_size() does; lz4 (zram's default) is written too, so the compressor is explicit.
std::string format_target_spec(const TargetSpec& spec);

/// Checks `spec` without allocating or opening anything: a size where the kind needs one, in
/// whole blocks (4096 for null and zram, 512 for mem and file, 4096 for a direct file), a path
/// for the file target, lz4 or zstd for zram, a valid tag set. InvalidArgument naming the option
/// to fix; a command reports it as a usage error before it creates anything.
Result<void> validate_target(const TargetSpec& spec);

}  // namespace pepita::blk_mq
