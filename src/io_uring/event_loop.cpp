// EventLoop: CQE dispatch to Completions, callback slots, awaitable ops and orderly shutdown.
#include "pepita/io_uring/event_loop.hpp"

#include <poll.h>

#include <array>
#include <cerrno>
#include <string>

#include "pepita/core/sys/eventfd.hpp"
#include "pepita/io_uring/probe.hpp"

namespace pepita::io_uring {
namespace {

constexpr unsigned kDispatchBatch = 64;
constexpr auto kShutdownBudget = std::chrono::seconds(2);

}  // namespace

Error cqe_error(std::uint8_t opcode, int res) {
  return Error::from_errno(res, std::string("io_uring ") + std::string(op_name(opcode)));
}

// ---- IoOpBase ---------------------------------------------------------------------------------

bool IoOpBase::await_suspend(std::coroutine_handle<> h) noexcept {
  const unsigned needed = linked_timeout_ ? 2 : 1;
  if (auto r = loop_->reserve(needed); !r) {
    submit_error_ = std::move(r).error();
    return false;  // resume at once with the error
  }
  auto sqe = loop_->sqe_for(this);
  if (!sqe) {
    submit_error_ = std::move(sqe).error();
    return false;
  }
  abi::Sqe* s = *sqe;
  const std::uint64_t key = s->user_data;
  *s = sqe_;
  s->user_data = key;
  // ts_ lives in this awaitable, which sits in the suspended coroutine's frame until complete().
  if (addr_is_ts_) s->addr = ptr_arg(&ts_);
  if (linked_timeout_) {
    s->flags |= abi::sqe_flags::IO_LINK;
    abi::Sqe* t = loop_->ring_.get_sqe();  // reserved above: cannot be null
    prep_link_timeout(*t, &ts_, 0);
    t->user_data = 0;  // its CQE is not ours to dispatch
  }
  handle_ = h;
  return true;
}

void IoOpBase::on_complete(Completion* self, int res, std::uint32_t /*flags*/) noexcept {
  auto* op = static_cast<IoOpBase*>(self);
  op->res_ = res;
  op->handle_.resume();
}

Error IoOpBase::make_error() const {
  if (submit_error_) return *submit_error_;
  if (linked_timeout_ && res_ == -ECANCELED) {
    return Error(
        ErrorCode::TimedOut,
        std::string("io_uring ") + std::string(op_name(sqe_.opcode)) + ": timed out after " +
            std::to_string(ts_.tv_sec * 1000 + ts_.tv_nsec / 1'000'000) + " ms (or was cancelled)",
        ETIME);
  }
  return cqe_error(sqe_.opcode, res_);
}

// ---- EventLoop --------------------------------------------------------------------------------

Result<std::unique_ptr<EventLoop>> EventLoop::create(const RingOptions& options) {
  auto ring = PEPITA_TRY(Ring::create(options));
  return std::make_unique<EventLoop>(std::move(ring));
}

EventLoop::~EventLoop() {
  if (in_flight() == 0) return;  // closing the ring cancels a lone wake poll
  closing_ = true;
  // The wake poll first, on its own, so the cancel-everything below counts only the caller's
  // requests: when it finds none (-ENOENT) what is left cannot be cancelled (a driver's
  // URING_CMD, e.g. ublk's FETCH_REQ) and only closing the ring releases it: waiting is futile.
  if (wake_armed_) (void)post_internal_cancel(key_of(&wake_slot_), -1, 0);
  // When it cannot be posted (a full SQ), all.res stays 0: the loop waits out the budget as if
  // it had found something.
  ShutdownSlot all;
  if (ring_.sq_space_left() == 0) (void)ring_.submit();
  if (abi::Sqe* sqe = ring_.get_sqe(); sqe != nullptr) {
    prep_cancel(*sqe, 0, abi::cancel_flags::ANY | abi::cancel_flags::ALL);
    sqe->user_data = key_of(&all);
    ++in_flight_;
  }
  const auto deadline = std::chrono::steady_clock::now() + kShutdownBudget;
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
    if (all.done && all.res == -ENOENT) {
      dispatch();  // whatever completed on its own meanwhile
      break;
    }
    if (!run_once(std::chrono::milliseconds(50))) break;
  }
  // Leaving with `all` still in flight (budget spent) is safe: the ring closes before any CQE
  // naming it could be dispatched.
}

void EventLoop::ShutdownSlot::on_complete(Completion* self, int res, std::uint32_t) noexcept {
  auto* slot = static_cast<ShutdownSlot*>(self);
  slot->done = true;
  slot->res = res;
}

