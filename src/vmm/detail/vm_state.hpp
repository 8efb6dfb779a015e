#pragma once
// Private state of Vm and Snapshot, shared by vm.cpp (create/restore/capture), run.cpp (the run
// loop and host calls) and fault.cpp (fault decoding).

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <vector>

#include "detail/kvm_system.hpp"
#include "detail/layout.hpp"
#include "detail/sys.hpp"
#include "detail/virtio_bus.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {
namespace detail {

/// A vCPU beyond vCPU 0 (whose fd and kvm_run page are Vm::State's own, for the snapshot code).
struct Vcpu {
  UniqueFd fd;
  Mapping run_page;
  // SAFETY: run_page is this vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE bytes, page-aligned).
  kvm_run* run() const noexcept { return static_cast<kvm_run*>(run_page.data()); }
};

enum class EndRequest : uint8_t { None, Stopped, Cancelled };

/// What Vm::pause/resume/stop (other threads) and the vCPU threads of a run() share (vcpu.cpp).
/// Everything below `mu` is guarded by it.
struct RunControl {
  std::atomic<bool> attention{false};  // a request is pending: vCPU loops take `mu` and look
  std::mutex mu;
  std::condition_variable cv;
  bool pause_requested = false;
  EndRequest end_request = EndRequest::None;
  bool ended = true;   // no run in progress, or a vCPU ended this one (the others follow)
  uint32_t alive = 0;  // vCPU loops of this run that have not returned
  uint32_t parked = 0;
  std::vector<pthread_t> threads;  // kick targets: vCPU threads inside their loop
};

}  // namespace detail

struct Vm::State {
  const KvmSystem* kvm = nullptr;
  VmConfig config;
  detail::Layout layout;
  bool ran = false;
  bool clean_exit = false;           // the last run ended in kExit (reset_to allowed)
  std::span<const std::byte> input;  // valid during run() only
  // Vm::state() and Vm::exit_count(): written by run() and reset_to(), read from any thread.
  std::atomic<VmState> phase{VmState::Created};
  std::atomic<uint64_t> exits{0};  // sum of RunResult::exits
  // Teardown order is the reverse of declaration: kvm_run page, vCPU fd, VM fd, then guest RAM
  // (KVM drops its memslot reference when the VM fd closes, before the RAM is unmapped).
  memory::GuestMemory mem;
  std::unique_ptr<detail::VirtioBus> virtio;  // reads `mem`: destroyed before it; may be null
  UniqueFd vm_fd;
  UniqueFd vcpu_fd;
  Mapping run_page;
  std::vector<detail::Vcpu> secondary;  // vCPUs 1 .. vcpus-1
  detail::RunControl control;

  // SAFETY: run_page is the vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE bytes, page-aligned).
  kvm_run* run() const noexcept { return static_cast<kvm_run*>(run_page.data()); }
};

struct Snapshot::State {
  VmConfig config;
  detail::Layout layout;
  UniqueFd image;  // sealed memfd
  kvm_regs regs{};
  kvm_sregs sregs{};
  kvm_xcrs xcrs{};
  bool has_xsave = false;
  std::unique_ptr<sys::Xsave> xsave;
  kvm_fpu fpu{};
  std::vector<virtio::MmioState> devices;  // one per virtio-mmio slot (VirtioBus::save)
};

namespace detail {

/// How a run loop ended, before it becomes a RunResult (Peer: another vCPU ended the run).
enum class Stop { Exited, Ready, Fault, TimedOut, Cancelled, Stopped, Peer };

/// Runs the vCPU until exit, fault, timeout or (when stop_at_ready) the guest's kReady call.
/// Requesting stop on `cancel` kicks the vCPU out of KVM_RUN and ends the loop as Cancelled.
Result<Stop> run_loop(Vm::State& s, bool stop_at_ready, RunResult& result,
                      std::stop_token cancel = {});

/// Fills result.fault from vCPU `vcpu`'s registers (fd `vcpu_fd`) after an exit that ended the
/// guest.
Result<void> describe_fault(Vm::State& s, int vcpu_fd, uint32_t vcpu, std::string reason,
                            bool after_hlt, RunResult& result);

/// The host's limit on vCPUs per VM: KVM_CAP_MAX_VCPUS (KVM_CAP_NR_VCPUS, then 4, when the kernel
/// does not say), capped at guest_abi::kMaxVcpus.
uint32_t vcpu_limit(const KvmSystem& kvm);

}  // namespace detail
}  // namespace pepita::vmm
