#pragma once
// CpuExecutor: runs function tasks on the work-stealing scheduler (pepita::scheduler). Each
// attempt is one Scheduler::submit; wall time is measured around the call, and
// an exception escaping the function becomes a Failed result instead of crossing the API.

#include <cstddef>
#include <memory>

#include "pepita/executor/executor.hpp"

namespace pepita::scheduler {
class Scheduler;
}

namespace pepita::executor {

class CpuExecutor final : public Executor {
 public:
  struct Options {
    /// Worker threads of the executor's own scheduler; 0 means the number of online CPUs.
    unsigned workers = 0;
  };

  /// Creates its own scheduler. Errors: those of Scheduler::create.
  static Result<std::unique_ptr<CpuExecutor>> create(Options options);
  /// Runs on a scheduler owned by the caller, which must outlive the executor.
  static Result<std::unique_ptr<CpuExecutor>> on(scheduler::Scheduler& sched);

  ~CpuExecutor() override;

  task::Backend backend() const noexcept override { return task::Backend::Cpu; }
  std::size_t slots() const noexcept override;
  /// A timeout is cooperative: the stop token is not signalled at the deadline, but a function
  /// that returns after its timeout is reported TimedOut.
  Result<void> start(const task::Task& task, std::stop_token stop, Completion done) override;
  void shutdown() override;

  // ---- the crate's CpuExecutor names (executor.rs) ----
  // CpuExecutor::new(n) is create({.workers = n}); with_max_memory is a task's
  // ResourceRequest::memory (enforced by the process executor's cgroups), with_max_cpu_time the
  // pool's default_timeout (docs/seed-map.md).
  /// Workers create({.workers = 0}) starts: the CPUs in this process's affinity mask (what a
  /// cpuset-limited container may use), at least 1.
  static unsigned default_workers();
  /// Attempts started and not yet completed (queued on the scheduler or running); 0 when idle.
  std::size_t running_tasks() const noexcept;

  struct Impl;
  struct Private {
    explicit Private() = default;
  };
  /// Use create() or on(); public only so std::make_unique can reach it.
  CpuExecutor(Private, std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::executor
