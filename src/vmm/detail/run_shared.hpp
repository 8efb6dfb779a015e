#pragma once
// What the vCPU threads of one Vm::run() share (vcpu.cpp starts them, run.cpp's vcpu_loop is each
// one's loop): the result, the lock over output and devices, and how the run ended.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>

#include "detail/vm_state.hpp"
#include "detail/watchdog.hpp"

namespace pepita::vmm::detail {

struct RunShared {
  Vm::State& s;
  bool stop_at_ready;
  RunResult& r;  // output under io_mu; exit_code and fault only by the vCPU that claimed the end
  std::mutex io_mu{};  // host-call batches and virtio-mmio accesses: one vCPU at a time
  std::atomic<uint64_t> exits{0};
  // Under s.control.mu:
  std::optional<Stop> end{};          // set once, by the vCPU whose exit ended the run
  std::optional<Error> host_error{};  // an ioctl failed: run() returns it
};

struct VcpuRef {
  uint32_t index;
  int fd;
  kvm_run* run;
};

/// Ends the run with `stop` if no vCPU has yet: kicks the other vCPUs out of KVM_RUN and wakes
/// parked ones. False when another vCPU ended it first.
bool claim_end(RunShared& sh, Stop stop);
/// Records a host failure (the first one wins) and ends the run.
void record_host_error(RunShared& sh, Error error);
/// Called before each KVM_RUN: parks the vCPU while the VM is paused (postponing `watchdog` by the
/// paused time) and returns how this vCPU's loop ends when the run is over (Stop::Peer: another
/// vCPU ended it), stopped, cancelled or timed out; nullopt to keep running.
std::optional<Stop> checkpoint(RunShared& sh, Watchdog& watchdog);
/// Runs vCPU `v` until the run ends; returns how (Stop::Peer when another vCPU ended it).
std::optional<Stop> vcpu_loop(RunShared& sh, const VcpuRef& v, Watchdog& watchdog);

}  // namespace pepita::vmm::detail
