#pragma once
// The --target/--size/--file/--direct/--comp options shared by the commands that serve a block
// device (`pepita ublk add`, `pepita vhost-user-blk`), turned into a ublk::TargetSpec.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/ublk/targets.hpp"

namespace pepita::cli {

struct TargetOptions {
  explicit TargetOptions(std::string default_target) : target(std::move(default_target)) {}
  std::string target;
  std::string size;
  std::string file;
  std::string comp = "lz4";
  bool direct = false;
};

/// Adds the options to `cmd`; `kinds` are the target names this command accepts.
inline void add_target_options(CLI::App* cmd, TargetOptions& o,
                               std::initializer_list<std::string> kinds) {
  std::string names;
  for (const auto& k : kinds) names += (names.empty() ? "" : ", ") + k;
  cmd->add_option("--target", o.target, names)->check(CLI::IsMember(std::vector(kinds)));
  cmd->add_option("--size", o.size, "device size, e.g. 1G (file: default = file size)");
  cmd->add_option("--file", o.file, "backing file for the file target");
  cmd->add_flag("--direct", o.direct, "file target: open the backing file with O_DIRECT");
  cmd->add_option("--comp", o.comp, "zram compression: lz4 or zstd")
      ->check(CLI::IsMember({"lz4", "zstd"}));
}

/// The target described by the options, for `queues` queues of `depth` tags, checked by
/// ublk::validate_target without creating anything: every error is the user's (a usage error).
inline Result<ublk::TargetSpec> target_spec(const TargetOptions& o, uint32_t queues,
                                            uint32_t depth) {
  ublk::TargetSpec spec;
  spec.kind = PEPITA_TRY(ublk::parse_target_kind(o.target));
  if (!o.size.empty()) {
    auto size = ublk::parse_size(o.size);
    if (!size) return std::unexpected(std::move(size.error()).with_context("--size"));
    spec.size_bytes = *size;
  }
  spec.path = o.file;
  spec.direct = o.direct;
  spec.compression = o.comp;
  spec.queues = queues;
  spec.queue_depth = depth;
  PEPITA_TRY_VOID(ublk::validate_target(spec));
  return spec;
}

/// The file target's backing file, removed on destruction when this run created it (it did not
/// exist before) unless keep() was called: a command that fails after make_target() leaves no
/// file behind. A file that existed is never removed (it may have been extended).
class NewBackingFile {
 public:
  explicit NewBackingFile(const TargetOptions& o) {
    struct stat st {};
    if (o.target == "file" && !o.file.empty() && ::lstat(o.file.c_str(), &st) != 0 &&
        errno == ENOENT)
      path_ = o.file;
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
