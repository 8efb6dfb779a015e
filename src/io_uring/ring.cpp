// Ring setup (io_uring_setup + mmap of the SQ ring, CQ ring and SQE array) and the submission /
// wait protocol over io_uring_enter, after liburing's setup.c and queue.c.
#include "pepita/io_uring/ring.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>

#include "detail/sys.hpp"

namespace pepita::io_uring {
namespace {

// Flags whose ring layouts or fd semantics this Ring does not implement.
constexpr std::uint32_t kUnsupportedSetupFlags =
    abi::setup::NO_MMAP | abi::setup::REGISTERED_FD_ONLY | abi::setup::NO_SQARRAY;

std::uint32_t* word_at(const Mapping& map, std::uint32_t offset) {
  // SAFETY: `offset` comes from the kernel's io_uring_params for this mapping, lies inside it and
  // is 4-aligned (the rings are arrays of __u32 fields); the mapping outlives the pointer.
  return reinterpret_cast<std::uint32_t*>(map.bytes() + offset);
}

Error setup_error(int err, const RingOptions& o, std::uint32_t flags) {
  const std::string what = "io_uring_setup(entries=" + std::to_string(o.entries) + ", flags=0x" +
                           [&] {
                             char buf[16];
                             std::snprintf(buf, sizeof buf, "%x", flags);
                             return std::string(buf);
                           }() +
                           ")";
  switch (-err) {
    case ENOSYS:
      return Error(ErrorCode::Unsupported,
                   what + ": this kernel has no io_uring (needs Linux 5.1+, CONFIG_IO_URING)",
                   ENOSYS);
    case EPERM:
      return Error(ErrorCode::Unsupported,
                   what +
                       ": io_uring is disabled for this process; check sysctl "
                       "kernel.io_uring_disabled (0 enables it) and the seccomp profile",
                   EPERM);
    case EINVAL:
      return Error(ErrorCode::InvalidArgument,
                   what +
                       ": entries must be 1..32768 (cq_entries up to 65536, or set clamp) and "
                       "the flags a combination this kernel supports",
                   EINVAL);
    default: return Error::from_errno(err, what);
  }
}

}  // namespace

Result<Ring> Ring::create(const RingOptions& o) {
  if (o.entries == 0)
    return fail(ErrorCode::InvalidArgument, "io_uring Ring: entries must be at least 1");
  if ((o.extra_flags & kUnsupportedSetupFlags) != 0)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: NO_MMAP, REGISTERED_FD_ONLY and NO_SQARRAY are not supported; "
                "drop them from extra_flags");

