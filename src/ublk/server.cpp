// The ublk server (server.hpp): device setup and teardown on the control path, and one thread +
// one io_uring::EventLoop (SQE128 ring) per hardware queue on the I/O path
// (drivers/block/ublk_drv.c's protocol: every tag is owned by exactly one outstanding FETCH_REQ /
// COMMIT_AND_FETCH_REQ command, issued by the queue's own task).
#include "pepita/ublk/server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "pepita/core/format.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/io_uring/event_loop.hpp"
#include "pepita/memory/dma_buffer.hpp"
#include "pepita/ublk/recovery.hpp"

namespace pepita::ublk {
namespace u = abi::ublk;

namespace {

/// open() that waits up to `timeout` for a device node to appear (udev may create it after the
/// ioctl that made the device returned; devtmpfs does it synchronously): the fd or -errno.
int open_device_node(const char* path, int flags, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const int fd = pepita::sys::open(path, flags);
    if (fd != -ENOENT || std::chrono::steady_clock::now() >= deadline) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

size_t page_round(size_t bytes) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

}  // namespace

/// One hardware queue: its descriptor mapping, tag buffers, event loop and thread.
class QueueRunner {
 public:
  QueueRunner(uint16_t q_id, int char_fd, const u::CtrlDevInfo& info, blk_mq::BlockDevice& device,
              const IoLimits& limits)
      : q_id_(q_id),
        char_fd_(char_fd),
        depth_(info.queue_depth),
        user_copy_((info.flags & u::F_USER_COPY) != 0),
        limits_(limits),
        device_(device) {}

  ~QueueRunner() {
    request_stop();
    if (thread_.joinable()) thread_.join();
  }

  /// Maps the queue's descriptors, allocates buffers and the ring, and starts the thread; returns
  /// once the thread has submitted FETCH_REQ for every tag (START_DEV waits for that).
  Result<void> start() {
    // Queue q's descriptors sit at UBLKSRV_CMD_BUF_OFFSET + q * (max depth * sizeof(desc)),
    // and the mapping must be exactly depth descriptors rounded up to a page (ublk_ch_mmap).
    const size_t desc_bytes = page_round(size_t{depth_} * sizeof(u::IoDesc));
    const off_t offset = static_cast<off_t>(
        u::SRV_CMD_BUF_OFFSET + size_t{q_id_} * page_round(u::MAX_QUEUE_DEPTH * sizeof(u::IoDesc)));
    // SAFETY: the kernel maps its descriptor array read-only; we only read whole IoDesc values at
    // tag indexes < depth, and the mapping lives until the ring (and its commands) is gone.
    descriptors_map_ = PEPITA_TRY(Mapping::map(desc_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE,
                                               char_fd_, offset, "ublk I/O descriptors"));
    // Bidirectional: reads and writes both pass through a tag's buffer. Neither locked nor
    // populated: depth * max_io_bytes is 64 MiB per queue at the defaults, of which requests touch
    // only what they use, and neither the kernel's copy (addr) nor USER_COPY's pread/pwrite on
    // the char device needs the pages pinned beforehand.
    buffers_ = PEPITA_TRY(memory::DmaBuffer::allocate(
        size_t{depth_} * limits_.max_io_bytes, memory::DmaDirection::Bidirectional,
        {.lock = memory::MemLock::No, .populate = false}));
    handler_.emplace(device_, q_id_, std::span(descriptors(), depth_), buffers_.bytes(), limits_);
    commands_ = std::make_unique<TagCommand[]>(depth_);
    for (uint16_t tag = 0; tag < depth_; ++tag) {
      commands_[tag].runner = this;
      commands_[tag].tag = tag;
    }
    // One SQE per tag plus the wake poll; completions never exceed that either. Set up here, the
    // loop then belongs to the queue thread (started below, after the last use on this one).
    loop_ = PEPITA_TRY(io_uring::EventLoop::create({.entries = uint32_t{depth_} + 1,
                                                    .cq_entries = 2 * (uint32_t{depth_} + 1),
                                                    .sqe128 = true}));
    PEPITA_TRY_VOID(loop_->enable_wake());

    std::promise<Result<void>> ready;
    auto ready_future = ready.get_future();
    thread_ = std::thread([this, promise = std::move(ready)]() mutable { run(promise); });
    return ready_future.get();
  }

