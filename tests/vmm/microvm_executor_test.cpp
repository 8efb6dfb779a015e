// Backend::MicroVm: the executor alone (every status), and inside a pepita Pool.
#include "pepita/vmm/microvm_executor.hpp"

#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "pepita/pool/pool.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using executor::ExecutionResult;
using executor::Status;

task::Task vm_task(const std::string& guest, std::string input = {},
                   std::chrono::nanoseconds timeout = std::chrono::seconds(5)) {
  return task::Task::binary(test::guest_path(guest))
      .backend(task::Backend::MicroVm)
      .stdin(std::move(input))
      .timeout(timeout)
      .build()
      .value();
}

ExecutionResult run_one(MicroVmExecutor& exec, const task::Task& t, std::stop_token stop = {}) {
  std::promise<ExecutionResult> done;
  auto started = exec.start(t, stop, [&](ExecutionResult r) { done.set_value(std::move(r)); });
  EXPECT_TRUE(started) << started.error().to_string();
  if (!started) return {};
  return done.get_future().get();
}

std::shared_ptr<MicroVmExecutor> make_executor() {
  auto exec = MicroVmExecutor::create({.slots = 2});
  EXPECT_TRUE(exec) << exec.error().to_string();
  return exec ? *exec : nullptr;
}

TEST(MicroVmExecutor, ReportsEveryOutcome) {
  PEPITA_REQUIRE_KVM();
  auto exec = make_executor();
  ASSERT_TRUE(exec);
  EXPECT_EQ(exec->backend(), task::Backend::MicroVm);
  EXPECT_EQ(exec->slots(), 2u);

  auto hello = run_one(*exec, vm_task("hello"));
  EXPECT_EQ(hello.status, Status::Succeeded) << hello.error;
  EXPECT_EQ(hello.stdout_data, "hello from a pepita micro-VM\n");

  std::vector<std::byte> input;
  const int64_t sum = test::make_dot_input(5000, 9, input);
  const std::string in(reinterpret_cast<const char*>(input.data()), input.size());
  for (int i = 0; i < 3; ++i) {  // the second and third reuse this worker's recycled VM
    auto dot = run_one(*exec, vm_task("dot", in));
    EXPECT_EQ(dot.status, Status::Succeeded) << dot.error;
    EXPECT_TRUE(dot.stdout_data.starts_with("dot " + std::to_string(sum) + " ")) << dot.stdout_data;
  }

  auto failed = run_one(*exec, vm_task("dot", "abc"));
  EXPECT_EQ(failed.status, Status::Failed);
  EXPECT_EQ(failed.exit_code, 2);

  auto fault = run_one(*exec, vm_task("escape", "R"));
  EXPECT_EQ(fault.status, Status::Failed);
  EXPECT_NE(fault.error.find("#PF"), std::string::npos) << fault.error;

  auto timeout = run_one(*exec, vm_task("escape", "f", std::chrono::milliseconds(50)));
  EXPECT_EQ(timeout.status, Status::TimedOut) << timeout.error;

  std::stop_source stop;
  std::promise<ExecutionResult> cancelled;
  ASSERT_TRUE(exec->start(vm_task("escape", "f"), stop.get_token(),
                          [&](ExecutionResult r) { cancelled.set_value(std::move(r)); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  stop.request_stop();
  EXPECT_EQ(cancelled.get_future().get().status, Status::Cancelled);

  auto missing = run_one(
      *exec,
      task::Task::binary("/nonexistent.elf").backend(task::Backend::MicroVm).build().value());
  EXPECT_EQ(missing.status, Status::LaunchFailed);
  EXPECT_NE(missing.error.find("/nonexistent.elf"), std::string::npos);

  auto wrong = exec->start(task::Task::binary("/bin/true").build().value(), {}, [](auto) {});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::InvalidArgument);

  exec->shutdown();
  auto late = exec->start(vm_task("hello"), {}, [](auto) {});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), ErrorCode::Cancelled);
}

TEST(MicroVmExecutor, RunsPoolTasks) {
  PEPITA_REQUIRE_KVM();
  auto exec = make_executor();
  ASSERT_TRUE(exec);
  auto pool = pool::Pool::builder().executor(exec).build();
  ASSERT_TRUE(pool) << pool.error().to_string();
  std::vector<task::Task> tasks;
  std::vector<int64_t> sums;
  for (int i = 0; i < 40; ++i) {
    std::vector<std::byte> input;
    sums.push_back(test::make_dot_input(100 + i, static_cast<uint32_t>(i), input));
    tasks.push_back(
        vm_task("dot", std::string(reinterpret_cast<const char*>(input.data()), input.size())));
  }
  ASSERT_TRUE(pool->submit_all(tasks));
  auto results = pool->wait_all();
  ASSERT_EQ(results.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(results[i].status, Status::Succeeded) << results[i].error;
    EXPECT_TRUE(results[i].stdout_data.starts_with("dot " + std::to_string(sums[i]) + " "));
  }
  pool->shutdown();
}

TEST(MicroVmExecutor, VirtioConsoleCarriesStdinAndStdout) {
  PEPITA_REQUIRE_KVM();
  auto exec = MicroVmExecutor::create({.slots = 1, .virtio_console = true});
  ASSERT_TRUE(exec) << exec.error().to_string();
  for (int i = 0; i < 2; ++i) {
    auto r = run_one(**exec, vm_task("virtio_io", "stdin " + std::to_string(i)));
    EXPECT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_EQ(r.stdout_data, "virtio-console: hello from a kernel-less guest\ninput: stdin " +
                                 std::to_string(i) + "\nvirtio-blk: none\n");
  }
}

TEST(MicroVmExecutor, VirtioConsoleTasksStartFromTheSnapshotWithTheConsoleSetUp) {
  PEPITA_REQUIRE_KVM();
  auto exec = MicroVmExecutor::create({.slots = 1, .virtio_console = true});
  ASSERT_TRUE(exec) << exec.error().to_string();
  // virtio_snap sets the console up in guest_init; its greeting before kReady went to the
  // capture, so a task that prints only its input line started from the snapshot (restored,
  // then recycled).
  for (int i = 0; i < 3; ++i) {
    auto r = run_one(**exec, vm_task("virtio_snap", "task " + std::to_string(i)));
    EXPECT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_EQ(r.stdout_data, "input: task " + std::to_string(i) + "\n");
  }
}

TEST(MicroVmExecutor, RegistersAsMicrovmWithTypedSettings) {
  PEPITA_REQUIRE_KVM();
  executor::Registry registry;
  ASSERT_TRUE(register_microvm(registry));
  executor::BackendOptions bad;
  bad.set("memory", "lots");
  auto e = registry.create(task::Backend::MicroVm, bad);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("backend 'microvm'"), std::string::npos);
  EXPECT_NE(e.error().message().find("memory='lots'"), std::string::npos) << e.error().message();
  executor::BackendOptions good;
  good.slots = 1;
  good.set("memory", "8M").set("timeout", "5s").set("snapshots", "false");
  auto made = registry.create(task::Backend::MicroVm, good);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ((*made)->slots(), 1u);
  auto* vm = dynamic_cast<MicroVmExecutor*>(made->get());
  ASSERT_NE(vm, nullptr);
  auto hello = run_one(*vm, vm_task("hello"));
  EXPECT_EQ(hello.status, Status::Succeeded) << hello.error;
  EXPECT_EQ(hello.stdout_data, "hello from a pepita micro-VM\n");
  (*made)->shutdown();
}

}  // namespace
}  // namespace pepita::vmm
