#pragma once
// Timeline semaphore: a 64-bit counter shared by host and device that only increases, signalled
// and waited on by value (Vulkan 1.2 spec, "Semaphores", timeline type; VK_KHR_timeline_semaphore
// on 1.1 devices). Device's own queue signals one such timeline per submission.
//
//   auto sem = PEPITA_TRY(pepita::gpu::TimelineSemaphore::create(dev));
//   std::jthread producer([&] { (void)sem.signal(1); });
//   bool reached = PEPITA_TRY(sem.wait(1, std::chrono::seconds(1)));  // false on timeout

#include <chrono>
#include <cstdint>
#include <memory>

#include "pepita/error.hpp"
#include "pepita/gpu/device.hpp"

namespace pepita::gpu {

/// A timeline semaphore on one device. Move-only; keeps the device alive. Thread-safe: any
/// number of threads may wait while another signals.
class TimelineSemaphore {
 public:
  /// Creates one whose counter starts at `initial`. Errors: Unsupported when the device lacks
  /// timeline semaphores (DeviceInfo::timeline_semaphores), ResourceExhausted on out-of-memory.
  [[nodiscard]] static Result<TimelineSemaphore> create(Device& device, std::uint64_t initial = 0);

  TimelineSemaphore(TimelineSemaphore&&) noexcept;
  TimelineSemaphore& operator=(TimelineSemaphore&&) noexcept;
  ~TimelineSemaphore();

  /// The counter now. Errors: Io when the device is lost.
  [[nodiscard]] Result<std::uint64_t> value() const;

  /// Sets the counter to `value` from the host, releasing waiters for values <= it.
  /// Errors: InvalidArgument when `value` is not greater than the current value (a timeline
  /// never goes back; Vulkan leaves that undefined, so it is checked here).
  [[nodiscard]] Result<void> signal(std::uint64_t value);

  /// Blocks until the counter reaches `value` or `timeout` passes: true when reached, false on
  /// timeout (a zero timeout polls). Errors: Io when the device is lost.
  [[nodiscard]] Result<bool> wait(std::uint64_t value, std::chrono::nanoseconds timeout) const;

 private:
  struct Impl;
  explicit TimelineSemaphore(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::gpu
