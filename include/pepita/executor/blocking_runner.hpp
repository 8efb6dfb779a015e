#pragma once
// BlockingRunner: the one runner for executors whose attempts block a thread (a GPU submission, a
// micro-VM's vCPU): a queue, N threads, a per-attempt deadline (the task's timeout) and a stop
// watcher, completion reported exactly once, a shutdown that drains, and abandon. An executor
// supplies only the body that runs one attempt; it never touches threads or condition variables.
//
//   auto runner = BlockingRunner::create({.threads = 4, .name = "GPU executor"},
//       [](const BlockingRunner::Attempt& a) { return run_kernel(a.task, a.stop); }).value();
//   PEPITA_TRY_VOID(runner->submit(task, stop, done));  // `done` runs once, on a runner thread
//   runner->shutdown();                                 // runs what is queued, then joins

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/task/task.hpp"

namespace pepita::executor {

class BlockingRunner {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    /// Threads, each running one attempt at a time (1..1024).
    std::size_t threads = 1;
    /// Enforce a deadline per attempt: the task's timeout, counted from submit(). False when
    /// the body enforces the timeout itself (a VM's watchdog).
    bool deadline = true;
    /// Deadline for a task without a timeout; 0: none.
    std::chrono::nanoseconds default_timeout{0};
    /// True: when the stop token fires or the deadline passes, the watcher reports Cancelled or
    /// TimedOut at once, while the body finishes in the background (its result is dropped). For
    /// bodies that cannot be interrupted (a kernel already on the GPU). False: the body sees its
    /// stop token requested and reports itself.
    bool report_early = true;
    /// Names the executor in errors ("GPU executor is shut down").
    std::string name = "executor";
  };

  /// What the body gets for one attempt. `stop` is requested when the caller's token is, or
  /// when the deadline passes (`timed_out()` then says which).
  struct Attempt {
    const task::Task& task;
    std::stop_token stop;
    Clock::time_point started;   // when submit() accepted it
    Clock::time_point deadline;  // Clock::time_point::max() when none
    std::size_t thread;          // 0..threads-1: index for per-thread state (recycled VMs)
    bool timed_out() const noexcept { return Clock::now() >= deadline; }
  };

  /// Runs one attempt on a runner thread; returns its result (id, name and wall are filled in
  /// by the runner when left empty).
  using Body = std::function<ExecutionResult(const Attempt&)>;

  /// Starts the threads (and the watcher). InvalidArgument for threads outside 1..1024 or an
  /// empty body; ResourceExhausted when a thread cannot start.
  static Result<std::unique_ptr<BlockingRunner>> create(Options options, Body body);
  /// shutdown(), then gone.
  ~BlockingRunner();
  BlockingRunner(const BlockingRunner&) = delete;
  BlockingRunner& operator=(const BlockingRunner&) = delete;

  /// Queues one attempt; `done` is called exactly once, on a runner thread, never inside
  /// submit(). Cancelled after shutdown() (then `done` is never called).
  Result<void> submit(const task::Task& task, std::stop_token stop, Completion done);

  /// What shutdown() does with attempts still queued.
  enum class Drain : std::uint8_t {
    Run,     // run them (the Executor::shutdown contract: every accepted attempt completes)
    Cancel,  // report them Cancelled without running them
  };
  /// Stops accepting, handles the queue per `drain`, waits for running bodies and for every
  /// completion to return. Idempotent (the first call's `drain` applies).
  void shutdown(Drain drain = Drain::Run);

  /// Requests stop on every attempt not yet reported, without blocking; for Executor::abandon.
  void abandon() noexcept;

  /// Attempts accepted and not yet reported.
  std::size_t outstanding() const;

  struct Impl;

 private:
  explicit BlockingRunner(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

/// A result for `task` with `status` and `error`, exit code -1 (1 for Failed, 0 for
/// Succeeded) and wall time since `started`: what a body returns for an outcome without output.
ExecutionResult result_for(const task::Task& task, Status status, std::string error,
                           BlockingRunner::Clock::time_point started);

}  // namespace pepita::executor
