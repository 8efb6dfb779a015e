#pragma once
// A fake process executor for the pool's tests that refuses every attempt at start() with one
// error code and message, as a launch failure or a refusal of a stopping executor would.
#include <atomic>
#include <cstddef>
#include <stop_token>

#include "pepita/executor/executor.hpp"

namespace pepita::pool::test_support {

/// Refuses every attempt with `code` and "the inner executor refused".
class RefusingExecutor final : public executor::Executor {
 public:
  explicit RefusingExecutor(ErrorCode code) : code_(code) {}
  task::Backend backend() const noexcept override { return task::Backend::Process; }
  std::size_t slots() const noexcept override { return 3; }
  Result<void> start(const Task&, std::stop_token, executor::Completion) override {
    return fail(code_, "the inner executor refused");
  }
  void shutdown() override {}
  void abandon() noexcept override { abandoned.store(true); }
  std::atomic<bool> abandoned{false};

 private:
  ErrorCode code_;
};

}  // namespace pepita::pool::test_support
