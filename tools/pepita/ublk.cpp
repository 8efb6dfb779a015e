// `pepita ublk`: userspace block devices through the kernel's ublk driver.
//   pepita ublk add --target zram --size 1G [--queues N --depth D --comp zstd]  (foreground)
//   pepita ublk add --target zram:1G,zstd         (the block-target spec, as vm run --virtio-blk)
//   pepita ublk add ... --recoverable [--reissue]  (UBLK_F_USER_RECOVERY; state in
//   /run/pepita/ublk) pepita ublk recover N                           (a new server for N after its
//   server died) pepita ublk list pepita ublk del N
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "block_target.hpp"
#include "command.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/size.hpp"
#include "pepita/ublk/ctrl.hpp"
#include "pepita/ublk/recovery.hpp"
#include "pepita/ublk/server.hpp"
#include "pepita/zram/block_target.hpp"
#include "stop_signals.hpp"

namespace pepita::cli {
namespace {

struct AddOptions {
  TargetOptions disk{"null"};
  uint32_t queues = 1;
  uint32_t depth = 64;
  std::string max_io = "512K";
  bool user_copy = false;
  bool recoverable = false;
  bool reissue = false;
  std::string state_dir = ublk::kStateDir;
};

struct RecoverOptions {
  uint32_t id = 0;
  std::string state_dir = ublk::kStateDir;
  uint32_t wait_s = 30;
  bool accept_empty = false;
};

struct DelOptions {
  uint32_t id = 0;
  std::string state_dir = ublk::kStateDir;
};

constexpr const char* kAddCommand = "pepita ublk add";
constexpr const char* kAddUsage =
    "pepita ublk add [--target null|mem|file|zram] [--size SIZE] [--file PATH [--direct]] "
    "[--comp lz4|zstd] [--queues 1..64] [--depth 1..4096] [--max-io SIZE] [--user-copy] "
    "[--recoverable [--reissue]] [--state-dir DIR]";
constexpr const char* kRecoverCommand = "pepita ublk recover";
constexpr const char* kRecoverUsage =
    "pepita ublk recover ID [--state-dir DIR] [--wait SECONDS] [--accept-empty]";
constexpr const char* kListUsage = "pepita ublk list";
constexpr const char* kDelUsage = "pepita ublk del ID [--state-dir DIR]";
constexpr const char* kUblkUsage = "pepita ublk add|recover|list|del ...";

int report(const Error& error) {
  std::fprintf(stderr, "pepita ublk: error: %s\n", error.to_string().c_str());
  return kExitFailure;
}

// Prints the block device, serves it until SIGINT/SIGTERM, then stops and deletes it (and its
// recovery state file, when `state_dir` is not empty).
int serve(ublk::Server& server, const StopSignals& stop_signals, const char* target,
          const std::string& state_dir) {
  const auto& info = server.info();
  const ublk::Recovery recovery = ublk::recovery_of(info.flags);
  std::fprintf(
      stderr,
      "pepita ublk: serving %s (%s target, %u queue(s) x %u tags, %u KiB max I/O%s%s%s, pid %d); "
      "SIGINT or SIGTERM stops and deletes it\n",
      server.block_path().c_str(), target, info.nr_hw_queues, info.queue_depth,
      info.max_io_buf_bytes >> 10, (info.flags & abi::ublk::F_USER_COPY) != 0 ? ", user copy" : "",
      recovery == ublk::Recovery::Off ? "" : ", recoverable",
      recovery == ublk::Recovery::Reissue ? " (reissue)" : "", static_cast<int>(::getpid()));
  // The device on stdout comes last: a script that waits for it finds the line above written.
  std::printf("%s\n", server.block_path().c_str());
  std::fflush(stdout);

  const int signal = stop_signals.wait();
  auto stopped = server.stop();
  if (!state_dir.empty()) {
    if (auto removed = ublk::remove_state(state_dir, server.dev_id()); !removed)
      std::fprintf(stderr, "pepita ublk: warning: %s\n", removed.error().to_string().c_str());
  }
  uint64_t requests = 0, failed = 0, bytes = 0;
  for (const auto& s : server.stats()) {
    requests += s.requests;
    failed += s.failed;
    bytes += s.bytes;
  }
  std::fprintf(stderr,
               "pepita ublk: stopped on signal %d: %llu requests, %llu failed, %llu bytes\n",
               signal, static_cast<unsigned long long>(requests),
               static_cast<unsigned long long>(failed), static_cast<unsigned long long>(bytes));
  if (!stopped) return report(stopped.error());
  return kExitOk;
}

int run_add(const AddOptions& o) {
  // Every argument is checked before the driver is opened or a target allocated, so a usage
  // error (exit 2) leaves no device, backing file or thread behind.
  if (o.queues == 0 || o.queues > 64 || o.depth == 0 || o.depth > 4096)
    return usage_error(kAddCommand, kAddUsage, "--queues must be 1..64 and --depth 1..4096");
  auto spec = target_spec(o.disk, o.queues, o.depth);
  if (!spec) return usage_error(kAddCommand, kAddUsage, spec.error().message());
  auto max_io = parse_size(o.max_io);
  if (!max_io || *max_io > UINT32_MAX)
    return usage_error(kAddCommand, kAddUsage,
                       "--max-io " + o.max_io + ": " +
                           (max_io ? std::string("too large") : max_io.error().message()));
  ublk::DeviceOptions options;
  options.queues = static_cast<uint16_t>(o.queues);
  options.depth = static_cast<uint16_t>(o.depth);
  options.max_io_bytes = static_cast<uint32_t>(*max_io);
  if (o.user_copy) options.extra_flags |= abi::ublk::F_USER_COPY;
  if (auto valid = ublk::validate(options); !valid)
    return usage_error(kAddCommand, kAddUsage, valid.error().message());

  if (o.reissue && !o.recoverable)
    return usage_error(kAddCommand, kAddUsage,
                       "--reissue is a kind of recovery: give it with --recoverable");
  if (o.recoverable) {
    options.recovery = o.reissue ? ublk::Recovery::Reissue : ublk::Recovery::On;
    if (o.state_dir.empty())
      return usage_error(kAddCommand, kAddUsage, "--state-dir must name a directory");
  }

  // Before any thread starts, so every thread started below (disk reapers, queue threads)
  // inherits the mask.
  const StopSignals stop_signals;
  // Check for the driver before allocating a possibly large target.
  if (auto probe = ublk::Control::open(); !probe) return report(probe.error());
  NewBackingFile backing(*spec);  // removed again if this run creates it and then fails
  auto disk = zram::make_target(*spec);
  if (!disk) return report(disk.error());
  auto server = ublk::Server::start(std::move(*disk), options);
  if (!server) return report(server.error());
  backing.keep();
  if (o.recoverable) {
    ublk::DeviceState state;
    const auto& info = (*server)->info();
    state.dev_id = info.dev_id;
    state.queues = info.nr_hw_queues;
    state.depth = info.queue_depth;
    state.max_io_bytes = info.max_io_buf_bytes;
    state.flags = info.flags;
    state.server_pid = static_cast<int32_t>(::getpid());
    state.target = *spec;
    if (!state.target.path.empty()) {
      std::error_code ec;  // a relative path must still name the file from another directory
      const auto absolute = std::filesystem::absolute(state.target.path, ec);
      if (!ec) state.target.path = absolute.string();
    }
    if (auto saved = ublk::save_state(o.state_dir, state); !saved) {
      (void)(*server)->stop();
      return report(saved.error());
    }
    if (ublk::target_loses_data_on_crash(spec->kind))
      std::fprintf(stderr,
                   "pepita ublk: warning: a %s target keeps its data in this process: if it "
                   "crashes, `pepita ublk recover` brings the device back empty (use a file "
                   "target to keep the data)\n",
                   blk_mq::target_name(spec->kind));
  }
  return serve(**server, stop_signals, blk_mq::target_name(spec->kind),
               o.recoverable ? o.state_dir : std::string());
}

int run_recover(const RecoverOptions& o) {
  if (o.state_dir.empty())
    return usage_error(kRecoverCommand, kRecoverUsage, "--state-dir must name a directory");
  if (o.wait_s == 0 || o.wait_s > 3600)
    return usage_error(kRecoverCommand, kRecoverUsage, "--wait must be 1..3600 seconds");
  const StopSignals stop_signals;  // before any thread starts
  // The device first (does it exist, may it be recovered), then what its server left behind.
  auto control = ublk::Control::open();
  if (!control) return report(control.error());
  auto info = control->get_dev_info(o.id);
  if (!info) return report(info.error());
  if (auto ok = ublk::check_recoverable(*info, ublk::server_alive(info->ublksrv_pid)); !ok)
    return report(ok.error());
  auto state = ublk::load_state(o.state_dir, o.id);
  if (!state) return report(state.error());
  const blk_mq::TargetSpec& spec = state->target;
  if (ublk::target_loses_data_on_crash(spec.kind)) {
    if (!o.accept_empty)
      return report(Error(
          ErrorCode::InvalidArgument,
          pepita::fmt("ublk device {} had a {} target, whose data died with its server: the "
                      "recovered device would be empty under whatever used it; pass "
                      "--accept-empty if nothing on it is mounted or needed, or delete it with "
                      "`pepita ublk del {}`",
                      o.id, blk_mq::target_name(spec.kind), o.id)));
    std::fprintf(stderr, "pepita ublk: device %u comes back empty (%s target)\n", o.id,
                 blk_mq::target_name(spec.kind));
  }
  std::error_code ec;
  if (spec.kind == blk_mq::TargetKind::File && !std::filesystem::exists(spec.path, ec))
    return report(Error(ErrorCode::NotFound,
                        pepita::fmt("ublk device {}: its backing file {} is gone; recovery needs "
                                    "the same file",
                                    o.id, spec.path)));
  auto disk = zram::make_target(spec);
  if (!disk) return report(disk.error());
  auto server =
      ublk::Server::recover(o.id, std::move(*disk), {.wait = std::chrono::seconds(o.wait_s)});
  if (!server) return report(server.error());
  ublk::DeviceState updated = *state;
  updated.server_pid = static_cast<int32_t>(::getpid());
  if (auto saved = ublk::save_state(o.state_dir, updated); !saved)
    std::fprintf(stderr, "pepita ublk: warning: %s\n", saved.error().to_string().c_str());
  std::fprintf(stderr, "pepita ublk: recovered device %u (state was %s, recovery %s)\n", o.id,
               ublk::state_name(info->state),
               ublk::recovery_name(ublk::recovery_of((*server)->info().flags)));
  return serve(**server, stop_signals, blk_mq::target_name(spec.kind), o.state_dir);
}

int run_list() {
  auto control = ublk::Control::open();
  if (!control) return report(control.error());
  auto devices = ublk::list_devices(*control);
  if (!devices) return report(devices.error());
  std::printf("%-4s %-9s %-7s %-6s %-8s %-8s %s\n", "id", "state", "queues", "depth", "max_io",
              "pid", "block device");
  for (const auto& d : *devices) {
    std::printf("%-4u %-9s %-7u %-6u %-8u %-8d %s\n", d.dev_id, ublk::state_name(d.state),
                d.nr_hw_queues, d.queue_depth, d.max_io_buf_bytes, d.ublksrv_pid,
                ublk::block_device_path(d.dev_id).c_str());
  }
  return kExitOk;
}

int run_del(const DelOptions& o) {
  auto control = ublk::Control::open();
  if (!control) return report(control.error());
  // DEL_DEV stops a live device first; a device whose server died is cleaned up the same way.
  if (auto r = control->del_dev(o.id); !r) return report(r.error());
  if (auto removed = ublk::remove_state(o.state_dir, o.id); !removed)
    return report(removed.error());
  std::printf("deleted ublk device %u\n", o.id);
  return kExitOk;
}

void add_ublk(CLI::App& app, Dispatch& dispatch) {
  auto* ublk = app.add_subcommand("ublk", "Userspace block devices via the kernel's ublk driver");
  ublk->require_subcommand(1);
  dispatch.set_usage(ublk, kUblkUsage);

  auto add_opts = std::make_shared<AddOptions>();
  auto* add = ublk->add_subcommand(
      "add", "Create /dev/ublkbN and serve it in the foreground until SIGINT/SIGTERM");
  using blk_mq::TargetKind;
  add_target_options(add, add_opts->disk,
                     {TargetKind::Null, TargetKind::Mem, TargetKind::File, TargetKind::Zram});
  add->add_option("--queues", add_opts->queues, "hardware queues (one thread each)");
  add->add_option("--depth", add_opts->depth, "tags per queue");
  add->add_option("--max-io", add_opts->max_io, "largest request, e.g. 512K");
  add->add_flag("--user-copy", add_opts->user_copy,
                "UBLK_F_USER_COPY: move data with pread/pwrite on /dev/ublkcN, not kernel copies");
  add->add_flag("--recoverable", add_opts->recoverable,
                "UBLK_F_USER_RECOVERY: if this server dies the device stays (I/O waits) until "
                "`pepita ublk recover ID`; mem and zram data die with the server, file data stays");
  add->add_flag("--reissue", add_opts->reissue,
                "UBLK_F_USER_RECOVERY_REISSUE: requests the dead server held are issued again to "
                "the new one (else they fail)");
  add->add_option(
      "--state-dir", add_opts->state_dir,
      "where --recoverable records the device for `recover` (default /run/pepita/ublk)");
  dispatch.on(
      add, [add_opts] { return run_add(*add_opts); }, kAddUsage);

  auto rec_opts = std::make_shared<RecoverOptions>();
  auto* recover = ublk->add_subcommand(
      "recover",
      "Serve ublk device N again after its server died (added with --recoverable), in the "
      "foreground until SIGINT/SIGTERM");
  recover->add_option("id", rec_opts->id, "device id (N of /dev/ublkbN)")->required();
  recover->add_option("--state-dir", rec_opts->state_dir,
                      "where `add --recoverable` recorded the device (default /run/pepita/ublk)");
  recover->add_option("--wait", rec_opts->wait_s,
                      "seconds to wait for the kernel to quiesce the device (default 30)");
  recover->add_flag("--accept-empty", rec_opts->accept_empty,
                    "recover a mem or zram device although its data died with its server");
  dispatch.on(
      recover, [rec_opts] { return run_recover(*rec_opts); }, kRecoverUsage);

  auto* list = ublk->add_subcommand("list", "List the kernel's ublk devices");
  dispatch.on(
      list, [] { return run_list(); }, kListUsage);

  auto del_opts = std::make_shared<DelOptions>();
  auto* del = ublk->add_subcommand("del", "Stop and delete ublk device N");
  del->add_option("id", del_opts->id, "device id (N of /dev/ublkbN)")->required();
  del->add_option("--state-dir", del_opts->state_dir,
                  "where a recoverable device's state file is removed from");
  dispatch.on(
      del, [del_opts] { return run_del(*del_opts); }, kDelUsage);
}

}  // namespace

PEPITA_REGISTER_COMMAND(ublk, add_ublk);

}  // namespace pepita::cli
