#pragma once
// Scheduler: a pool of worker threads doing randomized work stealing (Blumofe & Leiserson,
// "Scheduling Multithreaded Computations by Work Stealing", JACM 1999) over one Chase–Lev deque
// per worker (deque.hpp), plus an injection queue for tasks submitted from outside threads.
// Idle workers spin briefly, then park on a futex (std::atomic::wait): an idle scheduler uses ~0%
// CPU. Fork-join on top of it lives in task_group.hpp and parallel.hpp.
//
//   auto sched = pepita::scheduler::Scheduler::create({.workers = 4});
//   if (!sched) return std::unexpected(sched.error());
//   (*sched)->submit([] { do_work(); });             // fire and forget, from any thread
//   pepita::scheduler::TaskGroup g(**sched);         // fork-join: see task_group.hpp
//   g.run([] { left(); }); g.run([] { right(); }); auto ok = g.wait();

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/scheduler/task.hpp"

namespace pepita::scheduler {

/// Counters of one worker since the scheduler started. Read with Scheduler::stats(); values are
/// sampled without stopping the workers, so a snapshot taken while tasks run is approximate.
struct WorkerStats {
  std::uint64_t tasks_executed = 0;    // tasks this worker ran (own, stolen or injected)
  std::uint64_t steals_attempted = 0;  // steal() calls on another worker's deque
  std::uint64_t steals_succeeded = 0;  // of which returned a task
  std::uint64_t injected_taken = 0;    // tasks taken from the injection queue
  std::uint64_t parks = 0;             // times the worker slept on its futex
};

struct Stats {
  std::vector<WorkerStats> workers;           // index = worker index
  std::uint64_t tasks_executed_external = 0;  // stragglers the destructor ran itself
  std::uint64_t uncaught_exceptions = 0;      // thrown by submit()ted tasks (see submit)

  /// Sum over all workers.
  WorkerStats total() const noexcept;
};

class TaskGroup;

/// A worker's index in its scheduler (0..num_workers()-1): the index of Stats::workers and
/// worker_loads(). The crate's WorkerId; `WorkerId{3}` is its `WorkerId::new(3)`.
struct WorkerId {
  std::uint32_t value = 0;
  constexpr std::uint32_t as_u32() const noexcept { return value; }
  friend constexpr bool operator==(WorkerId, WorkerId) noexcept = default;
  friend constexpr auto operator<=>(WorkerId, WorkerId) noexcept = default;
};

class Scheduler {
 public:
  struct Options {
    /// Worker threads; 0 means one per CPU in the process's affinity mask (what
    /// hardware_concurrency() reports when nothing restricts the process). At most 4096.
    unsigned workers = 0;
    /// Pin worker i to the i-th CPU of the process's affinity mask (wrapping around). Pinning
    /// failures (e.g. a restricted cpuset) are ignored: the worker runs unpinned.
    bool pin_workers = false;
    /// Rounds of failed steal attempts before an idle worker parks. Higher = lower wake-up
    /// latency for bursty work, more CPU burnt when idle. 0 = park immediately.
    unsigned spin_rounds = 64;
    /// Thread name prefix (pthread_setname_np, max 15 chars incl. the index).
    std::string name = "pepita-w";
    /// Called (on the worker) with an exception that escaped a submit()ted task. Default: none
    /// (the exception is only counted in Stats::uncaught_exceptions).
    std::function<void(std::exception_ptr)> on_uncaught_exception = {};
    /// Initial slots of each worker's deque (rounded up to a power of two, at least 2); deques
    /// grow past it, so this only saves early reallocation. The crate's `with_capacity`.
    /// InvalidArgument when above 2^24.
    std::size_t deque_capacity = 256;
    /// Most workers add_worker() may bring the scheduler to; 0 means `workers`. Slots (deque,
    /// counters) for all of them are allocated at create(), so adding a worker never moves
    /// anything a thief reads. InvalidArgument when below `workers` or above 4096.
    unsigned max_workers = 0;
  };

  /// Starts the worker threads. Errors: InvalidArgument for a worker count over 4096 or a bad
  /// max_workers,
  /// ResourceExhausted when the OS refuses a thread (lower `workers` or raise RLIMIT_NPROC).
  static Result<std::unique_ptr<Scheduler>> create(Options options);
  static Result<std::unique_ptr<Scheduler>> create() { return create(Options{}); }

