#include "pepita/vmm/vm.hpp"

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::bytes_of;
using test::load_guest;
using test::make_dot_input;

std::string dot_line(int64_t sum) { return "dot " + std::to_string(sum); }

size_t open_fd_count() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

TEST(Vm, HelloPrintsAndExitsZero) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("hello");
  auto r = run_guest(image, {}, VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
  EXPECT_EQ(r->exits, 1u) << "print and exit must share one VM exit";
  EXPECT_EQ(r->describe(), "exited 0");
}

TEST(Vm, DotProductMatchesHost) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("dot");
  for (size_t n : {0, 1, 7, 8, 1000, 100003}) {
    std::vector<std::byte> input;
    const int64_t expected = make_dot_input(n, static_cast<uint32_t>(n), input);
    auto r = run_guest(image, input, VmConfig{});
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe();
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_EQ(r->output.substr(0, r->output.find(' ', 4)), dot_line(expected)) << r->output;
  }
}

TEST(Vm, DotUsesAvx2WhereTheHostHasIt) {
  PEPITA_REQUIRE_KVM();
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "host CPU lacks AVX2";
  std::vector<std::byte> input;
  make_dot_input(64, 1, input);
  auto r = run_guest(load_guest("dot"), input, VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->output.find("avx2"), std::string::npos)
      << "XCR0/CR4.OSXSAVE setup should expose AVX to CPL3: " << r->output;
}

TEST(Vm, GuestErrorsReachTheHost) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(load_guest("dot"), bytes_of("abc"), VmConfig{});  // not a multiple of 8
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited);
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_NE(r->output.find("two int32 vectors"), std::string::npos);
}

TEST(Vm, HostCallsAreBatched) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("calls");
  const uint32_t args[2] = {50, 10};  // 50 submissions of 10 no-ops
  auto r = run_guest(image, std::as_bytes(std::span(args)), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->exits, 51u);
}

TEST(Vm, OutputLimitIsEnforced) {
  PEPITA_REQUIRE_KVM();
  VmConfig config;
  config.output_limit = 5;
  auto r = run_guest(load_guest("hello"), {}, config);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited);
  EXPECT_LE(r->output.size(), 5u);
}

TEST(Vm, BadConfigurationsAreErrors) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("hello");
  VmConfig tiny;
  tiny.memory_bytes = 1 << 20;
  auto a = Vm::create(image, tiny);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), ErrorCode::InvalidArgument);
  VmConfig odd;
  odd.memory_bytes = (16 << 20) + 1;
  EXPECT_FALSE(Vm::create(image, odd));
  VmConfig huge;
  huge.memory_bytes = 8ull << 30;
  EXPECT_FALSE(Vm::create(image, huge));
  VmConfig cramped;  // 2 MiB: the input window and stack do not fit beside the image
  cramped.memory_bytes = 2 << 20;
  cramped.input_capacity = 2 << 20;
  EXPECT_FALSE(Vm::create(image, cramped));

  VmConfig small_input;
  small_input.input_capacity = 4096;
  auto vm = Vm::create(image, small_input);
  ASSERT_TRUE(vm) << vm.error().to_string();
  std::vector<std::byte> big(8192);
  auto too_big = vm->run(big);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message().find("input window"), std::string::npos);
  ASSERT_TRUE(vm->run({}));
  auto again = vm->run({});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::InvalidArgument);
  auto no_snap = Vm::capture(std::move(*Vm::create(image, VmConfig{})));
  EXPECT_FALSE(no_snap);
}

