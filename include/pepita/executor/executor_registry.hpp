#pragma once
// ExecutorRegistry: live executors by backend, the reference crate's registry (executor.rs).
// Registry (registry.hpp) maps backend names to factories and builds executors for a pool; this
// one holds executors already built, runs a task synchronously on the one for its backend, and
// shuts them all down. It is what a program without a Pool uses to run tasks directly.
//
//   ExecutorRegistry reg;
//   PEPITA_TRY_VOID(reg.register_executor(PEPITA_TRY(CpuExecutor::create({.workers = 4}))));
//   ExecutionResult r = PEPITA_TRY(reg.execute(PEPITA_TRY(Task::function(fn).build())));
//   reg.shutdown();

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"

namespace pepita::executor {

/// Thread-safe. Executors are shared: a registry keeps each alive until shutdown() or its own
/// destruction (which shuts them down).
class ExecutorRegistry {
 public:
  ExecutorRegistry() = default;
  ~ExecutorRegistry();
  ExecutorRegistry(const ExecutorRegistry&) = delete;
  ExecutorRegistry& operator=(const ExecutorRegistry&) = delete;

  /// Adds `executor` under its backend() (the crate's `register`, a C++ keyword).
  /// InvalidArgument for a null executor; AlreadyExists when that backend has one; Cancelled
  /// after shutdown().
  Result<void> register_executor(std::shared_ptr<Executor> executor);

  /// The executor for `backend`, or null when none is registered.
  std::shared_ptr<Executor> find_executor(const Backend& backend) const;

  /// Runs one attempt of `task` on its backend's executor and waits for the result. NotFound,
  /// listing the registered backends, when none runs task.backend(); the executor's start()
  /// error otherwise (InvalidArgument for a task it cannot run, Cancelled after shutdown). A
  /// task that runs and fails is a result with Status::Failed, not an error.
  Result<ExecutionResult> execute(const task::Task& task) const;

  /// Sum of every registered executor's slots(): attempts the registry can run at once.
  std::size_t total_workers() const;

  /// Number of registered executors.
  std::size_t size() const;

  /// Shuts every executor down (each waits for its started attempts) and drops them; later
  /// register_executor and execute calls fail with Cancelled. Idempotent.
  void shutdown();

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Executor>> executors_;  // guarded by mu_
  bool shut_down_ = false;                            // guarded by mu_
};

}  // namespace pepita::executor
