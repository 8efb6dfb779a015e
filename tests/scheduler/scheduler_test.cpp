// Scheduler and TaskGroup: submission, fork-join correctness, errors, cancellation, shutdown,
// idle CPU use and statistics.

#include "pepita/scheduler/scheduler.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pepita/scheduler/task_group.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

std::unique_ptr<Scheduler> make(unsigned workers) {
  auto s = Scheduler::create({.workers = workers});
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().to_string());
  return std::move(*s);
}

std::uint64_t fib_seq(int n) {
  return n < 2 ? static_cast<std::uint64_t>(n) : fib_seq(n - 1) + fib_seq(n - 2);
}

std::uint64_t fib_par(Scheduler& s, int n) {
  if (n < 2) return static_cast<std::uint64_t>(n);
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  TaskGroup g(s);
  g.run([&] { a = fib_par(s, n - 1); });
  b = fib_par(s, n - 2);
  EXPECT_TRUE(g.wait().has_value());
  return a + b;
}

TEST(Scheduler, RejectsAbsurdWorkerCount) {
  auto s = Scheduler::create({.workers = 100000});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(s.error().message().find("limit"), std::string::npos);
}

TEST(Scheduler, DefaultsToHardwareConcurrency) {
  auto s = make(0);
  EXPECT_EQ(s->worker_count(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(Scheduler, SubmitFromOutsideRunsEveryTask) {
  auto s = make(2);
  std::atomic<int> count{0};
  constexpr int kTasks = 10000;
  for (int i = 0; i < kTasks; ++i)
    s->submit([&] { count.fetch_add(1, std::memory_order_relaxed); });
  s.reset();  // drains
  EXPECT_EQ(count.load(), kTasks);
}

TEST(Scheduler, FibMatchesSequential) {
  auto s = make(3);
  int n = test_scale() >= 1 ? 22 : 16;
  TaskGroup g(*s);
  std::uint64_t result = 0;
  g.run([&] { result = fib_par(*s, n); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(result, fib_seq(n));
  Stats st = s->stats();
  EXPECT_GT(st.total().tasks_executed, 0u);
  EXPECT_EQ(st.workers.size(), 3u);
}

}  // namespace
}  // namespace pepita::scheduler