  abi::Params p{};
  p.flags = o.extra_flags;
  if (o.cq_entries != 0) {
    p.flags |= abi::setup::CQSIZE;
    p.cq_entries = o.cq_entries;
  }
  if (o.sqpoll) {
    p.flags |= abi::setup::SQPOLL;
    p.sq_thread_idle = o.sqpoll_idle_ms;
    if (o.sqpoll_cpu >= 0) {
      p.flags |= abi::setup::SQ_AFF;
      p.sq_thread_cpu = static_cast<std::uint32_t>(o.sqpoll_cpu);
    }
  }
  if (o.sqe128) p.flags |= abi::setup::SQE128;
  if (o.cqe32) p.flags |= abi::setup::CQE32;
  if (o.clamp) p.flags |= abi::setup::CLAMP;
  if (o.defer_taskrun && !o.single_issuer && (o.extra_flags & abi::setup::SINGLE_ISSUER) == 0)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: defer_taskrun needs single_issuer (one thread submits and reaps); "
                "set both, or use RingOptions::single_thread()");
  if (o.taskrun_flag && !o.coop_taskrun && !o.defer_taskrun)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: taskrun_flag needs coop_taskrun or defer_taskrun; set one of them");
  if (o.defer_taskrun && o.sqpoll)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: defer_taskrun cannot be combined with sqpoll (the kernel thread "
                "would issue); drop one of them");
  if (o.single_issuer) p.flags |= abi::setup::SINGLE_ISSUER;
  if (o.coop_taskrun) p.flags |= abi::setup::COOP_TASKRUN;
  if (o.taskrun_flag) p.flags |= abi::setup::TASKRUN_FLAG;
  if (o.defer_taskrun) p.flags |= abi::setup::DEFER_TASKRUN;

  const std::uint32_t requested = p.flags;
  const int fd = sys::setup(o.entries, &p);
  if (fd < 0) return std::unexpected(setup_error(fd, o, requested));

  UniqueFd ring_fd(fd);
  const std::size_t cqe_size = sizeof(abi::Cqe) << ((p.flags & abi::setup::CQE32) != 0 ? 1 : 0);
  const std::size_t sqe_size = sizeof(abi::Sqe) << ((p.flags & abi::setup::SQE128) != 0 ? 1 : 0);
  std::size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(std::uint32_t);
  std::size_t cq_size = p.cq_off.cqes + p.cq_entries * cqe_size;
  const bool single = (p.features & abi::feat::SINGLE_MMAP) != 0;
  if (single) sq_size = cq_size = std::max(sq_size, cq_size);

  // SAFETY: the kernel validates the offsets (IORING_OFF_*) and sizes of ring mappings of its own
  // io_uring fd; MAP_SHARED is required, the memory is the kernel's.
  Mapping sq_ring =
      PEPITA_TRY(Mapping::map(sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                              static_cast<off_t>(abi::mmap_off::SQ_RING), "io_uring SQ ring"));
  Mapping cq_ring;
  if (!single) {
    // SAFETY: as above, the CQ ring at its magic offset.
    cq_ring =
        PEPITA_TRY(Mapping::map(cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                                static_cast<off_t>(abi::mmap_off::CQ_RING), "io_uring CQ ring"));
  }
  // SAFETY: as above, the SQE array: sq_entries slots of 64 (or 128) bytes.
  Mapping sqes = PEPITA_TRY(Mapping::map(p.sq_entries * sqe_size, PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_POPULATE, fd,
                                         static_cast<off_t>(abi::mmap_off::SQES), "io_uring SQEs"));
  Ring r = PEPITA_TRY(
      attach(std::move(ring_fd), p, std::move(sq_ring), std::move(cq_ring), std::move(sqes)));

  if (o.register_ring_fd) {
    // Any free slot of this thread's ring-fd table (offset -1); failure only costs speed.
    abi::RsrcUpdate up{};
    up.offset = ~0u;
    up.data = static_cast<std::uint64_t>(fd);
    if (sys::register_(fd, static_cast<unsigned>(abi::RegisterOp::RegisterRingFds), &up, 1) == 1)
      r.registered_ = detail::RegisteredRingFd(fd, static_cast<int>(up.offset));
  }
  return r;
}

Result<Ring> Ring::from_mappings(const abi::Params& params, Mapping sq_ring, Mapping cq_ring,
                                 Mapping sqes) {
  if ((params.flags & kUnsupportedSetupFlags) != 0)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: NO_MMAP, REGISTERED_FD_ONLY and NO_SQARRAY are not supported");
  return attach(UniqueFd(), params, std::move(sq_ring), std::move(cq_ring), std::move(sqes));
}

