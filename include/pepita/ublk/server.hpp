#pragma once
// A running ublk device: ADD_DEV + SET_PARAMS on /dev/ublk-control, one thread and one SQE128
// io_uring per hardware queue serving /dev/ublkcN (FETCH_REQ for every tag, then
// COMMIT_AND_FETCH_REQ with each result), START_DEV; and the reverse on stop. Follows
// Documentation/block/ublk.rst; requests go to a blk_mq::BlockDevice through QueueHandler.
//
//   auto disk = PEPITA_TRY(make_target({.kind = TargetKind::Zram, .size_bytes = 1ull << 30}));
//   auto server = PEPITA_TRY(Server::start(std::move(disk), {.queues = 1, .depth = 64}));
//   std::puts(server->block_path().c_str());       // "/dev/ublkb0", usable now
//   ...
//   PEPITA_TRY_VOID(server->stop());              // STOP_DEV, join queues, DEL_DEV

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pepita/abi/ublk.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/error.hpp"
#include "pepita/ublk/ctrl.hpp"
#include "pepita/ublk/queue.hpp"

namespace pepita::ublk {

class QueueRunner;

/// How Server::recover waits for the kernel to let go of the dead server.
struct RecoverOptions {
  /// How long to wait for the device to become QUIESCED and for the dead server's /dev/ublkcN to
  /// be closed (the kernel tears its io_uring down asynchronously; slow under emulation).
  std::chrono::milliseconds wait{30'000};
};

class Server {
 public:
  /// Adds a device for `device` and starts serving it; returns once /dev/ublkbN exists. The
  /// target must have at least options.queues hardware queues of at least options.depth tags.
  /// On failure everything created so far is torn down (the device is deleted again).
  static Result<std::unique_ptr<Server>> start(std::unique_ptr<blk_mq::BlockDevice> device,
                                               const DeviceOptions& options,
                                               const char* control_path = kControlPath);
  /// User recovery (UBLK_F_USER_RECOVERY): takes over device `dev_id`, whose server died, with
  /// `device` as its target (the same data: for a file target, the same file; see
  /// recovery.hpp). Waits up to options.wait for the device to be QUIESCED and its old
  /// /dev/ublkcN released, then START_USER_RECOVERY, starts the queues (FETCH_REQ on every tag)
  /// and END_USER_RECOVERY; returns once the device is LIVE again, its queued I/O flowing to
  /// `device`. The shape (queues, depth, max I/O, user copy) is the device's own (GET_DEV_INFO).
  /// Errors: UblkDeviceNotFound (no such device); InvalidArgument for a device created without
  /// the flag, not started, or whose size differs from the target's; UblkDeviceBusy while its
  /// server is alive; TimedOut when the kernel did not quiesce it in time. On failure the device
  /// is not deleted (its data may matter): run recover again, or delete it (`pepita ublk del`).
  /// The returned server's stop() stops and deletes the device, as Server::start's does.
  static Result<std::unique_ptr<Server>> recover(uint32_t dev_id,
                                                 std::unique_ptr<blk_mq::BlockDevice> device,
                                                 const RecoverOptions& options = {},
                                                 const char* control_path = kControlPath);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// STOP_DEV (the block device disappears; queued I/O fails), joins the queue threads, closes
  /// /dev/ublkcN and DEL_DEV. Idempotent; the destructor calls it and ignores errors.
  Result<void> stop();

  uint32_t dev_id() const noexcept { return info_.dev_id; }
  std::string block_path() const { return block_device_path(info_.dev_id); }
  /// What the kernel granted (queues may be fewer than asked for).
  const abi::ublk::CtrlDevInfo& info() const noexcept { return info_; }
  /// Per-queue counters (racy while running; final once stopped).
  std::vector<QueueStats> stats() const;
  /// First error a queue thread hit (its device then fails I/O), if any.
  std::string queue_error() const;

 private:
  struct Token {};

 public:
  Server(Token, Control control, std::unique_ptr<blk_mq::BlockDevice> device,
         abi::ublk::CtrlDevInfo info);

 private:
  Result<void> start_queues();
  void stop_queues() noexcept;

  Control control_;
  std::unique_ptr<blk_mq::BlockDevice> device_;  // outlives the queues that submit to it
  abi::ublk::CtrlDevInfo info_;
  UniqueFd char_fd_;  // /dev/ublkcN; closed after the queues' mappings and rings are gone
  std::vector<std::unique_ptr<QueueRunner>> queues_;
  std::vector<QueueStats> final_stats_;  // the queues' counters when they stopped
  bool started_ = false;
  bool deleted_ = false;
};

/// The devices the kernel knows, by probing GET_DEV_INFO on the ids of /dev/ublkc* nodes and
/// /sys/class/ublk-char (device ids are small integers).
Result<std::vector<abi::ublk::CtrlDevInfo>> list_devices(Control& control);

/// "dead", "live", "quiesced" or "unknown".
const char* state_name(uint16_t state) noexcept;

}  // namespace pepita::ublk
