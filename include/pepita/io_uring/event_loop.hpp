#pragma once
// EventLoop: one io_uring Ring driven by one thread, dispatching each CQE to the Completion its
// user_data points at (Seastar's io_desc/io_completion shape). On top: callbacks keyed by
// user_data and C++20 awaitables, so ublk and transport code reads as straight-line code.
//
//   auto loop = PEPITA_TRY(EventLoop::create());
//   auto job = [&]() -> Task<Result<std::size_t>> { co_return co_await loop->read(fd, buf, 0); };
//   Result<Result<std::size_t>> n = loop->run(job());   // outer: the loop, inner: the read
//
// One loop per thread, no locks: every member must be called from the loop's thread (or, for a
// loop shared by a submitting and a reaping thread, under one lock the caller holds: see reap()),
// except wake(), which any thread may call.
//
// Users: ublk's queue runners (URING_CMD per tag, wake() for stop and cross-thread completions)
// and blk_mq::FileDisk's io_uring engine (submitter and reaper threads sharing a loop per queue).

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "pepita/io_uring/task.hpp"

namespace pepita::io_uring {

/// Receives the CQEs of one request; its address is the request's user_data. complete() runs on
/// the loop thread, once per CQE (several times for multishot requests: flags has MORE set on
/// all but the last). Dispatch is a plain function pointer set by the subclass (no vtable, so
/// awaitables stay trivially movable before they are submitted).
class Completion {
 public:
  using Fn = void (*)(Completion* self, int res, std::uint32_t flags) noexcept;
  explicit Completion(Fn fn) noexcept : fn_(fn) {}
  void complete(int res, std::uint32_t flags) noexcept { fn_(this, res, flags); }

 private:
  Fn fn_;
};

class EventLoop;

/// Builds the Error of a failed CQE: the errno and the op name ("io_uring read: ...").
Error cqe_error(std::uint8_t opcode, int res);

/// The awaitable behind every EventLoop I/O call: a prepared SQE that enters the ring when the
/// coroutine suspends, and the CQE result converted to T (a pepita::Result) on resumption.
class IoOpBase : public Completion {
 public:
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept;

 protected:
  IoOpBase(EventLoop& loop, const abi::Sqe& sqe) noexcept
      : Completion(&IoOpBase::on_complete), loop_(&loop), sqe_(sqe) {}
  static void on_complete(Completion* self, int res, std::uint32_t flags) noexcept;
  /// The Error for a negative result, a refused submission or an expired timeout.
  Error make_error() const;
  bool failed() const noexcept { return submit_error_.has_value() || (res_ < 0 && !res_ok()); }
  bool res_ok() const noexcept { return etime_is_success_ && res_ == -ETIME; }

  EventLoop* loop_;
  abi::Sqe sqe_;
  std::coroutine_handle<> handle_;
  std::optional<Error> submit_error_;
  abi::KernelTimespec ts_{};
  int res_ = 0;
  bool addr_is_ts_ = false;        // sqe.addr must point at ts_ (sleep): set at suspension
  bool linked_timeout_ = false;    // a LINK_TIMEOUT on ts_ follows the request
  bool etime_is_success_ = false;  // sleep: -ETIME is the expected result
};

template <typename T>
class [[nodiscard]] IoOp : public IoOpBase {
 public:
  IoOp(EventLoop& loop, const abi::Sqe& sqe) noexcept : IoOpBase(loop, sqe) {}

  /// Bounds the request: if it has not completed after `timeout`, the kernel cancels it and the
  /// result is a TimedOut error (a LINK_TIMEOUT linked after the request).
  IoOp with_timeout(std::chrono::nanoseconds timeout) && {
    linked_timeout_ = true;
    if (timeout.count() < 0) timeout = std::chrono::nanoseconds(0);
    ts_.tv_sec = timeout.count() / 1'000'000'000;
    ts_.tv_nsec = timeout.count() % 1'000'000'000;
    return std::move(*this);
  }

