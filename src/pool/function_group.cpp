// FunctionGroup's out-of-line half (issue 27): staging chunks, handing them to the pool's
// scheduler (one injection per chunk), splitting them on the worker's deque so every callable is
// stealable, waiting with help, and the failure report.
#include "pepita/pool/function_group.hpp"

#include <chrono>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>

#include "pepita/core/format.hpp"

namespace pepita::pool {

namespace detail {

struct FnChunk {
  FnChunk* next_free = nullptr;  // in a ChunkCache while unused
  FnGroupState* group = nullptr;
  std::uint32_t count = 0;  // slots built; fixed once the chunk is handed out
  // Slots not yet run or destroyed (set to `count` at hand-out); the last one frees the chunk.
  std::atomic<std::uint32_t> parts{0};
  FnSlot slots[kChunkSlots];
};

namespace {

// Chunks are recycled, not malloc'ed per chunk (glibc's arena lock and page faults cost more than
// the callables): each thread keeps a small cache; workers free what the submitter allocates, so
// chunks travel through a global list in batches of kChunkBatch, one lock per batch (the shape of
// the scheduler's task block pool).
constexpr std::size_t kChunkBatch = 16;

struct ChunkDepot {
  std::mutex mu;
  FnChunk* list = nullptr;  // guarded by mu
};

ChunkDepot& depot() {
  // Never destroyed: chunks may be freed by pool workers during static destruction.
  static ChunkDepot* d = new ChunkDepot;
  return *d;
}

struct ChunkCache {
  FnChunk* list = nullptr;
  std::size_t count = 0;
  ~ChunkCache() {
    while (list != nullptr) {
      FnChunk* c = list;
      list = c->next_free;
      delete c;
    }
  }
};
thread_local ChunkCache tls_chunks;

FnChunk* new_chunk() noexcept {
  ChunkCache& cache = tls_chunks;
  if (cache.list == nullptr) {
    ChunkDepot& d = depot();
    std::lock_guard lock(d.mu);
    for (std::size_t i = 0; i < kChunkBatch && d.list != nullptr; ++i) {
      FnChunk* c = d.list;
      d.list = c->next_free;
      c->next_free = cache.list;
      cache.list = c;
      ++cache.count;
    }
  }
  if (cache.list == nullptr) return new (std::nothrow) FnChunk;
  FnChunk* c = cache.list;
  cache.list = c->next_free;
  --cache.count;
  c->count = 0;
  return c;
}

void free_chunk(FnChunk* c) noexcept {
  ChunkCache& cache = tls_chunks;
  c->next_free = cache.list;
  cache.list = c;
  if (++cache.count < 2 * kChunkBatch) return;
  // Give a batch back, so chunks flow from the workers that free to the thread that allocates.
  FnChunk* first = cache.list;
  FnChunk* last = first;
  for (std::size_t i = 1; i < kChunkBatch; ++i) last = last->next_free;
  cache.list = last->next_free;
  cache.count -= kChunkBatch;
  ChunkDepot& d = depot();
  std::lock_guard lock(d.mu);
  last->next_free = d.list;
  d.list = first;
}

// Runs slot i of `c` (or, when cancelled, only destroys it). The chunk's `parts` counts the slots
// not yet done; the last one frees the chunk and reports its count to the group.
void run_slot(FnChunk* c, std::uint32_t i, bool run) noexcept {
  FnGroupState& g = *c->group;
  const bool go = run && !g.cancelled.load(std::memory_order_relaxed);
  if (!go) g.skipped.fetch_add(1, std::memory_order_relaxed);
  c->slots[i].call(c->slots[i], g, go);
  if (c->parts.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    const std::uint32_t n = c->count;
    free_chunk(c);
    g.finish(n);  // may be the group's last touch: nothing after it
  }
}

// On a pool worker: slots [b, e) split in halves onto the worker's deque (stealable, LIFO) until
// one is left, which runs here: every callable can be stolen on its own, so a long one never
// holds its chunk-mates back, and the deque push costs no lock (only the chunk's hand-out took
// the injection lock).
void run_range(FnChunk* c, std::uint32_t b, std::uint32_t e) noexcept {
  scheduler::Scheduler* s = c->group->sched;
  while (e - b >= 2) {
    const std::uint32_t mid = b + (e - b) / 2;
    try {
      s->submit([c, mid, e]() noexcept { run_range(c, mid, e); });
    } catch (...) {
      break;  // no memory for the task: run the rest here, in order
    }
    e = mid;
  }
  for (std::uint32_t i = b; i < e; ++i) run_slot(c, i, true);
}

// The chunk is exclusively ours (taken from the stage): count it as submitted, turn its stage
// guard (1) into its real count, and run it on this thread.
void run_staged_here(FnChunk* c, bool run) noexcept {
  FnGroupState& g = *c->group;
  g.submitted.fetch_add(c->count, std::memory_order_relaxed);
  g.pending.fetch_add(c->count - 1, std::memory_order_relaxed);
  c->parts.store(c->count, std::memory_order_relaxed);
  const std::uint32_t n = c->count;  // the last run_slot frees the chunk
  for (std::uint32_t i = 0; i < n; ++i) run_slot(c, i, run);
}

// A cheap clock for the hand-out heuristic only (never a measurement): the TSC on x86, else the
// steady clock; kQuietTicks is about 20 us either way (TSC rates are ~1-4 GHz).
#if defined(__x86_64__) || defined(__i386__)
inline std::uint64_t ticks() noexcept { return __builtin_ia32_rdtsc(); }
constexpr std::uint64_t kQuietTicks = 50'000;
#else
inline std::uint64_t ticks() noexcept {
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}
constexpr std::uint64_t kQuietTicks = 20'000;  // ns
#endif

// Same, but for the workers: one scheduler task per chunk (one injection-queue lock per chunk).
void hand_out(FnChunk* c) noexcept {
  FnGroupState& g = *c->group;
  g.last_hand_out.store(ticks(), std::memory_order_relaxed);
  if (g.lane->closed.load(std::memory_order_acquire)) {
    run_staged_here(c, false);  // the pool stopped accepting: destroyed unrun, counted
    return;
  }
  g.submitted.fetch_add(c->count, std::memory_order_relaxed);
  g.pending.fetch_add(c->count - 1, std::memory_order_relaxed);
  c->parts.store(c->count, std::memory_order_relaxed);  // published by the submit below
  try {
    g.sched->submit([c]() noexcept { run_range(c, 0, c->count); });
  } catch (...) {
    const std::uint32_t n = c->count;
    for (std::uint32_t i = 0; i < n; ++i) run_slot(c, i, true);  // no memory: run it here
  }
}

Error error_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::bad_alloc& x) {
    return Error(ErrorCode::ResourceExhausted,
                 std::string("function task ran out of memory (").append(x.what()).append(")"),
                 ENOMEM);
  } catch (const std::invalid_argument& x) {
    return Error(ErrorCode::InvalidArgument,
                 std::string("function task threw std::invalid_argument: ").append(x.what()));
  } catch (const std::exception& x) {
    return Error(ErrorCode::Internal, std::string("function task threw ")
                                          .append(typeid(x).name())
                                          .append(": ")
                                          .append(x.what())
                                          .append(" (FunctionGroup::exception() has it)"));
  } catch (...) {
    return Error(ErrorCode::Internal,
                 "function task threw a non-std::exception value (FunctionGroup::exception() "
                 "has it)");
  }
}

}  // namespace