Result<abi::Sqe*> EventLoop::sqe_for(Completion* c) {
  if (closing_)
    return fail(ErrorCode::Cancelled, "io_uring event loop is shutting down; request not started");
  abi::Sqe* sqe = ring_.get_sqe();
  if (sqe == nullptr) [[unlikely]] {
    // SQ full: push what is queued to the kernel; on Busy reap completions to make room.
    auto r = ring_.submit();
    if (!r && r.error().is_retriable()) {
      dispatch();
      r = ring_.submit();
    }
    if (!r) return std::unexpected(std::move(r).error());
    sqe = ring_.get_sqe();
    if (sqe == nullptr)
      return fail(ErrorCode::IoUringSubmitFull,
                  "io_uring event loop: SQ still full after submitting; run the loop to reap");
  }
  sqe->user_data = key_of(c);
  ++in_flight_;
  return sqe;
}

abi::Sqe* EventLoop::try_sqe_for(Completion* c) noexcept {
  if (closing_) return nullptr;
  abi::Sqe* sqe = ring_.get_sqe();
  if (sqe == nullptr) [[unlikely]]
    return nullptr;
  sqe->user_data = key_of(c);
  ++in_flight_;
  return sqe;
}

Result<void> EventLoop::uring_cmd(Completion* c, int fd, std::uint32_t cmd_op,
                                  std::span<const std::byte> cmd) {
  if ((ring_.setup_flags() & abi::setup::SQE128) == 0)
    return fail(ErrorCode::InvalidArgument,
                "io_uring uring_cmd needs a ring created with RingOptions::sqe128");
  abi::Sqe* sqe = PEPITA_TRY(sqe_for(c));
  const std::uint64_t key = sqe->user_data;
  // SAFETY: on an SQE128 ring (checked above) each slot is 128 bytes and 64-aligned, so the
  // Sqe128 view covers exactly the slot get_sqe() handed out.
  auto* big = reinterpret_cast<abi::Sqe128*>(sqe);
  prep_uring_cmd(*big, fd, cmd_op, cmd.data(), cmd.size());  // clears the whole SQE
  big->user_data = key;
  return {};
}

Result<void> EventLoop::enable_wake() {
  if (wake_fd_) return {};
  wake_fd_ = PEPITA_TRY(pepita::sys::make_eventfd(EFD_NONBLOCK));
  return arm_wake();
}

void EventLoop::wake() noexcept {
  const int fd = wake_fd_.get();
  if (fd < 0) return;
  // Cannot fail on a valid eventfd (a full counter already wakes the poll).
  (void)pepita::sys::eventfd_signal(fd);
}

Result<void> EventLoop::arm_wake() {
  abi::Sqe* sqe = PEPITA_TRY(sqe_for(&wake_slot_));
  prep_poll_add(*sqe, wake_fd_.get(), POLLIN);
  wake_armed_ = true;
  return {};
}

void EventLoop::WakeSlot::on_complete(Completion* self, int res, std::uint32_t) noexcept {
  EventLoop* loop = static_cast<WakeSlot*>(self)->loop_;
  loop->wake_armed_ = false;
  if (res < 0) return;                                     // cancelled at shutdown
  (void)pepita::sys::eventfd_drain(loop->wake_fd_.get());  // -EAGAIN if already drained: fine
  loop->woken_ = true;  // run_once re-arms the poll before it next waits
}

Result<void> EventLoop::reserve(unsigned n) {
  if (ring_.sq_space_left() >= n) return {};
  auto r = ring_.submit();
  if (!r && r.error().is_retriable()) {
    dispatch();
    r = ring_.submit();
  }
  if (!r) return std::unexpected(std::move(r).error());
  if (ring_.sq_space_left() < n)
    return fail(ErrorCode::ResourceExhausted, "io_uring event loop: no room for a linked request");
  return {};
}

EventLoop::CallbackSlot* EventLoop::take_slot(Callback cb) {
  if (!free_slots_.empty()) {
    CallbackSlot* slot = free_slots_.back();
    free_slots_.pop_back();
    slot->cb_ = std::move(cb);
    return slot;
  }
  slot_store_.push_back(std::make_unique<CallbackSlot>(this, std::move(cb)));
  return slot_store_.back().get();
}

void EventLoop::release_slot(CallbackSlot* slot) noexcept {
  slot->cb_ = nullptr;
  free_slots_.push_back(slot);
}

