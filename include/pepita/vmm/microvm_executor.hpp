#pragma once
// MicroVmExecutor: the pool's "microvm" backend (library pepita_vmm_executor). A task names a guest
// ELF (Task::binary(path) .backend(Backend::MicroVm)) and its input (stdin bytes); each attempt
// runs in a micro-VM with the executor's memory limit and the task's timeout, from a per-image
// snapshot recycled per worker when possible (Hyperlight's sandbox reuse), so a task skips VM
// creation and guest setup.
//
//   auto vms = vmm::MicroVmExecutor::create({.memory_bytes = 16 << 20}).value();
//   auto pool = pool::Pool::builder().executor(vms).build().value();
//   pool.submit(Task::binary("build/guest/dot.elf").backend(Backend::MicroVm).stdin(bytes).build()...);

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "pepita/executor/executor.hpp"
#include "pepita/executor/registry.hpp"

namespace pepita::vmm {

class MicroVmExecutor final : public executor::Executor {
 public:
  struct Options {
    /// vCPU threads, each running one VM at a time; 0 means one per online CPU.
    std::size_t slots = 0;
    /// Guest RAM per VM: the VM's hard memory limit.
    uint64_t memory_bytes = 16ull << 20;
    /// Used when a task sets no timeout: a guest never runs unbounded.
    std::chrono::nanoseconds default_timeout = std::chrono::seconds(10);
    /// Capture each image once at its kReady point and start tasks from that snapshot.
    bool snapshots = true;
    /// Give each VM a virtio-console (VmConfig::virtio_console): the task's stdin is fed to its
    /// receiveq and what the guest transmits joins stdout_data. With `snapshots`, the console's
    /// state at kReady is part of the image's snapshot (a guest may set it up in guest_init).
    bool virtio_console = false;
  };

  /// Starts the worker threads. Unsupported when KVM is unavailable here.
  static Result<std::shared_ptr<MicroVmExecutor>> create(Options options);
  ~MicroVmExecutor() override;

  executor::Backend backend() const noexcept override { return executor::Backend::MicroVm; }
  std::size_t slots() const noexcept override;
  /// Queues one attempt. The task's stdin is the guest's input, its timeout the VM's (the
  /// executor default when 0), its output cap the guest's output limit; args, env and cwd do not
  /// apply to a guest. Status: exit 0 Succeeded, other exits Failed, guest faults Failed with the
  /// fault and its registers in `error`, watchdog TimedOut, stop token Cancelled, an image that
  /// cannot be loaded LaunchFailed. Guest output (stdout and stderr, interleaved) is stdout_data.
  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override;
  /// Runs what is queued, then joins the runner threads.
  void shutdown() override;
  /// Stops every VM in flight (their vCPUs see the stop token); does not block.
  void abandon() noexcept override;

  struct Impl;
  struct Private {
    explicit Private() = default;
  };
  /// Use create(); public only so std::make_shared can reach it.
  MicroVmExecutor(Private, std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Registers "microvm" (slots = vCPU threads; settings: memory=16M, timeout=10s, snapshots=true,
/// virtio_console=false — the Options above). AlreadyExists when taken.
Result<void> register_microvm(executor::Registry& registry);

}  // namespace pepita::vmm
