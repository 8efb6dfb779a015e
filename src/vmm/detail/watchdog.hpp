#pragma once
// Watchdog: a per-thread POSIX timer that signals the vCPU thread at the deadline (and every
// millisecond after), so KVM_RUN returns EINTR. The handler also sets kvm_run.immediate_exit, which
// closes the race where the signal lands while the thread is between two KVM_RUN calls
// (the pattern QEMU's kvm_cpu_kick uses).

#include <linux/kvm.h>
#include <pthread.h>
#include <time.h>

#include <chrono>

#include "pepita/error.hpp"

namespace pepita::vmm::detail {

/// Sends the watchdog signal to `thread`: if it is in KVM_RUN under an armed Watchdog, KVM_RUN
/// returns EINTR promptly (used for cancellation).
void kick(pthread_t thread) noexcept;

class Watchdog {
 public:
  /// Arms a timer for the calling thread; `run` is the vCPU's shared kvm_run page.
  static Result<Watchdog> arm(kvm_run* run, std::chrono::nanoseconds timeout);
  Watchdog(Watchdog&& other) noexcept;
  Watchdog& operator=(Watchdog&&) = delete;
  ~Watchdog();

  bool expired() const noexcept { return std::chrono::steady_clock::now() >= deadline_; }
  /// Moves the deadline `by` later (time the vCPU spent paused does not count) and re-arms.
  void postpone(std::chrono::nanoseconds by) noexcept;

 private:
  Watchdog() = default;
  timer_t timer_{};
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace pepita::vmm::detail
