// The reference crate's raw-KVM names (vcpu_api.hpp): BareVm memory slots and Vcpu register access
// and single KVM_RUNs, each a real ioctl on the VM's or vCPU's fd.
#include "pepita/vmm/vcpu_api.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "detail/kvm_system.hpp"
#include "detail/sys.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::vmm {
namespace {

constexpr uint64_t kPage = 4096;
static_assert(kKvmMemReadonly == KVM_MEM_READONLY);

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<uint32_t> max_memory_slots() {
  const KvmSystem* kvm = PEPITA_TRY(KvmSystem::get());
  const int n = sys::ioctl(kvm->fd(), KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
  if (n < 0) return fail_errno(-n, "KVM_CHECK_EXTENSION(KVM_CAP_NR_MEMSLOTS)");
  return static_cast<uint32_t>(n);
}

// ---- register conversions ----

VcpuRegs VcpuRegs::from_kvm(const kvm_regs& k) noexcept {
  return {k.rax, k.rbx, k.rcx, k.rdx, k.rsi, k.rdi, k.rsp, k.rbp, k.r8,
          k.r9,  k.r10, k.r11, k.r12, k.r13, k.r14, k.r15, k.rip, k.rflags};
}

kvm_regs VcpuRegs::to_kvm() const noexcept {
  kvm_regs k{};
  k.rax = rax, k.rbx = rbx, k.rcx = rcx, k.rdx = rdx, k.rsi = rsi, k.rdi = rdi;
  k.rsp = rsp, k.rbp = rbp, k.r8 = r8, k.r9 = r9, k.r10 = r10, k.r11 = r11;
  k.r12 = r12, k.r13 = r13, k.r14 = r14, k.r15 = r15, k.rip = rip, k.rflags = rflags;
  return k;
}

Segment Segment::from_kvm(const kvm_segment& k) noexcept {
  return {k.base, k.limit, k.selector, k.type, k.present,  k.dpl,    k.db,
          k.s,    k.l,     k.g,        k.avl,  k.unusable, k.padding};
}

kvm_segment Segment::to_kvm() const noexcept {
  kvm_segment k{};
  k.base = base, k.limit = limit, k.selector = selector, k.type = type_, k.present = present;
  k.dpl = dpl, k.db = db, k.s = s, k.l = l, k.g = g, k.avl = avl, k.unusable = unusable;
  k.padding = padding;
  return k;
}

Dtable Dtable::from_kvm(const kvm_dtable& k) noexcept {
  return {k.base, k.limit, {k.padding[0], k.padding[1], k.padding[2]}};
}

kvm_dtable Dtable::to_kvm() const noexcept {
  kvm_dtable k{};
  k.base = base, k.limit = limit;
  for (size_t i = 0; i < 3; ++i) k.padding[i] = padding[i];
  return k;
}

VcpuSregs VcpuSregs::from_kvm(const kvm_sregs& k) noexcept {
  VcpuSregs r;
  r.cs = Segment::from_kvm(k.cs), r.ds = Segment::from_kvm(k.ds), r.es = Segment::from_kvm(k.es);
  r.fs = Segment::from_kvm(k.fs), r.gs = Segment::from_kvm(k.gs), r.ss = Segment::from_kvm(k.ss);
  r.tr = Segment::from_kvm(k.tr), r.ldt = Segment::from_kvm(k.ldt);
  r.gdt = Dtable::from_kvm(k.gdt), r.idt = Dtable::from_kvm(k.idt);
  r.cr0 = k.cr0, r.cr2 = k.cr2, r.cr3 = k.cr3, r.cr4 = k.cr4, r.cr8 = k.cr8, r.efer = k.efer;
  r.apic_base = k.apic_base;
  for (size_t i = 0; i < 4; ++i) r.interrupt_bitmap[i] = k.interrupt_bitmap[i];
  return r;
}

kvm_sregs VcpuSregs::to_kvm() const noexcept {
  kvm_sregs k{};
  k.cs = cs.to_kvm(), k.ds = ds.to_kvm(), k.es = es.to_kvm(), k.fs = fs.to_kvm();
  k.gs = gs.to_kvm(), k.ss = ss.to_kvm(), k.tr = tr.to_kvm(), k.ldt = ldt.to_kvm();
  k.gdt = gdt.to_kvm(), k.idt = idt.to_kvm();
  k.cr0 = cr0, k.cr2 = cr2, k.cr3 = cr3, k.cr4 = cr4, k.cr8 = cr8, k.efer = efer;
  k.apic_base = apic_base;
  for (size_t i = 0; i < 4; ++i) k.interrupt_bitmap[i] = interrupt_bitmap[i];
  return k;
}

// ---- BareVm ----

struct BareVm::State {
  const KvmSystem* kvm = nullptr;
  UniqueFd fd;
  uint32_t slot_limit = MAX_MEMORY_SLOTS;
  bool readonly_mem = false;
  std::vector<MemoryRegion> regions;
};

BareVm::BareVm(std::unique_ptr<State> state) : state_(std::move(state)) {}
BareVm::BareVm(BareVm&&) noexcept = default;
BareVm& BareVm::operator=(BareVm&&) noexcept = default;
BareVm::~BareVm() = default;

Result<BareVm> BareVm::create() {
  auto s = std::make_unique<State>();
  s->kvm = PEPITA_TRY(KvmSystem::get());
  const int fd = sys::ioctl(s->kvm->fd(), KVM_CREATE_VM, 0);
  if (fd < 0) return fail_errno(-fd, "KVM_CREATE_VM");
  s->fd.reset(fd);
  if (const int n = sys::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
      n > 0 && static_cast<uint32_t>(n) < s->slot_limit)
    s->slot_limit = static_cast<uint32_t>(n);
  s->readonly_mem = sys::ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0;
  return BareVm(std::move(s));
}

int BareVm::fd() const noexcept { return state_->fd.get(); }

const std::vector<MemoryRegion>& BareVm::memory_regions() const noexcept { return state_->regions; }

Result<void> BareVm::add_memory_region(const MemoryRegion& r) {
  State& s = *state_;
  const std::string what = "memory region slot " + std::to_string(r.slot) + " at " +
                           hex(r.guest_phys_addr) + " (" + std::to_string(r.memory_size) +
                           " bytes)";
  if (r.memory_size == 0)
    return fail(ErrorCode::InvalidArgument, what + ": size is 0; give the slot some memory");
  if (r.guest_phys_addr % kPage != 0 || r.memory_size % kPage != 0 || r.userspace_addr % kPage != 0)
    return fail(ErrorCode::InvalidArgument,
                what + ": guest address, size and host address must be multiples of 4096");
  if (r.userspace_addr == 0)
    return fail(ErrorCode::InvalidArgument, what + ": host address is 0; map memory for it");
  if ((r.flags & ~uint32_t{KVM_MEM_READONLY}) != 0)
    return fail(ErrorCode::InvalidArgument,
                what + ": flags " + hex(r.flags) + "; only readonly() (KVM_MEM_READONLY) is taken");
  if ((r.flags & KVM_MEM_READONLY) != 0 && !s.readonly_mem)
    return fail(ErrorCode::Unsupported,
                what + ": this host's KVM lacks KVM_CAP_READONLY_MEM; map the slot writable");
  if (s.regions.size() >= s.slot_limit)
    return fail(ErrorCode::ResourceExhausted,
                what + ": the VM already has " + std::to_string(s.regions.size()) +
                    " memory slots, the most it may have (MAX_MEMORY_SLOTS " +
                    std::to_string(MAX_MEMORY_SLOTS) +
                    ", KVM_CAP_NR_MEMSLOTS); use fewer, "
                    "larger regions");
  for (const MemoryRegion& o : s.regions) {
    if (o.slot == r.slot)
      return fail(ErrorCode::InvalidArgument,
                  what + ": slot " + std::to_string(r.slot) + " is taken; pick a free slot");
    if (r.guest_phys_addr < o.guest_phys_addr + o.memory_size &&
        o.guest_phys_addr < r.guest_phys_addr + r.memory_size)
      return fail(ErrorCode::InvalidArgument, what + " overlaps slot " + std::to_string(o.slot) +
                                                  " at " + hex(o.guest_phys_addr) +
                                                  "; guest-physical ranges must not overlap");
  }
  kvm_userspace_memory_region k{};
  k.slot = r.slot;
  k.flags = r.flags;
  k.guest_phys_addr = r.guest_phys_addr;
  k.memory_size = r.memory_size;
  k.userspace_addr = r.userspace_addr;
  if (const int res = sys::ioctl_ptr(s.fd.get(), KVM_SET_USER_MEMORY_REGION, &k); res < 0)
    return std::unexpected(
        Error::from_errno(-res, "KVM_SET_USER_MEMORY_REGION").with_context(what));
  s.regions.push_back(r);
  return {};
}

// ---- Vcpu ----

struct Vcpu::State {
  uint32_t id = 0;
  UniqueFd fd;
  Mapping run_page;
  std::atomic<bool> running{false};
  // SAFETY: run_page is this vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE bytes, page-aligned).
  kvm_run* run() const noexcept { return static_cast<kvm_run*>(run_page.data()); }
};

Vcpu::Vcpu(std::unique_ptr<State> state) : state_(std::move(state)) {}
Vcpu::Vcpu(Vcpu&&) noexcept = default;
Vcpu& Vcpu::operator=(Vcpu&&) noexcept = default;
Vcpu::~Vcpu() = default;

Result<Vcpu> Vcpu::create(BareVm& vm, uint32_t id) {
  const KvmSystem* kvm = PEPITA_TRY(KvmSystem::get());
  auto s = std::make_unique<State>();
  s->id = id;
  const int fd = sys::ioctl(vm.fd(), KVM_CREATE_VCPU, id);
  if (fd == -EEXIST)
    return fail(ErrorCode::AlreadyExists,
                "vCPU " + std::to_string(id) + " already exists in this VM; use another id");
  if (fd == -EINVAL)
    return fail(ErrorCode::InvalidArgument,
                "vCPU id " + std::to_string(id) +
                    " refused by KVM_CREATE_VCPU (past KVM_CAP_MAX_VCPU_ID or the VM's vCPU "
                    "limit); use ids from 0");
  if (fd < 0) return fail_errno(-fd, "KVM_CREATE_VCPU");
  s->fd.reset(fd);
  s->run_page = PEPITA_TRY(Mapping::map(static_cast<size_t>(kvm->vcpu_mmap_size()),
                                        PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, "kvm_run"));
  // KVM_SET_CPUID2 only reads the header and the nent entries the KvmSystem table holds.
  if (const int res =
          sys::ioctl_ptr(fd, sys::kSetCpuid2, const_cast<uint64_t*>(kvm->cpuid_table()));
      res < 0)
    return fail_errno(-res, "KVM_SET_CPUID2");
  return Vcpu(std::move(s));
}

uint32_t Vcpu::id() const noexcept { return state_->id; }
bool Vcpu::is_running() const noexcept { return state_->running.load(std::memory_order_acquire); }

Result<VcpuRegs> Vcpu::get_regs() const {
  kvm_regs k{};
  if (const int res = sys::ioctl_ptr(state_->fd.get(), KVM_GET_REGS, &k); res < 0)
    return fail_errno(-res, "KVM_GET_REGS");
  return VcpuRegs::from_kvm(k);
}

Result<void> Vcpu::set_regs(const VcpuRegs& regs) {
  kvm_regs k = regs.to_kvm();
  if (const int res = sys::ioctl_ptr(state_->fd.get(), KVM_SET_REGS, &k); res < 0)
    return fail_errno(-res, "KVM_SET_REGS");
  return {};
}

Result<VcpuSregs> Vcpu::get_sregs() const {
  kvm_sregs k{};
  if (const int res = sys::ioctl_ptr(state_->fd.get(), KVM_GET_SREGS, &k); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS");
  return VcpuSregs::from_kvm(k);
}

Result<void> Vcpu::set_sregs(const VcpuSregs& sregs) {
  kvm_sregs k = sregs.to_kvm();
  if (const int res = sys::ioctl_ptr(state_->fd.get(), KVM_SET_SREGS, &k); res < 0)
    return std::unexpected(Error::from_errno(-res, "KVM_SET_SREGS")
                               .with_context("check the segment, CR0/CR4 and EFER combination"));
  return {};
}

const char* name(VcpuExitReason reason) noexcept {
  switch (reason) {
    case VcpuExitReason::Io: return "io";
    case VcpuExitReason::Mmio: return "mmio";
    case VcpuExitReason::Hlt: return "hlt";
    case VcpuExitReason::Shutdown: return "shutdown";
    case VcpuExitReason::InternalError: return "internal-error";
    case VcpuExitReason::Interrupted: return "interrupted";
    case VcpuExitReason::Other: break;
  }
  return "other";
}

Result<VcpuExit> Vcpu::run() {
  State& s = *state_;
  kvm_run* r = s.run();
  s.running.store(true, std::memory_order_release);
  const int res = sys::ioctl(s.fd.get(), KVM_RUN, 0);
  s.running.store(false, std::memory_order_release);
  VcpuExit e;
  if (res == -EINTR) {
    e.reason = VcpuExitReason::Interrupted;
    e.kvm_reason = KVM_EXIT_INTR;
    return e;
  }
  if (res < 0) return fail_errno(-res, "KVM_RUN");
  e.kvm_reason = r->exit_reason;
  switch (r->exit_reason) {
    case KVM_EXIT_IO: {
      e.reason = VcpuExitReason::Io;
      e.port = r->io.port;
      e.size = r->io.size;
      e.is_write = r->io.direction == KVM_EXIT_IO_OUT;
      // SAFETY: data_offset points inside the kvm_run page (KVM's ABI); first access only.
      auto* data = reinterpret_cast<unsigned char*>(r) + r->io.data_offset;
      if (e.is_write) {
        std::memcpy(&e.data, data, std::min<size_t>(r->io.size, sizeof e.data));
      } else {
        std::memset(data, 0, r->io.size * r->io.count);
      }
      break;
    }
    case KVM_EXIT_MMIO:
      e.reason = VcpuExitReason::Mmio;
      e.phys_addr = r->mmio.phys_addr;
      e.size = r->mmio.len;
      e.is_write = r->mmio.is_write != 0;
      if (e.is_write) {
        std::memcpy(&e.data, r->mmio.data, std::min<size_t>(r->mmio.len, sizeof e.data));
      } else {
        std::memset(r->mmio.data, 0, sizeof r->mmio.data);
      }
      break;
    case KVM_EXIT_HLT: e.reason = VcpuExitReason::Hlt; break;
    case KVM_EXIT_SHUTDOWN: e.reason = VcpuExitReason::Shutdown; break;
    case KVM_EXIT_INTERNAL_ERROR:
      e.reason = VcpuExitReason::InternalError;
      e.suberror = r->internal.suberror;
      break;
    case KVM_EXIT_INTR: e.reason = VcpuExitReason::Interrupted; break;
    default: e.reason = VcpuExitReason::Other; break;
  }
  return e;
}

}  // namespace pepita::vmm
