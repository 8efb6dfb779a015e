// BlockingRunner: deadline, stop watcher, report-once, drain and cancel on shutdown.
#include "pepita/executor/blocking_runner.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/require.hpp"

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;
using task::Task;

Task job(std::chrono::nanoseconds timeout = 0ns) {
  auto b = Task::binary("job");
  if (timeout.count() > 0) b.timeout(timeout);
  return b.build().value();
}

// Collects completions; counts them per task id.
struct Sink {
  std::mutex mu;
  std::vector<ExecutionResult> results;
  Completion completion() {
    return [this](ExecutionResult r) {
      std::lock_guard lock(mu);
      results.push_back(std::move(r));
    };
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return results.size();
  }
};

ExecutionResult ok(const BlockingRunner::Attempt& a) {
  ExecutionResult r = result_for(a.task, Status::Succeeded, "", a.started);
  r.stdout_data = a.task.process()->path;
  return r;
}

TEST(BlockingRunner, RunsAttemptsAndFillsIdentity) {
  Sink sink;
  auto runner = BlockingRunner::create({.threads = 2}, [](const BlockingRunner::Attempt& a) {
                  ExecutionResult r;
                  r.status = Status::Succeeded;
                  r.stdout_data = "ran on " + std::to_string(a.thread);
                  return r;
                }).value();
  const Task t = job();
  ASSERT_TRUE(runner->submit(t, {}, sink.completion()));
  runner->shutdown();
  ASSERT_EQ(sink.count(), 1u);
  EXPECT_EQ(sink.results[0].id, t.id());
  EXPECT_EQ(sink.results[0].name, t.name());
  EXPECT_TRUE(sink.results[0].ok());
  EXPECT_EQ(sink.results[0].stdout_data.rfind("ran on ", 0), 0u);
  EXPECT_GT(sink.results[0].wall.count(), 0);
}

TEST(BlockingRunner, RejectsBadOptionsAndSubmitAfterShutdown) {
  EXPECT_FALSE(BlockingRunner::create({.threads = 0}, ok));
  EXPECT_FALSE(BlockingRunner::create({.threads = 1}, {}));
  auto runner = BlockingRunner::create({.threads = 1, .name = "test executor"}, ok).value();
  runner->shutdown();
  Sink sink;
  auto r = runner->submit(job(), {}, sink.completion());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(r.error().message().find("test executor is shut down"), std::string::npos);
  EXPECT_EQ(sink.count(), 0u);
}

// Threads the kernel will not start (RLIMIT_NPROC, in a forked child) make create() fail naming
// the executor and the reason, instead of throwing or hanging.
TEST(BlockingRunner, ThreadsThatCannotStartAreResourceExhaustedNamingTheExecutor) {
  PEPITA_REQUIRE_CAPABILITY(root);  // the child switches uid to be bound by RLIMIT_NPROC
  const auto code = pepita::test::run_forked_without_new_threads([] {
    auto r = BlockingRunner::create({.threads = 2, .name = "test executor"}, ok);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::ResourceExhausted);
    EXPECT_NE(r.error().message().find("test executor: cannot start a thread: "), std::string::npos)
        << r.error().message();
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
}

TEST(BlockingRunner, NegativeDefaultTimeoutIsRefusedNamingTheExecutor) {
  auto r = BlockingRunner::create(
      {.threads = 1, .default_timeout = std::chrono::milliseconds(-1), .name = "gpu executor"}, ok);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("gpu executor: default_timeout is negative"),
            std::string::npos)
      << r.error().message();
}

