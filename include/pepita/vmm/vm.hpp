#pragma once
// Kernel-less micro-VMs on KVM: vCPUs that start directly in 64-bit CPL3 and run a freestanding
// guest (the Hyperlight / Solo5-hvt model), with batched host calls (guest_abi.hpp), a watchdog,
// per-VM memory limits, fault reports with registers, copy-on-write snapshots, virtio-mmio
// devices (console, blk) that the guest drives by polling, several vCPUs (one thread each) and
// pause/resume/stop from another thread (guest/README.md).
//
//   auto image = PEPITA_TRY(vmm::GuestImage::load_file("hello.elf"));
//   auto vm = PEPITA_TRY(vmm::Vm::create(image, {.memory_bytes = 16 << 20}));
//   vmm::RunResult r = PEPITA_TRY(vm.run(input_bytes));
//   if (r.kind == vmm::ExitKind::Exited) std::cout << r.output << "exit " << r.exit_code;
//   else std::cerr << r.describe();   // fault with registers, or timeout
//   // With devices: {.virtio_console = true, .virtio_blk = disk, .vsock_path = "/run/v.sock"};
//   // r.virtio reports them. Devices the guest set up before kReady survive a snapshot:
//   //   auto vm2 = PEPITA_TRY(vmm::Vm::restore(snap, {.virtio_console = true, .virtio_blk =
//   disk2}));
//   // With {.vcpus = 2}, another thread may vm.pause(), vm.resume() and
//   // vm.stop() while run() runs.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/vmm/elf_image.hpp"

namespace pepita::blk_mq {
class BlockDevice;
}

namespace pepita::vmm {

inline constexpr uint64_t kMinMemory = 2ull << 20;
inline constexpr uint64_t kMaxMemory = 4ull << 30;

class VmConfigBuilder;  // config_builder.hpp

struct VmConfig {
  /// The crate's VmConfig::builder(): validated setters (include pepita/vmm/config_builder.hpp).
  static VmConfigBuilder builder();

  /// Guest RAM, the VM's hard memory limit: the guest cannot reach a byte more. 2 MiB .. 4 GiB,
  /// page multiple. Host pages are committed only when touched.
  uint64_t memory_bytes = 16ull << 20;
  /// Read-only input window; 0 picks a quarter of memory. Inputs larger than this are refused.
  uint64_t input_capacity = 0;
  /// Each vCPU's stack (vCPU 0's is the highest; each has a guard page under it).
  uint64_t stack_bytes = 256ull << 10;
  /// vCPUs, one host thread each (the crate's VmConfig::vcpus): 1 .. the host's KVM limit
  /// (KVM_CAP_MAX_VCPUS) and guest_abi::kMaxVcpus. vCPU 0 runs guest_main; the guest runtime's
  /// run_on_all_vcpus() puts work on the others (guest/README.md). Not with snapshottable.
  uint32_t vcpus = 1;
  /// Wall-clock limit for one run(); a watchdog timer stops the vCPU when it passes.
  std::chrono::nanoseconds timeout = std::chrono::seconds(1);
  /// Bytes of stdout+stderr kept; writes past it fail in the guest with -ENOSPC.
  uint64_t output_limit = 1ull << 20;
  /// Back RAM with a sealable memfd so the VM can become a Snapshot.
  bool snapshottable = false;

  // virtio-mmio devices (guest_abi::kVirtioMmioGpa; console, then blk, then vsock). A VM with
  // devices can be a Snapshot: the devices' state (registers, negotiated features, queues, the
  // console's waiting receive buffers) is part of it; see Vm::capture.
  /// A virtio-console: what the guest sends on its transmitq joins RunResult.output (same
  /// output_limit, in order with host-call writes); run()'s input is fed to its receiveq.
  bool virtio_console = false;
  /// A virtio-blk device over this disk, shared with the caller (who may read what the guest
  /// wrote after the run). Each VM serves it from its vCPU thread with hardware queue 0.
  std::shared_ptr<blk_mq::BlockDevice> virtio_blk;
  /// A virtio-vsock device (virtio 1.2 5.10) with Firecracker's host side: host processes connect
  /// to this Unix socket and write "CONNECT <port>\n"; guest connections to host port P reach
  /// `vsock_path + "_" + P`. Empty: no vsock. The listener lives as long as the Vm.
  std::string vsock_path;
  /// The guest's context id (config space guest_cid): 3 .. 2^32-2.
  uint64_t vsock_cid = 3;