  void request_stop() noexcept {
    stop_.store(true, std::memory_order_release);
    if (loop_) loop_->wake();
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  QueueStats stats() const { return handler_ ? handler_->stats() : QueueStats{}; }
  std::string error() const {
    std::lock_guard lock(error_mutex_);
    return error_;
  }

 private:
  void set_error(std::string message) {
    std::lock_guard lock(error_mutex_);
    if (error_.empty()) error_ = std::move(message);
  }

  // The CQE of a tag's FETCH_REQ / COMMIT_AND_FETCH_REQ reaches its TagCommand.
  struct TagCommand final : io_uring::Completion {
    TagCommand() noexcept : Completion(&TagCommand::on_cqe) {}
    static void on_cqe(Completion* self, int res, uint32_t /*flags*/) noexcept {
      auto* c = static_cast<TagCommand*>(self);
      c->runner->on_command(c->tag, res);
    }
    QueueRunner* runner = nullptr;
    uint16_t tag = 0;
  };

  void queue_cmd(uint32_t cmd_op, uint16_t tag, int32_t result) noexcept {
    u::IoCmd cmd{};
    cmd.q_id = q_id_;
    cmd.tag = tag;
    cmd.result = result;
    // SAFETY: the kernel copies request data to/from this address while the tag is ours; the
    // buffer mapping outlives the ring, whose destruction cancels every outstanding command.
    // With UBLK_F_USER_COPY the kernel copies nothing and insists on 0: we pread/pwrite instead.
    cmd.addr = user_copy_ ? 0 : reinterpret_cast<uintptr_t>(handler_->buffer(tag));
    // Never needs room: the SQ has depth + 1 entries, each tag has at most one command queued or
    // in flight, and the wake poll takes the last one.
    auto queued =
        loop_->uring_cmd(&commands_[tag], char_fd_, cmd_op, std::as_bytes(std::span(&cmd, 1)));
    if (!queued) {
      set_error(
          std::move(queued.error())
              .with_context("ublk queue " + std::to_string(q_id_) + " tag " + std::to_string(tag))
              .to_string());
      --live_tags_;
    }
  }

  void on_command(uint16_t tag, int res) noexcept {
    if (exited_) return;  // ~EventLoop dispatching leftovers after the thread left: not served
    if (res == u::IO_RES_OK) {
      deliver(tag);
      return;
    }
    if (!serving_) {
      // Before START_DEV an accepted FETCH_REQ cannot complete: this is a refusal.
      if (res < 0 && fetch_error_ == 0) fetch_error_ = res;
      return;
    }
    // IO_RES_ABORT: the device is stopping (STOP_DEV) and gives the tag back for good.
    if (res != u::IO_RES_ABORT)
      set_error("ublk queue " + std::to_string(q_id_) + " tag " + std::to_string(tag) +
                ": I/O command failed: " + std::strerror(-res));
    --live_tags_;
  }

  // UBLK_F_USER_COPY: a request's data lives in the kernel until we read it from /dev/ublkcN at
  // the tag's offset (writes), or write it there before committing (reads).
  uint64_t user_copy_offset(uint16_t tag) const noexcept {
    return u::user_copy_offset(q_id_, tag, 0);
  }
  void deliver(uint16_t tag) noexcept {
    if (user_copy_) {
      const u::IoDesc desc = descriptors()[tag];
      const uint64_t len = uint64_t{desc.nr_sectors} << 9;
      if (u::io_desc_op(desc) == u::IO_OP_WRITE && len <= limits_.max_io_bytes) {
        const int64_t n =
            pepita::sys::pread_full(char_fd_, handler_->buffer(tag), len, user_copy_offset(tag));
        if (n != static_cast<int64_t>(len)) {
          handler_->reject(tag, n < 0 ? static_cast<int32_t>(n) : -EIO);
          return;
        }
      }
    }
    handler_->on_request(tag);
  }
  int32_t before_commit(uint16_t tag, int32_t result) noexcept {
    if (!user_copy_ || result <= 0 || u::io_desc_op(descriptors()[tag]) != u::IO_OP_READ)
      return result;
    const int64_t n = pepita::sys::pwrite_full(char_fd_, handler_->buffer(tag),
                                               static_cast<size_t>(result), user_copy_offset(tag));
    return n == result ? result : (n < 0 ? static_cast<int32_t>(n) : -EIO);
  }
  const u::IoDesc* descriptors() const noexcept {
    // SAFETY: the mapping is page aligned, so IoDesc (8-byte aligned) entries start aligned; it
    // holds depth_ descriptors and lives as long as this runner.
    return reinterpret_cast<const u::IoDesc*>(descriptors_map_.data());
  }

  void run(std::promise<Result<void>>& ready) noexcept {
    serve(ready);
    exited_ = true;
  }

  void serve(std::promise<Result<void>>& ready) noexcept {
    handler_->bind_to_current_thread(
        [](void* self) { static_cast<QueueRunner*>(self)->loop_->wake(); }, this);
    live_tags_ = depth_;
    for (uint16_t tag = 0; tag < depth_; ++tag) queue_cmd(u::U_IO_FETCH_REQ, tag, 0);
    if (live_tags_ != depth_) {  // queue_cmd failed: START_DEV would wait for the missing tag
      ready.set_value(fail(ErrorCode::Internal, error()));
      return;
    }
    if (auto submitted = loop_->submit(); !submitted) {
      ready.set_value(std::unexpected(
          std::move(submitted.error())
              .with_context("ublk queue " + std::to_string(q_id_) + ": submitting FETCH_REQ")));
      return;
    }
    // A refused FETCH_REQ completes inside submit(); one that was accepted completes only with a
    // request, which cannot come before START_DEV. So a CQE now is an error, and START_DEV would
    // wait forever for this queue: report it instead.
    loop_->dispatch();
    if (fetch_error_ != 0) {
      ready.set_value(std::unexpected(Error::from_errno(
          fetch_error_,
          "ublk queue " + std::to_string(q_id_) + ": FETCH_REQ refused by the driver")));
      return;
    }
    serving_ = true;
    ready.set_value({});

    while (true) {
      // One io_uring_enter: the commits queued below go in, and we wait for a command's CQE or
      // a wake-up; every CQE is dispatched to on_command (Busy/WouldBlock are absorbed).
      if (auto ran = loop_->run_once(); !ran) {
        set_error(ran.error().to_string());
        break;
      }
      // A wake-up only ends the wait: stop_ and the completions other threads handed the
      // handler are looked at below either way.
      (void)loop_->take_wake();
      handler_->drain([&](uint16_t tag, int32_t result) {
        queue_cmd(u::U_IO_COMMIT_AND_FETCH_REQ, tag, before_commit(tag, result));
      });
      const bool idle = handler_->in_flight() == 0;
      if (idle && (live_tags_ == 0 || stop_.load(std::memory_order_acquire))) break;
    }
  }

  uint16_t q_id_;
  int char_fd_;
  uint16_t depth_;
  bool user_copy_;
  IoLimits limits_;
  blk_mq::BlockDevice& device_;
  // Destruction runs bottom-up: the thread is joined in ~QueueRunner first, then the loop goes
  // (its ring closing cancels any command still naming our buffers; CQEs it dispatches on the
  // way reach commands_ and handler_, declared above it), then the buffers and descriptors.
  Mapping descriptors_map_;
  memory::DmaBuffer buffers_;
  std::optional<QueueHandler> handler_;
  std::unique_ptr<TagCommand[]> commands_;
  std::unique_ptr<io_uring::EventLoop> loop_;
  std::thread thread_;
  // Queue-thread state (read by ~EventLoop's dispatch only after the thread was joined).
  uint32_t live_tags_ = 0;  // tags with a FETCH/COMMIT_AND_FETCH outstanding
  int fetch_error_ = 0;     // first refused FETCH_REQ before serving
  bool serving_ = false;    // START_DEV may now deliver requests
  bool exited_ = false;     // the thread left serve(): late CQEs are not served
  std::atomic<bool> stop_{false};
  mutable std::mutex error_mutex_;
  std::string error_;
};

Result<std::unique_ptr<Server>> Server::start(std::unique_ptr<blk_mq::BlockDevice> device,
                                              const DeviceOptions& options,
                                              const char* control_path) {
  if (!device) return fail(ErrorCode::InvalidArgument, "ublk server: no target device");
  PEPITA_TRY_VOID(validate(options));
  const blk_mq::DeviceInfo& dinfo = device->info();
  if (dinfo.tag_set.nr_hw_queues < options.queues || dinfo.tag_set.queue_depth < options.depth)
    return fail(ErrorCode::InvalidArgument,
                "ublk server: the target has " + std::to_string(dinfo.tag_set.nr_hw_queues) +
                    " queues of depth " + std::to_string(dinfo.tag_set.queue_depth) +
                    ", fewer than the device's " + std::to_string(options.queues) + " x " +
                    std::to_string(options.depth));
  if (dinfo.capacity_sectors == 0)
    return fail(ErrorCode::InvalidArgument, "ublk server: the target has zero capacity");

  Control control = PEPITA_TRY(Control::open(control_path));
  const u::CtrlDevInfo info = PEPITA_TRY(control.add_dev(options));
  auto server = std::make_unique<Server>(Token{}, std::move(control), std::move(device), info);
  // From here on the destructor deletes the device again if anything fails.
  PEPITA_TRY_VOID(server->control_.set_params(info.dev_id, make_params(dinfo, info)));
  PEPITA_TRY_VOID(server->start_queues());
  if (auto started = server->control_.start_dev(info.dev_id, ::getpid()); !started) {
    server->stop_queues();
    return std::unexpected(std::move(started.error()));
  }
  server->started_ = true;
  // devtmpfs makes the node before START_DEV returns; udev-managed /dev may lag a little.
  const std::string block = server->block_path();
  for (int i = 0; i < 200 && ::access(block.c_str(), F_OK) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return server;
}

Result<std::unique_ptr<Server>> Server::recover(uint32_t dev_id,
                                                std::unique_ptr<blk_mq::BlockDevice> device,
                                                const RecoverOptions& options,
                                                const char* control_path) {
  if (!device) return fail(ErrorCode::InvalidArgument, "ublk recover: no target device");
  Control control = PEPITA_TRY(Control::open(control_path));
  const auto deadline = std::chrono::steady_clock::now() + options.wait;
  const auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); };

