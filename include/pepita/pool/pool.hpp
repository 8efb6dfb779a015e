#pragma once
// Pool: the front door for running a batch of tasks. It holds a registry of executors keyed by
// backend (Cpu on the work-stealing scheduler, Process via posix_spawn; Remote/Slurm/MicroVm/Gpu
// plug in through Builder::executor), releases tasks in dependency order, applies the RetryPolicy's
// backoff, consults one CircuitBreaker per backend before every attempt, and records progress in
// an optional crash-safe Journal so a rerun skips what already succeeded.
//
// Resources (issue 22): a task with a ResourceRequest starts only when this host's Ledger gives
// its attempt an Allocation (request.at_attempt(n): PerAttempt amounts grow on each retry) and
// a slot of its executor is free; it runs as task.with_allocation(a), and the Allocation goes
// back when the attempt ends, however it ends (ExecutionResult::allocation reports it). Tasks
// without a request take a slot only, as before, and never touch the Ledger. No request is ever
// oversubscribed. Large tasks are not starved; the rule is backfill, then reservation: the
// highest-ordered ready task (priority, then submission order) that does not fit becomes the
// reserver; for its first reserve_after (default 1 s) later tasks that fit backfill around it
// (that keeps freed cores busy: strict reservation left a mixed job 1.36x the greedy bound,
// docs/bench-results.txt); after that every task ordered after it that would take a kind of
// resource it is short of (Ledger::competes) waits until it has started, so it waits at most
// reserve_after plus the time for running tasks to free what it needs; tasks that take none
// of that kind still backfill. A request no host can ever satisfy fails submit() (Unsupported, with
// the Inventory's or the executor's can_ever_fit reason: "needs 4 GPUs; this host has 2").
// Lookahead is bounded (32 waiting tasks per executor and pass, 8 in a row), so a dispatch stays
// cheap behind a blocked head. retry_on: a task with a retry_on() list retries only the failures it
// names (oom, timeout, exit[:N], signal[:N], launch, any), still within its max_retries or the
// policy's max_attempts.
//
// Task::Backend::Any is routed by the task's kind (see PoolState::route): a function to cpu, a
// binary to process, any other kind (a shader) to gpu; a binary on cpu (the crate's spelling)
// runs on process too. The crate's names: PoolBuilder = Pool::Builder, PoolStats = Stats.
//
//   auto pool = Pool::builder().process_slots(8).journal("run.journal").build().value();
//   ExecutionResult r = pool.run(Task::binary("true").build().value()).value();  // synchronous
//   auto a = pool.submit(Task::binary("make").args({"-C", "lib"}).build().value()).value();
//   auto b = pool.submit(Task::binary("make").depends_on({a.id()}).build().value()).value();
//   for (const ExecutionResult& r : pool.wait_all()) print(r);

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/pool/cache.hpp"
#include "pepita/pool/function_group.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool {

using executor::ExecutionResult;
using executor::Status;
using task::Task;
using task::TaskId;
using task::TaskPriority;
using task::TaskState;

namespace detail {
struct HandleState;
struct PoolState;
}  // namespace detail

/// A submitted task's future result. Copyable; all copies see the same result, which lives as
/// long as any copy (not the pool).
class TaskHandle {
 public:
  TaskId id() const noexcept { return id_; }
  /// Blocks until the task has a final result (after all retries, or skipped/cancelled) and
  /// returns a copy of it: nothing to dangle when the pool or the handle goes away.
  ExecutionResult wait() const;
  /// Where the task is now: Pending (waiting for dependencies), Queued (ready, or waiting out a
  /// retry delay), Running, or the terminal state of its final result.
  TaskState state() const noexcept;
  /// Waits up to `timeout`; true when the result is ready.
  bool wait_for(std::chrono::nanoseconds timeout) const;
  /// The result if final, else nullopt.
  std::optional<ExecutionResult> try_get() const;

 private:
  friend struct detail::PoolState;
  friend class Pool;
  TaskHandle(TaskId id, std::shared_ptr<detail::HandleState> state)
      : id_(id), state_(std::move(state)) {}
  TaskId id_;
  std::shared_ptr<detail::HandleState> state_;
};