  // Linux guests (the reference crate's kernel_path/cmdline/initrd): used by vmm::boot_linux
  // (linux_boot.hpp), not by Vm::create, which runs freestanding CPL3 guests.
  /// A bzImage or an uncompressed ELF vmlinux.
  std::string kernel_path;
  /// The kernel command line, e.g. "earlyprintk=serial console=ttyS0".
  std::string cmdline;
  /// An initramfs to load (empty: none).
  std::string initrd;
};

enum class ExitKind : uint8_t {
  Exited,     // the guest called exit; exit_code is set
  Fault,      // CPU exception, triple fault, emulation failure or ABI violation; see fault
  TimedOut,   // the watchdog stopped it
  Cancelled,  // the caller's stop token was signalled
  Stopped,    // Vm::stop() ended it from another thread
};

/// Where and how a guest died. vector is the x86 exception (14 = #PF, 13 = #GP, 6 = #UD) or -1
/// when the VM stopped without one (shutdown, bad port, emulation failure).
struct GuestFault {
  std::string reason;
  uint32_t vcpu = 0;  // the vCPU that faulted (registers below are its own)
  int vector = -1;
  uint64_t error_code = 0;
  uint64_t rip = 0, rsp = 0, rflags = 0, cr2 = 0;
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
};

/// State of one virtio-mmio device after a run: what the guest did to it.
struct VirtioReport {
  uint32_t device_id = 0;     // abi::virtio::ID_*
  uint8_t status = 0;         // device status; STATUS_NEEDS_RESET when the guest broke a queue
  uint64_t mmio_exits = 0;    // register accesses (each one a VM exit)
  uint64_t notifies = 0;      // QueueNotify writes served
  uint64_t bad_accesses = 0;  // ignored register accesses (bad offset, width or state)
  std::string last_error;     // why the last access was refused or the device needs reset
};

struct RunResult {
  ExitKind kind = ExitKind::Fault;
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved, as written
  std::optional<GuestFault> fault;
  uint64_t exits = 0;  // VM exits taken by all vCPUs (host-call batches + faults)
  uint32_t vcpus = 1;  // vCPUs the run had; describe() names the faulting one when more than 1
  std::chrono::nanoseconds elapsed{0};
  std::vector<VirtioReport> virtio;  // one per configured virtio-mmio device, in slot order
  /// One line for logs: "exited 0", "timed out after 1s", "fault #PF at rip=... cr2=...".
  std::string describe() const;
};

/// Where a Vm is in its life (the reference crate's VmState). A Vm runs once on the calling
/// thread: Created until run(), Running during it (seen from other threads), Paused between
/// pause() and resume(), then Stopped when the guest exited, stop() or run()'s stop token ended it,
/// Error when it faulted, timed out or the host failed. Paused is also the state of a Snapshot
/// (Vm::capture); Vm::restore or reset_to gives a Created Vm again.
enum class VmState : uint8_t { Created, Running, Paused, Stopped, Error };
constexpr bool can_start(VmState state) noexcept {
  return state == VmState::Created || state == VmState::Paused;
}
constexpr bool is_active(VmState state) noexcept {
  return state == VmState::Running || state == VmState::Paused;
}

class Snapshot;

/// One micro-VM with VmConfig::vcpus vCPUs: vCPU 0 runs on the thread that calls run(), each other
/// vCPU on a thread of its own for the length of run(). Move-only; destruction closes the vCPUs,
/// then the VM, then unmaps guest RAM.
class Vm {
 public:
  /// Opens /dev/kvm (once per process), creates the VM, loads `image` with W^X page tables and
  /// places the vCPU at the entry in CPL3. Unsupported when /dev/kvm is missing or not usable.
  static Result<Vm> create(const GuestImage& image, const VmConfig& config);
  /// A new VM whose memory is a copy-on-write view of the snapshot and whose registers are the
  /// snapshot's: it resumes right after the guest's kReady call. Its virtio devices are new
  /// host-side objects loaded with the snapshot's device state (the guest's queues stay set up),
  /// serving the snapshot config's disk and vsock path.
  static Result<Vm> restore(const Snapshot& snapshot);
  /// As restore(snapshot), with the devices and limits of `config`: its virtio_blk disk (the
  /// caller's; each restored VM may get its own), vsock_path, timeout and output_limit; the rest
  /// (memory, input window, stack) is the snapshot's. InvalidArgument, naming the difference, when
  /// `config` asks for other devices than the snapshot has (console, blk, vsock and its CID) or a
  /// disk of another size.
  static Result<Vm> restore(const Snapshot& snapshot, const VmConfig& config);