void EventLoop::CallbackSlot::on_complete(Completion* self, int res, std::uint32_t flags) noexcept {
  auto* slot = static_cast<CallbackSlot*>(self);
  if ((flags & abi::cqe_flags::MORE) != 0) {
    slot->cb_(res, flags);  // multishot: the slot stays armed
    return;
  }
  // Free the slot before calling out, so the callback may submit (and reuse it) right away.
  Callback cb = std::move(slot->cb_);
  slot->loop_->release_slot(slot);
  cb(res, flags);
}

Result<void> EventLoop::post_internal_cancel(std::uint64_t key, int fd, std::uint32_t flags) {
  if (ring_.sq_space_left() == 0) PEPITA_TRY(ring_.submit());
  abi::Sqe* sqe = ring_.get_sqe();
  if (sqe == nullptr)
    return fail(ErrorCode::IoUringSubmitFull, "io_uring event loop: SQ full, cannot post cancel");
  if (fd >= 0) {
    prep_cancel_fd(*sqe, fd, flags);
  } else {
    prep_cancel(*sqe, key, flags);
  }
  sqe->user_data = 0;  // result (found / not found) is advisory
  return {};
}

Result<void> EventLoop::cancel(std::uint64_t key) {
  if (key == 0) return fail(ErrorCode::InvalidArgument, "io_uring cancel: key 0 is not a request");
  return post_internal_cancel(key, -1, 0);
}

Result<void> EventLoop::cancel_fd(int fd) {
  if (fd < 0) return fail(ErrorCode::InvalidArgument, "io_uring cancel_fd: negative fd");
  return post_internal_cancel(0, fd, abi::cancel_flags::ALL);
}

unsigned EventLoop::reap(std::span<Reaped> out) noexcept {
  unsigned filled = 0;
  while (filled < out.size()) {
    std::array<const abi::Cqe*, kDispatchBatch> ptrs{};
    const std::size_t room = std::min<std::size_t>(kDispatchBatch, out.size() - filled);
    const unsigned n = ring_.peek_batch(std::span(ptrs).first(room));
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) {
      const abi::Cqe& cqe = *ptrs[i];
      if (cqe.user_data == 0) continue;  // internal: cancels, linked timeouts
      if ((cqe.flags & abi::cqe_flags::MORE) == 0) --in_flight_;
      // SAFETY: non-zero user_data on this ring is only ever set by sqe_for()/try_sqe_for() (or
      // the destructor) to the address of a live Completion, which stays alive until its final
      // CQE (no MORE flag) is delivered.
      out[filled++] =
          Reaped{reinterpret_cast<Completion*>(static_cast<std::uintptr_t>(cqe.user_data)), cqe.res,
                 cqe.flags};
    }
    ring_.advance(n);  // copied above: the kernel may reuse the slots
    if (n < room) break;
  }
  return filled;
}

unsigned EventLoop::dispatch() {
  unsigned total = 0;
  for (;;) {
    std::array<Reaped, kDispatchBatch> batch;
    const unsigned n = reap(batch);
    for (unsigned i = 0; i < n; ++i) batch[i].deliver();
    total += n;
    // reap() fills fewer entries than asked only once the CQ is empty.
    if (n < kDispatchBatch) return total;
  }
}

Result<unsigned> EventLoop::run_once(std::optional<std::chrono::nanoseconds> timeout) {
  if (wake_fd_ && !wake_armed_ && !closing_) PEPITA_TRY_VOID(arm_wake());
  Result<unsigned> r = 0u;
  const unsigned want = (in_flight_ > 0 && ring_.cq_ready() == 0) ? 1 : 0;
  if (timeout && want != 0) {
    r = ring_.wait(want, *timeout);
  } else if (want != 0 || ring_.sq_ready() != 0) {
    r = ring_.submit_and_wait(want);
  }
  if (!r && !r.error().is_retriable()) return std::unexpected(std::move(r).error());
  // Busy/WouldBlock: the kernel wants completions reaped before it takes more; dispatching
  // below does exactly that and the next run_once resubmits.
  return dispatch();
}

Result<void> EventLoop::run_until_idle() {
  while (in_flight() > 0) PEPITA_TRY(run_once());
  // Internal SQEs (cancels, a fresh wake poll) still queued: push them without waiting, since
  // run_once would wait for the wake poll.
  if (ring_.sq_ready() > 0) {
    auto r = ring_.submit();
    if (!r && !r.error().is_retriable()) return std::unexpected(std::move(r).error());
  }
  return {};
}

