#pragma once
// FunctionGroup: plain callables on a Pool's own cpu workers, without a Task (issue 27), in the
// spirit of oneTBB's task_group: run(fn) queues, wait() helps and returns the group's failures.
// A thread outside the pool stages its callables in chunks of kChunkSlots inline 64-byte slots
// and hands the scheduler one task per chunk, so the hot path takes no mutex and allocates
// nothing per callable; a pool worker (a nested run) pushes each callable on its own deque.
//
//   auto g = pool.function_group().value();
//   std::atomic<std::uint64_t> sum{0};
//   for (std::uint64_t i = 0; i < 1'000'000; ++i) g.run([&sum, i] { sum += i; });
//   if (auto r = g.wait(); !r) std::puts(r.error().to_string().c_str());  // "2 of 1000000 ..."
//   FunctionGroup::Report rep = g.last_report();  // ran, failed, cancelled of that wait

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/scheduler/scheduler.hpp"

namespace pepita::pool {

class Pool;
class FunctionGroup;

namespace detail {

struct FnGroupState;

/// The pool's side of its function groups (shared with them, so a group outlives its pool
/// safely): the scheduler, whether the pool still accepts callables, the live groups (for
/// cancel_all and stats) and the totals of the groups already destroyed.
struct FunctionLane {
  scheduler::Scheduler* sched = nullptr;  // the pool's cpu scheduler; unused once `closed`
  std::atomic<bool> closed{false};        // shutdown() began: new callables are cancelled
  std::atomic<bool> gone{false};          // the pool and its scheduler are destroyed
  std::mutex mu;                          // guards `groups` and the totals below
  FnGroupState* groups = nullptr;         // intrusive list of live groups
  std::uint64_t submitted = 0, succeeded = 0, failed = 0;  // of destroyed groups

  /// Pool::cancel_all / shutdown(Immediate): every live group's queued callables are skipped.
  void cancel_all() noexcept;
  /// Adds the live groups' counts and the totals to `submitted`, `done`, `succeeded`, `failed`.
  void add_counts(std::uint64_t& submitted, std::uint64_t& done, std::uint64_t& succeeded,
                  std::uint64_t& failed);
};

/// One queued callable: 48 bytes inline (a larger or over-aligned callable is stored behind a
/// pointer, one allocation) and the function that runs it (unless `run` is false) and destroys it.
struct FnSlot {
  static constexpr std::size_t kInline = 48;
  using Call = void (*)(FnSlot& slot, FnGroupState& group, bool run) noexcept;
  alignas(16) std::byte storage[kInline];
  Call call;
};
inline constexpr std::size_t kChunkSlots = 32;

struct FnChunk;  // src/pool/function_group.cpp: kChunkSlots slots and their group

/// A group's shared state; FunctionGroup owns it. Lives until every callable of the group has
/// finished (the group's destructor waits).
struct FnGroupState {
  // Low 48 bits: callables queued or running (a staged chunk counts 1 until it is handed out);
  // high bits: threads inside wait(). One word, so the finisher that takes the count to 0 knows
  // from its own RMW whether to wake a waiter and never touches the group afterwards.
  static constexpr std::uint64_t kWaiterUnit = std::uint64_t{1} << 48;
  static constexpr std::uint64_t kCountMask = kWaiterUnit - 1;

  alignas(64) std::atomic<std::uint64_t> pending{0};
  std::atomic<FnChunk*> stage{nullptr};  // chunk being filled by a thread outside the pool
  std::atomic<std::uint64_t> submitted{0};
  std::atomic<std::uint64_t> last_hand_out{0};  // a cheap clock's ticks (stage_commit's rule)
  alignas(64) std::atomic<bool> cancelled{false};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> skipped{0};  // cancelled before they ran

  std::shared_ptr<FunctionLane> lane;
  scheduler::Scheduler* sched = nullptr;
  FnGroupState* prev = nullptr;  // FunctionLane::groups list, under lane->mu
  FnGroupState* next = nullptr;

  std::mutex report_mu;  // failures (rare path) and waiters' bookkeeping
  std::optional<Error> first_error;
  std::exception_ptr first_exception;
  unsigned waiters_inside = 0;
  // Counts at the last reset, so a wait reports what happened since.
  std::uint64_t base_submitted = 0, base_failed = 0, base_skipped = 0;

