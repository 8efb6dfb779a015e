#pragma once
// The Executor interface: one backend that runs task attempts asynchronously. The pool keeps its
// executors keyed by backend name (cpu and process built in; remote, microvm, gpu and any a
// program registers in an executor::Registry plug in the same way) and talks to them only through
// this interface.
//
//   auto exec = ProcessExecutor::create({.slots = 8}).value();
//   std::stop_source stop;
//   exec->start(task, stop.get_token(), [](ExecutionResult r) { report(r); });
//   exec->shutdown();  // waits for every attempt in flight; completions all delivered

#include <cstddef>
#include <functional>
#include <memory>
#include <stop_token>

#include "pepita/error.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/task/task.hpp"

namespace pepita::executor {

/// A backend's name; executor is where backends are registered, so this is its home spelling.
using Backend = task::Backend;

/// Receives an attempt's result. Called exactly once per successful start(), on a thread the
/// executor owns, never from inside start(); it may call start() again.
using Completion = std::function<void(ExecutionResult)>;

class Executor {
 public:
  virtual ~Executor() = default;

  /// The name of the backend this executor implements (the pool routes a task by it).
  virtual Backend backend() const noexcept = 0;

  /// Attempts it can usefully run at once; the pool never has more outstanding.
  virtual std::size_t slots() const noexcept = 0;

  /// Starts one attempt of `task`. Requesting stop on `stop` cancels it (a process gets SIGTERM,
  /// then SIGKILL after a grace period; a function sees the token). The result carries the
  /// task's id and name; attempts and from_journal are left for the caller.
  /// Errors (then `done` is never called): InvalidArgument when the task is not for this
  /// backend, Cancelled after shutdown().
  virtual Result<void> start(const task::Task& task, std::stop_token stop, Completion done) = 0;

  /// Stops accepting new attempts and blocks until every started attempt has completed and its
  /// Completion has returned. Idempotent. Cancel attempts first for an immediate shutdown.
  virtual void shutdown() = 0;

  /// Last resort before the process exits without waiting for its attempts (a second Ctrl-C, or
  /// a stop deadline that passed): end, without blocking for long, what this executor started
  /// outside this process — child process groups get SIGKILL, cluster jobs a final cancel.
  /// Completions may never be delivered afterwards; only exiting may follow. Thread-safe.
  /// Default: nothing (in-process attempts end with the process).
  virtual void abandon() noexcept {}

  /// Whether an attempt's output can go to the task's live-log sink (Task::log_sink): the pool
  /// opens per-attempt log files (Pool::Builder::log_dir) only for executors that say so.
  /// Default: yes. The zero executor (issue 27) runs nothing, so it has no output to stream.
  virtual bool streams_output() const noexcept { return true; }

  // ---- issue 22: resources ----
  /// True when this executor places resource requests itself (a remote dispatcher per worker,
  /// a cluster per job): the pool then leaves Task::resources() to it instead of charging this
  /// host's Ledger. Default: false (the attempt runs on this host).
  virtual bool places_resources() const noexcept { return false; }
  /// For an executor that places_resources(): whether a task asking for `request` could ever
  /// run (once everything running now has ended). The pool calls it at submit and fails the
  /// submit with its error ("needs 4 GPUs; the largest worker has 2"). Default: yes.
  virtual Result<void> can_ever_fit(const task::ResourceRequest& request) const {
    (void)request;
    return {};
  }
};

/// Creates an executor when a pool is built (Pool::Builder::executor), whose error then is the
/// build's — how a backend that needs setup (a device, workers, a cluster) joins a pool.
using ExecutorFactory = std::function<Result<std::shared_ptr<Executor>>()>;

}  // namespace pepita::executor
