// Vm and Snapshot lifecycles: creating a VM with a vCPU in 64-bit CPL3, capturing it at the
// guest's kReady call, and restoring copies copy-on-write.
#include "pepita/vmm/vm.hpp"

#include <sys/mman.h>

#include <cstring>
#include <string>

#include "detail/sys.hpp"
#include "detail/vm_state.hpp"
#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm {
namespace {

namespace ga = guest_abi;

kvm_segment user_segment(uint16_t selector, bool code) {
  kvm_segment seg{};
  seg.base = 0;
  seg.limit = 0xffffffff;
  seg.selector = selector;
  seg.type = code ? 11 : 3;
  seg.present = 1;
  seg.dpl = 3;
  seg.db = code ? 0 : 1;
  seg.s = 1;
  seg.l = code ? 1 : 0;
  seg.g = 1;
  return seg;
}

// Creates vCPU `id` with its kvm_run page and CPUID.
Result<void> create_vcpu(Vm::State& s, uint32_t id, UniqueFd& fd, Mapping& run_page) {
  int vcpu = sys::ioctl(s.vm_fd.get(), KVM_CREATE_VCPU, id);
  if (vcpu < 0) return fail_errno(-vcpu, "KVM_CREATE_VCPU");
  fd.reset(vcpu);
  run_page = PEPITA_TRY(Mapping::map(static_cast<size_t>(s.kvm->vcpu_mmap_size()),
                                     PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0, "kvm_run"));
  // KVM_SET_CPUID2 only reads the header and nent entries the KvmSystem table holds.
  if (int res = sys::ioctl_ptr(vcpu, sys::kSetCpuid2, const_cast<uint64_t*>(s.kvm->cpuid_table()));
      res < 0)
    return fail_errno(-res, "KVM_SET_CPUID2");
  return {};
}

// Creates the VM fd, one memory slot per guest RAM region and vCPU 0.
Result<void> create_vm_and_vcpu(Vm::State& s) {
  int vm = sys::ioctl(s.kvm->fd(), KVM_CREATE_VM, 0);
  if (vm < 0) return fail_errno(-vm, "KVM_CREATE_VM");
  s.vm_fd.reset(vm);
  uint32_t slot = 0;
  for (const auto& r : s.mem.regions()) {
    kvm_userspace_memory_region region{};
    region.slot = slot++;
    region.guest_phys_addr = r.base().raw();
    region.memory_size = r.size();
    // SAFETY: KVM's ABI carries the host address as an integer; the mapping outlives the VM fd
    // (member order in Vm::State).
    region.userspace_addr = reinterpret_cast<uint64_t>(r.host().data());
    if (int res = sys::ioctl_ptr(vm, KVM_SET_USER_MEMORY_REGION, &region); res < 0)
      return fail_errno(-res, "KVM_SET_USER_MEMORY_REGION");
  }
  return create_vcpu(s, 0, s.vcpu_fd, s.run_page);
}

Result<void> set_xcr0(Vm::State& s, int vcpu) {
  if (!s.kvm->has_xsave()) return {};
  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = 1;
  xcrs.xcrs[0].xcr = 0;
  xcrs.xcrs[0].value = s.kvm->guest_xcr0();
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_XCRS, &xcrs); res < 0)
    return fail_errno(-res, "KVM_SET_XCRS");
  return {};
}

// Puts vCPU `index` (fd `vcpu`) at `entry` in 64-bit mode, CPL3, IOPL0, interrupts off, with the
// GDT/IDT/TSS and page tables that build_guest wrote, its own stack, RSI = its index and the GS
// base at its host-call ring (guest_abi.hpp).
Result<void> enter_cpl3(Vm::State& s, int vcpu, uint32_t index, uint64_t entry) {
  kvm_sregs sregs{};
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS");
  sregs.cs = user_segment(detail::kUserCs, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = user_segment(detail::kUserDs, false);
  sregs.gs.base = ga::kHostcallGpa + index * ga::kHostcallStride;
  kvm_segment tr{};
  tr.base = detail::kTssGpa;
  tr.limit = 0x68 + guest_abi::kHostcallPort / 8 + 2 - 1;  // TSS + I/O bitmap (layout.cpp)
  tr.selector = detail::kTss;
  tr.type = 11;  // busy 64-bit TSS
  tr.present = 1;
  sregs.tr = tr;
  sregs.ldt = kvm_segment{};
  sregs.ldt.unusable = 1;
  sregs.gdt.base = ga::kGdtGpa;
  sregs.gdt.limit = detail::kGdtEntries * 8 - 1;
  sregs.idt.base = ga::kIdtGpa;
  sregs.idt.limit = 256 * 16 - 1;
  // CR0: PE | MP | ET | NE | WP | PG. CR4: PAE | OSFXSR | OSXMMEXCPT (| OSXSAVE).
  sregs.cr0 = 0x80050033ull & ~(1ull << 18);  // AM off: no alignment checks at CPL3
  sregs.cr4 = (1ull << 5) | (1ull << 9) | (1ull << 10);
  if (s.kvm->has_xsave()) sregs.cr4 |= 1ull << 18;
  sregs.cr3 = s.layout.page_table_base;
  sregs.efer = (1ull << 8) | (1ull << 10) | (1ull << 11);  // LME | LMA | NXE; no SCE: syscall #UDs
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_SET_SREGS (64-bit CPL3 entry)");
  PEPITA_TRY_VOID(set_xcr0(s, vcpu));

  kvm_regs regs{};
  regs.rip = entry;
  regs.rsp = s.layout.vcpu_stack_top(index);
  regs.rdi = ga::kBootInfoGpa;
  regs.rsi = index;
  // IOPL 0: port I/O at CPL3 is decided by the TSS bitmap, which allows only kHostcallPort.
  regs.rflags = 0x2;  // reserved bit 1; IF clear: no interrupts ever reach the guest
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_SET_REGS");
  return {};
}

}  // namespace