Result<Ring> Ring::attach(UniqueFd fd, const abi::Params& p, Mapping sq_ring, Mapping cq_ring,
                          Mapping sqes) {
  const bool single = (p.features & abi::feat::SINGLE_MMAP) != 0;
  const Mapping& cq = single ? sq_ring : cq_ring;
  const std::uint32_t sqe_shift = (p.flags & abi::setup::SQE128) != 0 ? 1 : 0;
  const std::uint32_t cqe_shift = (p.flags & abi::setup::CQE32) != 0 ? 1 : 0;
  // Every word and array the Ring will touch must lie inside its mapping: the kernel guarantees
  // it for its own rings, a fake must be checked.
  auto fits = [](const Mapping& m, std::uint64_t offset, std::uint64_t bytes) {
    return m.valid() && offset % sizeof(std::uint32_t) == 0 && offset <= m.size() &&
           bytes <= m.size() - offset;
  };
  constexpr std::uint64_t kWord = sizeof(std::uint32_t);
  const bool sq_ok =
      fits(sq_ring, p.sq_off.head, kWord) && fits(sq_ring, p.sq_off.tail, kWord) &&
      fits(sq_ring, p.sq_off.flags, kWord) && fits(sq_ring, p.sq_off.dropped, kWord) &&
      fits(sq_ring, p.sq_off.ring_mask, kWord) && fits(sq_ring, p.sq_off.ring_entries, kWord) &&
      fits(sq_ring, p.sq_off.array, std::uint64_t{p.sq_entries} * kWord);
  const bool cq_ok =
      fits(cq, p.cq_off.head, kWord) && fits(cq, p.cq_off.tail, kWord) &&
      fits(cq, p.cq_off.overflow, kWord) &&
      (p.cq_off.flags == 0 || fits(cq, p.cq_off.flags, kWord)) &&
      fits(cq, p.cq_off.ring_mask, kWord) && fits(cq, p.cq_off.ring_entries, kWord) &&
      fits(cq, p.cq_off.cqes, std::uint64_t{p.cq_entries} * (sizeof(abi::Cqe) << cqe_shift));
  const bool sqes_ok = fits(sqes, 0, std::uint64_t{p.sq_entries} * (sizeof(abi::Sqe) << sqe_shift));
  if (!sq_ok || !cq_ok || !sqes_ok)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: the ring offsets and entries do not fit the mappings");

  Ring r;
  r.fd_ = std::move(fd);
  r.sq_ring_map_ = std::move(sq_ring);
  r.cq_ring_map_ = std::move(cq_ring);
  r.sqes_map_ = std::move(sqes);
  r.features_ = p.features;
  r.setup_flags_ = p.flags;
  r.sqpoll_ = (p.flags & abi::setup::SQPOLL) != 0;
  r.defer_taskrun_ = (p.flags & abi::setup::DEFER_TASKRUN) != 0;
  r.sqe_shift_ = sqe_shift;
  r.cqe_shift_ = cqe_shift;
  const Mapping* cq_map = single ? &r.sq_ring_map_ : &r.cq_ring_map_;

  const Mapping& sq = r.sq_ring_map_;
  r.ksq_head_ = word_at(sq, p.sq_off.head);
  r.ksq_tail_ = word_at(sq, p.sq_off.tail);
  r.ksq_flags_ = word_at(sq, p.sq_off.flags);
  r.ksq_dropped_ = word_at(sq, p.sq_off.dropped);
  r.ksq_array_ = word_at(sq, p.sq_off.array);
  r.sq_mask_ = *word_at(sq, p.sq_off.ring_mask);
  r.sq_entries_ = *word_at(sq, p.sq_off.ring_entries);
  r.kcq_head_ = word_at(*cq_map, p.cq_off.head);
  r.kcq_tail_ = word_at(*cq_map, p.cq_off.tail);
  r.kcq_overflow_ = word_at(*cq_map, p.cq_off.overflow);
  r.kcq_flags_ = p.cq_off.flags != 0 ? word_at(*cq_map, p.cq_off.flags) : nullptr;
  r.cq_mask_ = *word_at(*cq_map, p.cq_off.ring_mask);
  r.cq_entries_ = *word_at(*cq_map, p.cq_off.ring_entries);
  if (r.sq_entries_ != p.sq_entries || r.sq_mask_ != p.sq_entries - 1 ||
      r.cq_entries_ != p.cq_entries || r.cq_mask_ != p.cq_entries - 1 ||
      (p.sq_entries & (p.sq_entries - 1)) != 0 || (p.cq_entries & (p.cq_entries - 1)) != 0)
    return fail(ErrorCode::InvalidArgument,
                "io_uring Ring: ring_entries/ring_mask in the rings disagree with the params");
  // SAFETY: cq_off.cqes is the kernel's offset of the 16/32-byte-aligned CQE array in this map
  // (checked above to fit).
  r.kcqes_ = reinterpret_cast<const abi::Cqe*>(cq_map->bytes() + p.cq_off.cqes);
  // SAFETY: the SQE mapping is page-aligned and holds sq_entries slots (checked above).
  r.sqes_ = reinterpret_cast<abi::Sqe*>(r.sqes_map_.bytes());

  // Identity SQ index array, written once: slot i of the SQE array is always ring entry i, so a
  // submit only has to publish the tail (liburing does the same since 2.2).
  for (std::uint32_t i = 0; i < r.sq_entries_; ++i) r.ksq_array_[i] = i;
  r.sqe_head_ = r.sqe_tail_ = read_once(r.ksq_tail_);
  return r;
}