TEST(BlockingRunner, DeadlineFiresOnceAndEarly) {
  Sink sink;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> bodies{0};
  auto runner = BlockingRunner::create({.threads = 1}, [&](const BlockingRunner::Attempt& a) {
                  ++bodies;
                  released.wait();  // blocks past the deadline, like a kernel on the GPU
                  return ok(a);
                }).value();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(runner->submit(job(50ms), {}, sink.completion()));
  while (sink.count() == 0 && std::chrono::steady_clock::now() - t0 < 5s)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(sink.count(), 1u);  // reported while the body still blocks
  EXPECT_EQ(sink.results[0].status, Status::TimedOut);
  EXPECT_NE(sink.results[0].error.find("timed out after 50 ms"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  release.set_value();
  runner->shutdown();
  EXPECT_EQ(sink.count(), 1u);  // the body's own result is dropped
  EXPECT_EQ(bodies.load(), 1);
}

TEST(BlockingRunner, DeadlineStopsTheBodyWhenItReportsItself) {
  Sink sink;
  auto runner = BlockingRunner::create(
                    {.threads = 1, .report_early = false},
                    [](const BlockingRunner::Attempt& a) {
                      while (!a.stop.stop_requested()) std::this_thread::sleep_for(1ms);
                      return result_for(a.task, a.timed_out() ? Status::TimedOut : Status::Failed,
                                        "body saw the deadline", a.started);
                    })
                    .value();
  ASSERT_TRUE(runner->submit(job(30ms), {}, sink.completion()));
  runner->shutdown();
  ASSERT_EQ(sink.count(), 1u);
  EXPECT_EQ(sink.results[0].status, Status::TimedOut);
  EXPECT_EQ(sink.results[0].error, "body saw the deadline");
}

TEST(BlockingRunner, DefaultTimeoutAppliesAndCanBeTurnedOff) {
  Sink sink;
  auto body = [](const BlockingRunner::Attempt& a) {
    std::this_thread::sleep_for(80ms);
    return ok(a);
  };
  auto timed = BlockingRunner::create({.threads = 1, .default_timeout = 20ms}, body).value();
  ASSERT_TRUE(timed->submit(job(), {}, sink.completion()));
  timed->shutdown();
  auto untimed =
      BlockingRunner::create({.threads = 1, .deadline = false, .default_timeout = 20ms}, body)
          .value();
  ASSERT_TRUE(untimed->submit(job(20ms), {}, sink.completion()));
  untimed->shutdown();
  ASSERT_EQ(sink.count(), 2u);
  EXPECT_EQ(sink.results[0].status, Status::TimedOut);
  EXPECT_EQ(sink.results[1].status, Status::Succeeded);
}

TEST(BlockingRunner, StopBeforeStartNeverRunsTheBody) {
  Sink sink;
  std::atomic<int> bodies{0};
  for (bool early : {true, false}) {
    auto runner = BlockingRunner::create({.threads = 1, .report_early = early},
                                         [&](const BlockingRunner::Attempt& a) {
                                           ++bodies;
                                           return ok(a);
                                         })
                      .value();
    std::stop_source stop;
    stop.request_stop();
    ASSERT_TRUE(runner->submit(job(), stop.get_token(), sink.completion()));
    runner->shutdown();
  }
  ASSERT_EQ(sink.count(), 2u);
  for (const auto& r : sink.results) {
    EXPECT_EQ(r.status, Status::Cancelled);
    EXPECT_EQ(r.error, "cancelled");
  }
  EXPECT_EQ(bodies.load(), 0);
}

TEST(BlockingRunner, StopWhileRunningReachesTheBody) {
  Sink sink;
  std::promise<void> started;
  auto runner =
      BlockingRunner::create({.threads = 1, .report_early = false},
                             [&](const BlockingRunner::Attempt& a) {
                               started.set_value();
                               std::stop_callback hook(a.stop, [] {});  // a cancel hook
                               while (!a.stop.stop_requested()) std::this_thread::sleep_for(1ms);
                               return result_for(a.task, Status::Cancelled, "body", a.started);
                             })
          .value();
  std::stop_source stop;
  ASSERT_TRUE(runner->submit(job(), stop.get_token(), sink.completion()));
  started.get_future().wait();
  stop.request_stop();
  runner->shutdown();
  ASSERT_EQ(sink.count(), 1u);
  EXPECT_EQ(sink.results[0].status, Status::Cancelled);
  EXPECT_EQ(sink.results[0].error, "body");
}

TEST(BlockingRunner, ShutdownRunsQueuedWorkByDefault) {
  Sink sink;
  auto runner = BlockingRunner::create({.threads = 1}, [](const BlockingRunner::Attempt& a) {
                  std::this_thread::sleep_for(5ms);
                  return ok(a);
                }).value();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(runner->submit(job(), {}, sink.completion()));
  runner->shutdown();
  ASSERT_EQ(sink.count(), 5u);
  for (const auto& r : sink.results) EXPECT_TRUE(r.ok()) << r.error;
}

TEST(BlockingRunner, ShutdownWithQueuedWorkReportsCancelled) {
  Sink sink;
  std::promise<void> started, release;
  auto released = release.get_future().share();
  std::atomic<bool> first{true};
  auto runner = BlockingRunner::create({.threads = 1}, [&](const BlockingRunner::Attempt& a) {
                  if (first.exchange(false)) {
                    started.set_value();
                    released.wait();
                  }
                  return ok(a);
                }).value();
  const Task running = job();
  ASSERT_TRUE(runner->submit(running, {}, sink.completion()));
  started.get_future().wait();
  std::vector<task::TaskId> queued;
  for (int i = 0; i < 3; ++i) {
    const Task t = job();
    queued.push_back(t.id());
    ASSERT_TRUE(runner->submit(t, {}, sink.completion()));
  }
  std::thread stopper([&] { runner->shutdown(BlockingRunner::Drain::Cancel); });
  std::this_thread::sleep_for(20ms);
  release.set_value();
  stopper.join();
  ASSERT_EQ(sink.count(), 4u);
  EXPECT_EQ(sink.results[0].id, running.id());
  EXPECT_TRUE(sink.results[0].ok());
  for (std::size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(sink.results[i].status, Status::Cancelled);
    EXPECT_EQ(sink.results[i].id, queued[i - 1]);
    EXPECT_NE(sink.results[i].error.find("shut down before it started"), std::string::npos);
  }
}

TEST(BlockingRunner, CompletionMaySubmitAgain) {
  Sink sink;
  auto runner = BlockingRunner::create({.threads = 1}, ok).value();
  std::promise<void> chained;
  ASSERT_TRUE(runner->submit(job(), {}, [&](ExecutionResult) {
    EXPECT_TRUE(runner->submit(job(), {}, [&](ExecutionResult r) {
      EXPECT_TRUE(r.ok());
      chained.set_value();
    }));
  }));
  chained.get_future().wait();
  runner->shutdown();
}

TEST(BlockingRunner, AbandonStopsRunningBodies) {
  Sink sink;
  auto runner =
      BlockingRunner::create({.threads = 2, .report_early = false},
                             [](const BlockingRunner::Attempt& a) {
                               while (!a.stop.stop_requested()) std::this_thread::sleep_for(1ms);
                               return result_for(a.task, Status::Cancelled, "abandoned", a.started);
                             })
          .value();
  ASSERT_TRUE(runner->submit(job(), {}, sink.completion()));
  ASSERT_TRUE(runner->submit(job(), {}, sink.completion()));
  EXPECT_EQ(runner->outstanding(), 2u);
  runner->abandon();
  runner->shutdown();
  EXPECT_EQ(sink.count(), 2u);
  EXPECT_EQ(runner->outstanding(), 0u);
}

// Cancels, deadlines and bodies finishing race; every accepted attempt completes exactly once.
RC_GTEST_PROP(BlockingRunner, CompletesEachAttemptExactlyOnceUnderRaces, ()) {
  const auto threads = *rc::gen::inRange<std::size_t>(1, 4);
  const auto n = *rc::gen::inRange(1, 24);
  const auto plan = *rc::gen::container<std::vector<std::pair<int, int>>>(
      static_cast<std::size_t>(n),
      rc::gen::pair(rc::gen::inRange(0, 4), rc::gen::inRange(0, 3)));  // body ms, action
  const bool early = *rc::gen::arbitrary<bool>();
  std::mutex mu;
  std::map<task::TaskId, int> seen;
  auto runner = BlockingRunner::create({.threads = threads, .report_early = early},
                                       [](const BlockingRunner::Attempt& a) {
                                         const auto ms = std::stoi(a.task.process()->args.at(0));
                                         std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                                         return ok(a);
                                       })
                    .value();
  std::vector<std::stop_source> stops(plan.size());
  std::vector<task::TaskId> ids;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    auto b = Task::binary("job").args({std::to_string(plan[i].first)});
    if (plan[i].second == 2) b.timeout(1ms);
    const Task t = b.build().value();
    ids.push_back(t.id());
    RC_ASSERT(runner
                  ->submit(t, stops[i].get_token(),
                           [&](ExecutionResult r) {
                             std::lock_guard lock(mu);
                             ++seen[r.id];
                           })
                  .has_value());
  }
  for (std::size_t i = 0; i < plan.size(); ++i)
    if (plan[i].second == 1) stops[i].request_stop();
  runner->shutdown();
  std::lock_guard lock(mu);
  RC_ASSERT(seen.size() == ids.size());
  for (auto id : ids) RC_ASSERT(seen[id] == 1);
}

}  // namespace
}  // namespace pepita::executor
