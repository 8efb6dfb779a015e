#pragma once
// Private Vulkan state behind Device, Buffer and Kernel: the instance/device/queue owner shared by
// everything made from one Device, and the Vulkan-handle owners of Buffer and Kernel.

#include <vulkan/vulkan.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>

#include "pepita/error.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu::detail {

/// Error for a failed Vulkan call: out-of-memory -> ResourceExhausted, missing driver/feature ->
/// Unsupported, device lost -> Io, anything else -> Internal; message "<op>: VK_ERROR_...".
Error vk_error(VkResult result, std::string_view operation);

/// Packages to install when Vulkan is missing, for error messages.
inline constexpr std::string_view kInstallHint =
    "install the Vulkan loader and a driver: apt-get install libvulkan1 mesa-vulkan-drivers "
    "(lavapipe, a CPU device) or your GPU vendor's Vulkan driver";

/// Creates a VkInstance for compute (no layers, no extensions). Unsupported without a driver.
Result<VkInstance> create_instance();
DeviceInfo describe(VkPhysicalDevice phys, std::uint32_t index);

/// Timeline-semaphore entry points (Vulkan 1.2 core or VK_KHR_timeline_semaphore; the KHR
/// aliases have the same signatures), loaded per device; all null when unsupported.
struct TimelineFns {
  PFN_vkWaitSemaphores wait = nullptr;
  PFN_vkSignalSemaphore signal = nullptr;
  PFN_vkGetSemaphoreCounterValue value = nullptr;
  explicit operator bool() const noexcept { return wait && signal && value; }
};

/// Creates a timeline semaphore starting at `initial`.
Result<VkSemaphore> create_timeline(VkDevice device, std::uint64_t initial);

struct Context {
  // Teardown order is explicit in ~Context: queue timeline, command pool, then device, then
  // instance.
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice phys = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  std::uint32_t queue_family = 0;
  VkCommandPool pool = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory{};
  DeviceInfo info;
  bool force_staging = false;
  TimelineFns timeline_fns;
  // The queue's timeline: submission i signals value i (when timeline_fns is set), so a
  // submitter waits for its own value without holding `mu` and several submissions can be in
  // flight at once.
  VkSemaphore timeline = VK_NULL_HANDLE;
  std::uint64_t submitted = 0;                // guarded by mu
  std::atomic<std::uint64_t> fenced_done{0};  // completed submissions without a timeline
  std::atomic<std::uint64_t> dispatches{0};   // kernel launches run to completion (run())
  std::mutex mu;  // guards queue and pool (Vulkan requires external synchronization of both)

  Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();

  /// Index of a memory type allowed by `type_bits` having all `flags`; NotFound otherwise.
  Result<std::uint32_t> memory_type(std::uint32_t type_bits, VkMemoryPropertyFlags flags) const;

  /// Records a one-time command buffer with `record`, submits it, and waits for it: on the queue
  /// timeline when supported (the queue lock is released while waiting), else on a fence.
  Result<void> submit(const std::function<void(VkCommandBuffer)>& record);
};

/// A VkBuffer bound to its own VkDeviceMemory (mapped when host-visible).
struct RawBuffer {
  std::shared_ptr<Context> ctx;
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  void* mapped = nullptr;
  std::size_t size = 0;

  RawBuffer() = default;
  RawBuffer(const RawBuffer&) = delete;
  RawBuffer& operator=(const RawBuffer&) = delete;
  ~RawBuffer();

  static Result<std::unique_ptr<RawBuffer>> create(std::shared_ptr<Context> ctx, std::size_t bytes,
                                                   VkBufferUsageFlags usage,
                                                   VkMemoryPropertyFlags flags, bool map);
};

struct BufferImpl {
  std::unique_ptr<RawBuffer> raw;
  MemoryKind kind = MemoryKind::HostVisible;
  std::uint64_t id = 0;  // Buffer::id(): process-unique, from 1
};

struct KernelImpl {
  std::shared_ptr<Context> ctx;
  KernelLayout layout;
  VkShaderModule module = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;

  KernelImpl() = default;
  KernelImpl(const KernelImpl&) = delete;
  KernelImpl& operator=(const KernelImpl&) = delete;
  ~KernelImpl();
};

}  // namespace pepita::gpu::detail
