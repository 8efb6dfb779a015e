// ExecutorRegistry (the crate's registry of live executors) and the crate's CpuExecutor names:
// registering per backend, finding, executing synchronously on the right executor (a function
// on the cpu one, a real child process on the process one), worker totals, shutdown, and the
// errors for a missing backend, a duplicate, a null executor and use after shutdown.

#include "pepita/executor/executor_registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "pepita/core/sys/thread.hpp"
#include "pepita/executor/cpu.hpp"
#include "pepita/executor/process.hpp"

namespace pepita::executor {
namespace {

using task::Task;

TEST(ExecutorRegistry, ExecutesEachTaskOnItsBackendsExecutor) {
  ExecutorRegistry reg;
  ASSERT_TRUE(reg.register_executor(CpuExecutor::create({.workers = 2}).value()).has_value());
  ASSERT_TRUE(reg.register_executor(ProcessExecutor::create({.slots = 3}).value()).has_value());
  EXPECT_EQ(reg.size(), 2u);
  EXPECT_EQ(reg.total_workers(), 5u);
  ASSERT_NE(reg.find_executor(Backend::Cpu), nullptr);
  EXPECT_EQ(reg.find_executor(Backend::Cpu)->backend(), Backend::Cpu);
  EXPECT_EQ(reg.find_executor(Backend::Gpu), nullptr);

  auto fn =
      reg.execute(Task::function([] { return std::string("from a function"); }).build().value());
  ASSERT_TRUE(fn.has_value()) << fn.error().to_string();
  EXPECT_EQ(fn->status, Status::Succeeded);
  EXPECT_EQ(fn->stdout_data, "from a function");

  auto proc = reg.execute(
      Task::binary("/bin/sh").args({"-c", "echo from a process; exit 3"}).build().value());
  ASSERT_TRUE(proc.has_value()) << proc.error().to_string();
  EXPECT_EQ(proc->exit_code, 3);
  EXPECT_EQ(proc->status, Status::Failed);  // ran and failed: a result, not an error
  EXPECT_EQ(proc->stdout_data, "from a process\n");
}

TEST(ExecutorRegistry, MissingBackendIsNotFoundListingTheRegisteredOnes) {
  ExecutorRegistry reg;
  ASSERT_TRUE(reg.register_executor(CpuExecutor::create({.workers = 1}).value()).has_value());
  auto r = reg.execute(Task::binary("/bin/true").build().value());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_NE(r.error().message().find("'process'"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("registered: cpu"), std::string::npos);
}

TEST(ExecutorRegistry, DuplicateNullAndAfterShutdownAreRefused) {
  ExecutorRegistry reg;
  ASSERT_TRUE(reg.register_executor(CpuExecutor::create({.workers = 1}).value()).has_value());
  auto dup = reg.register_executor(CpuExecutor::create({.workers = 1}).value());
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().code(), ErrorCode::AlreadyExists);
  EXPECT_NE(dup.error().message().find("'cpu'"), std::string::npos);
  auto null = reg.register_executor(nullptr);
  ASSERT_FALSE(null.has_value());
  EXPECT_EQ(null.error().code(), ErrorCode::InvalidArgument);
  reg.shutdown();
  reg.shutdown();  // idempotent
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_EQ(reg.total_workers(), 0u);
  auto late = reg.execute(Task::function([] {}).build().value());
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), ErrorCode::Cancelled);
  EXPECT_FALSE(reg.register_executor(CpuExecutor::create({.workers = 1}).value()).has_value());
}

TEST(ExecutorRegistry, ShutdownWaitsForRunningAttempts) {
  std::atomic<bool> finished{false};
  ExecutorRegistry reg;
  auto cpu = std::shared_ptr<CpuExecutor>(CpuExecutor::create({.workers = 1}).value());
  ASSERT_TRUE(reg.register_executor(cpu).has_value());
  std::thread runner([&] {
    auto r = reg.execute(Task::function([&] {
                           std::this_thread::sleep_for(std::chrono::milliseconds(50));
                           finished = true;
                         })
                             .build()
                             .value());
    EXPECT_TRUE(r.has_value());
  });
  while (cpu->running_tasks() == 0 && !finished) std::this_thread::yield();
  reg.shutdown();
  EXPECT_TRUE(finished.load());
  runner.join();
  EXPECT_EQ(cpu->running_tasks(), 0u);
}

TEST(CpuExecutorCrateNames, DefaultWorkersIsTheAffinityMaskAndCountsRunningTasks) {
  EXPECT_EQ(CpuExecutor::default_workers(), static_cast<unsigned>(sys::allowed_cpus().size()));
  auto exec = CpuExecutor::create({.workers = 0}).value();
  EXPECT_EQ(exec->slots(), CpuExecutor::default_workers());
  EXPECT_EQ(exec->running_tasks(), 0u);
  std::atomic<bool> release{false};
  std::atomic<int> done{0};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(exec->start(Task::function([&] {
                              while (!release) std::this_thread::yield();
                            })
                                .build()
                                .value(),
                            {}, [&](ExecutionResult) { done++; })
                    .has_value());
  }
  EXPECT_EQ(exec->running_tasks(), 3u);
  release = true;
  exec->shutdown();
  EXPECT_EQ(done.load(), 3);
  EXPECT_EQ(exec->running_tasks(), 0u);
}

}  // namespace
}  // namespace pepita::executor
