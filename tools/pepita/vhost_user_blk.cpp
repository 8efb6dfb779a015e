// `pepita vhost-user-blk`: serves a virtio-blk device to QEMU (vhost-user-blk-pci) over a unix
// socket, backed by a zram, file or mem target, until SIGINT/SIGTERM.
//   pepita vhost-user-blk --socket /tmp/vub.sock --target zram --size 1G [--queues 2]
//   pepita vhost-user-blk --socket /tmp/vub.sock --target zram:1G,zstd   (the block-target spec)
// A server that died (even by SIGKILL) can be started again on the same socket and file target:
// QEMU with `-chardev socket,...,reconnect=1` reconnects and the guest only sees a stall
// (tests/virtio/guest/restart.sh proves it). A write is acknowledged only once it is in the file,
// and a flush only once fdatasync returned.
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "block_target.hpp"
#include "command.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/vhost_user.hpp"
#include "pepita/zram/block_target.hpp"
#include "stop_signals.hpp"

namespace pepita::cli {
namespace {

struct VhostUserBlkOptions {
  std::string socket;
  TargetOptions disk{"mem"};
  uint32_t queues = 1;
  uint32_t queue_size = 256;
};

constexpr const char* kCommand = "pepita vhost-user-blk";
constexpr const char* kUsage =
    "pepita vhost-user-blk --socket PATH [--target mem|file|zram] [--size SIZE] "
    "[--file PATH [--direct]] [--comp lz4|zstd] [--queues 1..64] [--queue-size 4..32768]";

int report(const Error& error) {
  std::fprintf(stderr, "pepita vhost-user-blk: error: %s\n", error.to_string().c_str());
  return kExitFailure;
}

int run_vhost_user_blk(const VhostUserBlkOptions& o) {
  // Every argument is checked before the target or the socket is created, so a usage error
  // (exit 2) leaves nothing behind.
  if (o.queues == 0 || o.queues > 64 || o.queue_size < 4 || o.queue_size > 32768 ||
      (o.queue_size & (o.queue_size - 1)) != 0)
    return usage_error(kCommand, kUsage,
                       "--queues must be 1..64, --queue-size a power of two 4..32768");
  if (o.socket.empty() || o.socket.size() >= sizeof(sockaddr_un::sun_path))
    return usage_error(kCommand, kUsage,
                       "--socket must be a path of 1.." +
                           std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  auto spec = target_spec(o.disk, o.queues, 128);
  if (!spec) return usage_error(kCommand, kUsage, spec.error().message());

  // Before any thread starts, so every thread started below (disk reapers, queue threads)
  // inherits the mask.
  const StopSignals stop_signals;
  NewBackingFile backing(*spec);  // removed again if this run creates it and then fails
  auto disk = zram::make_target(*spec);
  if (!disk) return report(disk.error());
  const uint64_t bytes = (*disk)->info().capacity_bytes();
  auto device = virtio::blk::BlkDevice::create(
      std::move(*disk), {.num_queues = static_cast<uint16_t>(o.queues),
                         .max_queue_size = static_cast<uint16_t>(o.queue_size)});
  if (!device) return report(device.error());

  auto backend = virtio::vhost_user::Backend::listen(o.socket, **device);
  if (!backend) return report(backend.error());
  backing.keep();
  std::fprintf(stderr,
               "pepita vhost-user-blk: serving %s target (%llu MiB, %u queue(s)) on %s, pid %d; "
               "SIGINT or SIGTERM stops\n",
               blk_mq::target_name(spec->kind), static_cast<unsigned long long>(bytes >> 20),
               o.queues, o.socket.c_str(), static_cast<int>(::getpid()));
  // The socket on stdout comes last: a script that waits for it finds the line above written.
  std::printf("%s\n", o.socket.c_str());
  std::fflush(stdout);
  Result<void> served;
  std::thread server([&] { served = (*backend)->run(); });
  const int signal = stop_signals.wait();
  (*backend)->stop();
  server.join();
  uint64_t requests = 0, refused = 0, failed = 0, moved = 0;
  for (uint16_t q = 0; q < o.queues; ++q) {
    const auto s = (*device)->stats(q);
    requests += s.requests;
    refused += s.refused;
    failed += s.failed;
    moved += s.bytes;
  }
  std::fprintf(stderr,
               "pepita vhost-user-blk: stopped on signal %d: %llu requests (%llu refused, %llu "
               "failed), %llu bytes\n",
               signal, static_cast<unsigned long long>(requests),
               static_cast<unsigned long long>(refused), static_cast<unsigned long long>(failed),
               static_cast<unsigned long long>(moved));
  if (!served) return report(served.error());
  return kExitOk;
}

void add_vhost_user_blk(CLI::App& app, Dispatch& dispatch) {
  auto o = std::make_shared<VhostUserBlkOptions>();
  auto* sub = app.add_subcommand("vhost-user-blk",
                                 "Serve a virtio-blk device to QEMU over vhost-user (foreground)");
  sub->add_option("--socket", o->socket, "unix socket path QEMU connects to")->required();
  using blk_mq::TargetKind;
  add_target_options(sub, o->disk, {TargetKind::Zram, TargetKind::File, TargetKind::Mem});
  sub->add_option("--queues", o->queues, "virtqueues (one serving thread each)");
  sub->add_option("--queue-size", o->queue_size, "largest virtqueue the guest may use");
  dispatch.on(
      sub, [o] { return run_vhost_user_blk(*o); }, kUsage);
}

}  // namespace

PEPITA_REGISTER_COMMAND(vhost_user_blk, add_vhost_user_blk);

}  // namespace pepita::cli