Result<void> load_registers(Vm::State& s, const Snapshot::State& snap);

namespace {

// New host-side device objects for a VM restored from `snap` (over s.mem, which holds the
// snapshot's rings), loaded with the snapshot's device state.
Result<void> load_devices(Vm::State& s, const Snapshot::State& snap) {
  s.virtio.reset();
  if (snap.layout.mmio_devices == 0) return {};
  s.virtio = PEPITA_TRY(detail::VirtioBus::create(s.mem, s.layout, s.config));
  return s.virtio->load(snap.devices);
}

const char* kind_name(ExitKind kind) {
  switch (kind) {
    case ExitKind::Exited: return "exited";
    case ExitKind::Fault: return "fault";
    case ExitKind::TimedOut: return "timed out";
    case ExitKind::Cancelled: return "cancelled";
    case ExitKind::Stopped: return "stopped";
  }
  return "?";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Vm::Vm(std::unique_ptr<State> state) : state_(std::move(state)) {}
Vm::Vm(Vm&&) noexcept = default;
Vm& Vm::operator=(Vm&&) noexcept = default;
Vm::~Vm() = default;
const memory::GuestMemory& Vm::memory() const noexcept { return state_->mem; }
void Vm::set_limits(std::chrono::nanoseconds timeout, uint64_t output_limit) noexcept {
  state_->config.timeout = timeout;
  state_->config.output_limit = output_limit;
}

Snapshot::Snapshot(std::unique_ptr<State> state) : state_(std::move(state)) {}
Snapshot::Snapshot(Snapshot&&) noexcept = default;
Snapshot& Snapshot::operator=(Snapshot&&) noexcept = default;
Snapshot::~Snapshot() = default;
const VmConfig& Snapshot::config() const noexcept { return state_->config; }

Result<void> kvm_available() {
  PEPITA_TRY(KvmSystem::get());
  return {};
}

Result<uint32_t> max_vcpus() {
  const KvmSystem* kvm = PEPITA_TRY(KvmSystem::get());
  return detail::vcpu_limit(*kvm);
}

Result<Vm> Vm::create(const GuestImage& image, const VmConfig& config) {
  auto s = std::make_unique<State>();
  s->kvm = PEPITA_TRY(KvmSystem::get());
  s->config = config;
  if (const uint32_t limit = detail::vcpu_limit(*s->kvm); config.vcpus > limit)
    return fail(ErrorCode::InvalidArgument,
                "vcpus = " + std::to_string(config.vcpus) + " exceeds this host's limit of " +
                    std::to_string(limit) +
                    " vCPUs per VM (KVM_CAP_MAX_VCPUS, guest ABI kMaxVcpus); ask for at most " +
                    std::to_string(limit));
  if (config.vcpus > 1 && config.snapshottable)
    return fail(ErrorCode::InvalidArgument,
                "a snapshot holds one vCPU's registers: use vcpus = 1 with snapshottable");
  s->layout = PEPITA_TRY(detail::Layout::compute(config, image));
  s->mem = config.snapshottable
               ? PEPITA_TRY(memory::GuestMemory::shared(abi::PhysAddr(0), config.memory_bytes,
                                                        "pepita-vm"))
               : PEPITA_TRY(memory::GuestMemory::anonymous(abi::PhysAddr(0), config.memory_bytes));
  PEPITA_TRY_VOID(detail::build_guest(s->mem, s->layout, image, config.snapshottable));
  if (s->layout.mmio_devices > 0)
    s->virtio = PEPITA_TRY(detail::VirtioBus::create(s->mem, s->layout, config));
  PEPITA_TRY_VOID(create_vm_and_vcpu(*s));
  PEPITA_TRY_VOID(enter_cpl3(*s, s->vcpu_fd.get(), 0, image.entry()));
  s->secondary.resize(config.vcpus - 1);
  for (uint32_t i = 1; i < config.vcpus; ++i) {
    detail::Vcpu& v = s->secondary[i - 1];
    PEPITA_TRY_VOID(create_vcpu(*s, i, v.fd, v.run_page));
    PEPITA_TRY_VOID(enter_cpl3(*s, v.fd.get(), i, image.entry()));
  }
  return Vm(std::move(s));
}

Result<RunResult> Vm::run(std::span<const std::byte> input, std::stop_token stop) {
  State& s = *state_;
  if (s.ran)
    return fail(ErrorCode::InvalidArgument, "a micro-VM runs once; create or restore a new one");
  if (input.size() > s.layout.input_capacity)
    return fail(ErrorCode::InvalidArgument,
                "input of " + std::to_string(input.size()) + " bytes exceeds the VM's " +
                    std::to_string(s.layout.input_capacity) +
                    "-byte input window; raise memory or input_capacity");
  s.ran = true;
  PEPITA_TRY_VOID(s.mem.write_bytes(abi::PhysAddr(s.layout.input_base), input));
  PEPITA_TRY_VOID(s.mem.write<uint64_t>(
      abi::PhysAddr(ga::kBootInfoGpa + offsetof(ga::BootInfo, input_size)), input.size()));
  s.input = input;
  if (s.virtio) s.virtio->feed_input(input);
  RunResult result;
  auto end = detail::run_loop(s, false, result, std::move(stop));  // state() Running in it
  s.input = {};
  if (s.virtio) {
    s.virtio->drain_console(result.output, s.config.output_limit);
    result.virtio = s.virtio->report();
  }
  s.clean_exit = end && *end == detail::Stop::Exited;
  s.exits.fetch_add(result.exits, std::memory_order_relaxed);
  // Stopped: the guest exited or the caller stopped it (the crate's MicroVm::stop); Error: a
  // fault, the watchdog, or a host failure.
  const bool stopped =
      end && (result.kind == ExitKind::Exited || result.kind == ExitKind::Cancelled ||
              result.kind == ExitKind::Stopped);
  s.phase.store(stopped ? VmState::Stopped : VmState::Error, std::memory_order_release);
  PEPITA_TRY(std::move(end));
  return result;
}

Result<Snapshot> Vm::capture(Vm vm) {
  State& s = *vm.state_;
  if (!s.config.snapshottable)
    return fail(ErrorCode::InvalidArgument, "capture needs a VM created with snapshottable = true");
  if (s.ran) return fail(ErrorCode::InvalidArgument, "capture needs a VM that has not run yet");
  s.ran = true;
  RunResult result;
  auto stop = PEPITA_TRY(detail::run_loop(s, true, result));
  if (stop != detail::Stop::Ready)
    return fail(ErrorCode::Protocol, "guest did not reach its snapshot point (kReady): " +
                                         result.describe() + " output: " + result.output);
  auto snap = std::make_unique<Snapshot::State>();
  const int vcpu = s.vcpu_fd.get();
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_REGS, &snap->regs); res < 0)
    return fail_errno(-res, "KVM_GET_REGS");
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_SREGS, &snap->sregs); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS");
  snap->has_xsave = s.kvm->has_xsave();
  if (snap->has_xsave) {
    snap->xsave = std::make_unique<sys::Xsave>();
    if (int res = sys::ioctl_ptr(vcpu, sys::kGetXsave, snap->xsave.get()); res < 0)
      return fail_errno(-res, "KVM_GET_XSAVE");
    if (int res = sys::ioctl_ptr(vcpu, KVM_GET_XCRS, &snap->xcrs); res < 0)
      return fail_errno(-res, "KVM_GET_XCRS");
  } else if (int res = sys::ioctl_ptr(vcpu, KVM_GET_FPU, &snap->fpu); res < 0) {
    return fail_errno(-res, "KVM_GET_FPU");
  }
  if (s.virtio) snap->devices = PEPITA_TRY(s.virtio->save());
  snap->config = s.config;
  snap->layout = s.layout;
  // The VM and its devices must be gone before its RAM is sealed: no writer may remain.
  s.virtio.reset();
  s.run_page.reset();
  s.vcpu_fd.reset();
  s.vm_fd.reset();
  snap->image = PEPITA_TRY(std::move(s.mem).into_sealed_image());
  return Snapshot(std::move(snap));
}