bool FnGroupState::quiet_for_a_while() const noexcept {
  return ticks() - last_hand_out.load(std::memory_order_relaxed) > kQuietTicks;
}

FnSlot* FnGroupState::stage_slot(FnChunk*& chunk) {
  FnChunk* c = stage.exchange(nullptr, std::memory_order_acq_rel);
  if (c == nullptr) {
    c = new_chunk();
    if (c == nullptr) return nullptr;
    c->group = this;
    // The guard: a staged chunk counts 1, so no waiter sees 0 while it holds callables.
    pending.fetch_add(1, std::memory_order_seq_cst);
  }
  chunk = c;
  return &c->slots[c->count];
}

void FnGroupState::stage_commit(FnChunk* c) noexcept {
  ++c->count;
  // Full, or this group handed nothing out for a while: a slow producer's callables go at once,
  // a fast one's in full chunks (one injection lock per 32). A burst that stops short of a full
  // chunk waits for the next run(), flush() or wait() (documented on run()).
  if (c->count == kChunkSlots || quiet_for_a_while()) {
    hand_out(c);
    return;
  }
  FnChunk* none = nullptr;
  if (!stage.compare_exchange_strong(none, c, std::memory_order_seq_cst)) {
    hand_out(c);  // another thread staged one meanwhile: ours goes now
    return;
  }
  // A waiter that registered before our store may be asleep without seeing the stage (it reads
  // the stage after adding kWaiterUnit; we read `pending` after storing: one of us sees the other).
  if ((pending.load(std::memory_order_seq_cst) & ~kCountMask) != 0) {
    if (FnChunk* t = stage.exchange(nullptr, std::memory_order_acq_rel)) hand_out(t);
  }
}

