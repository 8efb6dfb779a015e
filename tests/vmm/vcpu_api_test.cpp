// The crate's raw-KVM names (pepita/vmm/vcpu_api.hpp) on real KVM: register structs against the
// kernel's, memory slots (read-only ones exit as MMIO on a guest write), and Vcpu running a few
// bytes of real-mode code one KVM_RUN at a time.
#include "pepita/vmm/vcpu_api.hpp"

#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "pepita/core/mapping.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

// Fills a kernel struct with distinct bytes, so a field copied to the wrong place shows.
template <class T>
T patterned(uint8_t seed) {
  T t;
  auto* p = reinterpret_cast<unsigned char*>(&t);
  for (size_t i = 0; i < sizeof t; ++i) p[i] = static_cast<unsigned char>(seed + i * 7);
  return t;
}

template <class T>
bool same_bytes(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

TEST(VcpuRegs, ConvertBothWaysWithKvmRegsFieldForField) {
  const auto k = patterned<kvm_regs>(1);
  const VcpuRegs r = VcpuRegs::from_kvm(k);
  EXPECT_EQ(r.rax, k.rax);
  EXPECT_EQ(r.rsp, k.rsp);
  EXPECT_EQ(r.rbp, k.rbp);
  EXPECT_EQ(r.r15, k.r15);
  EXPECT_EQ(r.rip, k.rip);
  EXPECT_EQ(r.rflags, k.rflags);
  EXPECT_TRUE(same_bytes(r.to_kvm(), k));
  EXPECT_EQ(sizeof(VcpuRegs), sizeof(kvm_regs));
}

TEST(Segment, ConvertsBothWaysWithKvmSegmentTypeAsTypeUnderscore) {
  const auto k = patterned<kvm_segment>(3);
  const Segment s = Segment::from_kvm(k);
  EXPECT_EQ(s.base, k.base);
  EXPECT_EQ(s.limit, k.limit);
  EXPECT_EQ(s.selector, k.selector);
  EXPECT_EQ(s.type_, k.type);
  EXPECT_EQ(s.l, k.l);
  EXPECT_EQ(s.unusable, k.unusable);
  EXPECT_TRUE(same_bytes(s.to_kvm(), k));
}

TEST(Dtable, ConvertsBothWaysWithKvmDtable) {
  const auto k = patterned<kvm_dtable>(5);
  const Dtable d = Dtable::from_kvm(k);
  EXPECT_EQ(d.base, k.base);
  EXPECT_EQ(d.limit, k.limit);
  EXPECT_EQ(d.padding[2], k.padding[2]);
  EXPECT_TRUE(same_bytes(d.to_kvm(), k));
}

TEST(VcpuSregs, ConvertBothWaysWithKvmSregs) {
  const auto k = patterned<kvm_sregs>(9);
  const VcpuSregs s = VcpuSregs::from_kvm(k);
  EXPECT_EQ(s.ss.selector, k.ss.selector);
  EXPECT_EQ(s.ldt.base, k.ldt.base);
  EXPECT_EQ(s.idt.limit, k.idt.limit);
  EXPECT_EQ(s.cr3, k.cr3);
  EXPECT_EQ(s.efer, k.efer);
  EXPECT_EQ(s.apic_base, k.apic_base);
  EXPECT_EQ(s.interrupt_bitmap[3], k.interrupt_bitmap[3]);
  EXPECT_TRUE(same_bytes(s.to_kvm(), k));
}

TEST(MemoryRegion, MakeHasNoFlagsAndReadonlySetsKvmMemReadonly) {
  constexpr auto r = MemoryRegion::make(3, 0x10000, 0x2000, 0x7f0000000000);
  EXPECT_EQ(r.flags, 0u);
  constexpr auto ro = r.readonly();
  EXPECT_EQ(ro.flags, static_cast<uint32_t>(KVM_MEM_READONLY));
  EXPECT_EQ(ro.slot, 3u);
  EXPECT_EQ(ro.guest_phys_addr, 0x10000u);
  EXPECT_EQ(ro.memory_size, 0x2000u);
  EXPECT_EQ(ro.userspace_addr, 0x7f0000000000u);
}

TEST(MaxMemorySlots, IsTheCrates32AndTheHostAllowsThatMany) {
  EXPECT_EQ(MAX_MEMORY_SLOTS, 32u);
  PEPITA_REQUIRE_KVM();
  auto n = max_memory_slots();
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_GE(*n, MAX_MEMORY_SLOTS);
}

uint64_t host_addr(const Mapping& m, size_t offset = 0) {
  return reinterpret_cast<uint64_t>(m.bytes() + offset);
}

TEST(BareVm, BadMemoryRegionsAreClearErrorsAndSlotsStopAtMaxMemorySlots) {
  PEPITA_REQUIRE_KVM();
  auto vm = BareVm::create();
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto mem = Mapping::anonymous((MAX_MEMORY_SLOTS + 1) * 4096, "slots");
  ASSERT_TRUE(mem) << mem.error().to_string();
  struct Case {
    MemoryRegion r;
    const char* says;
  };
  const Case bad[] = {
      {MemoryRegion::make(0, 0, 0, host_addr(*mem)), "size is 0"},
      {MemoryRegion::make(0, 0x800, 4096, host_addr(*mem)), "multiples of 4096"},
      {MemoryRegion::make(0, 0, 4096, host_addr(*mem, 8)), "multiples of 4096"},
      {MemoryRegion::make(0, 0, 4096, 0), "host address is 0"},
      {MemoryRegion{0, 0, 4096, host_addr(*mem), 1u << 7}, "only readonly()"},
  };
  for (const Case& c : bad) {
    auto r = vm->add_memory_region(c.r);
    ASSERT_FALSE(r) << c.says;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find(c.says), std::string::npos) << r.error().message();
  }
  for (uint32_t i = 0; i < MAX_MEMORY_SLOTS; ++i) {
    auto r =
        vm->add_memory_region(MemoryRegion::make(i, i * 4096ull, 4096, host_addr(*mem, i * 4096)));
    ASSERT_TRUE(r) << r.error().to_string();
  }
  EXPECT_EQ(vm->memory_regions().size(), MAX_MEMORY_SLOTS);
  auto full = vm->add_memory_region(MemoryRegion::make(MAX_MEMORY_SLOTS, 0x100000, 4096,
                                                       host_addr(*mem, MAX_MEMORY_SLOTS * 4096)));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(full.error().message().find("MAX_MEMORY_SLOTS 32"), std::string::npos)
      << full.error().message();

  auto vm2 = BareVm::create();
  ASSERT_TRUE(vm2) << vm2.error().to_string();
  ASSERT_TRUE(vm2->add_memory_region(MemoryRegion::make(0, 0, 8192, host_addr(*mem))));
  auto dup = vm2->add_memory_region(MemoryRegion::make(0, 0x10000, 4096, host_addr(*mem)));
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message().find("slot 0 is taken"), std::string::npos);
  auto overlap = vm2->add_memory_region(MemoryRegion::make(1, 4096, 4096, host_addr(*mem)));
  ASSERT_FALSE(overlap);
  EXPECT_NE(overlap.error().message().find("overlaps slot 0"), std::string::npos);
}

