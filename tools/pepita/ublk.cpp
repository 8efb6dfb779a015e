// `pepita ublk`: userspace block devices through the kernel's ublk driver.
//   pepita ublk add --target zram --size 1G [--queues N --depth D --comp zstd]  (foreground)
//   pepita ublk add --target zram:1G,zstd         (the block-target spec, as vm run --virtio-blk)
//   pepita ublk list
//   pepita ublk del N
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "block_target.hpp"
#include "command.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/size.hpp"
#include "pepita/ublk/ctrl.hpp"
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
};

struct DelOptions {
  uint32_t id = 0;
};

constexpr const char* kAddCommand = "pepita ublk add";
constexpr const char* kAddUsage =
    "pepita ublk add [--target null|mem|file|zram] [--size SIZE] [--file PATH [--direct]] "
    "[--comp lz4|zstd] [--queues 1..64] [--depth 1..4096] [--max-io SIZE] [--user-copy]";
constexpr const char* kListUsage = "pepita ublk list";
constexpr const char* kDelUsage = "pepita ublk del ID";
constexpr const char* kUblkUsage = "pepita ublk add|list|del ...";

int report(const Error& error) {
  std::fprintf(stderr, "pepita ublk: error: %s\n", error.to_string().c_str());
  return kExitFailure;
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
  const auto& info = (*server)->info();
  std::printf("%s\n", (*server)->block_path().c_str());
  std::fflush(stdout);
  std::fprintf(
      stderr,
      "pepita ublk: serving %s (%s target, %u queue(s) x %u tags, %u KiB max I/O%s, pid %d); "
      "SIGINT or SIGTERM stops and deletes it\n",
      (*server)->block_path().c_str(), blk_mq::target_name(spec->kind), info.nr_hw_queues,
      info.queue_depth, info.max_io_buf_bytes >> 10,
      (info.flags & abi::ublk::F_USER_COPY) != 0 ? ", user copy" : "",
      static_cast<int>(::getpid()));

  const int signal = stop_signals.wait();
  auto stopped = (*server)->stop();
  uint64_t requests = 0, failed = 0, bytes = 0;
  for (const auto& s : (*server)->stats()) {
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
  dispatch.on(
      add, [add_opts] { return run_add(*add_opts); }, kAddUsage);

  auto* list = ublk->add_subcommand("list", "List the kernel's ublk devices");
  dispatch.on(
      list, [] { return run_list(); }, kListUsage);

  auto del_opts = std::make_shared<DelOptions>();
  auto* del = ublk->add_subcommand("del", "Stop and delete ublk device N");
  del->add_option("id", del_opts->id, "device id (N of /dev/ublkbN)")->required();
  dispatch.on(
      del, [del_opts] { return run_del(*del_opts); }, kDelUsage);
}

}  // namespace

PEPITA_REGISTER_COMMAND(ublk, add_ublk);

}  // namespace pepita::cli
