#pragma once
// Parker: a one-token binary semaphore on a futex (std::atomic::wait), as in Rust's
// thread::park. An unpark() that arrives before park() is remembered, so a waker that has seen a
// thread register as sleeping can never lose the wake-up.

#include <atomic>
#include <cstdint>

namespace pepita::scheduler::detail {

class Parker {
 public:
  /// Sleeps until unpark() (returns at once if a token is already there); consumes the token.
  void park() noexcept {
    std::uint32_t expected = kNotified;
    // acquire: everything the unparker wrote before unpark() is visible after we wake.
    if (state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire)) return;
    expected = kEmpty;
    if (!state_.compare_exchange_strong(expected, kParked, std::memory_order_acquire)) {
      state_.store(kEmpty, std::memory_order_relaxed);  // a token arrived meanwhile: consume it
      return;
    }
    for (;;) {
      state_.wait(kParked, std::memory_order_acquire);
      expected = kNotified;
      if (state_.compare_exchange_strong(expected, kEmpty, std::memory_order_acquire)) return;
    }
  }

  /// Leaves a token and wakes the thread if it sleeps. Any thread; idempotent until consumed.
  void unpark() noexcept {
    // release: pairs with park()'s acquire.
    if (state_.exchange(kNotified, std::memory_order_release) == kParked) state_.notify_one();
  }

 private:
  static constexpr std::uint32_t kEmpty = 0;
  static constexpr std::uint32_t kParked = 1;
  static constexpr std::uint32_t kNotified = 2;
  std::atomic<std::uint32_t> state_{kEmpty};
};

}  // namespace pepita::scheduler::detail