// Real mode at 0x1000: out 0x10 <- 0x42; write 7 to DS:0 (the read-only slot at 0x10000); read
// DS:4 (the host's byte there) and out it on port 0x11; hlt.
constexpr unsigned char kRealModeCode[] = {
    0xb0, 0x42,                    // mov al, 0x42
    0xe6, 0x10,                    // out 0x10, al
    0xc6, 0x06, 0x00, 0x00, 0x07,  // mov byte [0], 7
    0xa0, 0x04, 0x00,              // mov al, [4]
    0xe6, 0x11,                    // out 0x11, al
    0xf4,                          // hlt
};
constexpr uint64_t kCode = 0x1000, kRom = 0x10000;

// A VM with 64 KiB of RAM at 0 (code at kCode), a read-only page at kRom whose byte 4 is 0x5a,
// and vCPU 0 in real mode at kCode with DS based at kRom.
struct RealModeVm {
  Mapping ram, rom;
  BareVm vm;
  Vcpu cpu;

  static RealModeVm make(std::span<const unsigned char> code) {
    auto ram = Mapping::anonymous(0x10000, "ram");
    auto rom = Mapping::anonymous(4096, "rom");
    EXPECT_TRUE(ram && rom);
    std::memcpy(ram->bytes() + kCode, code.data(), code.size());
    rom->bytes()[4] = std::byte{0x5a};
    auto vm = BareVm::create();
    EXPECT_TRUE(vm) << vm.error().to_string();
    auto ok = vm->add_memory_region(MemoryRegion::make(0, 0, ram->size(), host_addr(*ram)));
    EXPECT_TRUE(ok) << ok.error().to_string();
    ok =
        vm->add_memory_region(MemoryRegion::make(1, kRom, rom->size(), host_addr(*rom)).readonly());
    EXPECT_TRUE(ok) << ok.error().to_string();
    auto cpu = Vcpu::create(*vm, 0);
    EXPECT_TRUE(cpu) << cpu.error().to_string();
    auto sregs = cpu->get_sregs();
    EXPECT_TRUE(sregs) << sregs.error().to_string();
    sregs->cs.base = 0;
    sregs->cs.selector = 0;
    sregs->ds.base = kRom;
    sregs->ds.selector = kRom >> 4;
    ok = cpu->set_sregs(*sregs);
    EXPECT_TRUE(ok) << ok.error().to_string();
    ok = cpu->set_regs(VcpuRegs{.rbx = 0x1234, .rip = kCode, .rflags = 2});
    EXPECT_TRUE(ok) << ok.error().to_string();
    return {std::move(*ram), std::move(*rom), std::move(*vm), std::move(*cpu)};
  }
};