// ---- awaitable constructors -------------------------------------------------------------------

namespace {

abi::Sqe blank() {
  abi::Sqe sqe{};
  return sqe;
}

std::uint32_t len32(std::size_t n) {
  // io_uring lengths are 32-bit; larger requests are split by the caller (short I/O).
  return n > 0x7fff'f000u ? 0x7fff'f000u : static_cast<std::uint32_t>(n);
}

}  // namespace

IoOp<Result<void>> EventLoop::nop() {
  abi::Sqe s = blank();
  prep_nop(s);
  return IoOp<Result<void>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::read(int fd, std::span<std::byte> buf, std::uint64_t offset) {
  abi::Sqe s = blank();
  prep_read(s, fd, buf.data(), len32(buf.size()), offset);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::write(int fd, std::span<const std::byte> buf,
                                           std::uint64_t offset) {
  abi::Sqe s = blank();
  prep_write(s, fd, buf.data(), len32(buf.size()), offset);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::readv(int fd, std::span<const iovec> iov,
                                           std::uint64_t offset) {
  abi::Sqe s = blank();
  prep_readv(s, fd, iov.data(), static_cast<std::uint32_t>(iov.size()), offset);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::writev(int fd, std::span<const iovec> iov,
                                            std::uint64_t offset) {
  abi::Sqe s = blank();
  prep_writev(s, fd, iov.data(), static_cast<std::uint32_t>(iov.size()), offset);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::read_fixed(int fd, std::span<std::byte> buf,
                                                std::uint64_t offset, std::uint16_t buf_index) {
  abi::Sqe s = blank();
  prep_read_fixed(s, fd, buf.data(), len32(buf.size()), offset, buf_index);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::write_fixed(int fd, std::span<const std::byte> buf,
                                                 std::uint64_t offset, std::uint16_t buf_index) {
  abi::Sqe s = blank();
  prep_write_fixed(s, fd, buf.data(), len32(buf.size()), offset, buf_index);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<void>> EventLoop::fsync(int fd, bool datasync) {
  abi::Sqe s = blank();
  prep_fsync(s, fd, datasync ? abi::fsync_flags::DATASYNC : 0);
  return IoOp<Result<void>>(*this, s);
}

IoOp<Result<int>> EventLoop::openat(int dirfd, const char* path, int flags, unsigned mode) {
  abi::Sqe s = blank();
  prep_openat(s, dirfd, path, flags, mode);
  return IoOp<Result<int>>(*this, s);
}

IoOp<Result<void>> EventLoop::close(int fd) {
  abi::Sqe s = blank();
  prep_close(s, fd);
  return IoOp<Result<void>>(*this, s);
}

IoOp<Result<int>> EventLoop::accept(int listen_fd, int flags) {
  abi::Sqe s = blank();
  prep_accept(s, listen_fd, nullptr, nullptr, flags);
  return IoOp<Result<int>>(*this, s);
}

IoOp<Result<void>> EventLoop::connect(int fd, const sockaddr* addr, socklen_t len) {
  abi::Sqe s = blank();
  prep_connect(s, fd, addr, len);
  return IoOp<Result<void>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::send(int fd, std::span<const std::byte> buf, int flags) {
  abi::Sqe s = blank();
  prep_send(s, fd, buf.data(), len32(buf.size()), flags);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<std::size_t>> EventLoop::recv(int fd, std::span<std::byte> buf, int flags) {
  abi::Sqe s = blank();
  prep_recv(s, fd, buf.data(), len32(buf.size()), flags);
  return IoOp<Result<std::size_t>>(*this, s);
}

IoOp<Result<unsigned>> EventLoop::poll(int fd, unsigned poll_mask) {
  abi::Sqe s = blank();
  prep_poll_add(s, fd, poll_mask);
  return IoOp<Result<unsigned>>(*this, s);
}

IoOp<Result<void>> EventLoop::sleep(std::chrono::nanoseconds duration) {
  abi::Sqe s = blank();
  prep_timeout(s, nullptr, 0, 0);
  IoOp<Result<void>> op(*this, s);
  if (duration.count() < 0) duration = std::chrono::nanoseconds(0);
  op.ts_.tv_sec = duration.count() / 1'000'000'000;
  op.ts_.tv_nsec = duration.count() % 1'000'000'000;
  op.addr_is_ts_ = true;
  op.etime_is_success_ = true;
  return op;
}

}  // namespace pepita::io_uring
