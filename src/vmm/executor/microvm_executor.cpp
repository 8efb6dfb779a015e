// MicroVmExecutor: task attempts in micro-VMs on the shared executor::BlockingRunner, with a
// per-image snapshot cache and one recycled VM per image per runner thread.
//
// Built as its own library (pepita_vmm_executor, src/vmm/executor/, see
// pepita_executor_adapter) so that pepita_vmm stays below the executor layer.
#include "pepita/vmm/microvm_executor.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {
namespace {

using executor::BlockingRunner;

// One guest image and, when it reached kReady, its snapshot. Shared by all workers.
struct CachedImage {
  GuestImage image;
  std::optional<Snapshot> snapshot;
};

}  // namespace

struct MicroVmExecutor::Impl {
  Options options;
  std::mutex cache_mu;
  std::map<std::string, std::shared_ptr<const CachedImage>> cache;
  // Per runner thread: its recycled VMs, by image path (only that thread touches its map).
  std::vector<std::map<std::string, Vm>> warm_by_thread;
  // Last: destroyed (its threads joined) before the VMs and images they use.
  std::unique_ptr<BlockingRunner> runner;

  Result<std::shared_ptr<const CachedImage>> image_for(const std::string& path) {
    {
      std::lock_guard lock(cache_mu);
      if (auto it = cache.find(path); it != cache.end()) return it->second;
    }
    // Loaded outside the lock; two workers racing on a new image both load it, one wins.
    auto entry = std::make_shared<CachedImage>();
    entry->image = PEPITA_TRY(GuestImage::load_file(path));
    if (options.snapshots) {
      VmConfig config;
      config.memory_bytes = options.memory_bytes;
      config.snapshottable = true;
      config.virtio_console = options.virtio_console;
      config.timeout = options.default_timeout;
      auto vm = PEPITA_TRY(Vm::create(entry->image, config));
      // A guest that never reaches kReady still runs, cold.
      if (auto snap = Vm::capture(std::move(vm))) entry->snapshot = std::move(*snap);
    }
    std::lock_guard lock(cache_mu);
    return cache.try_emplace(path, std::move(entry)).first->second;
  }

  executor::ExecutionResult run(const BlockingRunner::Attempt& job,
                                std::map<std::string, Vm>& warm) {
    executor::ExecutionResult out;
    out.id = job.task.id();
    out.name = job.task.name();
    const auto start = std::chrono::steady_clock::now();
    auto finish = [&](executor::Status status, std::string error) {
      out.status = status;
      out.error = std::move(error);
      out.wall = std::chrono::steady_clock::now() - start;
      return std::move(out);
    };
    if (job.stop.stop_requested()) return finish(executor::Status::Cancelled, "cancelled");
    const task::ProcessSpec& spec = *job.task.process();
    auto cached = image_for(spec.path);
    if (!cached) return finish(executor::Status::LaunchFailed, cached.error().to_string());
    const auto input = std::as_bytes(std::span(spec.stdin_data.data(), spec.stdin_data.size()));
    const auto timeout =
        job.task.timeout().count() > 0 ? job.task.timeout() : options.default_timeout;

    // A recycled VM when this worker has one for the image, else a restore, else a cold VM.
    std::optional<Vm> vm;
    if (const auto& snap = (*cached)->snapshot) {
      if (auto it = warm.find(spec.path); it != warm.end()) {
        if (it->second.reset_to(*snap)) vm = std::move(it->second);
        warm.erase(it);
      }
      if (!vm) {
        auto restored = Vm::restore(*snap);
        if (!restored) return finish(executor::Status::LaunchFailed, restored.error().to_string());
        vm = std::move(*restored);
      }
      vm->set_limits(timeout, job.task.output_cap());
    } else {
      VmConfig config;
      config.memory_bytes = options.memory_bytes;
      config.timeout = timeout;
      config.output_limit = job.task.output_cap();
      config.virtio_console = options.virtio_console;
      auto created = Vm::create((*cached)->image, config);
      if (!created) return finish(executor::Status::LaunchFailed, created.error().to_string());
      vm = std::move(*created);
    }
    auto r = vm->run(input, job.stop);
    if (!r) return finish(executor::Status::LaunchFailed, r.error().to_string());
    out.stdout_data = std::move(r->output);
    out.stdout_bytes = out.stdout_data.size();
    switch (r->kind) {
      case ExitKind::Exited:
        out.exit_code = r->exit_code;
        if ((*cached)->snapshot) warm.insert_or_assign(spec.path, std::move(*vm));
        return finish(r->exit_code == 0 ? executor::Status::Succeeded : executor::Status::Failed,
                      r->exit_code == 0 ? "" : "guest exited " + std::to_string(r->exit_code));
      case ExitKind::Fault: return finish(executor::Status::Failed, "guest " + r->describe());
      case ExitKind::TimedOut: return finish(executor::Status::TimedOut, "guest " + r->describe());
      case ExitKind::Cancelled:
      case ExitKind::Stopped: return finish(executor::Status::Cancelled, "cancelled");
    }
    return finish(executor::Status::Failed, "unknown VM outcome");
  }
};

