// TimelineSemaphore: a VkSemaphore of type TIMELINE with host-side signal, wait and query
// (Vulkan 1.2 spec, "Semaphores" and "Semaphore Signaling/Waiting").

#include "pepita/gpu/timeline.hpp"

#include <mutex>
#include <string>
#include <utility>

#include "detail/context.hpp"

namespace pepita::gpu {

struct TimelineSemaphore::Impl {
  std::shared_ptr<detail::Context> ctx;
  VkSemaphore sem = VK_NULL_HANDLE;
  // Serializes host signals so that the "must increase" check and the signal are atomic.
  std::mutex signal_mu;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (sem != VK_NULL_HANDLE) vkDestroySemaphore(ctx->device, sem, nullptr);
  }
};

TimelineSemaphore::TimelineSemaphore(std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)) {}
TimelineSemaphore::TimelineSemaphore(TimelineSemaphore&&) noexcept = default;
TimelineSemaphore& TimelineSemaphore::operator=(TimelineSemaphore&&) noexcept = default;
TimelineSemaphore::~TimelineSemaphore() = default;

Result<TimelineSemaphore> TimelineSemaphore::create(Device& device, std::uint64_t initial) {
  const std::shared_ptr<detail::Context>& ctx = device.ctx_;
  if (!ctx->timeline_fns)
    return fail(ErrorCode::Unsupported,
                "gpu: " + ctx->info.name +
                    " has no timeline semaphores (needs Vulkan 1.2 or VK_KHR_timeline_semaphore); "
                    "update the Vulkan driver");
  auto impl = std::make_unique<Impl>();
  impl->ctx = ctx;
  impl->sem = PEPITA_TRY(detail::create_timeline(ctx->device, initial));
  return TimelineSemaphore(std::move(impl));
}

Result<std::uint64_t> TimelineSemaphore::value() const {
  std::uint64_t v = 0;
  const detail::Context& c = *impl_->ctx;
  if (VkResult r = c.timeline_fns.value(c.device, impl_->sem, &v); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkGetSemaphoreCounterValue"));
  return v;
}

Result<void> TimelineSemaphore::signal(std::uint64_t value) {
  std::lock_guard lock(impl_->signal_mu);
  const std::uint64_t now = PEPITA_TRY(this->value());
  if (value <= now)
    return fail(ErrorCode::InvalidArgument,
                "gpu::TimelineSemaphore::signal(" + std::to_string(value) +
                    "): the counter is already " + std::to_string(now) + "; values must increase");
  VkSemaphoreSignalInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO;
  si.semaphore = impl_->sem;
  si.value = value;
  const detail::Context& c = *impl_->ctx;
  if (VkResult r = c.timeline_fns.signal(c.device, &si); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkSignalSemaphore"));
  return {};
}

Result<bool> TimelineSemaphore::wait(std::uint64_t value, std::chrono::nanoseconds timeout) const {
  VkSemaphoreWaitInfo wi{};
  wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
  wi.semaphoreCount = 1;
  wi.pSemaphores = &impl_->sem;
  wi.pValues = &value;
  const std::uint64_t ns = timeout.count() <= 0 ? 0 : static_cast<std::uint64_t>(timeout.count());
  const detail::Context& c = *impl_->ctx;
  VkResult r = c.timeline_fns.wait(c.device, &wi, ns);
  if (r == VK_SUCCESS) return true;
  if (r == VK_TIMEOUT) return false;
  return std::unexpected(detail::vk_error(r, "vkWaitSemaphores"));
}

}  // namespace pepita::gpu