Result<Vm> Vm::restore(const Snapshot& snapshot) {
  return restore(snapshot, snapshot.state_->config);
}

Result<Vm> Vm::restore(const Snapshot& snapshot, const VmConfig& config) {
  const Snapshot::State& snap = *snapshot.state_;
  auto s = std::make_unique<State>();
  s->kvm = PEPITA_TRY(KvmSystem::get());
  s->config = PEPITA_TRY(detail::restored_config(snap.config, config));
  s->layout = snap.layout;
  s->mem = PEPITA_TRY(memory::GuestMemory::copy_on_write(abi::PhysAddr(0), snap.config.memory_bytes,
                                                         snap.image.get()));
  PEPITA_TRY_VOID(load_devices(*s, snap));
  PEPITA_TRY_VOID(create_vm_and_vcpu(*s));
  PEPITA_TRY_VOID(load_registers(*s, snap));
  return Vm(std::move(s));
}

Result<void> Vm::reset_to(const Snapshot& snapshot) {
  State& s = *state_;
  const Snapshot::State& snap = *snapshot.state_;
  if (!s.clean_exit && s.ran)
    return fail(ErrorCode::InvalidArgument,
                "reset_to needs a VM whose last run exited cleanly; restore a fresh VM instead");
  if (s.config.memory_bytes != snap.config.memory_bytes || !s.mem.valid())
    return fail(ErrorCode::InvalidArgument,
                "reset_to needs a VM restored from a snapshot of the same memory size");
  // This VM keeps its own device backends (its disk, its vsock path) in the snapshot's shape.
  // Limits go back to the snapshot's (set_limits is for the next run only, as before).
  VmConfig config = PEPITA_TRY(detail::restored_config(snap.config, s.config));
  config.timeout = snap.config.timeout;
  config.output_limit = snap.config.output_limit;
  s.virtio.reset();  // new device objects below, over the re-mapped RAM
  PEPITA_TRY_VOID(s.mem.reset_copy_on_write(snap.image.get()));
  s.config = std::move(config);
  s.layout = snap.layout;
  PEPITA_TRY_VOID(load_devices(s, snap));
  PEPITA_TRY_VOID(load_registers(s, snap));
  s.ran = false;
  s.clean_exit = false;
  s.phase.store(VmState::Created, std::memory_order_release);
  return {};
}