  // 1. The device must be recoverable; wait for the kernel to quiesce it (it does once the dead
  //    server's io_uring has cancelled its commands).
  u::CtrlDevInfo info = PEPITA_TRY(control.get_dev_info(dev_id));
  for (;;) {
    PEPITA_TRY_VOID(check_recoverable(info, server_alive(info.ublksrv_pid)));
    if (info.state != u::S_DEV_LIVE) break;
    if (std::chrono::steady_clock::now() >= deadline)
      return fail(ErrorCode::TimedOut,
                  fmt("ublk recover (device {}): still live {} ms after its server (pid {}) died; "
                      "the kernel has not quiesced it: retry with a longer wait",
                      dev_id, options.wait.count(), info.ublksrv_pid));
    pause();
    info = PEPITA_TRY(control.get_dev_info(dev_id));
  }

  // 2. The target must be the device's: same size, enough queues and tags.
  const blk_mq::DeviceInfo& dinfo = device->info();
  const u::Params params = PEPITA_TRY(control.get_params(dev_id));
  if ((params.types & u::PARAM_TYPE_BASIC) != 0 &&
      params.basic.dev_sectors != dinfo.capacity_sectors)
    return fail(ErrorCode::InvalidArgument,
                fmt("ublk recover (device {}): the target has {} sectors, the device {}: not the "
                    "target the device was added with",
                    dev_id, dinfo.capacity_sectors, params.basic.dev_sectors));
  if (dinfo.tag_set.nr_hw_queues < info.nr_hw_queues ||
      dinfo.tag_set.queue_depth < info.queue_depth)
    return fail(ErrorCode::InvalidArgument,
                fmt("ublk recover (device {}): the target has {} queues of depth {}, fewer than "
                    "the device's {} x {}",
                    dev_id, dinfo.tag_set.nr_hw_queues, dinfo.tag_set.queue_depth,
                    info.nr_hw_queues, info.queue_depth));

