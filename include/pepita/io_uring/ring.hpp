#pragma once
// Ring: one io_uring instance built on the raw syscalls (io_uring_setup(2), io_uring_enter(2),
// io_uring_register(2)) and mmap of its SQ/CQ rings; no liburing. Follows the kernel's
// Documentation and liburing's queue.c/setup.c for the submission and completion protocol.
//
//   auto ring = PEPITA_TRY(pepita::io_uring::Ring::create({.entries = 64}));
//   abi::Sqe* sqe = PEPITA_TRY(ring.acquire_sqe());
//   prep_read(*sqe, fd, buf, len, offset); sqe->user_data = 7;
//   PEPITA_TRY(ring.submit_and_wait(1));
//   ring.for_each_cqe([](const abi::Cqe& c) { use(c.user_data, c.res); });  // advances once

#include <sys/uio.h>

#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "pepita/abi/io_uring.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/io_uring/barrier.hpp"
#include "pepita/io_uring/probe.hpp"

namespace pepita::io_uring {

/// How to set a ring up. Zero/false fields take the kernel defaults.
struct RingOptions {
  std::uint32_t entries = 128;   // SQ size; rounded up to a power of two by the kernel
  std::uint32_t cq_entries = 0;  // CQ size (IORING_SETUP_CQSIZE) when non-zero; default 2x SQ
  bool sqpoll = false;           // kernel thread polls the SQ; submit() rarely enters
  std::uint32_t sqpoll_idle_ms = 1000;  // SQPOLL thread sleeps after this much idle time
  int sqpoll_cpu = -1;                  // pin the SQPOLL thread (IORING_SETUP_SQ_AFF) when >= 0
  bool sqe128 = false;                  // 128-byte SQEs, needed for IORING_OP_URING_CMD
  bool cqe32 = false;                   // 32-byte CQEs (uring_cmd's second result)
  bool clamp = false;                   // clamp oversized entries instead of failing with EINVAL
  bool single_issuer = false;     // only the creating thread submits (IORING_SETUP_SINGLE_ISSUER)
  bool coop_taskrun = false;      // no IPI for task work (IORING_SETUP_COOP_TASKRUN)
  bool taskrun_flag = false;      // sq_flags::TASKRUN tells when task work waits (needs coop or
                                  // defer_taskrun; IORING_SETUP_TASKRUN_FLAG)
  bool defer_taskrun = false;     // completions run only when this thread waits or peeks
                                  // (IORING_SETUP_DEFER_TASKRUN; needs single_issuer, 6.1+)
  bool register_ring_fd = true;   // enter through a registered ring index (5.18+), skipping the
                                  // fd lookup of every io_uring_enter on the creating thread
  std::uint32_t extra_flags = 0;  // any other abi::setup:: flags, passed through

  /// The setup for a ring one thread owns for its whole life (an event loop's): SINGLE_ISSUER
  /// with DEFER_TASKRUN, so completion work runs in batches when that thread waits or peeks
  /// instead of interrupting it, and TASKRUN_FLAG, so a peek enters the kernel only when such
  /// work waits. Submitting from any other thread is refused (Busy, errno EEXIST).
  static RingOptions single_thread(std::uint32_t entries = 128) {
    RingOptions o;
    o.entries = entries;
    o.single_issuer = true;
    o.defer_taskrun = true;
    o.taskrun_flag = true;
    return o;
  }
  /// SINGLE_ISSUER with COOP_TASKRUN and TASKRUN_FLAG: no inter-processor interrupt for task
  /// work, which runs at the next enter of the issuing thread.
  static RingOptions cooperative(std::uint32_t entries = 128) {
    RingOptions o;
    o.entries = entries;
    o.single_issuer = true;
    o.coop_taskrun = true;
    o.taskrun_flag = true;
    return o;
  }
};

/// One io_uring: an fd plus three kernel-shared mappings. Single-threaded: one thread fills SQEs
/// and reaps CQEs (the event loop gives each thread its own Ring). Movable, not copyable; a
/// moved-from Ring may only be destroyed or assigned to.
namespace detail {

/// A number naming the calling thread, never given to another thread of this process (unlike a
/// pthread_t, which a thread started after another was joined often gets again).
std::uint64_t thread_serial() noexcept;

/// The ring fd registered in the creating thread's io_uring context (IORING_REGISTER_RING_FDS).
/// The registration is per thread: it is used only from that thread and released on destruction
/// when that is where the Ring dies (otherwise the kernel drops it when the thread exits). The
/// owner is a thread_serial(): a later thread that reuses the creator's pthread_t has its own
/// table, where this index may be another ring's.
class RegisteredRingFd {
 public:
  RegisteredRingFd() noexcept = default;
  RegisteredRingFd(int ring_fd, int index) noexcept
      : ring_fd_(ring_fd), index_(index), owner_(thread_serial()) {}
  RegisteredRingFd(RegisteredRingFd&& o) noexcept
      : ring_fd_(o.ring_fd_), index_(std::exchange(o.index_, -1)), owner_(o.owner_) {}
  RegisteredRingFd& operator=(RegisteredRingFd&& o) noexcept {
    if (this != &o) {
      reset();
      ring_fd_ = o.ring_fd_;
      index_ = std::exchange(o.index_, -1);
      owner_ = o.owner_;
    }
    return *this;
  }
  RegisteredRingFd(const RegisteredRingFd&) = delete;
  RegisteredRingFd& operator=(const RegisteredRingFd&) = delete;
  ~RegisteredRingFd() { reset(); }