abi::Sqe128* Ring::get_sqe128() noexcept {
  if (sqe_shift_ == 0) return nullptr;
  // SAFETY: on an SQE128 ring each slot is 128 bytes, 64-aligned: the Sqe128 view covers it.
  return reinterpret_cast<abi::Sqe128*>(get_sqe());
}

unsigned Ring::peek_batch(std::span<const abi::Cqe*> out) noexcept {
  std::uint32_t ready = cq_ready();
  if (ready == 0 && peek_cqe() != nullptr) ready = cq_ready();  // flushes overflow if pending
  const std::uint32_t n = std::min<std::uint32_t>(ready, static_cast<std::uint32_t>(out.size()));
  const std::uint32_t head = cq_head_local();
  for (std::uint32_t i = 0; i < n; ++i) out[i] = cqe_at((head + i) & cq_mask_);
  return n;
}

const abi::Cqe* Ring::peek_cqe_slow() noexcept {
  // Completions may be parked in the kernel: in the overflow list (CQ was full) or as task work
  // not yet run (COOP_TASKRUN). An enter with GETEVENTS and min_complete 0 moves them in.
  // With DEFER_TASKRUN completion work only runs inside such an enter by the issuing thread.
  const std::uint32_t sq_flags = read_once(ksq_flags_);
  // Without TASKRUN_FLAG the kernel does not say when deferred work waits: always enter then.
  const bool blind = defer_taskrun_ && (setup_flags_ & abi::setup::TASKRUN_FLAG) == 0;
  if (!blind && (sq_flags & (abi::sq_flags::CQ_OVERFLOW | abi::sq_flags::TASKRUN)) == 0)
    return nullptr;
  if (!fd_) return nullptr;
  (void)enter(0, 0, abi::enter::GETEVENTS, nullptr);
  const std::uint32_t head = cq_head_local();
  if (load_acquire(kcq_tail_) != head) return cqe_at(head & cq_mask_);
  return nullptr;
}

Result<void> Ring::flush_overflow() {
  for (;;) {
    const int r = enter(0, 0, abi::enter::GETEVENTS, nullptr);
    if (r >= 0) return {};
    if (r != -EINTR) return fail_errno(r, "io_uring_enter (flush CQ overflow)");
  }
}

unsigned Ring::flush_sq() noexcept {
  const std::uint32_t tail = sqe_tail_;
  if (sqe_head_ != tail) {
    sqe_head_ = tail;
    // The kernel (or its SQPOLL thread) load-acquires ktail, then reads the SQEs we filled.
    store_release(ksq_tail_, tail);
  }
  // Entries published but not yet consumed by the kernel.
  return tail - load_acquire(ksq_head_);
}

int Ring::enter(unsigned to_submit, unsigned min_complete, unsigned flags,
                const abi::GeteventsArg* arg) noexcept {
  const std::size_t argsz = arg != nullptr ? sizeof(*arg) : 0;
  const int index = registered_.index_for_this_thread();
  if (index >= 0) [[likely]] {
    const int r =
        sys::enter(index, to_submit, min_complete, flags | abi::enter::REGISTERED_RING, arg, argsz);
    if (r != -EBADF) return r;
    registered_.reset();  // the registration is gone (should not happen): use the plain fd
  }
  return sys::enter(fd_.get(), to_submit, min_complete, flags, arg, argsz);
}

namespace detail {

std::uint64_t thread_serial() noexcept {
  static std::atomic<std::uint64_t> next{1};
  thread_local const std::uint64_t serial = next.fetch_add(1, std::memory_order_relaxed);
  return serial;
}

void RegisteredRingFd::reset() noexcept {
  if (index_ >= 0 && owner_ == thread_serial()) {
    abi::RsrcUpdate up{};
    up.offset = static_cast<std::uint32_t>(index_);
    (void)sys::register_(ring_fd_, static_cast<unsigned>(abi::RegisterOp::UnregisterRingFds), &up,
                         1);
  }
  index_ = -1;
}

}  // namespace detail