  T await_resume() {
    if (failed()) return std::unexpected(make_error());
    if constexpr (std::is_same_v<T, Result<void>>) {
      return {};
    } else {
      return static_cast<typename T::value_type>(res_);
    }
  }

 private:
  friend class EventLoop;
};

/// The per-thread event loop. Non-movable: in-flight requests point at it.
class EventLoop {
 public:
  /// Creates the loop and its ring (256 SQEs, 4096 CQEs by default: completions of a burst
  /// rarely overflow).
  static Result<std::unique_ptr<EventLoop>> create(const RingOptions& options = {
                                                       .entries = 256, .cq_entries = 4096});
  explicit EventLoop(Ring ring) noexcept : ring_(std::move(ring)) {}
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  /// Cancels everything in flight and waits (bounded) for the kernel to release it: callbacks
  /// see -ECANCELED, coroutines a Cancelled error, and buffers are not written after return.
  ~EventLoop();

  Ring& ring() noexcept { return ring_; }
  /// Requests submitted whose final CQE has not been dispatched yet (the wake poll not counted).
  std::size_t in_flight() const noexcept { return in_flight_ - (wake_armed_ ? 1 : 0); }

  // ---- completions keyed by user_data -------------------------------------------------------

  /// Next SQE with user_data = c: `c->complete()` runs for its CQE(s). Do not set
  /// CQE_SKIP_SUCCESS on it. Errors: Cancelled while shutting down, or the ring's errors.
  /// When the SQ is full it submits, and on Busy dispatches ready completions to make room.
  Result<abi::Sqe*> sqe_for(Completion* c);
  /// sqe_for() that never enters the kernel nor dispatches: nullptr when the SQ is full (call
  /// submit(), then retry) or the loop is shutting down. For a loop used under a lock, where a
  /// completion run from here could deadlock on that lock. Fill the SQE with a prep_* helper
  /// (they leave user_data alone).
  abi::Sqe* try_sqe_for(Completion* c) noexcept;
  /// Queues IORING_OP_URING_CMD (`cmd_op` plus up to 80 bytes of driver command: ublk, NVMe
  /// passthrough) for `c` on a ring created with sqe128. InvalidArgument on a 64-byte-SQE ring;
  /// otherwise sqe_for()'s errors. Reaches the kernel at the next submit()/run_once().
  Result<void> uring_cmd(Completion* c, int fd, std::uint32_t cmd_op,
                         std::span<const std::byte> cmd);

  using Callback = std::function<void(int res, std::uint32_t flags)>;
  /// Prepares an SQE with `prep(abi::Sqe&)` and calls `cb(res, flags)` on its CQE(s). Returns
  /// the request's key (its user_data) for cancel(). Callback slots are recycled, so steady-state
  /// submission does not allocate beyond std::function's own storage.
  template <typename Prep>
  Result<std::uint64_t> submit(Prep&& prep, Callback cb) {
    CallbackSlot* slot = take_slot(std::move(cb));
    auto sqe = sqe_for(slot);
    if (!sqe) {
      release_slot(slot);
      return std::unexpected(std::move(sqe).error());
    }
    std::forward<Prep>(prep)(**sqe);
    (*sqe)->user_data = key_of(slot);
    (*sqe)->flags &= static_cast<std::uint8_t>(~abi::sqe_flags::CQE_SKIP_SUCCESS);
    return key_of(slot);
  }
  /// Asks the kernel to cancel the request with `key`; its completion reports -ECANCELED (or
  /// its real result if it already ran).
  Result<void> cancel(std::uint64_t key);
  /// Cancels every request on `fd`.
  Result<void> cancel_fd(int fd);

  // ---- wake-ups from other threads --------------------------------------------------------

