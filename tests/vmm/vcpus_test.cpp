// Several vCPUs (one host thread each, per-vCPU stacks and host-call rings) and pause/resume/stop
// from another thread, against the guests guest/vm_examples/pdot.cpp and vcpus.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "detail/layout.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

namespace ga = guest_abi;
using namespace std::chrono_literals;
using test::bytes_of;
using test::load_guest;
using test::make_dot_input;

VmConfig with_vcpus(uint32_t vcpus, std::chrono::nanoseconds timeout = 1s) {
  VmConfig config;
  config.vcpus = vcpus;
  config.timeout = timeout;
  return config;
}

TEST(VcpuLayout, EachVcpuHasItsOwnGuardedStackBelowVcpu0s) {
  auto image = load_guest("hello");
  VmConfig config;
  config.vcpus = 3;
  config.stack_bytes = 64 << 10;
  auto l = detail::Layout::compute(config, image);
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->vcpus, 3u);
  EXPECT_EQ(l->vcpu_stack_top(0), l->page_table_base);
  for (uint32_t v = 1; v < 3; ++v) {
    // A guard page between each stack and the one above it.
    EXPECT_EQ(l->vcpu_stack_top(v) + abi::PAGE_SIZE, l->vcpu_stack_top(v - 1) - l->stack_size);
    EXPECT_TRUE(detail::guest_may_access(*l, l->vcpu_stack_top(v) - 8, 8, true)) << v;
    EXPECT_FALSE(detail::guest_may_access(*l, l->vcpu_stack_top(v), 8, true)) << "guard " << v;
  }
  EXPECT_LE(l->input_base + l->input_capacity + abi::PAGE_SIZE,
            l->vcpu_stack_top(2) - l->stack_size);
}

TEST(VcpuLayout, ZeroOrTooManyVcpusAreRefused) {
  auto image = load_guest("hello");
  for (uint32_t n : {0u, ga::kMaxVcpus + 1}) {
    VmConfig config;
    config.vcpus = n;
    auto l = detail::Layout::compute(config, image);
    ASSERT_FALSE(l) << n;
    EXPECT_EQ(l.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(l.error().to_string().find("vcpus"), std::string::npos) << l.error().to_string();
  }
}

TEST(Vcpus, TwoVcpuDotProductEqualsTheHosts) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("pdot");
  for (uint32_t vcpus : {1u, 2u}) {
    for (size_t n : {0, 1, 7, 1000, 100003}) {
      std::vector<std::byte> input;
      const int64_t expected = make_dot_input(n, static_cast<uint32_t>(n + 7), input);
      auto r = run_guest(image, input, with_vcpus(vcpus));
      ASSERT_TRUE(r) << r.error().to_string();
      ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << " " << r->output;
      EXPECT_EQ(r->exit_code, 0);
      EXPECT_EQ(r->vcpus, vcpus);
      EXPECT_EQ(r->output,
                "dot " + std::to_string(expected) + " vcpus " + std::to_string(vcpus) + "\n");
    }
  }
}

TEST(Vcpus, EveryVcpuRunsAndMeetsTheOthersAtTheBarrier) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(load_guest("vcpus"), bytes_of("ids"), with_vcpus(2));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_NE(r->output.find("vcpu 0 of 2 barrier ok\n"), std::string::npos) << r->output;
  EXPECT_NE(r->output.find("vcpu 1 of 2 barrier ok\n"), std::string::npos) << r->output;
}

TEST(Vcpus, MoreThanTheHostsLimitIsAClearError) {
  PEPITA_REQUIRE_KVM();
  auto limit = max_vcpus();
  ASSERT_TRUE(limit) << limit.error().to_string();
  EXPECT_GE(*limit, 1u);
  EXPECT_LE(*limit, ga::kMaxVcpus);
  auto vm = Vm::create(load_guest("hello"), with_vcpus(*limit + 1));
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::InvalidArgument);
  const std::string msg = vm.error().to_string();
  EXPECT_NE(msg.find("at most " + std::to_string(*limit)), std::string::npos) << msg;
}

TEST(Vcpus, SnapshottableWithSeveralVcpusIsRefused) {
  PEPITA_REQUIRE_KVM();
  VmConfig config = with_vcpus(2);
  config.snapshottable = true;
  auto vm = Vm::create(load_guest("hello"), config);
  ASSERT_FALSE(vm);
  EXPECT_EQ(vm.error().code(), ErrorCode::InvalidArgument);
}

TEST(Vcpus, FaultOnVcpu1IsReportedAsVcpu1s) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(load_guest("vcpus"), bytes_of("fault"), with_vcpus(2));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Fault) << r->describe() << " " << r->output;
  ASSERT_TRUE(r->fault);
  EXPECT_EQ(r->fault->vcpu, 1u);
  EXPECT_EQ(r->fault->vector, 14);
  EXPECT_EQ(r->fault->cr2, 8u);
  EXPECT_NE(r->describe().find("fault on vCPU 1: #PF"), std::string::npos) << r->describe();
}

