#pragma once
// ProcessExecutor: runs binary tasks as child processes. posix_spawn (vfork+exec in glibc) puts
// each child in its own process group with default signal dispositions, an empty signal mask
// and every inherited fd above 2 closed; a single reactor thread watches each child's pidfd and
// its stdout/stderr pipes with epoll, reaps it with waitid(P_PIDFD) and rusage, and enforces
// timeouts by signalling the whole process group (SIGTERM, then SIGKILL after a grace period).
// A pipeline task (task::PipelineTask) is one group of processes connected by kernel pipes, one
// per stage, reaped, signalled and reported as one attempt (see PipelineTask for the rules). A
// task's CpuAffinity is inherited by its processes from the reactor thread, whose mask is
// narrowed only around their posix_spawn calls.

#include <chrono>
#include <cstddef>
#include <memory>

#include "pepita/executor/executor.hpp"

namespace pepita::executor {

class ProcessExecutor final : public Executor {
 public:
  struct Options {
    /// Children running at once. 0 means the number of online CPUs.
    std::size_t slots = 0;
    /// Between SIGTERM and SIGKILL on timeout or cancel.
    std::chrono::nanoseconds kill_grace{std::chrono::seconds(2)};
  };

  /// Starts the reactor thread. Errors: ResourceExhausted/Io when epoll, eventfd or the thread
  /// cannot be created.
  static Result<std::unique_ptr<ProcessExecutor>> create(Options options);
  static Result<std::unique_ptr<ProcessExecutor>> create() { return create(Options{}); }

  /// Shuts down (waits for running children) if not done already.
  ~ProcessExecutor() override;

  task::Backend backend() const noexcept override { return task::Backend::Process; }
  std::size_t slots() const noexcept override;
  /// Queues the spawn on the reactor (binary and pipeline tasks). A spawn failure (no such
  /// binary, exec refused, an affinity the machine no longer has) is reported through `done` as
  /// Status::LaunchFailed with the errno in `error`, not here; for a pipeline it names the stage.
  /// A pipeline takes one slot.
  Result<void> start(const task::Task& task, std::stop_token stop, Completion done) override;
  void shutdown() override;
  /// SIGKILLs the process group of every attempt still running.
  void abandon() noexcept override;

  struct Impl;
  struct Private {
    explicit Private() = default;
  };
  /// Use create(); public only so std::make_unique can reach it.
  ProcessExecutor(Private, std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::executor