  // ---- the hot path's out-of-line halves ----
  /// Takes (or starts) this thread's staged chunk and returns the slot to construct into.
  FnSlot* stage_slot(FnChunk*& chunk);
  /// The slot is built: keeps the chunk staged, or hands it to the scheduler when it is full, the
  /// group handed nothing out for ~20 us, or a waiter sleeps.
  void stage_commit(FnChunk* chunk) noexcept;
  /// run() could not build the slot (`fn`'s copy threw): counted as failed; the chunk (if any)
  /// goes back as stage_commit would, without the slot.
  void stage_abort(FnChunk* chunk, std::exception_ptr error) noexcept;
  /// No chunk of this group was handed out for ~20 us.
  bool quiet_for_a_while() const noexcept;
  /// run() after the pool's shutdown began: counted as submitted and cancelled.
  void count_cancelled() noexcept;
  /// A pool worker's nested run: counted; false when the pool no longer accepts callables
  /// (the caller then destroys it, counted as cancelled).
  bool begin_one() noexcept;
  /// One callable of a nested run is done (ran or skipped).
  void finish(std::uint64_t n) noexcept;

  void record_failure(Error error, std::exception_ptr exception) noexcept;
  void record_exception(std::exception_ptr exception) noexcept;
};

template <typename T>
struct IsResult : std::false_type {};
template <typename T>
struct IsResult<std::expected<T, Error>> : std::true_type {};

template <typename F>
void invoke_into(F& fn, FnGroupState& g) noexcept {
  try {
    using R = std::invoke_result_t<F&>;
    if constexpr (IsResult<R>::value) {
      R r = std::invoke(fn);
      if (!r) g.record_failure(std::move(r).error(), nullptr);
    } else {
      std::invoke(fn);
    }
  } catch (...) {
    g.record_exception(std::current_exception());
  }
}

template <typename F>
inline constexpr bool kFnInline = sizeof(F) <= FnSlot::kInline &&
                                  alignof(F) <= alignof(std::max_align_t);

template <typename F>
void slot_call(FnSlot& slot, FnGroupState& g, bool run) noexcept {
  if constexpr (kFnInline<F>) {
    // SAFETY: stage_slot's caller constructed an F in this storage (FunctionGroup::run).
    F* fn = std::launder(reinterpret_cast<F*>(slot.storage));
    if (run) invoke_into(*fn, g);
    std::destroy_at(fn);
  } else {
    F* fn = nullptr;
    // SAFETY: run() stored the F* of its heap copy in the first bytes of the storage.
    std::memcpy(&fn, slot.storage, sizeof fn);
    if (run) invoke_into(*fn, g);
    delete fn;
  }
}

}  // namespace detail

/// A set of callables run on a Pool's cpu workers (Pool::function_group). Every callable run()
/// queues is run exactly once or, if the group or the pool is cancelled first, destroyed unrun and
/// counted as cancelled; none is lost. A callable that returns a Result with an error, or throws,
/// is counted as failed; the others still run (a failure does not cancel the group). Not copyable;
/// movable while no thread is inside run() or wait().
class FunctionGroup {
 public:
  /// What the callables of one wait() did, since the previous wait() returned.
  struct Report {
    std::uint64_t submitted = 0;  // run() calls
    std::uint64_t ran = 0;        // ran and succeeded
    std::uint64_t failed = 0;     // returned an error or threw
    std::uint64_t cancelled = 0;  // destroyed unrun: the group or its pool was cancelled
  };

  FunctionGroup(FunctionGroup&&) noexcept;
  FunctionGroup& operator=(FunctionGroup&&) noexcept;
  /// Waits for the callables still queued (the pool must still exist or be fully destroyed),
  /// discarding the report.
  ~FunctionGroup();