  /// The process-wide scheduler (one worker per allowed CPU, default options), created on
  /// first use and destroyed (drained, joined) at static-destruction time. Aborts the process
  /// with a message if its threads cannot be started. TaskGroup and parallel_* default to it.
  static Scheduler& default_instance();

  /// Drains, then joins: every task queued before or during destruction (including tasks those
  /// tasks spawn) runs before the destructor returns, except tasks of cancelled groups, which are
  /// discarded unrun. Must not be called from one of this scheduler's own workers, and no thread
  /// may submit to it once destruction has begun (other than its own running tasks).
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Fire-and-forget: runs `fn()` on some worker. From a worker of this scheduler it goes on that
  /// worker's deque (LIFO, stealable); from any other thread it goes on the injection queue
  /// (FIFO). An exception escaping `fn` is caught, counted and handed to
  /// Options::on_uncaught_exception; use a TaskGroup to get errors back instead.
  template <typename F>
  void submit(F&& fn);

  unsigned worker_count() const noexcept;

  // ---- introspection, with the crate's names (scheduler.rs) ----
  /// worker_count(), the crate's spelling.
  unsigned num_workers() const noexcept { return worker_count(); }
  /// Tasks queued and not yet started: every worker's deque plus the injection queue. A
  /// snapshot; exact only when no thread is submitting or running tasks.
  std::size_t pending_tasks() const noexcept;
  /// Queued tasks per worker deque, indexed like Stats::workers (snapshot, as pending_tasks).
  std::vector<std::size_t> worker_loads() const;
  /// True until destruction begins. The crate's `stop()` is our destructor: it drains and joins,
  /// so there is no stopped-but-alive state.
  bool is_running() const noexcept;

  // ---- growing and shrinking the worker set (the crate's add_worker/deactivate_worker) ----
  // Rules:
  //  - Worker slots 0..max_workers-1 exist from create(); worker_count() threads have been
  //    started, of which active_workers() take work. Ids are never reused for another thread.
  //  - An inactive worker takes no new task: not from its deque, the injector or a thief's sweep.
  //    Its queued tasks were handed to the injection queue when it stopped; thieves still sweep
  //    its (empty) deque. It parks until add_worker() reactivates it or the scheduler is
  //    destroyed, and its counters in stats() stay.
  //  - add_worker() reactivates the lowest inactive worker if there is one, else starts a new
  //    thread in the next slot.
  //  - Calls to add_worker/deactivate_worker are serialised with each other; neither may be made
  //    while the destructor runs.

  /// Adds one worker and returns its id: reactivates the lowest-numbered inactive worker, or
  /// starts a thread in a new slot. ResourceExhausted, naming max_workers, when every slot holds
  /// an active worker (create with a larger Options::max_workers) or when the OS refuses a thread.
  Result<WorkerId> add_worker();

  /// Makes worker `id` stop taking work. Returns once it has finished the task it was running
  /// (or, if that task is blocked in TaskGroup::wait, has stopped helping with other tasks
  /// there) and moved its queued tasks to the injection queue; from then on it runs no task
  /// until reactivated (the task it was blocked in resumes when its group completes). From the
  /// worker itself it returns at once and takes effect when the calling task ends.
  /// Deactivating an inactive worker is a no-op. Errors: InvalidArgument naming the id when it
  /// is not a started worker; Busy when `id` is the last active worker (nothing would run
  /// submitted tasks).
  Result<void> deactivate_worker(WorkerId id);

  /// Whether worker `id` takes work. InvalidArgument naming the id when it is not a started
  /// worker.
  Result<bool> is_worker_active(WorkerId id) const;

  /// Started workers that are active (worker_count() minus the deactivated ones).
  unsigned active_workers() const noexcept;

  /// Per-worker counters; cheap (no locks), approximate while tasks run.
  Stats stats() const;

  /// True when the calling thread is one of this scheduler's workers.
  bool on_worker_thread() const noexcept;

  /// Index of the calling thread among its scheduler's workers, or -1 on any other thread.
  static int current_worker_index() noexcept;
  /// The calling worker's id, or nullopt on a thread that is no scheduler's worker.
  static std::optional<WorkerId> current_worker() noexcept {
    const int i = current_worker_index();
    if (i < 0) return std::nullopt;
    return WorkerId{static_cast<std::uint32_t>(i)};
  }

  // ---- internal interface used by TaskGroup and the parallel algorithms ----