/// A snapshot of the pool's counters.
struct Stats {
  std::uint64_t submitted = 0;
  std::uint64_t queued = 0;   // waiting for dependencies, a slot or a retry delay
  std::uint64_t running = 0;  // attempts in flight
  std::uint64_t done = 0;     // final results (any status)
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;   // final results that are not Succeeded (skips included)
  std::uint64_t skipped = 0;  // of which never ran because a dependency failed
  std::uint64_t retries = 0;  // attempts beyond each task's first
  std::uint64_t from_journal = 0;
  std::uint64_t from_cache = 0;  // of the succeeded: reused from the result cache, not run
  // Submit-to-final-result latency over (a reservoir sample of) finished tasks, milliseconds.
  double latency_p50_ms = 0, latency_p90_ms = 0, latency_p99_ms = 0;
  // Issue 27: of `submitted`, callables of function groups (Pool::function_group). They count in
  // submitted/done/succeeded/failed (cancelled ones as failed), read from the groups' own
  // counters when stats() is called, never as queued/running, and have no latency sample.
  std::uint64_t functions = 0;

  /// succeeded / (succeeded + failed) over final results; 1.0 before any (the crate's rule).
  double success_rate() const noexcept {
    const std::uint64_t total = succeeded + failed;
    return total == 0 ? 1.0 : static_cast<double>(succeeded) / static_cast<double>(total);
  }
};
/// The crate's name for the counters.
using PoolStats = Stats;

/// One executor's use (Pool::worker_loads): attempts in flight out of its slots, and tasks ready
/// for it but not started (waiting for a slot).
struct WorkerLoad {
  task::Backend backend;
  std::size_t running = 0;
  std::size_t slots = 0;
  std::size_t ready = 0;
};

/// The builder's settings (the crate's PoolConfig): what Pool::config() reports and
/// Pool::builder(config) starts from. Executors, the observer and the registry are not settings.
struct PoolConfig {
  unsigned cpu_workers = 0;                  // function-task workers; 0: one per CPU
  std::optional<std::size_t> process_slots;  // unset: cpu_workers (so it bounds processes too)
  std::chrono::nanoseconds kill_grace{std::chrono::seconds(2)};
  fault::RetryPolicy retry_policy;
  fault::BreakerConfig circuit_breaker;
  std::string journal_path;
  bool resume = false;
  bool retain_results = true;
  std::optional<std::size_t> queue_capacity;  // unset: unbounded; 0 is refused by build()
  std::optional<std::chrono::nanoseconds> default_timeout;  // for tasks with timeout() == 0
  bool enable_gpu = false;
  std::vector<std::string> remote_workers;   // "host:port" addresses of pepita workers
  std::optional<task::Inventory> resources;  // unset: Inventory::detect() (see Builder::resources)
  std::chrono::nanoseconds reserve_after{std::chrono::seconds(1)};  // see Builder::reserve_after
  std::string journal_key_path;  // issue 24: MAC the journal under this key file
  std::string log_dir;           // issue 24: live logs of process tasks (see Builder::log_dir)
  std::string cache_dir;         // issue 24: the result cache's directory; empty: no cache
  StatPolicy cache_stats = StatPolicy::EveryLookup;  // see Builder::cache
};

/// What the pool tells an observer (the CLI's progress display), after the fact.
struct Event {
  enum class Kind : std::uint8_t { Started, Retrying, Finished };
  Kind kind;
  TaskId id;
  std::string name;
  std::uint32_t attempt = 0;
  std::chrono::nanoseconds retry_delay{0};  // Retrying only
  const ExecutionResult* result = nullptr;  // Retrying (the failed attempt) and Finished
};

enum class ShutdownMode : std::uint8_t {
  Graceful,   // stop accepting, let every submitted task finish
  Immediate,  // stop accepting, cancel queued tasks, stop running ones (SIGTERM, then SIGKILL)
};

class Pool {
 public:
  class Builder {
   public:
    Builder() = default;
    /// Starts from `config` (e.g. another pool's config()).
    explicit Builder(PoolConfig config) : config_(std::move(config)) {}

