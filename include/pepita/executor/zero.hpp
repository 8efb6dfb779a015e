#pragma once
// ZeroExecutor: the "zero" backend, HyperQueue's zero-worker mode — every attempt succeeds at
// once without spawning anything, so what is measured is the rest of the path (job file, pool,
// placement, journal, results). Registered by register_builtins; `pepita run --zero-worker`
// sends every task of a job here, `pepita worker --zero-worker` does the same on a worker.
//
//   auto zero = ZeroExecutor::create({}).value();
//   auto pool = pool::Pool::builder().executor(zero).build().value();
//   pool.submit(Task::binary("true").backend(zero_backend()).build().value());

#include <cstddef>
#include <memory>

#include "pepita/executor/executor.hpp"

namespace pepita::executor {

/// The backend name "zero".
Backend zero_backend() noexcept;

class ZeroExecutor final : public Executor {
 public:
  struct Options {
    /// Attempts the pool may have outstanding; 0: 4096. Completions are delivered in batches
    /// by one thread, so many slots let the pool keep it busy.
    std::size_t slots = 0;
  };

  /// Starts the completion thread. No errors today; Result for the registry's factory shape.
  static Result<std::unique_ptr<ZeroExecutor>> create(Options options);
  ~ZeroExecutor() override;

  Backend backend() const noexcept override { return zero_backend(); }
  std::size_t slots() const noexcept override;
  /// False: nothing runs, so the pool opens no live-log files for its attempts.
  bool streams_output() const noexcept override { return false; }
  /// Queues a Succeeded result (exit code 0, no output, zero wall time) for any kind of task
  /// whose backend is "zero" — Cancelled when `stop` was already requested. Delivered on the
  /// executor's thread, never inside start(). InvalidArgument for a task of another backend,
  /// Cancelled after shutdown().
  Result<void> start(const task::Task& task, std::stop_token stop, Completion done) override;
  /// Delivers every queued completion, then stops the thread. Idempotent.
  void shutdown() override;

  struct Impl;
  struct Private {
    explicit Private() = default;
  };
  /// Use create(); public only so std::make_unique can reach it.
  ZeroExecutor(Private, std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::executor