TEST(Vcpu, RunsRealModeCodeExitingOnOutReadonlyWriteAndHlt) {
  PEPITA_REQUIRE_KVM();
  auto v = RealModeVm::make(kRealModeCode);
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(v.cpu.id(), 0u);
  EXPECT_FALSE(v.cpu.is_running());
  auto sregs = v.cpu.get_sregs();
  ASSERT_TRUE(sregs) << sregs.error().to_string();
  EXPECT_EQ(sregs->ds.base, kRom) << "set_sregs did not reach the vCPU";

  auto e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Io) << name(e->reason) << " kvm " << e->kvm_reason;
  EXPECT_EQ(e->port, 0x10);
  EXPECT_TRUE(e->is_write);
  EXPECT_EQ(e->size, 1u);
  EXPECT_EQ(e->data, 0x42u);
  auto regs = v.cpu.get_regs();
  ASSERT_TRUE(regs) << regs.error().to_string();
  EXPECT_EQ(regs->rip, kCode + 4) << "rip past the out";
  EXPECT_EQ(regs->rax & 0xff, 0x42u);
  EXPECT_EQ(regs->rbx, 0x1234u) << "set_regs did not reach the vCPU";

  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Mmio) << name(e->reason) << " kvm " << e->kvm_reason;
  EXPECT_EQ(e->phys_addr, kRom);
  EXPECT_TRUE(e->is_write);
  EXPECT_EQ(e->size, 1u);
  EXPECT_EQ(e->data, 7u);
  EXPECT_EQ(v.rom.bytes()[0], std::byte{0}) << "a read-only slot took a guest write";

  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Io) << name(e->reason);
  EXPECT_EQ(e->port, 0x11);
  EXPECT_EQ(e->data, 0x5au) << "the guest reads a read-only slot's host bytes";

  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->reason, VcpuExitReason::Hlt) << name(e->reason) << " kvm " << e->kvm_reason;
  EXPECT_FALSE(v.cpu.is_running());
}

TEST(Vcpu, SetRegsMovesTheGuestAndIsRunningIsTrueOnlyInsideKvmRun) {
  PEPITA_REQUIRE_KVM();
  // A busy loop of 2^18 iterations, then hlt; a second thread watches is_running().
  constexpr unsigned char kLoop[] = {
      0x66, 0xb9, 0x00, 0x00, 0x04, 0x00,  // mov ecx, 0x40000
      0x67, 0xe2, 0xfd,                    // loop (ecx) to itself
      0xf4,                                // hlt
  };
  auto v = RealModeVm::make(kLoop);
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::atomic<bool> done{false}, seen{false};
  std::thread watcher([&] {
    while (!done.load() && !seen.load()) {
      if (v.cpu.is_running()) seen.store(true);
    }
  });
  Result<VcpuExit> e = v.cpu.run();
  while (e && e->reason == VcpuExitReason::Interrupted) e = v.cpu.run();
  done.store(true);
  watcher.join();
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->reason, VcpuExitReason::Hlt) << name(e->reason) << " kvm " << e->kvm_reason;
  EXPECT_TRUE(seen.load()) << "is_running() was never true during KVM_RUN";
  EXPECT_FALSE(v.cpu.is_running());
  auto regs = v.cpu.get_regs();
  ASSERT_TRUE(regs) << regs.error().to_string();
  EXPECT_EQ(regs->rcx & 0xffffffff, 0u) << "the loop ran to 0";
  EXPECT_EQ(regs->rip, kCode + sizeof kLoop);

  // set_regs moves the guest: back to the hlt, which exits at once.
  regs->rip = kCode + sizeof kLoop - 1;
  ASSERT_TRUE(v.cpu.set_regs(*regs));
  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->reason, VcpuExitReason::Hlt);
}