Result<unsigned> Ring::submit_impl(unsigned wait_nr, const abi::GeteventsArg* arg) {
  unsigned pending = flush_sq();
  unsigned flags = 0;
  bool need_enter = false;
  if (sqpoll_) {
    // Order the ktail store before reading NEED_WAKEUP; the poller sets the flag, then rechecks
    // the tail before sleeping.
    full_fence();
    if ((read_once(ksq_flags_) & abi::sq_flags::NEED_WAKEUP) != 0) {
      flags |= abi::enter::SQ_WAKEUP;
      need_enter = true;
    }
  } else if (pending != 0) {
    need_enter = true;
  }
  const bool cq_needs_flush =
      (read_once(ksq_flags_) & (abi::sq_flags::CQ_OVERFLOW | abi::sq_flags::TASKRUN)) != 0;
  if (wait_nr != 0 || arg != nullptr || cq_needs_flush) {
    flags |= abi::enter::GETEVENTS;
    need_enter = true;
  }
  if (arg != nullptr) flags |= abi::enter::EXT_ARG;
  if (!need_enter) return pending;

  for (;;) {
    const int r = enter(sqpoll_ ? 0 : pending, wait_nr, flags, arg);
    if (r >= 0) return sqpoll_ ? pending : static_cast<unsigned>(r);
    if (r == -EINTR) {
      // Nothing was submitted by the interrupted call (the kernel returns the submitted count
      // in preference to an error); recompute what is still pending and go again.
      pending = sqpoll_ ? pending : sqe_tail_ - load_acquire(ksq_head_);
      continue;
    }
    if (r == -ETIME && arg != nullptr) return 0;  // wait() timed out; the caller counts CQEs
    if (r == -EEXIST)
      return fail(ErrorCode::Busy,
                  "io_uring_enter: EEXIST — this ring was set up with single_issuer and belongs "
                  "to the thread that created it; submit and reap from that thread only, or "
                  "create the ring without single_issuer/defer_taskrun",
                  EEXIST);
    if (r == -EAGAIN || r == -EBUSY)
      return fail(code_from_errno(r),
                  std::string("io_uring_enter: ") + (r == -EBUSY ? "EBUSY" : "EAGAIN") +
                      " — the kernel cannot take more submissions until completions are reaped; "
                      "reap the CQ and submit again",
                  -r);
    return fail_errno(r, "io_uring_enter");
  }
}

Result<unsigned> Ring::wait(unsigned wait_nr, std::chrono::nanoseconds timeout) {
  if (!has_feature(abi::feat::EXT_ARG))
    return fail(ErrorCode::Unsupported,
                "io_uring wait with timeout needs IORING_FEAT_EXT_ARG (Linux 5.11+)");
  if (timeout.count() < 0) timeout = std::chrono::nanoseconds(0);
  if (cq_ready() >= wait_nr && sq_ready() == 0) return cq_ready();
  abi::KernelTimespec ts{};
  ts.tv_sec = timeout.count() / 1'000'000'000;
  ts.tv_nsec = timeout.count() % 1'000'000'000;
  abi::GeteventsArg arg{};
  arg.ts = reinterpret_cast<std::uintptr_t>(&ts);  // SAFETY: pointer to integer for the ABI
  PEPITA_TRY(submit_impl(wait_nr, &arg));
  return cq_ready();
}

Result<abi::Sqe*> Ring::acquire_sqe() {
  if (abi::Sqe* sqe = get_sqe()) [[likely]]
    return sqe;
  for (int attempt = 0; attempt < 64; ++attempt) {
    if (sqpoll_) {
      // Publish the tail and wake the poller if it went idle (it sleeps only on an empty SQ, so
      // a full SQ published after it fell asleep would otherwise never drain); then sleep until
      // it consumed at least one entry.
      PEPITA_TRY(submit());
      unsigned flags = abi::enter::SQ_WAIT;
      full_fence();
      if ((read_once(ksq_flags_) & abi::sq_flags::NEED_WAKEUP) != 0) flags |= abi::enter::SQ_WAKEUP;
      const int r = enter(0, 0, flags, nullptr);
      if (r < 0 && r != -EINTR) return fail_errno(r, "io_uring_enter (SQ_WAIT)");
    } else {
      PEPITA_TRY(submit());
    }
    if (abi::Sqe* sqe = get_sqe()) return sqe;
  }
  return fail(ErrorCode::IoUringSubmitFull,
              "io_uring: the SQ stays full after submitting; the kernel refuses new entries "
              "(reap completions or create a larger ring)");
}

}  // namespace pepita::io_uring
