// Snapshots: a VM captured at its kReady call restores copy-on-write into fresh VMs that give the
// same results as cold VMs, each isolated from the others.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

Snapshot capture(const std::string& guest, VmConfig config = {}) {
  config.snapshottable = true;
  auto vm = Vm::create(test::load_guest(guest), config);
  EXPECT_TRUE(vm) << vm.error().to_string();
  auto snap = Vm::capture(std::move(*vm));
  EXPECT_TRUE(snap) << snap.error().to_string();
  return std::move(*snap);
}

TEST(Snapshot, RestoredVmsMatchColdVms) {
  PEPITA_REQUIRE_KVM();
  auto image = test::load_guest("dot");
  Snapshot snap = capture("dot");
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<std::byte> input;
    test::make_dot_input(100 + seed * 37, seed, input);
    auto cold = run_guest(image, input, VmConfig{});
    auto vm = Vm::restore(snap);
    ASSERT_TRUE(cold && vm) << (vm ? cold.error() : vm.error()).to_string();
    auto warm = vm->run(input);
    ASSERT_TRUE(warm) << warm.error().to_string();
    EXPECT_EQ(warm->kind, ExitKind::Exited) << warm->describe();
    EXPECT_EQ(warm->exit_code, cold->exit_code);
    EXPECT_EQ(warm->output, cold->output);
    EXPECT_EQ(warm->exits, 1u) << "a restored VM needs only its final exit";
  }
}

TEST(Snapshot, RestoresAreIsolatedFromEachOther) {
  PEPITA_REQUIRE_KVM();
  Snapshot snap = capture("escape");
  // A restored guest that faults or scribbles must not affect the next restore.
  auto bad = Vm::restore(snap);
  ASSERT_TRUE(bad);
  auto r = bad->run(test::bytes_of("x"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, ExitKind::Fault);
  auto good = Vm::restore(snap);
  ASSERT_TRUE(good);
  auto ok = good->run(test::bytes_of("b"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->kind, ExitKind::Exited) << ok->describe();
  EXPECT_EQ(ok->exit_code, 42);
}

TEST(Snapshot, ConcurrentRestoresFromOneSnapshot) {
  PEPITA_REQUIRE_KVM();
  Snapshot snap = capture("dot");
  std::vector<std::byte> input;
  const int64_t expected = test::make_dot_input(2048, 3, input);
  const std::string want = "dot " + std::to_string(expected) + " ";
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto vm = Vm::restore(snap);
        if (!vm) continue;
        auto r = vm->run(input);
        if (r && r->output.starts_with(want)) good.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 80);
}

TEST(Snapshot, RecycledVmsMatchColdVms) {
  PEPITA_REQUIRE_KVM();
  Snapshot snap = capture("dot");
  auto vm = Vm::restore(snap);
  ASSERT_TRUE(vm) << vm.error().to_string();
  for (uint32_t seed = 0; seed < 50; ++seed) {
    std::vector<std::byte> input;
    const int64_t expected = test::make_dot_input(1 + seed * 101, seed, input);
    if (seed > 0) {
      auto reset = vm->reset_to(snap);
      ASSERT_TRUE(reset) << reset.error().to_string();
    }
    auto r = vm->run(input);
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->kind, ExitKind::Exited) << seed << ": " << r->describe();
    EXPECT_TRUE(r->output.starts_with("dot " + std::to_string(expected) + " ")) << r->output;
  }
}

TEST(Snapshot, RecyclingAFaultedVmIsRefused) {
  PEPITA_REQUIRE_KVM();
  Snapshot snap = capture("escape");
  auto vm = Vm::restore(snap);
  ASSERT_TRUE(vm);
  auto r = vm->run(test::bytes_of("u"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->kind, ExitKind::Fault);
  auto reset = vm->reset_to(snap);
  ASSERT_FALSE(reset);
  EXPECT_EQ(reset.error().code(), ErrorCode::InvalidArgument);
  // Another memory size is refused too.
  VmConfig big;
  big.memory_bytes = 32 << 20;
  Snapshot other = capture("escape", big);
  auto fresh = Vm::restore(snap);
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(fresh->reset_to(other));
}

TEST(Snapshot, GuestThatNeverGetsReadyIsAnError) {
  PEPITA_REQUIRE_KVM();
  // Not snapshottable: capture refuses up front.
  auto plain = Vm::create(test::load_guest("hello"), VmConfig{});
  ASSERT_TRUE(plain);
  auto refused = Vm::capture(std::move(*plain));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
}

TEST(Snapshot, MoveAssignmentCarriesTheCapturedConfig) {
  PEPITA_REQUIRE_KVM();
  VmConfig big;
  big.memory_bytes = 32 << 20;
  Snapshot snap = capture("escape");
  EXPECT_TRUE(snap.config().snapshottable);
  EXPECT_NE(snap.config().memory_bytes, big.memory_bytes);
  snap = capture("escape", big);
  EXPECT_EQ(snap.config().memory_bytes, big.memory_bytes);
  auto a = Vm::restore(snap);
  auto b = Vm::restore(snap);
  ASSERT_TRUE(a && b);
  *a = std::move(*b);
  auto r = a->run(test::bytes_of("u"));  // ud2: the moved-in VM runs
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Fault) << r->describe();
}

}  // namespace
}  // namespace pepita::vmm
