// TaskGroup: fork-join waits, error and exception capture, cancellation, reuse, and task
// storage (pooled blocks and the fallback allocator).

#include "pepita/scheduler/task_group.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "pepita/scheduler/scheduler.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

TEST(TaskGroup, ExceptionReachesWaiterWithItsType) {
  auto s = make(2);
  TaskGroup g(*s);
  g.run([] { throw std::runtime_error("boom in task"); });
  auto r = g.wait();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Internal);
  EXPECT_NE(r.error().message().find("boom in task"), std::string::npos);
  ASSERT_TRUE(g.exception() != nullptr);
  EXPECT_THROW(std::rethrow_exception(g.exception()), std::runtime_error);
  // The group is reusable and clean afterwards.
  g.run([] {});
  EXPECT_TRUE(g.wait().has_value());
  EXPECT_TRUE(g.exception() == nullptr);
}

TEST(TaskGroup, ExceptionTypesMapToErrorCodes) {
  auto s = make(1);
  TaskGroup g(*s);
  g.run([] { throw std::invalid_argument("bad n"); });
  EXPECT_EQ(g.wait().error().code(), ErrorCode::InvalidArgument);
  g.run([] { throw std::bad_alloc(); });
  EXPECT_EQ(g.wait().error().code(), ErrorCode::ResourceExhausted);
  g.run([] { throw std::system_error(ENOENT, std::generic_category(), "open x"); });
  auto r = g.wait();
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(r.error().sys_errno(), ENOENT);
  g.run([] { throw 42; });
  EXPECT_EQ(g.wait().error().code(), ErrorCode::Internal);
}

TEST(TaskGroup, ReturnedErrorReachesWaiter) {
  auto s = make(2);
  TaskGroup g(*s);
  g.run(
      []() -> Result<void> { return fail(ErrorCode::Corrupted, "checksum mismatch in shard 3"); });
  g.run([]() -> Result<void> { return {}; });
  auto r = g.wait();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Corrupted);
  EXPECT_EQ(r.error().message(), "checksum mismatch in shard 3");
  EXPECT_TRUE(g.exception() == nullptr);
}

TEST(TaskGroup, ExceptionInDeepRecursionReachesRoot) {
  auto s = make(2);
  std::function<void(int)> rec = [&](int d) {
    if (d == 0) throw std::runtime_error("leaf failed");
    TaskGroup g(*s);
    g.run([&, d] { rec(d - 1); });
    g.run([&, d] { rec(d - 1); });
    auto r = g.wait();
    if (!r && g.exception()) std::rethrow_exception(g.exception());
  };
  TaskGroup root(*s);
  root.run([&] { rec(6); });
  auto r = root.wait();
  ASSERT_FALSE(r.has_value());
  EXPECT_THROW(std::rethrow_exception(root.exception()), std::runtime_error);
}

TEST(TaskGroup, CancelSkipsTasksNotYetStarted) {
  auto s = make(1);
  TaskGroup g(*s);
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  g.run([&] {
    started.store(true);
    while (!release.load()) std::this_thread::yield();
    ran.fetch_add(1);
  });
  while (!started.load()) std::this_thread::yield();
  for (int i = 0; i < 100; ++i) g.run([&] { ran.fetch_add(1); });
  g.cancel();
  EXPECT_TRUE(g.is_cancelled());
  release.store(true);
  auto r = g.wait();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_EQ(ran.load(), 1);        // only the task already running
  EXPECT_FALSE(g.is_cancelled());  // reset by wait()
}

TEST(TaskGroup, FailureCancelsSiblings) {
  auto s = make(1);
  TaskGroup g(*s);
  std::atomic<int> ran{0};
  g.run([] { throw std::runtime_error("first"); });
  for (int i = 0; i < 100; ++i) g.run([&] { ran.fetch_add(1); });
  auto r = g.wait();
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("first"), std::string::npos);
  EXPECT_LT(ran.load(), 100);
}

TEST(TaskGroup, RunAndWaitRunsInlineFirst) {
  auto s = make(2);
  TaskGroup g(*s);
  std::atomic<int> n{0};
  g.run([&] { n.fetch_add(1); });
  auto r = g.run_and_wait([&] { n.fetch_add(10); });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(n.load(), 11);
  auto bad = g.run_and_wait([] { throw std::runtime_error("inline"); });
  ASSERT_FALSE(bad.has_value());
}

TEST(TaskGroup, DestructorWaitsForRunningTasks) {
  auto s = make(2);
  std::atomic<int> n{0};
  {
    TaskGroup g(*s);
    for (int i = 0; i < 50; ++i) {
      g.run([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        n.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(n.load(), 50);
}

TEST(TaskGroup, LargeCallablesUseTheFallbackAllocator) {
  auto s = make(2);
  TaskGroup g(*s);
  std::array<std::uint64_t, 64> big{};  // 512 bytes: larger than a pooled block
  big.fill(3);
  std::atomic<std::uint64_t> sum{0};
  for (int i = 0; i < 10; ++i) {
    g.run([big, &sum] {
      std::uint64_t local = 0;
      for (auto v : big) local += v;
      sum.fetch_add(local);
    });
  }
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(sum.load(), 10u * 64u * 3u);
}

}  // namespace
}  // namespace pepita::scheduler