VmState Vm::state() const noexcept { return state_->phase.load(std::memory_order_acquire); }
uint64_t Vm::exit_count() const noexcept { return state_->exits.load(std::memory_order_relaxed); }

uint32_t Vm::vcpu_count() const noexcept {
  return 1 + static_cast<uint32_t>(state_->secondary.size());
}

Result<void> load_registers(Vm::State& s, const Snapshot::State& snap) {
  const int vcpu = s.vcpu_fd.get();
  kvm_sregs sregs = snap.sregs;
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_SET_SREGS (restore)");
  if (snap.has_xsave) {
    kvm_xcrs xcrs = snap.xcrs;
    if (int res = sys::ioctl_ptr(vcpu, KVM_SET_XCRS, &xcrs); res < 0)
      return fail_errno(-res, "KVM_SET_XCRS (restore)");
    if (int res = sys::ioctl_ptr(vcpu, sys::kSetXsave, snap.xsave.get()); res < 0)
      return fail_errno(-res, "KVM_SET_XSAVE (restore)");
  } else {
    kvm_fpu fpu = snap.fpu;
    if (int res = sys::ioctl_ptr(vcpu, KVM_SET_FPU, &fpu); res < 0)
      return fail_errno(-res, "KVM_SET_FPU (restore)");
  }
  kvm_regs regs = snap.regs;
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_SET_REGS (restore)");
  return {};
}

Result<RunResult> run_guest(const GuestImage& image, std::span<const std::byte> input,
                            const VmConfig& config) {
  auto vm = PEPITA_TRY(Vm::create(image, config));
  return vm.run(input);
}

std::string RunResult::describe() const {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  std::string out = kind_name(kind);
  if (kind == ExitKind::Exited) return out + " " + std::to_string(exit_code);
  if (kind == ExitKind::TimedOut || kind == ExitKind::Cancelled || kind == ExitKind::Stopped)
    return out + " after " + std::to_string(duration_cast<microseconds>(elapsed).count()) + " us";
  if (!fault) return out;
  const GuestFault& f = *fault;
  if (vcpus > 1) out += " on vCPU " + std::to_string(f.vcpu);
  out += ": " + f.reason;
  if (f.vector >= 0)
    out += " (vector " + std::to_string(f.vector) + ", error code " + hex(f.error_code) + ")";
  out += " rip=" + hex(f.rip) + " rsp=" + hex(f.rsp) + " rflags=" + hex(f.rflags);
  if (f.vector == 14) out += " cr2=" + hex(f.cr2);
  out += " rax=" + hex(f.rax) + " rbx=" + hex(f.rbx) + " rcx=" + hex(f.rcx) + " rdx=" + hex(f.rdx) +
         " rsi=" + hex(f.rsi) + " rdi=" + hex(f.rdi) + " rbp=" + hex(f.rbp);
  return out;
}

}  // namespace pepita::vmm
