#pragma once
// ProcessExecutor: runs binary tasks as child processes. Our own clone(CLONE_VM|CLONE_VFORK)
// spawn (glibc's posix_spawn shape) puts each child in its own process group with default signal
// dispositions, an empty signal mask and every inherited fd above 2 closed, and before exec sets
// PR_SET_PDEATHSIG(SIGKILL) (a task dies with the reactor thread, so with its driver, also on
// kill -9), joins the attempt's cgroup and sets its CPU affinity. A single reactor thread watches
// each child's pidfd and its stdout/stderr pipes with epoll, reaps it with waitid(P_PIDFD) and
// rusage, and enforces timeouts by signalling the whole process group (SIGTERM, then SIGKILL after
// a grace period). A pipeline task (task::PipelineTask) is one group of processes connected by
// kernel pipes, one per stage, reaped, signalled and reported as one attempt.
//
// Resources (issue 22): when cgroups are usable (pepita/core/cgroup.hpp) every attempt runs in a
// cgroup beneath `pepita-<pid>-<starttime>`, all pipeline stages in the one, and when the attempt
// ends whatever is left in it is killed. An attempt with limits (memory, cpus, pids, a sandbox's
// process cap) gets a cgroup of its own, removed when it ends; one without runs in its slot's
// cgroup (`task-slot<n>-<seq>`), made once and reused (issue 27: no mkdir/rmdir per task), its
// peak memory reset before each attempt and its CPU time read as a delta, so the usage reported
// is still the attempt's own (a slot whose attempt left charges behind, e.g. page cache, gets a
// fresh cgroup). Its limits come from
// task.allocation(): memory (an attempt killed by it ends Status::OutOfMemory with peak_memory
// and memory_limit set), cpus as a CFS quota and weight, pids; its pinned cores (else the task's
// CpuAffinity) by sched_setaffinity in the child. A task with an allocation gets its GPU ids in
// CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, ZE_AFFINITY_MASK and PEPITA_GPUS — set to "" when it
// was given none, so a task that asked for no GPU sees none (what Slurm and HyperQueue do); a
// task with no allocation (no request) keeps its environment as it is. A memory request where
// cgroups cannot be used fails LaunchFailed saying why (never silently unlimited); a task
// without one still runs there, without a cgroup. create() first reaps the cgroups a kill -9'd
// run left (reap_stale_cgroups), so a --resume never starts copies beside its leftovers.

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

  /// Reaps stale cgroups, takes this process's parent cgroup (if cgroups are usable) and starts
  /// the reactor thread. Errors: ResourceExhausted/Io when epoll, eventfd or the thread cannot be
  /// created (unusable cgroups are not an error: see above).
  static Result<std::unique_ptr<ProcessExecutor>> create(Options options);
  static Result<std::unique_ptr<ProcessExecutor>> create() { return create(Options{}); }

  /// Shuts down (waits for running children) if not done already.
  ~ProcessExecutor() override;

  task::Backend backend() const noexcept override { return task::Backend::Process; }
  std::size_t slots() const noexcept override;
  /// Queues the spawn on the reactor (binary and pipeline tasks). A spawn failure (no such
  /// binary, exec refused, an affinity the machine no longer has, a memory limit that cannot be
  /// enforced) is reported through `done` as Status::LaunchFailed with the errno in `error`, not
  /// here; for a pipeline it names the stage.
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
