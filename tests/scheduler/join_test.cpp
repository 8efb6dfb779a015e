// join(): results on every path (frame pushed and popped back, frame stolen, serial elision, from
// an outside thread), failure precedence and exception capture, deep recursion, and stealing under
// contention from several submitting threads.

#include "pepita/scheduler/join.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task_group.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

std::uint64_t fib_join(Scheduler& s, int n) {
  if (n < 2) return static_cast<std::uint64_t>(n);
  std::uint64_t a = 0, b = 0;
  auto r = join(
      s, [&] { a = fib_join(s, n - 1); }, [&] { b = fib_join(s, n - 2); });
  EXPECT_TRUE(r.has_value());
  return a + b;
}

// Runs `fn` as a task on one of `s`'s workers and waits for it.
template <typename F>
void on_worker(Scheduler& s, F fn) {
  TaskGroup g(s);
  g.run(fn);
  ASSERT_TRUE(g.wait().has_value());
}

TEST(Join, FibMatchesSerialOnOneTwoAndFourWorkers) {
  const int n = test_scale() ? 24 : 18;
  for (unsigned workers : {1u, 2u, 4u}) {
    auto s = make(workers);
    std::uint64_t v = 0;
    on_worker(*s, [&] { v = fib_join(*s, n); });
    EXPECT_EQ(v, fib_serial(n)) << workers << " workers";
  }
}

TEST(Join, FromAThreadThatIsNoWorkerRunsBothCallables) {
  auto s = make(2);
  std::atomic<int> ran{0};
  std::atomic<bool> a_on_worker{false};
  auto r = join(
      *s,
      [&] {
        a_on_worker = s->on_worker_thread();
        ran.fetch_add(1);
      },
      [&] { ran.fetch_add(1); });
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_TRUE(a_on_worker.load()) << "the first callable is injected into the scheduler";
  EXPECT_EQ(fib_join(*s, 15), fib_serial(15));  // nested joins from outside, serial below
}

// On one worker (no thief), a task that the second callable submit()s lands on the deque above
// the first callable's frame: the joining worker runs it on its way down to the frame, so it is
// neither stranded nor left for later, and the first callable still runs inline after it.
TEST(Join, TaskSubmittedAboveThePushedFrameRunsBeforeTheFrameIsPoppedBack) {
  auto s = make(1);
  std::string order;
  bool submitted_on_worker = false;
  std::atomic<bool> done{false};
  on_worker(*s, [&] {
    auto r = join(
        *s, [&] { order += 'a'; },
        [&] {
          order += 'b';
          s->submit([&] {
            submitted_on_worker = s->on_worker_thread();
            order += 'x';
          });
        });
    EXPECT_TRUE(r.has_value());
    EXPECT_EQ(order, "bxa") << "the submitted task ran while the join popped back its frame";
    done = true;
  });
  EXPECT_TRUE(done.load());
  EXPECT_TRUE(submitted_on_worker);
}

TEST(Join, DefaultInstanceOverloadRunsBoth) {
  int a = 0, b = 0;
  ASSERT_TRUE(join([&] { a = 1; }, [&] { b = 2; }).has_value());
  EXPECT_EQ(a + b, 3);
}

// Nests `depth` joins, then fails at the bottom with `leaf`; every level propagates the Result.
template <typename Leaf>
Result<void> nested(Scheduler& s, int depth, std::atomic<int>& ran, Leaf leaf) {
  if (depth == 0) return leaf();
  return join(
      s, [&]() -> Result<void> { return nested(s, depth - 1, ran, leaf); },
      [&] { ran.fetch_add(1); });
}

TEST(Join, ReturnedErrorOfTheFirstCallableWinsAndBothStillRun) {
  auto s = make(2);
  // Depth 0 and 3 push frames (eager); depth 20 reaches the serial path below kEagerJoinDepth.
  for (int depth : {0, 3, 20}) {
    Result<void> r;
    std::atomic<int> b_ran{0};
    on_worker(*s, [&] {
      r = join(
          *s,
          [&]() -> Result<void> {
            return nested(*s, depth, b_ran, [] {
              return Result<void>(fail(ErrorCode::InvalidArgument, "a failed at the bottom"));
            });
          },
          [&]() -> Result<void> {
            b_ran.fetch_add(1);
            return fail(ErrorCode::NotFound, "b failed");
          });
    });
    ASSERT_FALSE(r.has_value()) << "depth " << depth;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << "depth " << depth;
    EXPECT_EQ(b_ran.load(), depth + 1) << "every second callable ran, depth " << depth;
  }
}