void FnGroupState::stage_abort(FnChunk* c, std::exception_ptr error) noexcept {
  submitted.fetch_add(1, std::memory_order_relaxed);
  record_exception(std::move(error));
  if (c == nullptr) return;
  if (c->count == 0) {
    free_chunk(c);
    finish(1);  // the stage guard
    return;
  }
  --c->count;  // stage_commit counts the slot again; the slot itself was never built
  stage_commit(c);
}

void FnGroupState::count_cancelled() noexcept {
  submitted.fetch_add(1, std::memory_order_relaxed);
  skipped.fetch_add(1, std::memory_order_relaxed);
}

bool FnGroupState::begin_one() noexcept {
  submitted.fetch_add(1, std::memory_order_relaxed);
  if (lane->closed.load(std::memory_order_acquire)) {
    skipped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  pending.fetch_add(1, std::memory_order_relaxed);  // published to waiters by the spawn
  return true;
}

void FnGroupState::finish(std::uint64_t n) noexcept {
  // Read before the decrement: afterwards the group may be gone (its waiter returned).
  scheduler::Scheduler* s = sched;
  FunctionLane* l = lane.get();
  const bool can_notify = !l->gone.load(std::memory_order_acquire);
  const std::uint64_t old = pending.fetch_sub(n, std::memory_order_seq_cst);
  if ((old & kCountMask) == n && (old & ~kCountMask) != 0 && can_notify) s->notify_waiters(this);
}

void FnGroupState::record_failure(Error error, std::exception_ptr exception) noexcept {
  failed.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(report_mu);
  if (!first_error) {
    first_error.emplace(std::move(error));
    first_exception = std::move(exception);
  }
}

void FnGroupState::record_exception(std::exception_ptr exception) noexcept {
  try {
    Error e = error_of(exception);
    record_failure(std::move(e), std::move(exception));
  } catch (...) {
    record_failure(Error(ErrorCode::ResourceExhausted, std::string()), std::move(exception));
  }
}

void FunctionLane::cancel_all() noexcept {
  std::lock_guard lock(mu);
  for (FnGroupState* g = groups; g != nullptr; g = g->next) {
    g->cancelled.store(true, std::memory_order_relaxed);
  }
}

void FunctionLane::add_counts(std::uint64_t& sub, std::uint64_t& done, std::uint64_t& ok,
                              std::uint64_t& bad) {
  std::lock_guard lock(mu);
  sub += submitted;
  done += succeeded + failed;
  ok += succeeded;
  bad += failed;
  for (FnGroupState* g = groups; g != nullptr; g = g->next) {
    const std::uint64_t s = g->submitted.load(std::memory_order_relaxed);
    const std::uint64_t p = g->pending.load(std::memory_order_relaxed) & FnGroupState::kCountMask;
    const std::uint64_t f =
        g->failed.load(std::memory_order_relaxed) + g->skipped.load(std::memory_order_relaxed);
    const std::uint64_t d = s > p ? s - p : 0;  // a snapshot: approximate while they run
    sub += s;
    done += d;
    ok += d > f ? d - f : 0;
    bad += f;
  }
}

}  // namespace detail

FunctionGroup::FunctionGroup(std::unique_ptr<detail::FnGroupState> state) noexcept
    : state_(std::move(state)) {}

FunctionGroup::FunctionGroup(FunctionGroup&&) noexcept = default;

FunctionGroup& FunctionGroup::operator=(FunctionGroup&& other) noexcept {
  if (this != &other) {
    destroy_unrun();
    state_ = std::move(other.state_);
    last_ = other.last_;
    last_exception_ = std::move(other.last_exception_);
  }
  return *this;
}

FunctionGroup::~FunctionGroup() { destroy_unrun(); }

