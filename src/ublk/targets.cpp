// ublk targets (targets.hpp): the null device, and adapters over the block layer's MemDisk and
// FileDisk and the zram module's ZramDisk (a ZramStore).
#include "pepita/ublk/targets.hpp"

#include <cctype>
#include <cerrno>
#include <charconv>

#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#if PEPITA_UBLK_HAVE_ZRAM
#include "pepita/zram/zram_disk.hpp"
#endif

namespace pepita::ublk {
namespace {

using blk_mq::DeviceInfo;
namespace features = blk_mq::features;

DeviceInfo base_info(const TargetSpec& spec, uint32_t logical_block_size) {
  DeviceInfo info;
  info.capacity_sectors = spec.size_bytes >> blk_mq::kSectorShift;
  info.logical_block_size = logical_block_size;
  info.physical_block_size = 4096;
  info.max_sectors = 2048;  // 1 MiB
  info.discard_granularity = 4096;
  info.tag_set = {spec.queues, spec.queue_depth};
  return info;
}

}  // namespace

void NullDisk::submit(uint32_t queue, const blk_mq::Request& req) noexcept {
  blk_mq::RequestCheck check = blk_mq::check_request(req, info_);
  if (check && queue >= info_.tag_set.nr_hw_queues) check = {-EINVAL, "no such queue"};
  if (!check) {
    req.completion->complete(check.neg_errno);
    return;
  }
  const bool data = req.op == blk_mq::Op::Read || req.op == blk_mq::Op::Write;
  req.completion->complete(data ? static_cast<int>(req.byte_length()) : 0);
}

Result<TargetKind> parse_target_kind(std::string_view name) {
  if (name == "null") return TargetKind::Null;
  if (name == "mem") return TargetKind::Mem;
  if (name == "file") return TargetKind::File;
  if (name == "zram") return TargetKind::Zram;
  return fail(ErrorCode::InvalidArgument,
              "unknown ublk target '" + std::string(name) + "': use null, mem, file or zram");
}

const char* target_name(TargetKind kind) noexcept {
  switch (kind) {
    case TargetKind::Null: return "null";
    case TargetKind::Mem: return "mem";
    case TargetKind::File: return "file";
    case TargetKind::Zram: return "zram";
  }
  return "unknown";
}

Result<uint64_t> parse_size(std::string_view text) {
  const auto bad = [&](const char* why) {
    return fail(ErrorCode::InvalidArgument,
                "bad size '" + std::string(text) + "': " + why + " (e.g. 4096, 64M, 1G)");
  };
  uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || ptr == begin) return bad("expected a number");
  std::string suffix(ptr, end);
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.ends_with("IB"))
    suffix.resize(suffix.size() - 2);
  else if (suffix.size() > 1 && suffix.ends_with("B"))
    suffix.resize(suffix.size() - 1);
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B")
    shift = 0;
  else if (suffix == "K")
    shift = 10;
  else if (suffix == "M")
    shift = 20;
  else if (suffix == "G")
    shift = 30;
  else if (suffix == "T")
    shift = 40;
  else
    return bad("unknown suffix");
  if (value == 0) return bad("must be greater than zero");
  if (shift != 0 && value > (~uint64_t{0} >> shift)) return bad("too large");
  return value << shift;
}

Result<void> validate_target(const TargetSpec& spec) {
  const std::string what = std::string("ublk ") + target_name(spec.kind) + " target";
  if (spec.kind != TargetKind::File && spec.size_bytes == 0)
    return fail(ErrorCode::InvalidArgument, what + ": give a size (--size)");
  switch (spec.kind) {
    case TargetKind::Null:
    case TargetKind::Zram:
      if (spec.size_bytes % 4096 != 0)
        return fail(ErrorCode::InvalidArgument, what + ": size must be a multiple of 4096");
      if (spec.kind == TargetKind::Zram && spec.compression != "lz4" && spec.compression != "zstd")
        return fail(ErrorCode::InvalidArgument,
                    what + ": compression must be lz4 or zstd, not '" + spec.compression + "'");
      break;
    case TargetKind::Mem:
      if (auto ok = blk_mq::validate_geometry(spec.size_bytes, 512); !ok)
        return std::unexpected(std::move(ok.error()).with_context(what));
      break;
    case TargetKind::File:
      if (spec.path.empty())
        return fail(ErrorCode::InvalidArgument, what + ": give a backing file (--file)");
      if (spec.size_bytes != 0) {
        if (auto ok = blk_mq::validate_geometry(spec.size_bytes, spec.direct ? 4096u : 512u); !ok)
          return std::unexpected(std::move(ok.error()).with_context(what));
      }
      break;
    default: return fail(ErrorCode::InvalidArgument, "unknown ublk target");
  }
  if (auto ok = blk_mq::validate_tag_set({spec.queues, spec.queue_depth}); !ok)
    return std::unexpected(std::move(ok.error()).with_context(what));
  return {};
}

Result<std::unique_ptr<blk_mq::BlockDevice>> make_target(const TargetSpec& spec) {
  PEPITA_TRY_VOID(validate_target(spec));
  switch (spec.kind) {
    case TargetKind::Null: {
      DeviceInfo info = base_info(spec, 512);
      info.features = features::kDiscard | features::kWriteZeroes;
      return std::make_unique<NullDisk>(info);
    }
    case TargetKind::Mem: {
      auto disk = PEPITA_TRY(blk_mq::MemDisk::create({.capacity_bytes = spec.size_bytes,
                                                      .logical_block_size = 512,
                                                      .queues = spec.queues,
                                                      .queue_depth = spec.queue_depth}));
      return std::unique_ptr<blk_mq::BlockDevice>(std::move(disk));
    }
    case TargetKind::File: {
      auto disk =
          PEPITA_TRY(blk_mq::FileDisk::create({.path = spec.path,
                                               .capacity_bytes = spec.size_bytes,
                                               .direct = spec.direct,
                                               .logical_block_size = spec.direct ? 4096u : 512u,
                                               .queues = spec.queues,
                                               .queue_depth = spec.queue_depth}));
      return std::unique_ptr<blk_mq::BlockDevice>(std::move(disk));
    }
    case TargetKind::Zram: {
#if PEPITA_UBLK_HAVE_ZRAM
      const zram::Algorithm algorithm = PEPITA_TRY(zram::parse_algorithm(spec.compression));
      auto disk = PEPITA_TRY(
          zram::ZramDisk::create({.store = {.disksize = spec.size_bytes, .algorithm = algorithm},
                                  .logical_block_size = zram::kPageSize,
                                  .queues = spec.queues,
                                  .queue_depth = spec.queue_depth}));
      return std::unique_ptr<blk_mq::BlockDevice>(std::move(disk));
#else
      return fail(ErrorCode::Unsupported,
                  "ublk zram target: this build has no zram module (pepita_zram)");
#endif
    }
  }
  return fail(ErrorCode::InvalidArgument, "unknown ublk target");
}

}  // namespace pepita::ublk