  /// Queues a ready task: local deque when called on a worker of this scheduler, else injected.
  void spawn(detail::TaskBase* task);

  /// join()'s lazy task creation: whether a join nested `depth` joins deep on the calling thread
  /// should make its first callable stealable (push its frame) rather than run both inline. True
  /// for the kEagerJoinDepth outermost joins, which keeps the shallowest (largest) frames of a
  /// recursion stealable before anyone asks, and whenever some worker of this scheduler is
  /// looking for work (searching or parked). One relaxed load.
  bool join_should_spawn(unsigned depth) const noexcept {
    return depth < kEagerJoinDepth || hungry_->load(std::memory_order_relaxed) != 0;
  }
  static constexpr unsigned kEagerJoinDepth = 8;

  /// join()'s owner side: pops the calling worker's deque, running every task found above
  /// `mine` (tasks pushed after it and left unjoined), until it pops `mine` (true: the caller
  /// runs it inline; it was never stolen) or the deque is empty (false: a thief took `mine`, or
  /// a deactivation moved it to the injection queue). False at once on a thread that is not one
  /// of this scheduler's workers.
  bool pop_local_until(const detail::TaskBase* mine) noexcept;

  /// Runs queued tasks on the calling thread until done() returns true; parks when there is
  /// nothing to do and wakes when notify_waiters(key) is called with the same key. Non-worker
  /// threads only park (they have no deque; the workers already occupy every core).
  template <typename Done>
  void wait_until(const void* key, Done&& done) {
    wait_until(key, done, done);
  }

  /// Same, for events that only notify when asked to: arm() is called after the waiter is
  /// registered and before each park; it must atomically tell the event source "a waiter may
  /// sleep, call notify_waiters(key)" and return true when the event already happened. TaskGroup
  /// uses it so that completing a group nobody sleeps on never touches the waiter list.
  template <typename Done, typename Arm>
  void wait_until(const void* key, Done&& done, Arm&& arm);

  /// Wakes threads parked in wait_until(key, ...). Touches only the scheduler, never *key, so
  /// the object behind key may already be destroyed.
  void notify_waiters(const void* key) noexcept;

  /// True when the calling worker's own deque is empty (its queued work was stolen or run): the
  /// moment lazy binary splitting (Tzannes et al., PPoPP 2010) hands out more parallelism. False
  /// on non-worker threads.
  bool local_queue_empty() const noexcept;

  void count_uncaught(std::exception_ptr error) noexcept;
  struct Impl;
  /// Passkey: only create() can name it, so only create() constructs a Scheduler.
  class Key {
    friend class Scheduler;
    Key() = default;
  };
  Scheduler(Key, std::unique_ptr<Impl> impl) noexcept;

 private:
  void block_until(const void* key, const std::function<bool()>& done,
                   const std::function<bool()>& arm);
  std::unique_ptr<Impl> impl_;
  const std::atomic<int>* hungry_;  // Impl::hungry: workers looking for work
};

namespace detail {

/// The task behind Scheduler::submit: no group, exceptions go to the scheduler's counter.
template <typename F>
struct DetachedTask final : TaskBase {
  DetachedTask(Scheduler* s, F&& f) : TaskBase{&run}, sched(s), fn(std::move(f)) {}
  DetachedTask(Scheduler* s, const F& f) : TaskBase{&run}, sched(s), fn(f) {}

  static void run(TaskBase* base) noexcept {
    auto* self = static_cast<DetachedTask*>(base);
    Scheduler* s = self->sched;
    try {
      self->fn();
    } catch (...) {
      s->count_uncaught(std::current_exception());
    }
    destroy_task(self);
  }

  Scheduler* sched;
  F fn;
};

}  // namespace detail

template <typename F>
void Scheduler::submit(F&& fn) {
  using Fn = std::decay_t<F>;
  spawn(detail::make_task<detail::DetachedTask<Fn>>(this, std::forward<F>(fn)));
}

template <typename Done, typename Arm>
void Scheduler::wait_until(const void* key, Done&& done, Arm&& arm) {
  if (done()) return;  // fast path: no std::function construction
  const std::function<bool()> check = [&done] { return static_cast<bool>(done()); };
  const std::function<bool()> arm_fn = [&arm] { return static_cast<bool>(arm()); };
  block_until(key, check, arm_fn);
}

}  // namespace pepita::scheduler