  /// The registered index when called from the owning thread, else -1.
  int index_for_this_thread() const noexcept {
    return index_ >= 0 && owner_ == thread_serial() ? index_ : -1;
  }
  void reset() noexcept;

 private:
  int ring_fd_ = -1;
  int index_ = -1;
  std::uint64_t owner_ = 0;  // a thread_serial(), never 0
};

}  // namespace detail

class Ring {
 public:
  /// Creates the ring and maps it. Errors: Unsupported (ENOSYS, or io_uring disabled by the
  /// kernel.io_uring_disabled sysctl: EPERM), InvalidArgument (bad entries/flag combination),
  /// ResourceExhausted (ENOMEM: RLIMIT_MEMLOCK on old kernels).
  static Result<Ring> create(const RingOptions& options = {});

  /// Builds a Ring over rings the caller mapped, laid out as `params` says (offsets, entries,
  /// setup flags, features: what io_uring_setup would have filled in), with the same layout code
  /// create() uses — for unit tests of the ring layout against a fake kernel side in ordinary
  /// memory. There is no ring fd: an io_uring_enter fails with EBADF, so only publishing SQEs
  /// with SQPOLL set (and NEED_WAKEUP clear) and reaping CQEs work. `cq_ring` is empty with
  /// FEAT_SINGLE_MMAP. InvalidArgument when an offset or array does not fit its mapping or the
  /// rings' ring_entries/ring_mask words disagree with `params`.
  static Result<Ring> from_mappings(const abi::Params& params, Mapping sq_ring, Mapping cq_ring,
                                    Mapping sqes);