    /// Scheduler workers for function tasks (0: one per CPU). Also bounds the child processes
    /// at once, as the crate's CpuExecutor runs binaries on its workers, unless process_slots()
    /// is called (each bound is separate: n functions and n processes may run together).
    Builder& cpu_workers(unsigned n);
    /// Child processes at once (0: one per CPU); overrides the cpu_workers bound.
    Builder& process_slots(std::size_t n);
    /// Wait between SIGTERM and SIGKILL when a process times out or is cancelled.
    Builder& kill_grace(std::chrono::nanoseconds d);
    Builder& retry_policy(fault::RetryPolicy policy);
    /// Settings of the per-backend breakers. A breaker counts only backend failures (a launch
    /// that failed), not tasks that ran and exited non-zero.
    Builder& circuit_breaker(fault::BreakerConfig config);
    /// Journal file. With resume, tasks whose name and spec digest match a Succeeded record are
    /// not run again: their recorded result is returned (from_journal = true). Without resume
    /// the file starts empty. Task names must then be unique within the pool.
    Builder& journal(std::string path, bool resume = false);
    /// Issue 24: MAC every journal record under the key in this file (mode 0600, >= 32 bytes;
    /// fault::load_journal_key). build() fails when it cannot be read, or when resuming a
    /// journal written under another key or none.
    Builder& journal_key(std::string path);
    /// Issue 24: live logs. Each process/pipeline attempt's stdout and stderr are appended, as
    /// they arrive, to `dir`/<task>.stdout and .stderr (log_file_path), each attempt opening with
    /// a line "--- pepita: attempt N ---"; the in-memory output cap does not apply to them.
    /// Remote attempts are written there too when the remote executor streams logs. `dir` is
    /// created at build().
    Builder& log_dir(std::string dir);
    /// Registers (or replaces) the executor for its backend — how Remote, MicroVm and Gpu
    /// backends join. Its slots() bounds the attempts in flight on it.
    Builder& executor(std::shared_ptr<executor::Executor> exec);
    /// Creates an executor at build(), whose error then is build()'s — how backends from
    /// modules above the pool join, e.g. `.executor(slurm::workers({.nodes = 4}))`.
    using ExecutorFactory = executor::ExecutorFactory;
    Builder& executor(ExecutorFactory make);
    /// Called after each event, on a pool or executor thread, never with pool locks held.
    Builder& on_event(std::function<void(const Event&)> observer);
    /// Keep every result for wait_all() (default). Off: only handles keep results, which lets a
    /// caller stream millions of tasks in bounded memory (use wait_idle()).
    Builder& retain_results(bool keep);