void FunctionGroup::destroy_unrun() noexcept {
  if (!state_) return;
  try {
    (void)wait();
  } catch (...) {
    // wait() reports through its result; only a failure to build that report lands here.
  }
  detail::FnGroupState& g = *state_;
  detail::FunctionLane& l = *g.lane;
  {
    std::lock_guard lock(l.mu);
    (g.prev != nullptr ? g.prev->next : l.groups) = g.next;
    if (g.next != nullptr) g.next->prev = g.prev;
    const std::uint64_t sub = g.submitted.load(std::memory_order_relaxed);
    const std::uint64_t bad =
        g.failed.load(std::memory_order_relaxed) + g.skipped.load(std::memory_order_relaxed);
    l.submitted += sub;
    l.failed += bad;
    l.succeeded += sub - bad;
  }
  state_.reset();
}

void FunctionGroup::flush() {
  detail::FnGroupState& g = *state_;
  if (detail::FnChunk* c = g.stage.exchange(nullptr, std::memory_order_acq_rel)) {
    detail::hand_out(c);
  }
}

Result<void> FunctionGroup::wait() {
  detail::FnGroupState& g = *state_;
  using G = detail::FnGroupState;
  {
    std::lock_guard lock(g.report_mu);
    ++g.waiters_inside;
  }
  g.pending.fetch_add(G::kWaiterUnit, std::memory_order_seq_cst);
  const auto done = [&g] {
    return (g.pending.load(std::memory_order_seq_cst) & G::kCountMask) == 0 ||
           g.stage.load(std::memory_order_seq_cst) != nullptr;
  };
  for (;;) {
    if (detail::FnChunk* c = g.stage.exchange(nullptr, std::memory_order_seq_cst)) {
      // Help: the staged callables run on this thread (or are cancelled with the pool).
      detail::run_staged_here(c, !g.lane->closed.load(std::memory_order_acquire));
      continue;
    }
    if ((g.pending.load(std::memory_order_seq_cst) & G::kCountMask) == 0) break;
    if (g.lane->gone.load(std::memory_order_acquire)) {
      // The pool (and its scheduler) is gone: only other threads' stages can remain.
      std::this_thread::yield();
      continue;
    }
    g.sched->wait_until(&g, done);
  }
  g.pending.fetch_sub(G::kWaiterUnit, std::memory_order_seq_cst);

  std::lock_guard lock(g.report_mu);
  Report rep;
  rep.submitted = g.submitted.load(std::memory_order_relaxed) - g.base_submitted;
  rep.failed = g.failed.load(std::memory_order_relaxed) - g.base_failed;
  rep.cancelled = g.skipped.load(std::memory_order_relaxed) - g.base_skipped;
  rep.ran = rep.submitted - rep.failed - rep.cancelled;
  Result<void> result;
  if (rep.failed != 0 && g.first_error) {
    std::string msg = pepita::fmt("{} of {} function tasks failed; the first: {}", rep.failed,
                                  rep.submitted, g.first_error->message());
    if (rep.cancelled != 0) {
      msg.append(pepita::fmt(" ({} more were cancelled before they ran)", rep.cancelled));
    }
    result =
        std::unexpected(Error(g.first_error->code(), std::move(msg), g.first_error->sys_errno()));
  } else if (rep.cancelled != 0) {
    result = fail(ErrorCode::Cancelled,
                  pepita::fmt("{} of {} function tasks were cancelled before they ran "
                              "(FunctionGroup::cancel, or the pool's cancel_all or shutdown)",
                              rep.cancelled, rep.submitted));
  }
  last_ = rep;
  last_exception_ = g.first_exception;
  if (--g.waiters_inside == 0) {
    // The last waiter out resets the group for reuse.
    g.base_submitted += rep.submitted;
    g.base_failed += rep.failed;
    g.base_skipped += rep.cancelled;
    g.first_error.reset();
    g.first_exception = nullptr;
    g.cancelled.store(false, std::memory_order_relaxed);
  }
  return result;
}

FunctionGroup::Report FunctionGroup::last_report() const { return last_; }

std::exception_ptr FunctionGroup::exception() const noexcept { return last_exception_; }

void FunctionGroup::cancel() noexcept { state_->cancelled.store(true, std::memory_order_relaxed); }

bool FunctionGroup::is_cancelled() const noexcept {
  return state_->cancelled.load(std::memory_order_relaxed);
}

}  // namespace pepita::pool
