#include "pepita/executor/cpu.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <stdexcept>
#include <thread>

#include "pepita/scheduler/scheduler.hpp"

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;
using task::Task;

ExecutionResult run_one(Executor& exec, const Task& task, std::stop_token stop = {}) {
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  auto started =
      exec.start(task, std::move(stop), [&p](ExecutionResult r) { p.set_value(std::move(r)); });
  EXPECT_TRUE(started);
  if (!started) return {};
  return f.get();
}

TEST(CpuExecutor, RunsFunctionsAndMapsOutcomes) {
  auto exec = CpuExecutor::create({.workers = 2});
  ASSERT_TRUE(exec) << exec.error().message();
  auto& e = **exec;
  EXPECT_EQ(e.slots(), 2u);
  auto ok = run_one(e, Task::function([] { return std::string("hi"); }).build().value());
  EXPECT_EQ(ok.status, Status::Succeeded);
  EXPECT_EQ(ok.stdout_data, "hi");
  auto err = run_one(
      e, Task::function([]() -> Result<std::string> { return fail(ErrorCode::Io, "disk on fire"); })
             .build()
             .value());
  EXPECT_EQ(err.status, Status::Failed);
  EXPECT_NE(err.error.find("disk on fire"), std::string::npos);
  auto threw = run_one(
      e, Task::function([]() -> std::string { throw std::runtime_error("oops"); }).build().value());
  EXPECT_EQ(threw.status, Status::Failed);
  EXPECT_NE(threw.error.find("oops"), std::string::npos);
  auto capped = run_one(
      e, Task::function([] { return std::string(100, 'x'); }).output_cap(10).build().value());
  EXPECT_EQ(capped.stdout_data.size(), 10u);
  EXPECT_EQ(capped.stdout_bytes, 100u);
  auto slow = run_one(
      e, Task::function([] { std::this_thread::sleep_for(30ms); }).timeout(1ms).build().value());
  EXPECT_EQ(slow.status, Status::TimedOut);
  std::stop_source stop;
  stop.request_stop();
  EXPECT_EQ(run_one(e, Task::function([] {}).build().value(), stop.get_token()).status,
            Status::Cancelled);
  EXPECT_FALSE(e.start(Task::binary("/bin/true").build().value(), {}, [](ExecutionResult) {}));
}

TEST(CpuExecutor, ManyConcurrentAndShutdownWaits) {
  auto exec = CpuExecutor::create({.workers = 2}).value();
  std::atomic<int> done{0};
  auto t = Task::function([] {}).build().value();
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(exec->start(t, {}, [&](ExecutionResult r) { done += r.ok(); }));
  }
  exec->shutdown();
  EXPECT_EQ(done.load(), 10000);
  EXPECT_FALSE(exec->start(t, {}, [](ExecutionResult) {}));
}

TEST(CpuExecutor, NonStdExceptionIsAFailureAndTheWorkerSurvives) {
  auto exec = CpuExecutor::create({.workers = 1});
  ASSERT_TRUE(exec) << exec.error().message();
  auto threw = run_one(**exec, Task::function([]() -> std::string { throw 42; }).build().value());
  EXPECT_EQ(threw.status, Status::Failed);
  EXPECT_EQ(threw.exit_code, 1);
  EXPECT_EQ(threw.error, "function threw a non-std::exception");
  // The only worker is still there for the next task.
  auto next = run_one(**exec, Task::function([] { return std::string("ok"); }).build().value());
  EXPECT_EQ(next.status, Status::Succeeded);
  EXPECT_EQ(next.stdout_data, "ok");
}

TEST(CpuExecutor, OnAnotherSchedulerRunsThereAndReportsItsWorkers) {
  scheduler::Scheduler::Options so;
  so.workers = 3;
  auto sched = scheduler::Scheduler::create(so);
  ASSERT_TRUE(sched) << sched.error().message();
  {
    auto exec = CpuExecutor::on(**sched);
    ASSERT_TRUE(exec) << exec.error().message();
    EXPECT_EQ((*exec)->slots(), 3u);
    auto r = run_one(**exec, Task::function([] { return std::string("shared"); }).build().value());
    EXPECT_EQ(r.status, Status::Succeeded);
    EXPECT_EQ(r.stdout_data, "shared");
  }
  EXPECT_EQ((*sched)->worker_count(), 3u);  // the executor's end leaves the scheduler running
}

}  // namespace
}  // namespace pepita::executor
