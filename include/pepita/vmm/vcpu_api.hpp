#pragma once
// The reference crate's raw-KVM layer, for real: a BareVm (a KVM VM with nothing loaded, the
// crate's MicroVm::add_memory_region), MemoryRegion slots (KVM_SET_USER_MEMORY_REGION, with
// readonly() = KVM_MEM_READONLY), and Vcpu, which owns one KVM vCPU fd: get/set regs and sregs
// through KVM_GET/SET_(S)REGS, run() = one KVM_RUN returning why the vCPU exited. The register
// structs carry the crate's field names and convert both ways to <linux/kvm.h>'s.
//
//   auto vm = PEPITA_TRY(BareVm::create());
//   PEPITA_TRY(vm.add_memory_region(MemoryRegion::make(0, 0, ram.size(), host_addr)));
//   auto cpu = PEPITA_TRY(Vcpu::create(vm, 0));
//   VcpuSregs s = PEPITA_TRY(cpu.get_sregs()); s.cs.base = 0; s.cs.selector = 0;
//   PEPITA_TRY(cpu.set_sregs(s));
//   PEPITA_TRY(cpu.set_regs(VcpuRegs{.rip = 0x1000, .rflags = 2}));
//   VcpuExit e = PEPITA_TRY(cpu.run());   // e.reason == VcpuExitReason::Io, e.port, e.data ...

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "pepita/error.hpp"

// <linux/kvm.h>'s structs (not included here: it defines KVM_API_VERSION as a macro, which
// uapi.hpp declares as a constant). Include <linux/kvm.h> to call the conversions.
struct kvm_regs;
struct kvm_segment;
struct kvm_dtable;
struct kvm_sregs;

namespace pepita::vmm {

/// KVM_MEM_READONLY (1 << 1). The crate's readonly() sets bit 0, which is KVM's
/// KVM_MEM_LOG_DIRTY_PAGES; pepita sets KVM's read-only bit.
inline constexpr uint32_t kKvmMemReadonly = 1u << 1;

/// The crate's MAX_MEMORY_SLOTS (its constant, 32): the most slots a BareVm takes. The host's own
/// limit (KVM_CAP_NR_MEMSLOTS, max_memory_slots()) is usually far higher; the lower one holds.
inline constexpr uint32_t MAX_MEMORY_SLOTS = 32;
/// KVM_CAP_NR_MEMSLOTS: user memory slots this host's KVM allows per VM.
Result<uint32_t> max_memory_slots();

/// x86-64 general-purpose registers (kvm_regs, field for field).
struct VcpuRegs {
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  uint64_t rip = 0, rflags = 0;

  static VcpuRegs from_kvm(const kvm_regs& k) noexcept;
  kvm_regs to_kvm() const noexcept;
  bool operator==(const VcpuRegs&) const = default;
};

/// A segment register (kvm_segment; the crate spells `type` as type_).
struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type_ = 0, present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0, unusable = 0;
  uint8_t padding = 0;

  static Segment from_kvm(const kvm_segment& k) noexcept;
  kvm_segment to_kvm() const noexcept;
  bool operator==(const Segment&) const = default;
};

/// A descriptor-table register (kvm_dtable).
struct Dtable {
  uint64_t base = 0;
  uint16_t limit = 0;
  std::array<uint16_t, 3> padding{};

  static Dtable from_kvm(const kvm_dtable& k) noexcept;
  kvm_dtable to_kvm() const noexcept;
  bool operator==(const Dtable&) const = default;
};

/// Segment, control and system registers (kvm_sregs).
struct VcpuSregs {
  Segment cs, ds, es, fs, gs, ss, tr, ldt;
  Dtable gdt, idt;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0, efer = 0, apic_base = 0;
  std::array<uint64_t, 4> interrupt_bitmap{};

  static VcpuSregs from_kvm(const kvm_sregs& k) noexcept;
  kvm_sregs to_kvm() const noexcept;
  bool operator==(const VcpuSregs&) const = default;
};

/// A guest-physical memory slot: the crate's MemoryRegion, which is KVM's
/// kvm_userspace_memory_region. The host memory at userspace_addr belongs to the caller and must
/// stay mapped as long as the BareVm holding the slot.
struct MemoryRegion {
  uint32_t slot = 0;
  uint64_t guest_phys_addr = 0;
  uint64_t memory_size = 0;
  uint64_t userspace_addr = 0;
  uint32_t flags = 0;

