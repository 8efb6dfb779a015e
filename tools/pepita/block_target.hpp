#pragma once
// The block-target options of the commands that serve a block device (`pepita ublk add`,
// `pepita vhost-user-blk`, `pepita vm run --virtio-blk`), turned into the one blk_mq::TargetSpec
// (pepita/blk_mq/target_spec.hpp) that zram::make_target builds. --target takes a kind with
// --size/--file/--comp, or a whole spec (--target zram:1G,zstd) as --virtio-blk does.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/size.hpp"
#include "pepita/error.hpp"

namespace pepita::cli {

/// The kinds a command serves, in the order its usage line names them.
using TargetKinds = std::vector<blk_mq::TargetKind>;

/// "zram, file or mem": the kinds of `kinds`, for messages.
inline std::string served_names(const TargetKinds& kinds) {
  std::string names;
  for (size_t i = 0; i < kinds.size(); ++i) {
    names += (i == 0 ? "" : i + 1 == kinds.size() ? " or " : ", ");
    names += blk_mq::target_name(kinds[i]);
  }
  return names;
}

/// InvalidArgument unless `kind` is one of `kinds`: "serves zram, file or mem targets, not null".
inline Result<void> check_served(blk_mq::TargetKind kind, const TargetKinds& kinds) {
  for (const auto k : kinds)
    if (k == kind) return {};
  return fail(ErrorCode::InvalidArgument, "this command serves " + served_names(kinds) +
                                              " targets, not " + blk_mq::target_name(kind));
}

/// A whole spec as --virtio-blk takes it ("mem:1M"), of a kind in `kinds`, checked by
/// validate_target: every error is the user's (a usage error), nothing is created.
inline Result<blk_mq::TargetSpec> parse_served_spec(std::string_view text,
                                                    const TargetKinds& kinds) {
  blk_mq::TargetSpec spec = PEPITA_TRY(blk_mq::parse_target_spec(text));
  PEPITA_TRY_VOID(check_served(spec.kind, kinds));
  PEPITA_TRY_VOID(blk_mq::validate_target(spec));
  return spec;
}

struct TargetOptions {
  explicit TargetOptions(std::string default_target) : target(std::move(default_target)) {}
  std::string target;
  std::string size;
  std::string file;
  std::string comp;  // empty: lz4
  bool direct = false;
  TargetKinds kinds;  // what the command serves (add_target_options sets it)
};

/// Adds the options to `cmd`, which serves `kinds`.
inline void add_target_options(CLI::App* cmd, TargetOptions& o, TargetKinds kinds) {
  cmd->add_option("--target", o.target,
                  served_names(kinds) + "; or a whole spec instead of --size/--file/--comp: " +
                      std::string(blk_mq::kTargetForms) + " (e.g. zram:1G,zstd)");
  o.kinds = std::move(kinds);
  cmd->add_option("--size", o.size, "device size, e.g. 1G (file: default = file size)");
  cmd->add_option("--file", o.file, "backing file for the file target");
  cmd->add_flag("--direct", o.direct, "file target: open the backing file with O_DIRECT");
  cmd->add_option("--comp", o.comp, "zram compression: lz4 (default) or zstd")
      ->check(CLI::IsMember({"lz4", "zstd"}));
}

/// The target described by the options, for `queues` queues of `depth` tags, checked by
/// blk_mq::validate_target without creating anything: every error is the user's (a usage error).
inline Result<blk_mq::TargetSpec> target_spec(const TargetOptions& o, uint32_t queues,
                                              uint32_t depth) {
  blk_mq::TargetSpec spec;
  if (o.target.find(':') != std::string::npos) {
    if (!o.size.empty() || !o.file.empty() || !o.comp.empty())
      return fail(ErrorCode::InvalidArgument,
                  "--target " + o.target +
                      " is a whole spec: give --size, --file or --comp only with a bare kind "
                      "(--target zram --size 1G), or put them in the spec");
    spec = PEPITA_TRY(blk_mq::parse_target_spec(o.target));
  } else {
    auto kind = blk_mq::parse_target_kind(o.target);
    if (!kind)
      return fail(ErrorCode::InvalidArgument, "unknown target '" + o.target + "': use " +
                                                  served_names(o.kinds) + ", or a whole spec (" +
                                                  std::string(blk_mq::kTargetForms) + ")");
    spec.kind = *kind;
    if (!o.size.empty()) {
      auto size = parse_size(o.size);
      if (!size) return std::unexpected(std::move(size.error()).with_context("--size"));
      spec.size_bytes = *size;
    }
    spec.path = o.file;
    if (!o.comp.empty()) spec.compression = o.comp;
  }
  PEPITA_TRY_VOID(check_served(spec.kind, o.kinds));
  spec.direct = o.direct;
  spec.queues = queues;
  spec.queue_depth = depth;
  PEPITA_TRY_VOID(blk_mq::validate_target(spec));
  return spec;
}

/// The file target's backing file, removed on destruction when this run created it (it did not
/// exist before) unless keep() was called: a command that fails after zram::make_target() leaves
/// no file behind. A file that existed is never removed (it may have been extended).
class NewBackingFile {
 public:
  explicit NewBackingFile(const blk_mq::TargetSpec& spec) {
    std::error_code ec;
    if (spec.kind == blk_mq::TargetKind::File && !spec.path.empty() &&
        std::filesystem::symlink_status(spec.path, ec).type() ==
            std::filesystem::file_type::not_found)
      path_ = spec.path;
  }
  NewBackingFile(const NewBackingFile&) = delete;
  NewBackingFile& operator=(const NewBackingFile&) = delete;
  ~NewBackingFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  /// The device is up: the file is the user's from now on.
  void keep() noexcept { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace pepita::cli
