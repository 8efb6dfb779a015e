// The escape guest tries, one attempt per VM, to leave its sandbox. Every attempt must end as a
// reported guest fault (or a timeout) with the host process unharmed.
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <stop_token>
#include <string>
#include <thread>

#include "pepita/vmm/guest_abi.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

struct Attempt {
  char mode;
  const char* what;
  // Expected exception vector; -1 a fault without one; -2 any fault. This KVM (kvm_pvm) turns
  // `int 0x80` at CPL3 into #UD, and `syscall` enters CPL0 at LSTAR (0, unmapped) as a #PF even
  // with EFER.SCE clear, where hardware would give #GP and #UD: both stay faults.
  int vector;
  // Nonzero: the attempt may instead be refused in place, the guest going on to exit with this
  // code. KVM answers `vmcall` at CPL3 with -KVM_EPERM in rax and never exits to the VMM
  // (kvm_emulate_hypercall); the kvm_pvm of some hosts turns it into a fault instead.
  int refused_exit = 0;
};

// Names the attempt in CTest's case name. Without it gtest prints the struct's bytes, among them
// the address of `what`, which ASLR changes at every discovery.
void PrintTo(const Attempt& a, std::ostream* os) { *os << a.what; }

class Escape : public ::testing::TestWithParam<Attempt> {};

TEST_P(Escape, EndsAsReportedFault) {
  PEPITA_REQUIRE_KVM();
  const Attempt a = GetParam();
  static const GuestImage image = test::load_guest("escape");
  VmConfig config;
  config.timeout = std::chrono::milliseconds(500);
  const std::string input(1, a.mode);
  auto r = run_guest(image, test::bytes_of(input), config);
  ASSERT_TRUE(r) << a.what << ": host error " << r.error().to_string();
  if (a.refused_exit != 0 && r->kind == ExitKind::Exited) {
    EXPECT_EQ(r->exit_code, a.refused_exit) << a.what << " went on without being refused";
    return;
  }
  ASSERT_EQ(r->kind, ExitKind::Fault) << a.what << ": " << r->describe() << " output " << r->output;
  ASSERT_TRUE(r->fault.has_value());
  if (a.vector >= -1) {
    EXPECT_EQ(r->fault->vector, a.vector) << a.what << ": " << r->describe();
  }
  EXPECT_FALSE(r->fault->reason.empty());
  EXPECT_LT(r->elapsed, std::chrono::milliseconds(400)) << a.what << " should fault at once";
}

INSTANTIATE_TEST_SUITE_P(
    Attempts, Escape,
    ::testing::Values(
        Attempt{'r', "read past guest RAM", 14}, Attempt{'R', "read 1 TiB", 14},
        Attempt{'p', "read page tables", 14}, Attempt{'g', "read GDT", 14},
        Attempt{'k', "write read-only boot info", 14}, Attempt{'w', "write own code (W^X)", 14},
        Attempt{'x', "execute heap (NX)", 14}, Attempt{'j', "jump to supervisor stub", 14},
        Attempt{'z', "call null", 14}, Attempt{'e', "overflow the stack", 14},
        Attempt{'h', "hlt at CPL3", 13}, Attempt{'c', "mov to cr3", 13}, Attempt{'m', "wrmsr", 13},
        Attempt{'l', "lgdt", 13}, Attempt{'i', "int 0x80", -2}, Attempt{'3', "int3", -2},
        Attempt{'s', "syscall", -2}, Attempt{'v', "vmcall", -2, 45}, Attempt{'u', "ud2", 6},
        Attempt{'d', "divide by zero", 0}, Attempt{'o', "out to port 0x80", 13},
        Attempt{'n', "in from port 0x60", 13}, Attempt{'C', "host-call count overflow", -1}),
    [](const auto& param_info) {
      return std::string("mode_") + std::to_string(param_info.param.mode);
    });

TEST(EscapeGuest, PageFaultsReportTheAddress) {
  PEPITA_REQUIRE_KVM();
  VmConfig config;
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("R"), config);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->fault);
  EXPECT_EQ(r->fault->cr2, 1ull << 40) << r->describe();
  EXPECT_GE(r->fault->rip, guest_abi::kImageMinGpa);
  EXPECT_NE(r->describe().find("cr2=0x10000000000"), std::string::npos) << r->describe();
}

TEST(EscapeGuest, InfiniteLoopIsStoppedByTheWatchdog) {
  PEPITA_REQUIRE_KVM();
  VmConfig config;
  config.timeout = std::chrono::milliseconds(100);
  const auto start = std::chrono::steady_clock::now();
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("f"), config);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::TimedOut) << r->describe();
  EXPECT_GE(took, std::chrono::milliseconds(100));
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(EscapeGuest, InfiniteLoopIsCancelledByStopToken) {
  PEPITA_REQUIRE_KVM();
  VmConfig config;
  config.timeout = std::chrono::seconds(10);
  auto vm = Vm::create(test::load_guest("escape"), config);
  ASSERT_TRUE(vm);
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stop.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  auto r = vm->run(test::bytes_of("f"), stop.get_token());
  canceller.join();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << r->describe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // A token stopped before the run starts cancels at once.
  auto again = Vm::create(test::load_guest("escape"), config);
  ASSERT_TRUE(again);
  auto r2 = again->run(test::bytes_of("f"), stop.get_token());
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->kind, ExitKind::Cancelled);
}

TEST(EscapeGuest, HostCallIntoPageTablesIsRefused) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("b"), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 42) << "the host must answer -EFAULT";
}

TEST(EscapeGuest, HostCallWritingInputOverReadOnlyCodeOrTheInputIsRefused) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("W"), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 46) << "the host must answer -EFAULT for both: the guest may read them, "
                                 "not have them written";
}

TEST(EscapeGuest, WellFormedInputReadIsServedAndAnUnknownOpIsEinval) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("q!"), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 43) << "the host must copy the 2 input bytes and answer 2";
  r = run_guest(test::load_guest("escape"), test::bytes_of("O"), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 44) << "the host must answer -EINVAL";
}

TEST(EscapeGuest, ReadFromTheHostCallPortIsAFaultNamingThePort) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(test::load_guest("escape"), test::bytes_of("I"), VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Fault) << r->describe();
  ASSERT_TRUE(r->fault);
  EXPECT_EQ(r->fault->reason, "port read from 0xe9 (only 0xe9 is served)") << r->describe();
}

TEST(EscapeGuest, HostIsFineAfterEveryAttempt) {
  PEPITA_REQUIRE_KVM();
  auto r = run_guest(test::load_guest("hello"), {}, VmConfig{});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
}

}  // namespace
}  // namespace pepita::vmm