  /// Queues `fn` (a callable taking no arguments, returning void or a Result) on the pool's cpu
  /// workers. From any thread, including a callable of this group. From a thread outside the pool,
  /// callables are staged in chunks of 32, and a chunk is handed to the workers when it is full or
  /// when the group handed nothing out for ~20 us (so a slow producer's callables start at once):
  /// the tail of a burst, up to 31, waits until the next run(), flush() or wait() — call flush()
  /// when a burst must start before the thread waits. After the pool's shutdown() began, `fn` is
  /// destroyed unrun and counted as cancelled.
  /// Callables up to 48 bytes are stored inline (no allocation); larger ones are allocated.
  template <typename F>
  void run(F&& fn);

  /// Hands this group's staged callables to the workers now (run() from a thread outside the pool
  /// holds up to 31 until the chunk fills).
  void flush();

  /// Blocks until every callable run() so far (by this thread, or by others before this call) has
  /// finished; the calling thread runs the staged callables itself, and a pool worker runs other
  /// queued tasks meanwhile. Callable from several threads at once; all of them see the same
  /// result. Ok when every callable ran and succeeded; else the first failure's code with the
  /// message "F of N function tasks failed; the first: ..." (with the number cancelled, if any),
  /// or Cancelled "C of N function tasks were cancelled before they ran" when only cancellations.
  /// The last waiter to return resets the group (counts, error, cancel flag) for reuse. Must not be
  /// called from a callable of this group (it would wait for itself).
  Result<void> wait();

  /// The counts behind the last wait()'s result.
  Report last_report() const;
  /// The exception behind the first failure last reported, when it was one (to rethrow it).
  std::exception_ptr exception() const noexcept;

  /// Callables not yet started are destroyed unrun (counted as cancelled); running ones finish.
  /// Lasts until the next wait() returns.
  void cancel() noexcept;
  bool is_cancelled() const noexcept;

 private:
  friend class Pool;
  explicit FunctionGroup(std::unique_ptr<detail::FnGroupState> state) noexcept;
  void destroy_unrun() noexcept;
  std::unique_ptr<detail::FnGroupState> state_;
  Report last_;
  std::exception_ptr last_exception_;
};

template <typename F>
void FunctionGroup::run(F&& fn) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&>,
                "FunctionGroup::run needs a callable taking no arguments");
  detail::FnGroupState& g = *state_;
  if (g.lane->closed.load(std::memory_order_acquire)) {
    g.count_cancelled();  // the pool is shut down (or gone): `fn` is not run
    return;
  }
  if (g.sched->on_worker_thread()) {
    // A nested run on one of the pool's workers: its own deque (LIFO, stealable), like TaskGroup.
    if (!g.begin_one()) return;  // counted as cancelled; `fn` dies with the argument
    detail::FnGroupState* gp = &g;
    try {
      g.sched->submit(
          [gp, f = std::optional<Fn>(std::in_place, std::forward<F>(fn))]() mutable noexcept {
            if (!gp->cancelled.load(std::memory_order_relaxed)) {
              detail::invoke_into(*f, *gp);
            } else {
              gp->skipped.fetch_add(1, std::memory_order_relaxed);
            }
            f.reset();  // its captures die before the waiter can return
            gp->finish(1);
          });
    } catch (...) {  // copying `fn` or allocating its task threw: a failure, not an escape
      g.record_exception(std::current_exception());
      g.finish(1);
    }
    return;
  }
  detail::FnChunk* chunk = nullptr;
  detail::FnSlot* slot = g.stage_slot(chunk);
  try {
    if (slot == nullptr) {  // no memory for a chunk: run it here, now (still exactly once)
      Fn f(std::forward<F>(fn));
      g.submitted.fetch_add(1, std::memory_order_relaxed);
      detail::invoke_into(f, g);
      return;
    }
    if constexpr (detail::kFnInline<Fn>) {
      ::new (static_cast<void*>(slot->storage)) Fn(std::forward<F>(fn));
    } else {
      Fn* heap = new Fn(std::forward<F>(fn));
      std::memcpy(slot->storage, &heap, sizeof heap);
    }
  } catch (...) {  // copying `fn` threw or no memory for it: a failure, not an escape
    g.stage_abort(chunk, std::current_exception());
    return;
  }
  slot->call = &detail::slot_call<Fn>;
  g.stage_commit(chunk);
}

}  // namespace pepita::pool