TEST(Join, ErrorOfTheSecondCallableIsReportedWhenTheFirstSucceeds) {
  auto s = make(2);
  int a_ran = 0;
  auto r = join(
      *s, [&] { ++a_ran; }, [&]() -> Result<void> { return fail(ErrorCode::NotFound, "b: gone"); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(a_ran, 1);
}

TEST(Join, ExceptionBecomesAnErrorOnThePushedAndTheSerialPath) {
  auto s = make(1);
  for (int depth : {0, 20}) {
    Result<void> r;
    std::atomic<int> b_ran{0};
    on_worker(*s, [&] {
      r = nested(*s, depth, b_ran, [&s]() -> Result<void> {
        return join(
            *s, []() -> Result<void> { throw std::invalid_argument("bad leaf"); }, [] {});
      });
    });
    ASSERT_FALSE(r.has_value()) << "depth " << depth;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << "depth " << depth;
    EXPECT_NE(r.error().message().find("bad leaf"), std::string::npos) << r.error().to_string();
    EXPECT_EQ(b_ran.load(), depth);
  }
  // Thrown by the second callable while the first succeeds.
  auto r = join(
      *s, [] {}, [] { throw std::runtime_error("b threw"); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Internal);
  EXPECT_NE(r.error().message().find("b threw"), std::string::npos);
}

// Two void callables take their own serial path (no exception_ptr per call, issue 27): a
// throwing first callable is reported and the second still runs, on the pushed (depth 0) and the
// serial (depth 20) path; a throwing second callable alone is reported.
TEST(Join, VoidCallablesThatThrowAreReportedAndBothRunOnEveryPath) {
  auto s = make(1);
  for (int depth : {0, 20}) {
    Result<void> r;
    std::atomic<int> b_ran{0};
    std::atomic<bool> second_ran{false};
    on_worker(*s, [&] {
      r = nested(*s, depth, b_ran, [&]() -> Result<void> {
        return join(
            *s, [] { throw std::invalid_argument("void leaf"); },
            [&second_ran] { second_ran.store(true); });
      });
    });
    ASSERT_FALSE(r.has_value()) << "depth " << depth;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << "depth " << depth;
    EXPECT_NE(r.error().message().find("void leaf"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(second_ran.load()) << "depth " << depth;
    Result<void> rb;
    on_worker(*s, [&] {
      rb = nested(*s, depth, b_ran, [&]() -> Result<void> {
        return join(
            *s, [] {}, [] { throw std::runtime_error("void b threw"); });
      });
    });
    ASSERT_FALSE(rb.has_value()) << "depth " << depth;
    EXPECT_NE(rb.error().message().find("void b threw"), std::string::npos)
        << rb.error().to_string();
  }
}

std::uint64_t chain(Scheduler& s, int depth) {
  if (depth == 0) return 0;
  std::uint64_t below = 0;
  std::uint64_t here = 0;
  (void)join(
      s, [&] { below = chain(s, depth - 1); }, [&] { here = 1; });
  return below + here;
}

TEST(Join, DeepRecursionCompletesWithoutExhaustingTheStack) {
  const int depth = test_scale() ? 5000 : 1000;  // ~0.5 KiB of stack per level: well under 8 MiB
  for (unsigned workers : {1u, 2u}) {
    auto s = make(workers);
    std::uint64_t v = 0;
    on_worker(*s, [&] { v = chain(*s, depth); });
    EXPECT_EQ(v, static_cast<std::uint64_t>(depth)) << workers << " workers";
  }
}

TEST(Join, PushedFrameIsStolenByAnIdleWorkerWhileTheCallerIsBusy) {
  auto s = make(2);
  std::atomic<bool> a_done{false};
  std::thread::id a_thread, b_thread;
  bool b_saw_a = false;
  on_worker(*s, [&] {
    (void)join(
        *s,
        [&] {
          a_thread = std::this_thread::get_id();
          a_done.store(true);
        },
        [&] {
          b_thread = std::this_thread::get_id();
          // The frame is on this worker's deque; only a thief can run it while we spin here.
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
          while (!a_done.load() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::yield();
          }
          b_saw_a = a_done.load();
        });
  });
  EXPECT_TRUE(b_saw_a) << "the first callable was not stolen within 30 s";
  EXPECT_NE(a_thread, b_thread);
}

TEST(Join, ManyThreadsJoiningAtOnceOnFourWorkersAllGetExactResults) {
  auto s = make(4);
  const int n = test_scale() ? 22 : 16;
  const int rounds = test_scale() ? 10 : 3;
  const std::uint64_t want = fib_serial(n);
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        if (fib_join(*s, n) != want) wrong.fetch_add(1);
        on_worker(*s, [&] {
          if (fib_join(*s, n) != want) wrong.fetch_add(1);
        });
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(s->stats().total().tasks_executed, 0u);
}

// join_should_spawn's contract: a join below the eager depth makes its frame stealable exactly
// when some worker is looking for work. While every worker runs a task, none is: a deep join runs
// inline. Once they are idle, they are. Both must hold round after round, as workers take tasks
// (leaving their hungry mark) and run dry again (setting it).
TEST(Join, DeepJoinsAreStealableOnlyWhileSomeWorkerIsIdle) {
  auto s = make(2);
  const unsigned deep = Scheduler::kEagerJoinDepth + 10;
  for (int round = 0; round < 3; ++round) {
    // Two tasks that wait for each other, so each worker runs one, and both look while both
    // are busy (neither ends before the other has looked).
    std::latch both(2), looked(2);
    std::atomic<int> stealable_while_busy{0};
    TaskGroup g(*s);
    for (int i = 0; i < 2; ++i) {
      g.run([&] {
        both.arrive_and_wait();
        if (s->join_should_spawn(deep)) stealable_while_busy.fetch_add(1);
        looked.arrive_and_wait();
      });
    }
    ASSERT_TRUE(g.wait().has_value());
    EXPECT_EQ(stealable_while_busy.load(), 0) << "round " << round << ": no worker was idle";
    bool stealable = false;
    for (int i = 0; i < 500 && !stealable; ++i) {
      stealable = s->join_should_spawn(deep);
      if (!stealable) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(stealable) << "round " << round << ": no idle worker counts as looking for work";
  }
}

}  // namespace
}  // namespace pepita::scheduler