MicroVmExecutor::MicroVmExecutor(Private, std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)) {}

MicroVmExecutor::~MicroVmExecutor() { shutdown(); }

Result<std::shared_ptr<MicroVmExecutor>> MicroVmExecutor::create(Options options) {
  PEPITA_TRY_VOID(kvm_available());
  if (options.slots == 0) options.slots = std::max(1u, std::thread::hardware_concurrency());
  if (options.memory_bytes < kMinMemory || options.memory_bytes > kMaxMemory)
    return fail(ErrorCode::InvalidArgument, "MicroVmExecutor memory_bytes must be 2 MiB .. 4 GiB");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->warm_by_thread.resize(options.slots);
  Impl* raw = impl.get();
  // The VM enforces the timeout itself (its watchdog reports TimedOut with the guest's state)
  // and stops on the token, so the runner neither keeps a deadline nor reports early.
  impl->runner =
      PEPITA_TRY(BlockingRunner::create({.threads = options.slots,
                                         .deadline = false,
                                         .report_early = false,
                                         .name = "micro-VM executor"},
                                        [raw](const BlockingRunner::Attempt& a) {
                                          return raw->run(a, raw->warm_by_thread[a.thread]);
                                        }));
  return std::make_shared<MicroVmExecutor>(Private{}, std::move(impl));
}

std::size_t MicroVmExecutor::slots() const noexcept { return impl_->options.slots; }

Result<void> MicroVmExecutor::start(const task::Task& task, std::stop_token stop,
                                    executor::Completion done) {
  if (task.backend() != task::Backend::MicroVm || task.process() == nullptr)
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() +
                    "' is not a micro-VM task: use Task::binary(guest.elf).backend(microvm)");
  return impl_->runner->submit(task, std::move(stop), std::move(done));
}

void MicroVmExecutor::shutdown() { impl_->runner->shutdown(); }

void MicroVmExecutor::abandon() noexcept { impl_->runner->abandon(); }

Result<void> register_microvm(executor::Registry& registry) {
  return registry.add(
      task::Backend::MicroVm,
      [](const executor::BackendOptions& o) -> Result<std::shared_ptr<executor::Executor>> {
        PEPITA_TRY_VOID(o.expect_only({"memory", "timeout", "snapshots", "virtio_console"}));
        MicroVmExecutor::Options options;
        options.slots = o.slots;
        options.memory_bytes = PEPITA_TRY(o.bytes_or("memory", options.memory_bytes));
        options.default_timeout = PEPITA_TRY(o.duration_or("timeout", options.default_timeout));
        options.snapshots = PEPITA_TRY(o.bool_or("snapshots", options.snapshots));
        options.virtio_console = PEPITA_TRY(o.bool_or("virtio_console", options.virtio_console));
        return PEPITA_TRY(MicroVmExecutor::create(options));
      },
      "static ELF guests in KVM micro-VMs");
}

}  // namespace pepita::vmm