  // 3. START_USER_RECOVERY: EBUSY until the dead server's /dev/ublkcN is released.
  for (;;) {
    auto started = control.start_user_recovery(dev_id);
    if (started) break;
    const bool busy = started.error().code() == KernelError::UblkDeviceBusy;
    if (!busy) return std::unexpected(std::move(started.error()));
    if (std::chrono::steady_clock::now() >= deadline)
      return std::unexpected(std::move(started.error())
                                 .with_context(fmt("ublk recover (device {}): the dead server's "
                                                   "/dev/ublkc{} is still open after {} ms",
                                                   dev_id, dev_id, options.wait.count())));
    pause();
  }

  // 4. New queues fetch every tag; END_USER_RECOVERY unquiesces the device.
  auto server = std::make_unique<Server>(Token{}, std::move(control), std::move(device), info);
  const auto leave_quiesced = [&](Error error) -> Result<std::unique_ptr<Server>> {
    server->stop_queues();
    server->deleted_ = true;  // not ours to delete: its data may matter; the user decides
    return std::unexpected(std::move(error));
  };
  if (auto queues = server->start_queues(); !queues)
    return leave_quiesced(std::move(queues.error()));
  if (auto ended = server->control_.end_user_recovery(dev_id, ::getpid()); !ended)
    return leave_quiesced(std::move(ended.error()));
  server->started_ = true;
  if (auto now = server->control_.get_dev_info(dev_id); now) server->info_ = *now;
  return server;
}

Result<void> Server::start_queues() {
  const std::string path = char_device_path(info_.dev_id);
  const int fd = open_device_node(path.c_str(), O_RDWR, std::chrono::seconds(2));
  if (fd < 0) return fail_errno(fd, "open " + path);
  char_fd_.reset(fd);

  const blk_mq::DeviceInfo& d = device_->info();
  IoLimits limits;
  limits.capacity_sectors = d.capacity_sectors;
  limits.max_io_bytes = info_.max_io_buf_bytes;
  limits.discard = (d.features & blk_mq::features::kDiscard) != 0;
  limits.write_zeroes = (d.features & blk_mq::features::kWriteZeroes) != 0;
  limits.read_only = (d.features & blk_mq::features::kReadOnly) != 0;
  for (uint16_t q = 0; q < info_.nr_hw_queues; ++q) {
    queues_.push_back(std::make_unique<QueueRunner>(q, char_fd_.get(), info_, *device_, limits));
    if (auto ok = queues_.back()->start(); !ok) {
      stop_queues();
      return std::unexpected(
          std::move(ok.error()).with_context("starting ublk queue " + std::to_string(q)));
    }
  }
  return {};
}

void Server::stop_queues() noexcept {
  for (auto& q : queues_) q->request_stop();
  for (auto& q : queues_) q->join();
  if (!queues_.empty()) {
    final_stats_.clear();
    for (const auto& q : queues_) final_stats_.push_back(q->stats());
  }
  queues_.clear();  // rings and mappings go before the char device closes
  char_fd_.reset();
}

Result<void> Server::stop() {
  if (deleted_) return {};
  std::optional<Error> first;
  if (started_) {
    if (auto r = control_.stop_dev(info_.dev_id); !r) first = std::move(r.error());
    started_ = false;
  }
  stop_queues();
  if (auto r = control_.del_dev(info_.dev_id); !r && !first) first = std::move(r.error());
  deleted_ = true;
  if (first) return std::unexpected(std::move(*first));
  return {};
}

Server::Server(Token, Control control, std::unique_ptr<blk_mq::BlockDevice> device,
               u::CtrlDevInfo info)
    : control_(std::move(control)), device_(std::move(device)), info_(info) {}

Server::~Server() { (void)stop(); }

std::vector<QueueStats> Server::stats() const {
  if (queues_.empty()) return final_stats_;
  std::vector<QueueStats> out;
  for (const auto& q : queues_) out.push_back(q->stats());
  return out;
}

std::string Server::queue_error() const {
  for (const auto& q : queues_)
    if (auto e = q->error(); !e.empty()) return e;
  return {};
}

Result<std::vector<u::CtrlDevInfo>> list_devices(Control& control) {
  std::set<uint32_t> ids;
  for (const char* dir : {"/sys/class/ublk-char", "/dev"}) {
    DIR* d = ::opendir(dir);
    if (d == nullptr) continue;
    while (const dirent* e = ::readdir(d)) {
      unsigned id = 0;
      char extra = 0;
      if (std::sscanf(e->d_name, "ublkc%u%c", &id, &extra) == 1) ids.insert(id);
    }
    ::closedir(d);
  }
  std::vector<u::CtrlDevInfo> out;
  for (uint32_t id : ids) {
    auto info = control.get_dev_info(id);
    if (info) {
      out.push_back(*info);
    } else if (info.error().code() != KernelError::UblkDeviceNotFound) {  // deleted meanwhile
      return std::unexpected(std::move(info.error()));
    }
  }
  return out;
}

const char* state_name(uint16_t state) noexcept {
  switch (state) {
    case u::S_DEV_DEAD: return "dead";
    case u::S_DEV_LIVE: return "live";
    case u::S_DEV_QUIESCED: return "quiesced";
    default: return "unknown";
  }
}

}  // namespace pepita::ublk