TEST(Vcpu, ASecondVcpuWithTheSameIdIsAlreadyExists) {
  PEPITA_REQUIRE_KVM();
  auto vm = BareVm::create();
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto a = Vcpu::create(*vm, 0);
  ASSERT_TRUE(a) << a.error().to_string();
  auto b = Vcpu::create(*vm, 0);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::AlreadyExists);
  EXPECT_NE(b.error().message().find("vCPU 0 already exists"), std::string::npos);
  auto c = Vcpu::create(*vm, 1);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->id(), 1u);
}

TEST(VcpuExitReason, EveryReasonHasItsName) {
  EXPECT_STREQ(name(VcpuExitReason::Io), "io");
  EXPECT_STREQ(name(VcpuExitReason::Mmio), "mmio");
  EXPECT_STREQ(name(VcpuExitReason::Hlt), "hlt");
  EXPECT_STREQ(name(VcpuExitReason::Shutdown), "shutdown");
  EXPECT_STREQ(name(VcpuExitReason::InternalError), "internal-error");
  EXPECT_STREQ(name(VcpuExitReason::Interrupted), "interrupted");
  EXPECT_STREQ(name(VcpuExitReason::Other), "other");
}

// A port read and a read of an address no slot backs exit to the VMM, which answers 0 unless it
// writes the data before the next run.
TEST(Vcpu, PortReadsAndUnbackedReadsExitAndReadZero) {
  PEPITA_REQUIRE_KVM();
  constexpr unsigned char kReads[] = {
      0xb0, 0x77,        // mov al, 0x77
      0xe4, 0x12,        // in al, 0x12
      0xe6, 0x13,        // out 0x13, al
      0xb0, 0x77,        // mov al, 0x77
      0xa0, 0x00, 0x80,  // mov al, [0x8000]: DS base 0x10000, so 0x18000, in no slot
      0xe6, 0x14,        // out 0x14, al
      0xf4,              // hlt
  };
  auto v = RealModeVm::make(kReads);
  ASSERT_FALSE(::testing::Test::HasFailure());
  auto e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Io) << name(e->reason);
  EXPECT_EQ(e->port, 0x12);
  EXPECT_FALSE(e->is_write);
  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Io) << name(e->reason);
  EXPECT_EQ(e->port, 0x13);
  EXPECT_EQ(e->data, 0u) << "the port read was answered 0";
  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Mmio) << name(e->reason);
  EXPECT_EQ(e->phys_addr, 0x18000u);
  EXPECT_FALSE(e->is_write);
  EXPECT_EQ(e->size, 1u);
  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  ASSERT_EQ(e->reason, VcpuExitReason::Io) << name(e->reason);
  EXPECT_EQ(e->port, 0x14);
  EXPECT_EQ(e->data, 0u) << "the unbacked read was answered 0";
  e = v.cpu.run();
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->reason, VcpuExitReason::Hlt) << name(e->reason);
}

TEST(Vcpu, AnIdPastKvmsLimitIsInvalidArgument) {
  PEPITA_REQUIRE_KVM();
  auto vm = BareVm::create();
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto cpu = Vcpu::create(*vm, 1u << 20);
  ASSERT_FALSE(cpu);
  EXPECT_EQ(cpu.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(cpu.error().message().find("vCPU id 1048576 refused by KVM_CREATE_VCPU"),
            std::string::npos)
      << cpu.error().message();
  EXPECT_NE(cpu.error().message().find("use ids from 0"), std::string::npos);
}

TEST(BareVm, MoveAssignmentTakesTheOtherVmAndItsVcpus) {
  PEPITA_REQUIRE_KVM();
  auto a = BareVm::create();
  auto b = BareVm::create();
  ASSERT_TRUE(a && b);
  const int b_fd = b->fd();
  *a = std::move(*b);
  EXPECT_EQ(a->fd(), b_fd);
  auto x = Vcpu::create(*a, 0);
  auto y = Vcpu::create(*a, 1);
  ASSERT_TRUE(x && y);
  *x = std::move(*y);
  EXPECT_EQ(x->id(), 1u);
  auto regs = x->get_regs();
  EXPECT_TRUE(regs) << regs.error().to_string();
}

}  // namespace
}  // namespace pepita::vmm