  /// The crate's MemoryRegion::new (flags 0).
  static constexpr MemoryRegion make(uint32_t slot, uint64_t guest_phys_addr, uint64_t memory_size,
                                     uint64_t userspace_addr) noexcept {
    return {slot, guest_phys_addr, memory_size, userspace_addr, 0};
  }
  /// KVM_MEM_READONLY: the guest reads the memory; each guest write exits to the VMM as MMIO.
  constexpr MemoryRegion readonly() const noexcept {
    MemoryRegion r = *this;
    r.flags |= kKvmMemReadonly;
    return r;
  }
};

/// A KVM VM with nothing loaded: slots and vCPUs are the caller's to set up (Vm, in vm.hpp, lays
/// out its own RAM and page tables). Move-only; closing it after its Vcpus are gone frees the VM.
class BareVm {
 public:
  /// KVM_CREATE_VM. Unsupported (with what to do) when /dev/kvm is not usable.
  static Result<BareVm> create();
  BareVm(BareVm&&) noexcept;
  BareVm& operator=(BareVm&&) noexcept;
  ~BareVm();

  /// The crate's MicroVm::add_memory_region: KVM_SET_USER_MEMORY_REGION. InvalidArgument for a
  /// size of 0, an address or size that is not page-aligned, a slot already added, flags other
  /// than KVM_MEM_READONLY, or a range overlapping another slot; ResourceExhausted past
  /// MAX_MEMORY_SLOTS (or the host's smaller limit); Unsupported for readonly() on a host without
  /// KVM_CAP_READONLY_MEM.
  Result<void> add_memory_region(const MemoryRegion& region);
  const std::vector<MemoryRegion>& memory_regions() const noexcept;

  int fd() const noexcept;

  struct State;  // private to src/vmm

 private:
  explicit BareVm(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

/// Why one KVM_RUN returned (the crate's ExitReason values that KVM reports). Other: see
/// VcpuExit::kvm_reason.
enum class VcpuExitReason : uint8_t { Io, Mmio, Hlt, Shutdown, InternalError, Interrupted, Other };
const char* name(VcpuExitReason reason) noexcept;

/// One KVM_RUN's exit: the reason and, for Io and Mmio, the access.
struct VcpuExit {
  VcpuExitReason reason = VcpuExitReason::Other;
  uint32_t kvm_reason = 0;  // KVM_EXIT_*
  // Io: port, direction, access size; Mmio: guest-physical address and length. Writes carry the
  // guest's bytes in data (little-endian, up to 8).
  uint16_t port = 0;
  uint64_t phys_addr = 0;
  uint32_t size = 0;
  bool is_write = false;
  uint64_t data = 0;
  uint32_t suberror = 0;  // InternalError: KVM_INTERNAL_ERROR_*
};

/// One KVM vCPU of a BareVm (the crate's Vcpu): owns the vCPU fd and its kvm_run page (RAII). The
/// BareVm must outlive it. Move-only; run() from one thread at a time, is_running() from any.
class Vcpu {
 public:
  /// The crate's Vcpu::new(id): KVM_CREATE_VCPU with the host's supported CPUID.
  /// InvalidArgument for an id KVM refuses (past KVM_CAP_MAX_VCPU_ID); AlreadyExists for an id
  /// the VM has.
  static Result<Vcpu> create(BareVm& vm, uint32_t id);
  Vcpu(Vcpu&&) noexcept;
  Vcpu& operator=(Vcpu&&) noexcept;
  ~Vcpu();

  uint32_t id() const noexcept;
  /// True while run() is inside KVM_RUN.
  bool is_running() const noexcept;

  Result<VcpuRegs> get_regs() const;
  Result<void> set_regs(const VcpuRegs& regs);
  Result<VcpuSregs> get_sregs() const;
  Result<void> set_sregs(const VcpuSregs& sregs);
  /// One KVM_RUN. The guest's Io "in" reads zeroes; a signal that interrupts KVM_RUN returns
  /// VcpuExitReason::Interrupted.
  Result<VcpuExit> run();

  struct State;  // private to src/vmm

 private:
  explicit Vcpu(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace pepita::vmm