  /// Lets other threads interrupt a waiting run_once(): creates an eventfd and keeps a poll on it
  /// armed (re-armed by each run_once after it fired). Call once, on the thread that owns the
  /// loop (which may then hand it to another), before any other thread may call wake(). The poll is
  /// not counted in in_flight(), but run_once() waits for it. Errors: the eventfd's
  /// (ResourceExhausted at the fd limit) or sqe_for()'s.
  Result<void> enable_wake();
  /// Thread-safe and async-signal-safe: makes the current (or next) run_once() return, with
  /// take_wake() true afterwards. Wake-ups coalesce. A no-op before enable_wake().
  void wake() noexcept;
  /// Whether a wake() was dispatched since the last call; clears the flag.
  bool take_wake() noexcept { return std::exchange(woken_, false); }

  // ---- driving ----------------------------------------------------------------------------

  /// Publishes queued SQEs to the kernel without waiting (one io_uring_enter). Busy/WouldBlock
  /// mean: reap (run_once or reap), then submit again; the SQEs stay queued.
  Result<unsigned> submit() { return ring_.submit(); }
  /// Dispatches every CQE already in the CQ, without entering the kernel: in batches, copy,
  /// advance the CQ once, then call out (so completions may submit or reap again safely).
  /// Returns the number of CQEs delivered (those with user_data 0 are not counted).
  unsigned dispatch();

  /// One reaped CQE, not yet handed to its Completion.
  struct Reaped {
    Completion* completion;
    int res;
    std::uint32_t flags;
    void deliver() const noexcept { completion->complete(res, flags); }
  };
  /// Takes up to out.size() ready CQEs off the CQ (advancing it once per batch of 64) without
  /// running them, for a loop shared between threads under the caller's lock: unlock, then
  /// deliver() each of the returned entries in order. CQEs with user_data 0 (cancels, linked
  /// timeouts) are consumed here and not returned. Returns how many entries of `out` were
  /// filled; fewer than out.size() means the CQ is empty.
  unsigned reap(std::span<Reaped> out) noexcept;