TEST(Vcpus, TimeoutStopsEveryVcpu) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(load_guest("vcpus"), bytes_of("count 0"), with_vcpus(2, 100ms));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::TimedOut) << r->describe();
  EXPECT_LT(r->elapsed, 5s);
}

// Runs `vm` on a thread of its own; the test thread plays the controller.
struct Background {
  std::optional<Result<RunResult>> result;
  std::thread thread;
  Background(Vm& vm, std::string input)
      : thread([this, &vm, in = std::move(input)] { result.emplace(vm.run(bytes_of(in))); }) {}
  ~Background() {
    if (thread.joinable()) thread.join();
  }
  Result<RunResult> join() {
    thread.join();
    return std::move(*result);
  }
};

uint64_t counter(const Vm& vm) {
  // vcpus.cpp counts in its first alloc, the heap's first bytes.
  auto boot = vm.memory().read<ga::BootInfo>(abi::PhysAddr(ga::kBootInfoGpa));
  if (!boot) return 0;
  auto v = vm.memory().read<uint64_t>(abi::PhysAddr(boot->heap_base));
  return v ? *v : 0;
}

bool wait_for_count(const Vm& vm) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (counter(vm) == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(VmControl, PausedGuestDoesNotAdvanceAndFinishesAfterResume) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(load_guest("vcpus"), with_vcpus(2, 120s));
  ASSERT_TRUE(vm) << vm.error().to_string();
  constexpr uint64_t kTarget = 1'500'000'000;
  Background bg(*vm, "count " + std::to_string(kTarget));
  ASSERT_TRUE(wait_for_count(*vm)) << "the guest never started counting";
  auto paused = vm->pause();
  ASSERT_TRUE(paused) << paused.error().to_string();
  EXPECT_EQ(vm->state(), VmState::Paused);
  const uint64_t at_pause = counter(*vm);
  EXPECT_GT(at_pause, 0u);
  EXPECT_LT(at_pause, kTarget) << "the guest finished before the pause; raise kTarget";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(counter(*vm), at_pause) << "a paused guest must not run";
  auto again = vm->pause();
  EXPECT_FALSE(again) << "pause of a paused VM";
  auto resumed = vm->resume();
  ASSERT_TRUE(resumed) << resumed.error().to_string();
  auto r = bg.join();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "count " + std::to_string(kTarget) + "\n");
  EXPECT_EQ(vm->state(), VmState::Stopped);
}

TEST(VmControl, StopEndsAPausedRunAsStopped) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(load_guest("vcpus"), with_vcpus(2, 60s));
  ASSERT_TRUE(vm) << vm.error().to_string();
  Background bg(*vm, "count 0");
  ASSERT_TRUE(wait_for_count(*vm));
  ASSERT_TRUE(vm->pause());
  EXPECT_EQ(vm->state(), VmState::Paused);
  auto stopped = vm->stop();
  ASSERT_TRUE(stopped) << stopped.error().to_string();
  auto r = bg.join();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Stopped) << r->describe();
  EXPECT_EQ(r->describe().rfind("stopped after ", 0), 0u) << r->describe();
  EXPECT_EQ(vm->state(), VmState::Stopped);
}

TEST(VmControl, StopEndsARunningRunPromptly) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(load_guest("vcpus"), with_vcpus(2, 60s));
  ASSERT_TRUE(vm) << vm.error().to_string();
  Background bg(*vm, "count 0");
  ASSERT_TRUE(wait_for_count(*vm));
  EXPECT_EQ(vm->state(), VmState::Running);
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_TRUE(vm->stop());
  auto r = bg.join();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 2s);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Stopped) << r->describe();
  EXPECT_EQ(vm->state(), VmState::Stopped);
}

TEST(VmControl, CallsInTheWrongStateAreErrors) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(load_guest("vcpus"), with_vcpus(2, 60s));
  ASSERT_TRUE(vm) << vm.error().to_string();
  for (auto call : {&Vm::pause, &Vm::resume, &Vm::stop}) {
    auto res = ((*vm).*call)();
    ASSERT_FALSE(res) << "on a Created VM";
    EXPECT_EQ(res.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(res.error().to_string().find("Created"), std::string::npos)
        << res.error().to_string();
  }
  {
    Background bg(*vm, "count 0");
    ASSERT_TRUE(wait_for_count(*vm));
    auto res = vm->resume();
    EXPECT_FALSE(res) << "resume of a running VM";
    ASSERT_TRUE(vm->stop());
    auto r = bg.join();
    ASSERT_TRUE(r) << r.error().to_string();
  }
  for (auto call : {&Vm::pause, &Vm::resume, &Vm::stop}) {
    auto res = ((*vm).*call)();
    ASSERT_FALSE(res) << "on a Stopped VM";
    EXPECT_NE(res.error().to_string().find("Stopped"), std::string::npos)
        << res.error().to_string();
  }
}

}  // namespace
}  // namespace pepita::vmm