TEST(Vm, ThousandCreateDestroyCyclesLeakNoFds) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("hello");
  ASSERT_TRUE(run_guest(image, {}, VmConfig{}));  // warm up lazily opened state
  const size_t fds_before = open_fd_count();
  const int cycles = 1000;  // ~3.5 ms each here, also under ASan (the cost is in KVM)
  for (int i = 0; i < cycles; ++i) {
    auto vm = Vm::create(image, VmConfig{});
    ASSERT_TRUE(vm) << "cycle " << i << ": " << vm.error().to_string();
    if (i % 4 == 0) {  // every fourth one also runs
      auto r = vm->run({});
      ASSERT_TRUE(r && r->kind == ExitKind::Exited) << "cycle " << i;
    }
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(Vm, ConcurrentVmsOnAllCores) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("dot");
  std::vector<std::byte> input;
  const int64_t expected = make_dot_input(4096, 7, input);
  const unsigned threads = std::max(4u, std::thread::hardware_concurrency());
  std::atomic<int> good{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto r = run_guest(image, input, VmConfig{});
        if (r && r->kind == ExitKind::Exited && r->output.starts_with(dot_line(expected) + " "))
          good.fetch_add(1);
      }
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(good.load(), static_cast<int>(threads) * 25);
}

TEST(Vm, MissingGuestImageIsAClearError) {
  auto image = GuestImage::load_file("/nonexistent/guest.elf");
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code(), ErrorCode::NotFound);
  EXPECT_NE(image.error().message().find("/nonexistent/guest.elf"), std::string::npos);
}

}  // namespace
}  // namespace pepita::vmm

namespace pepita::vmm {
namespace {

// The crate's MicroVm::state() / exit_count() and VmState predicates on a real KVM guest.
TEST(VmState, FollowsCreateRunAndExit) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(test::load_guest("hello"), VmConfig{});
  ASSERT_TRUE(vm) << vm.error().to_string();
  EXPECT_EQ(vm->state(), VmState::Created);
  EXPECT_TRUE(can_start(vm->state()));
  EXPECT_EQ(vm->exit_count(), 0u);
  auto r = vm->run({});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(vm->state(), VmState::Stopped);
  EXPECT_FALSE(can_start(vm->state()));
  EXPECT_FALSE(is_active(vm->state()));
  EXPECT_EQ(vm->exit_count(), r->exits);
  // A second run is refused and changes nothing.
  EXPECT_FALSE(vm->run({}));
  EXPECT_EQ(vm->state(), VmState::Stopped);
  EXPECT_EQ(vm->exit_count(), r->exits);
}

TEST(VmState, AFaultingGuestEndsInError) {
  PEPITA_REQUIRE_KVM();
  auto vm = Vm::create(test::load_guest("escape"), VmConfig{});
  ASSERT_TRUE(vm) << vm.error().to_string();
  const std::string input = "R";  // reads an unmapped address: #PF
  auto r = vm->run(test::bytes_of(input));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Fault) << r->describe();
  EXPECT_EQ(vm->state(), VmState::Error);
  EXPECT_GE(vm->exit_count(), 1u);
}

TEST(VmState, IsRunningDuringRunAndStoppedWhenStopped) {
  PEPITA_REQUIRE_KVM();
  VmConfig config;
  config.timeout = std::chrono::seconds(5);  // the stop token, not the watchdog, ends the run
  auto vm = Vm::create(test::load_guest("escape"), config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  std::stop_source stop;
  std::atomic<bool> saw_running{false};
  std::thread watcher([&] {
    // Another thread sees the run in progress, then stops it (the crate's MicroVm::stop).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (vm->state() != VmState::Running && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    saw_running = vm->state() == VmState::Running && is_active(vm->state());
    stop.request_stop();
  });
  const std::string input = "f";  // loops forever
  auto r = vm->run(test::bytes_of(input), stop.get_token());
  watcher.join();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << r->describe();
  EXPECT_TRUE(r->describe().starts_with("cancelled after ")) << r->describe();
  EXPECT_TRUE(saw_running);
  EXPECT_EQ(vm->state(), VmState::Stopped);
}

TEST(VmState, PredicatesFollowTheCrate) {
  EXPECT_TRUE(can_start(VmState::Created));
  EXPECT_TRUE(can_start(VmState::Paused));
  EXPECT_FALSE(can_start(VmState::Running));
  EXPECT_TRUE(is_active(VmState::Running));
  EXPECT_TRUE(is_active(VmState::Paused));
  EXPECT_FALSE(is_active(VmState::Error));
}

}  // namespace
}  // namespace pepita::vmm