  /// Submits queued SQEs, waits for at least one completion if anything is in flight (up to
  /// `timeout`, forever when nullopt), and dispatches every ready CQE. Returns the number
  /// dispatched. Busy/WouldBlock from the kernel are absorbed (completions are reaped first).
  /// With a wake poll armed (enable_wake) it waits for that too. Submitting and waiting is one
  /// io_uring_enter: queue a batch, then run_once.
  Result<unsigned> run_once(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  /// Runs until nothing is in flight (the wake poll does not count).
  Result<void> run_until_idle();

  /// Starts `task` and runs the loop until it finishes; returns its value. An error means the
  /// loop itself failed (the task may still be suspended).
  template <typename T>
  Result<T> run(Task<T> task) {
    std::optional<T> out;
    bool done = false;
    drive(std::move(task), out, done);
    while (!done) PEPITA_TRY(run_once());
    return std::move(*out);
  }
  Result<void> run(Task<void> task) {
    bool done = false;
    drive_void(std::move(task), done);
    while (!done) PEPITA_TRY(run_once());
    return {};
  }
  /// Starts `task` detached; it runs as the loop runs and frees itself at the end.
  void spawn(Task<void> task) { detach(std::move(task)); }

  // ---- awaitable I/O ----------------------------------------------------------------------

  IoOp<Result<void>> nop();
  IoOp<Result<std::size_t>> read(int fd, std::span<std::byte> buf, std::uint64_t offset);
  IoOp<Result<std::size_t>> write(int fd, std::span<const std::byte> buf, std::uint64_t offset);
  IoOp<Result<std::size_t>> readv(int fd, std::span<const iovec> iov, std::uint64_t offset);
  IoOp<Result<std::size_t>> writev(int fd, std::span<const iovec> iov, std::uint64_t offset);
  /// Into registered buffer `buf_index` (see Ring::register_buffers).
  IoOp<Result<std::size_t>> read_fixed(int fd, std::span<std::byte> buf, std::uint64_t offset,
                                       std::uint16_t buf_index);
  IoOp<Result<std::size_t>> write_fixed(int fd, std::span<const std::byte> buf,
                                        std::uint64_t offset, std::uint16_t buf_index);
  IoOp<Result<void>> fsync(int fd, bool datasync = false);
  /// Returns the new fd; the caller owns it (wrap in UniqueFd).
  IoOp<Result<int>> openat(int dirfd, const char* path, int flags, unsigned mode);
  IoOp<Result<void>> close(int fd);
  /// Returns the accepted fd; the caller owns it.
  IoOp<Result<int>> accept(int listen_fd, int flags = SOCK_CLOEXEC);
  IoOp<Result<void>> connect(int fd, const sockaddr* addr, socklen_t len);
  IoOp<Result<std::size_t>> send(int fd, std::span<const std::byte> buf, int flags = MSG_NOSIGNAL);
  /// 0 means the peer closed the connection.
  IoOp<Result<std::size_t>> recv(int fd, std::span<std::byte> buf, int flags = 0);
  /// Waits until `fd` is ready for `poll_mask` (POLLIN...); returns the ready mask.
  IoOp<Result<unsigned>> poll(int fd, unsigned poll_mask);
  /// Completes after `duration` (an io_uring timeout, no thread sleeps).
  IoOp<Result<void>> sleep(std::chrono::nanoseconds duration);

 private:
  friend class IoOpBase;

  class CallbackSlot final : public Completion {
   public:
    CallbackSlot(EventLoop* loop, Callback cb)
        : Completion(&CallbackSlot::on_complete), loop_(loop), cb_(std::move(cb)) {}
    static void on_complete(Completion* self, int res, std::uint32_t flags) noexcept;
    EventLoop* loop_;
    Callback cb_;
  };

  // The wake poll's completion: drains the eventfd and records the wake-up; run_once re-arms.
  class WakeSlot final : public Completion {
   public:
    explicit WakeSlot(EventLoop* loop) noexcept : Completion(&WakeSlot::on_complete), loop_(loop) {}
    static void on_complete(Completion* self, int res, std::uint32_t flags) noexcept;
    EventLoop* loop_;
  };
  // The destructor's cancel-everything request: its result says whether anything was found.
  class ShutdownSlot final : public Completion {
   public:
    ShutdownSlot() noexcept : Completion(&ShutdownSlot::on_complete) {}
    static void on_complete(Completion* self, int res, std::uint32_t flags) noexcept;
    bool done = false;
    int res = 0;
  };

  static std::uint64_t key_of(Completion* c) noexcept {
    return reinterpret_cast<std::uintptr_t>(c);  // SAFETY: pointer to integer, for user_data
  }
  CallbackSlot* take_slot(Callback cb);
  void release_slot(CallbackSlot* slot) noexcept;
  /// Reserves `n` consecutive SQEs (a request plus its linked timeout) so a link is never split
  /// across submissions.
  Result<void> reserve(unsigned n);
  Result<void> arm_wake();
  Result<void> post_internal_cancel(std::uint64_t key, int fd, std::uint32_t flags);

  template <typename T>
  static detail::Detached drive(Task<T> task, std::optional<T>& out, bool& done) {
    out.emplace(co_await std::move(task));
    done = true;
  }
  static detail::Detached drive_void(Task<void> task, bool& done) {
    co_await std::move(task);
    done = true;
  }
  static detail::Detached detach(Task<void> task) { co_await std::move(task); }

  // The eventfd is declared before the ring so it is closed after the ring (and its poll) is.
  UniqueFd wake_fd_;
  Ring ring_;
  std::size_t in_flight_ = 0;  // including the wake poll while armed
  bool closing_ = false;
  bool wake_armed_ = false;
  bool woken_ = false;
  WakeSlot wake_slot_{this};
  std::vector<std::unique_ptr<CallbackSlot>> slot_store_;  // owns every slot ever created
  std::vector<CallbackSlot*> free_slots_;
};

}  // namespace pepita::io_uring