  Ring(Ring&&) noexcept = default;
  /// Tears this ring down in the same order as the destructor (unregister, unmap, close), then
  /// takes over `other`. Memberwise assignment would close the fd before unregistering it.
  Ring& operator=(Ring&& other) noexcept {
    if (this != &other) {
      std::destroy_at(this);
      std::construct_at(this, std::move(other));
    }
    return *this;
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() = default;

  // ---- submission -------------------------------------------------------------------------

  /// Next free SQE, or nullptr when the SQ is full (submit, then retry). The SQE holds stale
  /// bytes: fill it with a prep_* helper. It reaches the kernel at the next submit*().
  abi::Sqe* get_sqe() noexcept {
    // Kernel advances khead as it consumes SQEs (only concurrently with SQPOLL); acquire so we do
    // not reuse a slot before the kernel finished reading it.
    const std::uint32_t head = sqpoll_ ? load_acquire(ksq_head_) : read_once(ksq_head_);
    if (sqe_tail_ - head >= sq_entries_) [[unlikely]]
      return nullptr;
    abi::Sqe* sqe = sqe_at(sqe_tail_ & sq_mask_);
    ++sqe_tail_;
    return sqe;
  }

  /// The 128-byte view of the next free SQE, for IORING_OP_URING_CMD; nullptr when the SQ is full
  /// or the ring was not created with sqe128.
  abi::Sqe128* get_sqe128() noexcept;

  /// get_sqe() with back-pressure: when the SQ is full, submits what is queued (and with SQPOLL
  /// waits for the kernel thread to make room), then retries. Busy/WouldBlock errors mean the
  /// kernel cannot take more now: reap completions and try again.
  Result<abi::Sqe*> acquire_sqe();

  /// SQEs handed out but not yet submitted.
  std::uint32_t sq_ready() const noexcept { return sqe_tail_ - sqe_head_; }
  /// SQEs get_sqe() can still hand out before submitting.
  std::uint32_t sq_space_left() const noexcept {
    return sq_entries_ - (sqe_tail_ - load_acquire(ksq_head_));
  }

  /// Publishes queued SQEs to the kernel and enters it if needed (always without SQPOLL; with
  /// SQPOLL only to wake a sleeping poller). Returns how many SQEs the kernel accepted (with
  /// SQPOLL: how many were published). EINTR is retried; EAGAIN/EBUSY come back as WouldBlock/Busy:
  /// reap CQEs, then submit again (unsubmitted SQEs stay queued).
  Result<unsigned> submit() { return submit_impl(0, nullptr); }

  /// submit() and wait until at least `wait_nr` CQEs are ready. EINTR while waiting is retried.
  Result<unsigned> submit_and_wait(unsigned wait_nr) { return submit_impl(wait_nr, nullptr); }

  /// submit() and wait up to `timeout` for `wait_nr` CQEs. Returns the number of ready CQEs,
  /// which is below `wait_nr` when the timeout expired (not an error). Needs FEAT_EXT_ARG (5.11).
  Result<unsigned> wait(unsigned wait_nr, std::chrono::nanoseconds timeout);

  // ---- completion -------------------------------------------------------------------------

  /// CQEs ready to be reaped.
  std::uint32_t cq_ready() const noexcept {
    // Kernel publishes CQEs then store-releases ktail; acquire makes the entries visible.
    return load_acquire(kcq_tail_) - cq_head_local();
  }

  /// The oldest unreaped CQE, or nullptr when none is ready (and none is waiting in the kernel's
  /// overflow list: those are flushed into the ring first). Call cqe_seen()/advance() after use.
  const abi::Cqe* peek_cqe() noexcept {
    const std::uint32_t head = cq_head_local();
    if (load_acquire(kcq_tail_) != head) [[likely]]
      return cqe_at(head & cq_mask_);
    return peek_cqe_slow();
  }

  /// Up to out.size() ready CQEs, oldest first, without consuming them. Returns how many.
  unsigned peek_batch(std::span<const abi::Cqe*> out) noexcept;

  /// Marks `n` CQEs consumed; the kernel may then overwrite them.
  void advance(std::uint32_t n) noexcept {
    // Kernel reads khead (acquire) before reusing our slots: release orders our reads of them.
    if (n != 0) store_release(kcq_head_, cq_head_local() + n);
  }
  void cqe_seen() noexcept { advance(1); }

  /// Calls f(const abi::Cqe&) on every ready CQE, then advances the CQ once. Returns the count.
  /// f must not reap from this ring itself.
  template <typename F>
  unsigned for_each_cqe(F&& f) {
    const std::uint32_t head = cq_head_local();
    const std::uint32_t tail = load_acquire(kcq_tail_);  // pairs with kernel's release of ktail
    for (std::uint32_t i = head; i != tail; ++i) f(*cqe_at(i & cq_mask_));
    advance(tail - head);
    return tail - head;
  }

  /// For a cqe32 ring: the 32-byte view of a CQE returned by peek/for_each.
  static const abi::Cqe32& as_cqe32(const abi::Cqe& cqe) noexcept {
    // SAFETY: on a cqe32 ring every CQE slot is 32 bytes and 8-aligned; Cqe is its prefix.
    return *reinterpret_cast<const abi::Cqe32*>(&cqe);
  }

  // ---- overflow ---------------------------------------------------------------------------

  /// True when the kernel holds completions that did not fit the CQ (FEAT_NODROP keeps them; they
  /// are flushed by the next wait/peek). Reap faster or create a larger CQ.
  bool cq_overflow_pending() const noexcept {
    return (read_once(ksq_flags_) & abi::sq_flags::CQ_OVERFLOW) != 0;
  }
  /// CQEs the kernel had to drop for good (only without FEAT_NODROP, or on allocation failure).
  std::uint32_t cq_dropped() const noexcept { return read_once(kcq_overflow_); }
  /// Moves overflowed CQEs into the ring (io_uring_enter with GETEVENTS, nothing submitted).
  Result<void> flush_overflow();

  // ---- registration (see register.cpp) ----------------------------------------------------

  /// Pins and registers buffers for read_fixed/write_fixed (buf_index = position in `buffers`).
  /// Errors: ResourceExhausted (RLIMIT_MEMLOCK), Busy (already registered: unregister first).
  Result<void> register_buffers(std::span<const iovec> buffers);
  Result<void> unregister_buffers();
  /// Registers fds for IOSQE_FIXED_FILE (fd field = index). -1 entries leave a slot empty.
  Result<void> register_files(std::span<const int> fds);
  /// Registers `count` empty slots, to be filled by update_files() or direct-descriptor ops.
  Result<void> register_files_sparse(std::uint32_t count);
  /// Replaces slots [offset, offset + fds.size()); -1 empties a slot, abi::REGISTER_FILES_SKIP
  /// keeps it. Returns how many slots were updated.
  Result<unsigned> update_files(std::uint32_t offset, std::span<const int> fds);
  Result<void> unregister_files();
  /// Signals `eventfd` on every CQE (only for async completions when `async_only`).
  Result<void> register_eventfd(int eventfd, bool async_only = false);
  Result<void> unregister_eventfd();
  /// Which opcodes this kernel supports (IORING_REGISTER_PROBE).
  Result<OpcodeProbe> probe() const;
  /// Whether this kernel supports `op`, from a probe taken once per Ring (false when the kernel
  /// predates IORING_REGISTER_PROBE, 5.6, or the ring has no fd).
  bool supports(abi::Op op) const;

  // ---- properties -------------------------------------------------------------------------

  int fd() const noexcept { return fd_.get(); }
  std::uint32_t features() const noexcept { return features_; }        // abi::feat::*
  std::uint32_t setup_flags() const noexcept { return setup_flags_; }  // abi::setup::*
  std::uint32_t sq_entries() const noexcept { return sq_entries_; }
  std::uint32_t cq_entries() const noexcept { return cq_entries_; }
  bool has_feature(std::uint32_t feat) const noexcept { return (features_ & feat) == feat; }

 private:
  Ring() = default;

  abi::Sqe* sqe_at(std::uint32_t index) const noexcept {
    return sqes_ + (static_cast<std::size_t>(index) << sqe_shift_);
  }
  const abi::Cqe* cqe_at(std::uint32_t index) const noexcept {
    return kcqes_ + (static_cast<std::size_t>(index) << cqe_shift_);
  }
  // We are the only writer of khead, so a relaxed read of our own last store is exact.
  std::uint32_t cq_head_local() const noexcept { return read_once(kcq_head_); }

  static Result<Ring> attach(UniqueFd fd, const abi::Params& params, Mapping sq_ring,
                             Mapping cq_ring, Mapping sqes);
  const abi::Cqe* peek_cqe_slow() noexcept;
  unsigned flush_sq() noexcept;
  Result<unsigned> submit_impl(unsigned wait_nr, const abi::GeteventsArg* arg);
  int enter(unsigned to_submit, unsigned min_complete, unsigned flags,
            const abi::GeteventsArg* arg) noexcept;
  Result<void> register_op(abi::RegisterOp op, const void* arg, unsigned nr,
                           const char* what) const;

  // Teardown order matters: members are destroyed in reverse, so the mappings (declared after
  // fd_) are unmapped before the ring fd is closed, as liburing's io_uring_queue_exit does.
  UniqueFd fd_;
  detail::RegisteredRingFd registered_;  // unregistered before fd_ closes
  Mapping sq_ring_map_;                  // with FEAT_SINGLE_MMAP also holds the CQ ring
  Mapping cq_ring_map_;                  // empty with FEAT_SINGLE_MMAP
  Mapping sqes_map_;

  // Pointers into sq_ring_map_ / cq_ring_map_ (kernel-shared).
  std::uint32_t* ksq_head_ = nullptr;
  std::uint32_t* ksq_tail_ = nullptr;
  std::uint32_t* ksq_flags_ = nullptr;
  std::uint32_t* ksq_dropped_ = nullptr;
  std::uint32_t* ksq_array_ = nullptr;
  std::uint32_t* kcq_head_ = nullptr;
  std::uint32_t* kcq_tail_ = nullptr;
  std::uint32_t* kcq_overflow_ = nullptr;
  std::uint32_t* kcq_flags_ = nullptr;
  const abi::Cqe* kcqes_ = nullptr;
  abi::Sqe* sqes_ = nullptr;

  // Local state, never read by the kernel.
  std::uint32_t sqe_head_ = 0;  // first SQE not yet published to ksq_tail_
  std::uint32_t sqe_tail_ = 0;  // next SQE get_sqe() hands out
  std::uint32_t sq_mask_ = 0;
  std::uint32_t sq_entries_ = 0;
  std::uint32_t cq_mask_ = 0;
  std::uint32_t cq_entries_ = 0;
  std::uint32_t sqe_shift_ = 0;  // 1 for 128-byte SQEs: index in units of abi::Sqe
  std::uint32_t cqe_shift_ = 0;  // 1 for 32-byte CQEs
  std::uint32_t features_ = 0;
  std::uint32_t setup_flags_ = 0;
  bool sqpoll_ = false;
  bool defer_taskrun_ = false;             // completions need an enter with GETEVENTS
  mutable std::uint8_t probed_ = 0;        // 0: not yet, 1: probe_ valid, 2: probe failed
  mutable std::bitset<256> probe_bits_{};  // supports()' cache
};

}  // namespace pepita::io_uring
