#pragma once
// Shared helpers for the scheduler tests: a scheduler that must start, the serial fib every
// parallel one is checked against, and sanitizer-aware scaling of stress sizes.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "pepita/scheduler/scheduler.hpp"

namespace pepita::scheduler {

/// A scheduler of `workers` workers (growable to `max_workers`); a failure to start fails the
/// calling test.
inline std::unique_ptr<Scheduler> make(unsigned workers, unsigned max_workers = 0) {
  auto s = Scheduler::create({.workers = workers, .max_workers = max_workers});
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().to_string());
  return s ? std::move(*s) : nullptr;
}

inline std::uint64_t fib_serial(int n) {
  return n < 2 ? static_cast<std::uint64_t>(n) : fib_serial(n - 1) + fib_serial(n - 2);
}

/// 1 in normal builds; 0 under ThreadSanitizer/AddressSanitizer, where every atomic is ~10x
/// slower and CI runs on 2 cores: tests pick smaller sizes then.
constexpr int test_scale() {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  return 0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
  return 0;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

}  // namespace pepita::scheduler