  /// Recycles this VM (made by restore from a snapshot of the same memory size, whose last run
  /// exited cleanly) back to `snapshot`: guest RAM is re-mapped copy-on-write in place (dropping
  /// every page the last run wrote) and the registers reloaded, skipping VM and vCPU creation.
  /// InvalidArgument after a fault or timeout (restore a fresh VM then) or for another memory size.
  /// The VM keeps its own devices' backends (disk, vsock path) and gets new device objects loaded
  /// with the snapshot's device state, as restore(snapshot, its config) would.
  Result<void> reset_to(const Snapshot& snapshot);

  Vm(Vm&&) noexcept;
  Vm& operator=(Vm&&) noexcept;
  ~Vm();

  /// Copies `input` into the input window and runs until the guest exits, faults or times out.
  /// A guest's misbehaviour is a RunResult (kind Fault/TimedOut), never an Error; Errors mean the
  /// host failed (ioctl, oversized input). A VM runs once: a second run() is InvalidArgument.
  /// Requesting stop on `stop` ends the run as ExitKind::Cancelled within about a millisecond.
  Result<RunResult> run(std::span<const std::byte> input, std::stop_token stop = {});

  /// Pause, resume and stop a run() in progress from another thread (the crate's MicroVm). pause()
  /// kicks every vCPU out of KVM_RUN, parks it and returns once all are parked: state() is then
  /// Paused and no guest instruction runs until resume(), which continues each vCPU where it was
  /// (paused time does not count against the timeout). stop() ends the run (also a paused one):
  /// run() returns ExitKind::Stopped and state() is Stopped. A call in the wrong state (pause()
  /// when not Running, resume() when not Paused, stop() when neither) is InvalidArgument naming
  /// the state; the VM is not touched then.
  Result<void> pause();
  Result<void> resume();
  Result<void> stop();

  /// Runs a snapshottable VM (created with snapshottable = true) until the guest's kReady call
  /// and turns it into a Snapshot. A guest that exits or faults before kReady is an error that
  /// carries the guest's description. Devices the guest set up before kReady are captured with
  /// it and must be quiescent then: Busy when a queue holds a request the guest made available
  /// without a notify, when a virtio-vsock has open connections (a snapshot cannot carry host
  /// sockets), Protocol when a device needs a reset. Console output written before kReady
  /// belonged to the capture and is dropped; a disk write before kReady reached the capture's
  /// disk only (restored VMs serve their own config's disk).
  static Result<Snapshot> capture(Vm vm);

  /// Changes the next run's wall-clock limit and output limit (a restored VM inherits the
  /// snapshot's otherwise).
  void set_limits(std::chrono::nanoseconds timeout, uint64_t output_limit) noexcept;

  const memory::GuestMemory& memory() const noexcept;

  /// The crate's MicroVm::state(); safe to call from any thread, also while run() runs.
  VmState state() const noexcept;
  /// VM exits taken by every run of this Vm so far (the sum of RunResult::exits), the crate's
  /// MicroVm::exit_count(); any thread.
  uint64_t exit_count() const noexcept;
  /// The crate's MicroVm::vcpu_count(): the VM's vCPUs (VmConfig::vcpus), each a KVM vCPU fd.
  uint32_t vcpu_count() const noexcept;

  struct State;  // private to src/vmm
  explicit Vm(std::unique_ptr<State> state);

 private:
  std::unique_ptr<State> state_;
};

/// Memory image (sealed memfd), vCPU registers and virtio device state of a VM stopped at its
/// kReady call. Immutable and shareable across threads; each restore maps it copy-on-write and
/// gets its own device objects loaded from it.
class Snapshot {
 public:
  Snapshot(Snapshot&&) noexcept;
  Snapshot& operator=(Snapshot&&) noexcept;
  ~Snapshot();
  const VmConfig& config() const noexcept;

  struct State;  // private to src/vmm
  explicit Snapshot(std::unique_ptr<State> state);

 private:
  friend class Vm;
  std::unique_ptr<State> state_;
};

/// True when /dev/kvm can create VMs here; otherwise the reason (for test skips and the CLI).
Result<void> kvm_available();

/// The most vCPUs one VM may have here: the host's KVM_CAP_MAX_VCPUS, at most guest_abi::kMaxVcpus.
/// (KVM_CAP_NR_VCPUS, the host CPUs KVM recommends, may be fewer: more vCPUs then share them.)
Result<uint32_t> max_vcpus();

/// Convenience: load, create, run once.
Result<RunResult> run_guest(const GuestImage& image, std::span<const std::byte> input,
                            const VmConfig& config);

}  // namespace pepita::vmm
