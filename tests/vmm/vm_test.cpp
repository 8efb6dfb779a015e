#include "pepita/vmm/vm.hpp"

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
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
