#pragma once
// Pool: the front door for running a batch of tasks. It holds a registry of executors keyed by
// backend (Cpu on the work-stealing scheduler, Process via posix_spawn; Remote/Slurm/MicroVm/Gpu
// plug in through Builder::executor), releases tasks in dependency order, applies the RetryPolicy's
// backoff, consults one CircuitBreaker per backend before every attempt, and records progress in
// an optional crash-safe Journal so a rerun skips what already succeeded.
//
//   auto pool = Pool::builder().process_slots(8).journal("run.journal").build().value();
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
#include "pepita/executor/result.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool {

using executor::ExecutionResult;
using executor::Status;
using task::Task;
using task::TaskId;

namespace detail {
struct HandleState;
struct PoolState;
}  // namespace detail

/// A submitted task's future result. Copyable; all copies see the same result.
class TaskHandle {
 public:
  TaskId id() const noexcept { return id_; }
  /// Blocks until the task has a final result (after all retries, or skipped/cancelled).
  const ExecutionResult& wait() const;
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
  // Submit-to-final-result latency over (a reservoir sample of) finished tasks, milliseconds.
  double latency_p50_ms = 0, latency_p90_ms = 0, latency_p99_ms = 0;
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
    /// Scheduler workers for function tasks (0: one per CPU).
    Builder& cpu_workers(unsigned n);
    /// Child processes at once (0: one per CPU).
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

    /// Creates the executors and opens the journal. Errors: those of the executors, and of
    /// Journal::open (a damaged journal is Corrupted).
    Result<Pool> build();

   private:
    friend class Pool;
    unsigned cpu_workers_ = 0;
    std::size_t process_slots_ = 0;
    std::chrono::nanoseconds kill_grace_{std::chrono::seconds(2)};
    fault::RetryPolicy retry_;
    fault::BreakerConfig breaker_;
    std::string journal_path_;
    bool resume_ = false;
    std::vector<ExecutorFactory> executors_;
    std::function<void(const Event&)> observer_;
    bool retain_ = true;
  };

  static Builder builder() { return Builder(); }

  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  /// Shuts down immediately (cancelling what has not finished) unless already shut down.
  ~Pool();

  /// Queues one task. Its dependencies must have been submitted already. Errors:
  /// InvalidArgument (resubmitted id; duplicate name with a journal), NotFound (unknown
  /// dependency), Unsupported (no executor for the task's backend), Cancelled (shut down).
  Result<TaskHandle> submit(Task task);
  /// Queues a batch atomically after checking it as a graph: dependencies may point inside the
  /// batch in any order; a cycle is InvalidArgument naming its members. Nothing is queued on
  /// error.
  Result<std::vector<TaskHandle>> submit_all(std::vector<Task> tasks);

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

 private:
  explicit Pool(std::unique_ptr<detail::PoolState> state) noexcept;
  std::unique_ptr<detail::PoolState> state_;
};

/// The retry/breaker view of a failed attempt.
fault::Failure failure_of(const ExecutionResult& result) noexcept;

}  // namespace pepita::pool
