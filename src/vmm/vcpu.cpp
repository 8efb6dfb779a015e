// Several vCPUs and pause/resume/stop: vCPU 0 runs on run()'s thread and each other vCPU on a
// thread of its own (run.cpp's vcpu_loop in each). Other threads reach a run through
// Vm::State::control: they set a request, kick the vCPU threads out of KVM_RUN with the watchdog
// signal (whose handler sets kvm_run.immediate_exit, as Firecracker and crosvm do) and the vCPU
// threads act on it at their next checkpoint: park, stop or leave.
#include <algorithm>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "detail/run_shared.hpp"
#include "detail/sys.hpp"
#include "detail/vm_state.hpp"
#include "detail/watchdog.hpp"
#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm {
namespace detail {
namespace {

// Under control.mu.
void kick_all(RunControl& c) {
  for (pthread_t t : c.threads) kick(t);
}

// Under control.mu.
bool claim_end_locked(RunShared& sh, Stop stop) {
  RunControl& c = sh.s.control;
  if (c.ended) return false;
  c.ended = true;
  sh.end = stop;
  c.attention.store(true);
  kick_all(c);
  c.cv.notify_all();
  return true;
}

const char* state_name(VmState state) {
  switch (state) {
    case VmState::Created: return "Created (not running yet)";
    case VmState::Running: return "Running";
    case VmState::Paused: return "Paused";
    case VmState::Stopped: return "Stopped";
    case VmState::Error: return "Error";
  }
  return "?";
}

// One vCPU's thread body (vCPU 0's runs on run()'s own thread): arms its watchdog, registers as a
// kick target, loops, deregisters.
void vcpu_thread(RunShared& sh, VcpuRef v) {
  RunControl& c = sh.s.control;
  auto watchdog = Watchdog::arm(v.run, sh.s.config.timeout);
  if (!watchdog) {
    record_host_error(sh, std::move(watchdog.error()));
  } else {
    {
      std::lock_guard lock(c.mu);
      c.threads.push_back(::pthread_self());
    }
    vcpu_loop(sh, v, *watchdog);
  }
  std::lock_guard lock(c.mu);
  std::erase(c.threads, ::pthread_self());
  --c.alive;
  c.cv.notify_all();
}

}  // namespace

bool claim_end(RunShared& sh, Stop stop) {
  std::lock_guard lock(sh.s.control.mu);
  return claim_end_locked(sh, stop);
}

void record_host_error(RunShared& sh, Error error) {
  std::lock_guard lock(sh.s.control.mu);
  if (!sh.host_error) sh.host_error = std::move(error);
  claim_end_locked(sh, Stop::Fault);
}

std::optional<Stop> checkpoint(RunShared& sh, Watchdog& watchdog) {
  RunControl& c = sh.s.control;
  if (c.attention.load(std::memory_order_acquire)) {
    std::unique_lock lock(c.mu);
    for (;;) {
      if (c.ended) return Stop::Peer;
      if (c.end_request != EndRequest::None) {
        const Stop stop = c.end_request == EndRequest::Stopped ? Stop::Stopped : Stop::Cancelled;
        claim_end_locked(sh, stop);
        return stop;
      }
      if (!c.pause_requested) break;
      ++c.parked;
      c.cv.notify_all();
      const auto parked_at = std::chrono::steady_clock::now();
      c.cv.wait(lock,
                [&] { return !c.pause_requested || c.end_request != EndRequest::None || c.ended; });
      --c.parked;
      watchdog.postpone(std::chrono::steady_clock::now() - parked_at);
    }
  }
  if (watchdog.expired()) return claim_end(sh, Stop::TimedOut) ? Stop::TimedOut : Stop::Peer;
  return std::nullopt;
}

uint32_t vcpu_limit(const KvmSystem& kvm) {
  int limit = sys::ioctl(kvm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  if (limit <= 0) limit = sys::ioctl(kvm.fd(), KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
  if (limit <= 0) limit = 4;  // the KVM API's documented default
  return std::min<uint32_t>(static_cast<uint32_t>(limit), guest_abi::kMaxVcpus);
}

Result<Stop> run_loop(Vm::State& s, bool stop_at_ready, RunResult& r, std::stop_token cancel) {
  const auto start = std::chrono::steady_clock::now();
  RunControl& c = s.control;
  RunShared sh{.s = s, .stop_at_ready = stop_at_ready, .r = r};
  const auto vcpus = static_cast<uint32_t>(1 + s.secondary.size());
  r.vcpus = vcpus;
  {
    std::lock_guard lock(c.mu);
    c.ended = false;
    c.alive = vcpus;
    c.parked = 0;
    // pause()/stop() see Running only once the vCPU threads can answer them.
    if (!stop_at_ready) s.phase.store(VmState::Running, std::memory_order_release);
  }
  std::stop_callback on_cancel(cancel, [&c] {
    std::lock_guard lock(c.mu);
    if (c.end_request == EndRequest::None) c.end_request = EndRequest::Cancelled;
    c.attention.store(true);
    kick_all(c);
    c.cv.notify_all();
  });
  {
    std::vector<std::jthread> threads;
    threads.reserve(s.secondary.size());
    for (uint32_t i = 1; i < vcpus; ++i) {
      const VcpuRef v{i, s.secondary[i - 1].fd.get(), s.secondary[i - 1].run()};
      try {
        threads.emplace_back([&sh, v] { vcpu_thread(sh, v); });
      } catch (const std::system_error& e) {
        record_host_error(sh, Error::from_errno(e.code().value(), "starting the thread of vCPU " +
                                                                      std::to_string(i)));
        std::lock_guard lock(c.mu);
        c.alive -= vcpus - i;  // these never start
        break;
      }
    }
    vcpu_thread(sh, VcpuRef{0, s.vcpu_fd.get(), s.run()});
  }  // joins the other vCPUs: the run has ended, so each leaves its loop
  std::optional<Stop> end;
  std::optional<Error> host_error;
  {
    std::lock_guard lock(c.mu);
    end = sh.end;
    host_error = std::move(sh.host_error);
    c.pause_requested = false;
    c.end_request = EndRequest::None;
    c.attention.store(false);
    c.cv.notify_all();
  }
  r.exits = sh.exits.load();
  r.elapsed = std::chrono::steady_clock::now() - start;
  if (host_error) return std::unexpected(std::move(*host_error));
  const Stop stop = end.value_or(Stop::Fault);
  switch (stop) {
    case Stop::Exited: r.kind = ExitKind::Exited; break;
    case Stop::TimedOut: r.kind = ExitKind::TimedOut; break;
    case Stop::Cancelled: r.kind = ExitKind::Cancelled; break;
    case Stop::Stopped: r.kind = ExitKind::Stopped; break;
    case Stop::Ready:
    case Stop::Fault:
    case Stop::Peer: break;
  }
  return stop;
}

}  // namespace detail

Result<void> Vm::pause() {
  detail::RunControl& c = state_->control;
  std::unique_lock lock(c.mu);
  const VmState now = state_->phase.load(std::memory_order_acquire);
  if (now != VmState::Running)
    return fail(ErrorCode::InvalidArgument,
                std::string("pause needs a running VM; this one is ") + detail::state_name(now));
  c.pause_requested = true;
  c.attention.store(true);
  detail::kick_all(c);
  c.cv.wait(lock, [&] { return c.ended || c.parked == c.alive || !c.pause_requested; });
  if (c.ended)
    return fail(ErrorCode::InvalidArgument,
                "the run ended before the VM paused; see run()'s result");
  if (!c.pause_requested) return {};  // another thread resumed it meanwhile
  state_->phase.store(VmState::Paused, std::memory_order_release);
  return {};
}

Result<void> Vm::resume() {
  detail::RunControl& c = state_->control;
  std::lock_guard lock(c.mu);
  const VmState now = state_->phase.load(std::memory_order_acquire);
  if (now != VmState::Paused || c.ended)
    return fail(ErrorCode::InvalidArgument,
                std::string("resume needs a paused VM; this one is ") + detail::state_name(now));
  c.pause_requested = false;
  state_->phase.store(VmState::Running, std::memory_order_release);
  c.cv.notify_all();
  return {};
}

Result<void> Vm::stop() {
  detail::RunControl& c = state_->control;
  std::unique_lock lock(c.mu);
  const VmState now = state_->phase.load(std::memory_order_acquire);
  if (!is_active(now) || c.ended)
    return fail(
        ErrorCode::InvalidArgument,
        std::string("stop needs a running or paused VM; this one is ") + detail::state_name(now));
  if (c.end_request == detail::EndRequest::None) c.end_request = detail::EndRequest::Stopped;
  c.attention.store(true);
  detail::kick_all(c);
  c.cv.notify_all();
  // Returns once no vCPU runs guest code any more; run() then returns ExitKind::Stopped (unless
  // the guest ended first).
  c.cv.wait(lock, [&] { return c.ended && c.alive == 0; });
  return {};
}

}  // namespace pepita::vmm
