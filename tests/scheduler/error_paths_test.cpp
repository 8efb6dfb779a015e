// Paths of the scheduler the behaviour tests leave out (issue 29): join's serial path with mixed
// Result and void callables (which failure wins), an on_uncaught_exception handler that itself
// throws, and a task submitted by join's second callable, which the owner runs before it pops the
// first one back.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "pepita/scheduler/join.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task_group.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

// Runs fn as a task on one of s's workers and waits for it.
template <typename F>
void on_worker(Scheduler& s, F fn) {
  TaskGroup g(s);
  g.run(std::move(fn));
  ASSERT_TRUE(g.wait().has_value());
}

// Nests `depth` joins (the leaf runs in the second callable, whose frame is pushed below
// kEagerJoinDepth), then returns leaf().
template <typename Leaf>
Result<void> nested(Scheduler& s, int depth, Leaf& leaf) {
  if (depth == 0) return leaf();
  return join(
      s, [] {}, [&]() -> Result<void> { return nested(s, depth - 1, leaf); });
}

// Depth 0 pushes a frame; depth 20 is past kEagerJoinDepth, where a 1-worker scheduler (nobody
// hungry) takes the serial path.
constexpr int kDepths[] = {0, 20};

TEST(SchedulerErrorPaths, JoinReportsAThrowingVoidFirstCallableBeforeTheSecondsError) {
  auto s = make(1);
  ASSERT_TRUE(s);
  for (int depth : kDepths) {
    Result<void> r;
    bool b_ran = false;
    auto leaf = [&]() -> Result<void> {
      return join(
          *s, [] { throw std::invalid_argument("a threw"); },
          [&]() -> Result<void> {
            b_ran = true;
            return fail(ErrorCode::NotFound, "b failed");
          });
    };
    on_worker(*s, [&] { r = nested(*s, depth, leaf); });
    ASSERT_FALSE(r.has_value()) << "depth " << depth;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << "depth " << depth;
    EXPECT_NE(r.error().message().find("a threw"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(b_ran) << "the second callable runs although the first threw, depth " << depth;
  }
}

TEST(SchedulerErrorPaths, JoinReportsTheSecondCallablesThrowWhenTheFirstSucceeds) {
  auto s = make(1);
  ASSERT_TRUE(s);
  for (int depth : kDepths) {
    Result<void> r;
    bool a_ran = false;
    auto leaf = [&]() -> Result<void> {
      return join(
          *s,
          [&]() -> Result<void> {
            a_ran = true;
            return {};
          },
          [] { throw std::runtime_error("b threw"); });
    };
    on_worker(*s, [&] { r = nested(*s, depth, leaf); });
    ASSERT_FALSE(r.has_value()) << "depth " << depth;
    EXPECT_EQ(r.error().code(), ErrorCode::Internal) << "depth " << depth;
    EXPECT_NE(r.error().message().find("b threw"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(a_ran) << "depth " << depth;
  }
}

TEST(SchedulerErrorPaths, JoinReportsTheSecondCallablesErrorAndSucceedsWhenBothDo) {
  auto s = make(1);
  ASSERT_TRUE(s);
  for (int depth : kDepths) {
    Result<void> failed, ok;
    int ran = 0;
    auto failing = [&]() -> Result<void> {
      return join(
          *s, [&]() -> Result<void> { return ++ran, Result<void>{}; },
          [&]() -> Result<void> { return fail(ErrorCode::NotFound, "b: gone"); });
    };
    auto succeeding = [&]() -> Result<void> {
      return join(
          *s, [&]() -> Result<void> { return ++ran, Result<void>{}; }, [&] { ++ran; });
    };
    on_worker(*s, [&] {
      failed = nested(*s, depth, failing);
      ok = nested(*s, depth, succeeding);
    });
    ASSERT_FALSE(failed.has_value()) << "depth " << depth;
    EXPECT_EQ(failed.error().code(), ErrorCode::NotFound) << "depth " << depth;
    EXPECT_TRUE(ok.has_value()) << "depth " << depth << ": " << ok.error().to_string();
    EXPECT_EQ(ran, 3) << "depth " << depth;
  }
}

TEST(SchedulerErrorPaths, AThrowingUncaughtExceptionHandlerIsCountedAndSurvived) {
  std::atomic<int> handled{0};
  Scheduler::Options opt;
  opt.workers = 1;
  opt.on_uncaught_exception = [&](std::exception_ptr) {
    handled.fetch_add(1);
    throw std::logic_error("the handler fails too");
  };
  auto s = Scheduler::create(std::move(opt));
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  for (int i = 0; i < 3; ++i) (*s)->submit([] { throw std::runtime_error("lost"); });
  std::atomic<bool> later_ran{false};
  (*s)->submit([&] { later_ran.store(true); });
  std::unique_ptr<Scheduler> owned = std::move(*s);
  owned.reset();  // drains every submitted task
  EXPECT_EQ(handled.load(), 3);
  EXPECT_TRUE(later_ran.load()) << "the worker survived the handler's exceptions";
}

TEST(SchedulerErrorPaths, TaskSubmittedByJoinsSecondCallableRunsBeforeJoinReturns) {
  auto s = make(1);  // one worker: nobody can steal, so the owner pops both itself
  ASSERT_TRUE(s);
  bool a_ran = false;
  std::atomic<bool> submitted_ran{false};
  bool ran_before_return = false;
  Result<void> r;
  on_worker(*s, [&] {
    r = join(
        *s, [&] { a_ran = true; }, [&] { s->submit([&] { submitted_ran.store(true); }); });
    ran_before_return = submitted_ran.load();
  });
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(a_ran);
  EXPECT_TRUE(ran_before_return) << "the task pushed above the first callable ran first";
}

}  // namespace
}  // namespace pepita::scheduler
