// One vCPU's run loop (vcpu.cpp runs one per vCPU thread): host-call batches on the one port
// (each vCPU its own ring), guest faults decoded from the `hlt` stubs,
// shutdowns, emulation failures and the watchdog. Everything read from guest memory is copied once
// and validated before use.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "detail/run_shared.hpp"
#include "detail/sys.hpp"
#include "detail/vm_state.hpp"
#include "detail/watchdog.hpp"
#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm::detail {
namespace {

namespace ga = guest_abi;
using abi::PhysAddr;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* vector_name(int v) {
  static const char* const names[] = {"#DE divide error",
                                      "#DB debug",
                                      "NMI",
                                      "#BP breakpoint",
                                      "#OF overflow",
                                      "#BR bound range",
                                      "#UD invalid opcode",
                                      "#NM device not available",
                                      "#DF double fault",
                                      "coprocessor overrun",
                                      "#TS invalid TSS",
                                      "#NP segment not present",
                                      "#SS stack fault",
                                      "#GP general protection",
                                      "#PF page fault",
                                      "reserved",
                                      "#MF x87 error",
                                      "#AC alignment check",
                                      "#MC machine check",
                                      "#XM SIMD exception",
                                      "#VE virtualization",
                                      "#CP control protection"};
  if (v >= 0 && v < static_cast<int>(sizeof names / sizeof names[0])) return names[v];
  return "interrupt";
}

bool has_error_code(int v) {
  return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

enum class BatchEnd { Continue, Exited, Ready, Violation };

struct Batch {
  BatchEnd end = BatchEnd::Continue;
  int exit_code = -1;
  std::string violation;
};

int64_t do_write(Vm::State& s, const ga::Hostcall& c, RunResult& r) {
  const uint64_t fd = c.args[0], gpa = c.args[1], len = c.args[2];
  if (fd != 1 && fd != 2) return ga::kErrInval;
  if (!guest_may_access(s.layout, gpa, len, false)) return ga::kErrFault;
  const uint64_t room =
      s.config.output_limit - std::min<uint64_t>(r.output.size(), s.config.output_limit);
  if (len > room) return ga::kErrNoSpace;
  auto bytes = s.mem.span(PhysAddr(gpa), len);
  if (!bytes) return ga::kErrFault;
  // SAFETY: std::byte and char have the same size; only copied, never interpreted.
  r.output.append(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  return static_cast<int64_t>(len);
}

int64_t do_read_input(Vm::State& s, const ga::Hostcall& c) {
  const uint64_t offset = c.args[0], gpa = c.args[1], len = c.args[2];
  if (offset > s.input.size()) return ga::kErrInval;
  const uint64_t n = std::min<uint64_t>(len, s.input.size() - offset);
  if (!guest_may_access(s.layout, gpa, n, true)) return ga::kErrFault;
  if (!s.mem.write_bytes(PhysAddr(gpa), s.input.subspan(offset, n))) return ga::kErrFault;
  return static_cast<int64_t>(n);
}

// Serves the ring of the vCPU whose ring page is `ring` (each vCPU has its own).
Result<Batch> serve_batch(Vm::State& s, uint64_t ring, bool stop_at_ready, RunResult& r) {
  Batch batch;
  const uint32_t count = PEPITA_TRY(s.mem.read<uint32_t>(PhysAddr(ring)));
  if (count > ga::kHostcallCapacity) {
    batch.end = BatchEnd::Violation;
    batch.violation = "host-call batch of " + std::to_string(count) +
                      " entries exceeds the ring's " + std::to_string(ga::kHostcallCapacity);
    return batch;
  }
  for (uint32_t i = 0; i < count && batch.end == BatchEnd::Continue; ++i) {
    const uint64_t at = ring + sizeof(ga::HostcallRingHeader) + i * sizeof(ga::Hostcall);
    const auto call = PEPITA_TRY(s.mem.read<ga::Hostcall>(PhysAddr(at)));  // one copy: no TOCTOU
    int64_t res = 0;
    switch (call.op) {
      case ga::kNop: break;
      case ga::kWrite: res = do_write(s, call, r); break;
      case ga::kReadInput: res = do_read_input(s, call); break;
      case ga::kExit:
        batch.exit_code = static_cast<int>(call.args[0]);
        batch.end = BatchEnd::Exited;
        break;
      case ga::kReady:
        if (stop_at_ready) batch.end = BatchEnd::Ready;
        break;
      default: res = ga::kErrInval;
    }
    PEPITA_TRY_VOID(s.mem.write<int64_t>(PhysAddr(at + offsetof(ga::Hostcall, result)), res));
  }
  PEPITA_TRY_VOID(s.mem.write<uint32_t>(PhysAddr(ring), 0));
  return batch;
}

}  // namespace

Result<void> describe_fault(Vm::State& s, int vcpu, uint32_t index, std::string reason,
                            bool after_hlt, RunResult& result) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_GET_REGS after guest fault");
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS after guest fault");
  GuestFault f;
  f.vcpu = index;
  f.rip = regs.rip;
  f.rsp = regs.rsp;
  f.rflags = regs.rflags;
  f.cr2 = sregs.cr2;
  f.rax = regs.rax, f.rbx = regs.rbx, f.rcx = regs.rcx, f.rdx = regs.rdx;
  f.rsi = regs.rsi, f.rdi = regs.rdi, f.rbp = regs.rbp;
  f.r8 = regs.r8, f.r9 = regs.r9, f.r10 = regs.r10, f.r11 = regs.r11;
  f.r12 = regs.r12, f.r13 = regs.r13, f.r14 = regs.r14, f.r15 = regs.r15;
  // A CPL3 fault went through IDT gate v to the `hlt` at kFaultStubGpa + v: RIP names the vector
  // and RSP the CPU's exception frame [error code], rip, cs, rflags, rsp, ss (SDM 6.14.2).
  const uint64_t stub_off = regs.rip - ga::kFaultStubGpa - (after_hlt ? 1 : 0);
  if (regs.rip >= ga::kFaultStubGpa && stub_off < 256) {
    f.vector = static_cast<int>(stub_off);
    uint64_t frame = regs.rsp;
    if (has_error_code(f.vector)) {
      if (auto e = s.mem.read<uint64_t>(PhysAddr(frame))) f.error_code = *e;
      frame += 8;
    }
    if (auto v = s.mem.read<uint64_t>(PhysAddr(frame))) f.rip = *v;
    if (auto v = s.mem.read<uint64_t>(PhysAddr(frame + 16))) f.rflags = *v;
    if (auto v = s.mem.read<uint64_t>(PhysAddr(frame + 24))) f.rsp = *v;
    reason = std::string(vector_name(f.vector));
  }
  f.reason = std::move(reason);
  result.kind = ExitKind::Fault;
  result.fault = std::move(f);
  return {};
}

std::optional<Stop> vcpu_loop(RunShared& sh, const VcpuRef& v, Watchdog& watchdog) {
  Vm::State& s = sh.s;
  RunResult& r = sh.r;
  kvm_run* run = v.run;
  const uint64_t ring = ga::kHostcallGpa + v.index * ga::kHostcallStride;
  // Ends the run with `stop` unless another vCPU already did; `fault` then describes this vCPU.
  auto end_with = [&](Stop stop, std::optional<std::string> fault = {},
                      bool after_hlt = false) -> std::optional<Stop> {
    if (!claim_end(sh, stop)) return Stop::Peer;
    if (fault) {
      if (auto d = describe_fault(s, v.fd, v.index, std::move(*fault), after_hlt, r); !d)
        record_host_error(sh, std::move(d.error()));
    }
    return stop;
  };
  auto host_failed = [&](Error e) -> std::optional<Stop> {
    record_host_error(sh, std::move(e));
    return Stop::Fault;
  };
  for (;;) {
    if (auto stop = checkpoint(sh, watchdog)) return stop;
    int res = sys::ioctl(v.fd, KVM_RUN, 0);
    // SAFETY: kvm_run is shared with KVM, which is not running this vCPU now (KVM_RUN returned).
    if (res == -EINTR || (res == 0 && run->exit_reason == KVM_EXIT_INTR)) {
      __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
      continue;  // the checkpoint decides: pause, stop, cancel, timeout or a spurious kick
    }
    if (res == -EAGAIN) continue;
    if (res < 0) return host_failed(Error::from_errno(-res, "KVM_RUN"));
    sh.exits.fetch_add(1, std::memory_order_relaxed);
    switch (run->exit_reason) {
      case KVM_EXIT_IO: {
        const auto& io = run->io;
        if (io.port == ga::kHostcallPort && io.direction == KVM_EXIT_IO_OUT) {
          // One vCPU at a time writes the run's output and reaches the devices.
          std::unique_lock io_lock(sh.io_mu);
          auto batch = serve_batch(s, ring, sh.stop_at_ready, r);
          io_lock.unlock();
          if (!batch) return host_failed(std::move(batch.error()));
          if (batch->end == BatchEnd::Exited) {
            if (!claim_end(sh, Stop::Exited)) return Stop::Peer;
            r.exit_code = batch->exit_code;
            return Stop::Exited;
          }
          if (batch->end == BatchEnd::Ready) return end_with(Stop::Ready);
          if (batch->end == BatchEnd::Violation)
            return end_with(Stop::Fault, "host-call ABI violation: " + batch->violation);
          break;
        }
        return end_with(Stop::Fault,
                        std::string("port ") +
                            (io.direction == KVM_EXIT_IO_OUT ? "write to " : "read from ") +
                            hex(io.port) + " (only " + hex(ga::kHostcallPort) + " is served)");
      }
      case KVM_EXIT_HLT: return end_with(Stop::Fault, "vCPU halted", true);
      case KVM_EXIT_SHUTDOWN: return end_with(Stop::Fault, "triple fault (shutdown)");
      case KVM_EXIT_INTERNAL_ERROR:
        return end_with(Stop::Fault, "KVM internal error, suberror " +
                                         std::to_string(run->internal.suberror) +
                                         (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                              ? " (instruction emulation failed)"
                                              : ""));
      case KVM_EXIT_MMIO: {
        std::unique_lock io_lock(sh.io_mu);
        if (s.virtio && s.virtio->serve(run->mmio)) {
          // Console output joins the run's output in order with host-call writes.
          if (run->mmio.is_write) s.virtio->drain_console(r.output, s.config.output_limit);
          break;
        }
        io_lock.unlock();
        return end_with(Stop::Fault,
                        "access to unbacked guest-physical address " + hex(run->mmio.phys_addr));
      }
      case KVM_EXIT_FAIL_ENTRY:
        return end_with(Stop::Fault, "VM entry failed, hardware reason " +
                                         hex(run->fail_entry.hardware_entry_failure_reason));
      default:
        return end_with(Stop::Fault,
                        "unexpected KVM exit reason " + std::to_string(run->exit_reason));
    }
  }
}

}  // namespace pepita::vmm::detail
