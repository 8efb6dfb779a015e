// Watchdog timer: SIGEV_THREAD_ID timer + a no-restart signal handler that kicks KVM_RUN.
#include "detail/watchdog.hpp"

#include <signal.h>
#include <unistd.h>

#include <mutex>
#include <utility>

#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/signal.hpp"

namespace pepita::vmm::detail {
namespace {

// The vCPU this thread is running, for the signal handler. initial-exec TLS is async-signal-safe.
__attribute__((tls_model("initial-exec"))) thread_local kvm_run* t_running = nullptr;

int watchdog_signal() { return SIGRTMIN + 6; }

void on_watchdog(int) {
  kvm_run* run = t_running;
  // SAFETY: kvm_run is the vCPU page mmap'ed by this thread's VM, alive while t_running is set;
  // KVM reads immediate_exit on the next KVM_RUN entry.
  if (run != nullptr) __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELAXED);
}

Result<void> install_handler() {
  static std::once_flag once;
  static int result = 0;
  std::call_once(once, [] {
    // flags 0, no SA_RESTART: KVM_RUN must return EINTR
    result = sys::install_handler(watchdog_signal(), on_watchdog, 0);
  });
  if (result != 0) return fail_errno(result, "sigaction for the VM watchdog signal");
  return {};
}

}  // namespace

Result<Watchdog> Watchdog::arm(kvm_run* run, std::chrono::nanoseconds timeout) {
  PEPITA_TRY_VOID(install_handler());
  // The signal must reach this thread even if the caller blocked it.
  (void)sys::unblock_signals({watchdog_signal()});

  Watchdog w;
  w.deadline_ = std::chrono::steady_clock::now() + timeout;
  sigevent sev{};
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = watchdog_signal();
  sev._sigev_un._tid = ::gettid();  // glibc 2.36 lacks the sigev_notify_thread_id name
  if (long r = sys::ret(::timer_create(CLOCK_MONOTONIC, &sev, &w.timer_)); r < 0)
    return fail_errno(static_cast<int>(r), "timer_create for the VM watchdog");
  w.armed_ = true;
  t_running = run;
  const auto ns = std::max<std::chrono::nanoseconds::rep>(timeout.count(), 1);
  itimerspec spec{};
  spec.it_value.tv_sec = ns / 1'000'000'000;
  spec.it_value.tv_nsec = ns % 1'000'000'000;
  spec.it_interval.tv_nsec = 1'000'000;  // keep kicking until the vCPU notices
  if (long r = sys::ret(::timer_settime(w.timer_, 0, &spec, nullptr)); r < 0)
    return fail_errno(static_cast<int>(r), "timer_settime for the VM watchdog");
  return w;
}

void Watchdog::postpone(std::chrono::nanoseconds by) noexcept {
  if (!armed_ || by.count() <= 0) return;
  deadline_ += by;
  const auto left =
      std::max<std::chrono::nanoseconds::rep>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  deadline_ - std::chrono::steady_clock::now())
                                                  .count(),
                                              1);
  itimerspec spec{};
  spec.it_value.tv_sec = left / 1'000'000'000;
  spec.it_value.tv_nsec = left % 1'000'000'000;
  spec.it_interval.tv_nsec = 1'000'000;
  ::timer_settime(timer_, 0, &spec, nullptr);  // cannot fail for a live timer and a valid spec
}

void kick(pthread_t thread) noexcept { ::pthread_kill(thread, watchdog_signal()); }

Watchdog::Watchdog(Watchdog&& other) noexcept
    : timer_(other.timer_),
      armed_(std::exchange(other.armed_, false)),
      deadline_(other.deadline_) {}

Watchdog::~Watchdog() {
  if (!armed_) return;
  ::timer_delete(timer_);
  t_running = nullptr;
}

}  // namespace pepita::vmm::detail