    // ---- issue 21: the crate's PoolBuilder settings ----
    /// Bounds the tasks submitted but without a final result (queued, waiting or running; the
    /// count pending_tasks() reports) to `n`: submit() then blocks until one finishes, and
    /// try_submit() returns WouldBlock. build() refuses 0. Default: unbounded (the crate's
    /// default is 1024; ours keeps existing callers from blocking). A task body that submits to
    /// its own pool should use try_submit: submit would wait for room that only finishing tasks
    /// make.
    Builder& queue_capacity(std::size_t n);
    /// Timeout for tasks built without their own (Task::timeout() == 0). Negative: build() fails.
    Builder& default_timeout(std::chrono::nanoseconds d);
    /// Where enable_gpu() and remote_workers() find their backends: a registry the program
    /// filled with the register_<x>() of the modules it links (gpu::register_gpu,
    /// transport::register_remote). Copied.
    Builder& registry(executor::Registry registry);
    /// Adds the "gpu" backend, built at build() by the registry's gpu factory. build() fails
    /// (Unsupported, saying how to link and register it) when the registry lacks it.
    Builder& enable_gpu(bool enable);
    /// Adds the "remote" backend connected to these worker addresses ("host:port"), built at
    /// build() by the registry's remote factory with the setting workers=<comma-joined list>
    /// (plus remote_options()). build() fails when the registry lacks it.
    Builder& remote_workers(std::vector<std::string> addresses);
    /// Further settings for the remote factory (e.g. key=/path/to/key, tls=on).
    Builder& remote_options(executor::BackendOptions options);
    // ---- issue 22: resources ----
    /// What this host offers to tasks with a resource request (Task::Builder::resources), e.g.
    /// Inventory::detect() narrowed by apply_overrides("gpus=0,1"). Unset: Inventory::detect(),
    /// run once per process when the first task with a request is submitted to a pool (tasks
    /// without requests never pay for it). One Ledger of it is shared by every executor whose
    /// places_resources() is false; an executor that places requests itself (remote, slurm)
    /// is asked its can_ever_fit() at submit instead.
    Builder& resources(task::Inventory inventory);
    /// How long the highest-ordered task that does not fit lets later, smaller tasks backfill
    /// around it before it reserves what it is short of (see the placement rule above). 0:
    /// reserve at once (strict order); negative: build() fails. Default 1 s.
    Builder& reserve_after(std::chrono::nanoseconds wait);
    // ---- issue 24: the result cache ----
    /// Reuses cached successes across runs from the result cache in `dir` (see cache.hpp):
    /// a task with declared inputs or outputs whose key matches a stored success with its
    /// outputs unchanged finishes at once with from_cache = true; the others run, and their
    /// successes are stored. Every result says why (ExecutionResult::cache_reason). A directory
    /// that cannot be created or written is not build()'s error: the pool runs uncached and
    /// cache_warning() says why. Empty: no cache (default). `stats`: StatPolicy::OncePerRun
    /// for a pool that is one run, as `pepita run`'s is (cache.hpp says what it changes).
    Builder& cache(std::string dir, StatPolicy stats = StatPolicy::EveryLookup);
    /// The settings so far.
    const PoolConfig& config() const noexcept { return config_; }

    /// Creates the executors and opens the journal. Errors: InvalidArgument naming the setting
    /// (queue_capacity 0, a negative kill_grace or default_timeout), Unsupported when
    /// enable_gpu/remote_workers find no backend in the registry, those of the executors, and of
    /// Journal::open (a damaged journal is Corrupted).
    Result<Pool> build();

   private:
    friend class Pool;
    PoolConfig config_;
    std::vector<ExecutorFactory> executors_;
    std::function<void(const Event&)> observer_;
    std::optional<executor::Registry> registry_;
    executor::BackendOptions remote_options_;
  };
  /// The crate's name.
  using PoolBuilder = Builder;

  static Builder builder() { return Builder(); }
  static Builder builder(PoolConfig config) { return Builder(std::move(config)); }

  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  /// Shuts down immediately (cancelling what has not finished) unless already shut down.
  ~Pool();

  /// Queues one task. Its dependencies must have been submitted already. With queue_capacity it
  /// blocks while that many are pending (a shutdown wakes it with Cancelled). Errors:
  /// InvalidArgument (resubmitted id; duplicate name with a journal), NotFound (unknown
  /// dependency), Unsupported (no executor for the task's backend, or for any backend that can
  /// run it with Backend::Any), Cancelled (shut down).
  Result<TaskHandle> submit(Task task);
  /// Queues a batch atomically after checking it as a graph: dependencies may point inside the
  /// batch in any order; a cycle is InvalidArgument naming its members. Nothing is queued on
  /// error. With queue_capacity it blocks until the whole batch fits; a batch larger than the
  /// capacity is InvalidArgument.
  Result<std::vector<TaskHandle>> submit_all(std::vector<Task> tasks);

  // ---- issue 21: the crate's submission and introspection ----
  /// Submits `task` and waits for its final result (the crate's synchronous submit). Errors:
  /// those of submit(); a task that ran and failed is a result, not an error.
  Result<ExecutionResult> run(Task task);
  /// The crate's name for the asynchronous submit(); the same call.
  Result<TaskHandle> submit_async(Task task) { return submit(std::move(task)); }
  /// submit() that never blocks: WouldBlock when queue_capacity tasks are already pending.
  Result<TaskHandle> try_submit(Task task);
  /// Attempts the pool can run at once: the sum of its executors' slots (cpu workers, process
  /// slots, ...).
  std::size_t num_workers() const;
  /// Tasks submitted without a final result yet (what queue_capacity bounds).
  std::size_t pending_tasks() const;
  /// True until shutdown() starts.
  bool is_running() const;
  /// Per executor, in registration order (cpu, process, then the others): its slot use.
  std::vector<WorkerLoad> worker_loads() const;
  /// The settings it was built with.
  const PoolConfig& config() const;

  // ---- issue 27: plain callables, no Task ----
  /// A group of plain callables on this pool's cpu workers (cpu_workers bounds them), in the
  /// spirit of oneTBB's task_group: `g.run(fn)` per callable, `g.wait()` for them all (the
  /// waiting thread helps), failures reported by wait() with a count (see function_group.hpp).
  /// No Task, id, journal, retry or cache: ~0.1 us per callable instead of a Task's ~1 us. The
  /// pool's cancel_all() and shutdown(Immediate) cancel every group's queued callables (counted,
  /// never run); after shutdown() begins new ones are cancelled; shutdown() does not wait for
  /// them (each group's wait() does, and ~Pool drains them). stats() counts them. wait_all,
  /// wait_idle, pending_tasks and cancel(id) do not see them. A group may outlive the pool but
  /// must not be used while the pool is being destroyed. Errors: Cancelled when the pool is shut
  /// down; InvalidArgument on a moved-from pool.
  ///
  ///   auto g = pool.function_group().value();
  ///   for (int i = 0; i < n; ++i) g.run([&, i] { out[i] = f(i); });
  ///   if (auto r = g.wait(); !r) report(r.error());  // "2 of 1000 function tasks failed; ..."
  Result<FunctionGroup> function_group();

  /// Waits until every submitted task has a final result; returns the results of the tasks
  /// submitted since the previous wait_all(), in submission order (empty with retain_results
  /// off).
  std::vector<ExecutionResult> wait_all();
  /// Waits until nothing is queued or running.
  void wait_idle();

  /// Cancels one task: a queued one finishes Cancelled at once (its dependents are Skipped), a
  /// running one is stopped and not retried. False if the id is unknown or already final.
  bool cancel(TaskId id);
  /// Cancels every unfinished task.
  void cancel_all();

  /// Stops accepting tasks and waits for the submitted ones (Graceful) or cancels them
  /// (Immediate); then stops the executors. Idempotent.
  void shutdown(ShutdownMode mode = ShutdownMode::Graceful);

  /// Names of the tasks without a final result yet, running ones first — what a caller that
  /// gives up waiting (a stop deadline) could not confirm stopped. At most `limit` names.
  std::vector<std::string> unfinished(std::size_t limit = 100) const;

  /// Last resort before exiting without waiting (a second Ctrl-C, a passed stop deadline):
  /// every executor's abandon() (SIGKILL to child process groups, a final cancel of cluster
  /// jobs), then the journal is synced so what finished stays recorded. Never blocks on tasks;
  /// the pool must not be used afterwards except to destroy it or exit. Thread-safe.
  void abandon() noexcept;

  Stats stats() const;
  /// The first error the journal hit (a failed write or fdatasync), if any; the run goes on
  /// without durability, so a caller should report it.
  std::optional<Error> journal_error() const;
  /// Records recovered from the journal at build() (0 without resume).
  std::size_t journal_recovered() const;
  /// Why the result cache is off or stopped storing (a directory that cannot be created, a
  /// full disk), to print once; nullopt while it works or when none was asked for.
  std::optional<Error> cache_warning() const;
  /// The result cache's damaged index files found at build() (ignored: that run starts with a
  /// cold index and rewrites them), as sentences to print as warnings; empty when all is well.
  std::vector<std::string> cache_notices() const;

 private:
  explicit Pool(std::unique_ptr<detail::PoolState> state) noexcept;
  Result<TaskHandle> submit_one(Task task, bool block);
  void release() noexcept;  // shutdown(Immediate), destroy the state, mark function groups
  std::unique_ptr<detail::PoolState> state_;
};

/// The retry/breaker view of a failed attempt.
fault::Failure failure_of(const ExecutionResult& result) noexcept;

}  // namespace pepita::pool
