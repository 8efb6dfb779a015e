// Device: instance creation, physical-device enumeration and choice, logical device with one
// compute queue, and batched dispatch (Vulkan 1.1 spec, "Devices and Queues", "Dispatching
// Commands", "Synchronization and Cache Control" for the barriers).

#include "pepita/gpu/device.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "detail/context.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu {
namespace detail {
namespace {

std::string_view result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
    default: return "VK_ERROR_UNKNOWN";
  }
}

DeviceType to_type(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceType::Discrete;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceType::Integrated;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return DeviceType::Virtual;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceType::Cpu;
    default: return DeviceType::Other;
  }
}

int preference(DeviceType t) {
  switch (t) {
    case DeviceType::Discrete: return 4;
    case DeviceType::Integrated: return 3;
    case DeviceType::Virtual: return 2;
    case DeviceType::Cpu: return 1;
    case DeviceType::Other: break;
  }
  return 0;
}

std::optional<std::uint32_t> compute_family(VkPhysicalDevice phys) {
  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, nullptr);
  std::vector<VkQueueFamilyProperties> fams(n);
  vkGetPhysicalDeviceQueueFamilyProperties(phys, &n, fams.data());
  // A compute-only family (async compute on discrete GPUs) first, else any with compute.
  for (std::uint32_t i = 0; i < n; ++i)
    if ((fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
        !(fams[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
      return i;
  for (std::uint32_t i = 0; i < n; ++i)
    if (fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return i;
  return std::nullopt;
}

// How a device offers timeline semaphores: core (Vulkan 1.2+), through VK_KHR_timeline_semaphore
// on a 1.1 device, or not at all; in every case the feature bit must be set.
enum class TimelineSupport { None, Core, Khr };

TimelineSupport timeline_support(VkPhysicalDevice phys) {
  VkPhysicalDeviceProperties props{};
  vkGetPhysicalDeviceProperties(phys, &props);
  bool khr = false;
  std::uint32_t n = 0;
  if (vkEnumerateDeviceExtensionProperties(phys, nullptr, &n, nullptr) == VK_SUCCESS) {
    std::vector<VkExtensionProperties> exts(n);
    if (vkEnumerateDeviceExtensionProperties(phys, nullptr, &n, exts.data()) == VK_SUCCESS)
      for (std::uint32_t i = 0; i < n; ++i)
        khr = khr ||
              std::strcmp(exts[i].extensionName, VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME) == 0;
  }
  const bool core = props.apiVersion >= VK_API_VERSION_1_2;
  if (!core && !khr) return TimelineSupport::None;
  VkPhysicalDeviceTimelineSemaphoreFeatures tf{};
  tf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
  VkPhysicalDeviceFeatures2 f2{};
  f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  f2.pNext = &tf;
  vkGetPhysicalDeviceFeatures2(phys, &f2);
  if (!tf.timelineSemaphore) return TimelineSupport::None;
  return core ? TimelineSupport::Core : TimelineSupport::Khr;
}

Result<std::vector<VkPhysicalDevice>> physical_devices(VkInstance instance) {
  std::uint32_t n = 0;
  if (VkResult r = vkEnumeratePhysicalDevices(instance, &n, nullptr); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkEnumeratePhysicalDevices"));
  std::vector<VkPhysicalDevice> devs(n);
  if (VkResult r = vkEnumeratePhysicalDevices(instance, &n, devs.data());
      r != VK_SUCCESS && r != VK_INCOMPLETE)
    return std::unexpected(vk_error(r, "vkEnumeratePhysicalDevices"));
  devs.resize(n);
  return devs;
}

}  // namespace

Error vk_error(VkResult result, std::string_view operation) {
  ErrorCode code = ErrorCode::Internal;
  switch (result) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_TOO_MANY_OBJECTS:
    case VK_ERROR_FRAGMENTED_POOL: code = ErrorCode::ResourceExhausted; break;
    case VK_ERROR_INCOMPATIBLE_DRIVER:
    case VK_ERROR_INITIALIZATION_FAILED:
    case VK_ERROR_EXTENSION_NOT_PRESENT:
    case VK_ERROR_LAYER_NOT_PRESENT:
    case VK_ERROR_FEATURE_NOT_PRESENT: code = ErrorCode::Unsupported; break;
    case VK_ERROR_DEVICE_LOST: code = ErrorCode::Io; break;
    case VK_ERROR_INVALID_SHADER_NV: code = ErrorCode::InvalidArgument; break;
    default: break;
  }
  std::string msg = std::string(operation) + " failed: " + std::string(result_name(result)) + " (" +
                    std::to_string(static_cast<int>(result)) + ")";
  if (code == ErrorCode::Unsupported) msg += "; " + std::string(kInstallHint);
  if (code == ErrorCode::Io) msg += "; the GPU reset or hung (a kernel ran too long?)";
  return Error(code, std::move(msg));
}

Result<VkInstance> create_instance() {
  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "pepita";
  app.pEngineName = "pepita";
  // 1.2 so that the timeline-semaphore entry points are core on 1.2+ devices; a 1.1 device still
  // works (the effective version is the lower of the two) and uses the KHR extension instead.
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  ci.pApplicationInfo = &app;
  VkInstance instance = VK_NULL_HANDLE;
  VkResult r = vkCreateInstance(&ci, nullptr, &instance);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return fail(ErrorCode::Unsupported,
                "no Vulkan 1.1 driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER); " +
                    std::string(kInstallHint));
  if (r != VK_SUCCESS) return std::unexpected(vk_error(r, "vkCreateInstance"));
  return instance;
}

DeviceInfo describe(VkPhysicalDevice phys, std::uint32_t index) {
  VkPhysicalDeviceProperties props{};
  vkGetPhysicalDeviceProperties(phys, &props);
  VkPhysicalDeviceMemoryProperties mem{};
  vkGetPhysicalDeviceMemoryProperties(phys, &mem);
  DeviceInfo info;
  info.index = index;
  info.name = props.deviceName;
  info.type = to_type(props.deviceType);
  info.api_version = props.apiVersion;
  info.has_compute_queue = compute_family(phys).has_value();
  info.timeline_semaphores = timeline_support(phys) != TimelineSupport::None;
  info.unified = info.type == DeviceType::Integrated || info.type == DeviceType::Cpu;
  for (std::uint32_t i = 0; i < mem.memoryHeapCount; ++i)
    if (mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      info.device_local_bytes += mem.memoryHeaps[i].size;
  const VkPhysicalDeviceLimits& l = props.limits;
  info.max_group_count = {l.maxComputeWorkGroupCount[0], l.maxComputeWorkGroupCount[1],
                          l.maxComputeWorkGroupCount[2]};
  info.max_group_invocations = l.maxComputeWorkGroupInvocations;
  info.max_shared_bytes = l.maxComputeSharedMemorySize;
  info.max_push_constant_bytes = l.maxPushConstantsSize;
  info.max_storage_buffers = l.maxPerStageDescriptorStorageBuffers;
  info.max_storage_buffer_range = l.maxStorageBufferRange;
  info.vendor_id = props.vendorID;
  info.max_group_size = {l.maxComputeWorkGroupSize[0], l.maxComputeWorkGroupSize[1],
                         l.maxComputeWorkGroupSize[2]};
  info.max_uniform_buffer_range = l.maxUniformBufferRange;
  info.max_bound_descriptor_sets = l.maxBoundDescriptorSets;
  return info;
}

Context::~Context() {
  if (device != VK_NULL_HANDLE) {
    vkDeviceWaitIdle(device);
    if (timeline != VK_NULL_HANDLE) vkDestroySemaphore(device, timeline, nullptr);
    if (pool != VK_NULL_HANDLE) vkDestroyCommandPool(device, pool, nullptr);
    vkDestroyDevice(device, nullptr);
  }
  if (instance != VK_NULL_HANDLE) vkDestroyInstance(instance, nullptr);
}

Result<std::uint32_t> Context::memory_type(std::uint32_t type_bits,
                                           VkMemoryPropertyFlags flags) const {
  for (std::uint32_t i = 0; i < memory.memoryTypeCount; ++i)
    if ((type_bits & (1u << i)) && (memory.memoryTypes[i].propertyFlags & flags) == flags) return i;
  return fail(ErrorCode::NotFound, "no Vulkan memory type with property flags " +
                                       std::to_string(flags) + " on " + info.name);
}

Result<VkSemaphore> create_timeline(VkDevice device, std::uint64_t initial) {
  VkSemaphoreTypeCreateInfo ti{};
  ti.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
  ti.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  ti.initialValue = initial;
  VkSemaphoreCreateInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
  si.pNext = &ti;
  VkSemaphore sem = VK_NULL_HANDLE;
  if (VkResult r = vkCreateSemaphore(device, &si, nullptr, &sem); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkCreateSemaphore(timeline)"));
  return sem;
}

Result<void> Context::submit(const std::function<void(VkCommandBuffer)>& record) {
  std::unique_lock lock(mu);
  VkCommandBufferAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  ai.commandPool = pool;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  if (VkResult r = vkAllocateCommandBuffers(device, &ai, &cmd); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkAllocateCommandBuffers"));
  VkFence fence = VK_NULL_HANDLE;
  // Frees the command buffer and fence on every path; runs only after the wait (or when nothing
  // was submitted), so the GPU never sees freed objects. The pool needs the lock to free.
  struct Cleanup {
    Context& c;
    std::unique_lock<std::mutex>& lock;
    VkCommandBuffer& cmd;
    VkFence& fence;
    ~Cleanup() {
      if (fence != VK_NULL_HANDLE) vkDestroyFence(c.device, fence, nullptr);
      if (!lock.owns_lock()) lock.lock();
      vkFreeCommandBuffers(c.device, c.pool, 1, &cmd);
    }
  } cleanup{*this, lock, cmd, fence};

  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  if (VkResult r = vkBeginCommandBuffer(cmd, &bi); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkBeginCommandBuffer"));
  record(cmd);
  if (VkResult r = vkEndCommandBuffer(cmd); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkEndCommandBuffer"));

  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  if (timeline_fns) {
    // Values are taken and submitted under `mu`, so they reach the queue in increasing order
    // (a timeline's signals must increase). A failed submit leaves a gap, which later, larger
    // signals cover.
    const std::uint64_t value = ++submitted;
    VkTimelineSemaphoreSubmitInfo ti{};
    ti.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
    ti.signalSemaphoreValueCount = 1;
    ti.pSignalSemaphoreValues = &value;
    si.pNext = &ti;
    si.signalSemaphoreCount = 1;
    si.pSignalSemaphores = &timeline;
    if (VkResult r = vkQueueSubmit(queue, 1, &si, VK_NULL_HANDLE); r != VK_SUCCESS)
      return std::unexpected(vk_error(r, "vkQueueSubmit"));
    lock.unlock();  // other threads may record and submit while this one waits
    VkSemaphoreWaitInfo wi{};
    wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
    wi.semaphoreCount = 1;
    wi.pSemaphores = &timeline;
    wi.pValues = &value;
    // No timeout: freeing resources the GPU may still use is not an option, and a hung device
    // reports VK_ERROR_DEVICE_LOST through the driver's own watchdog.
    if (VkResult r = timeline_fns.wait(device, &wi, UINT64_MAX); r != VK_SUCCESS)
      return std::unexpected(vk_error(r, "vkWaitSemaphores"));
    return {};
  }

  VkFenceCreateInfo fi{};
  fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  if (VkResult r = vkCreateFence(device, &fi, nullptr, &fence); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkCreateFence"));
  if (VkResult r = vkQueueSubmit(queue, 1, &si, fence); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkQueueSubmit"));
  ++submitted;
  lock.unlock();
  if (VkResult r = vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX); r != VK_SUCCESS)
    return std::unexpected(vk_error(r, "vkWaitForFences"));
  fenced_done.fetch_add(1, std::memory_order_release);
  return {};
}

}  // namespace detail

std::string_view to_string(DeviceType type) noexcept {
  switch (type) {
    case DeviceType::Discrete: return "discrete";
    case DeviceType::Integrated: return "integrated";
    case DeviceType::Virtual: return "virtual";
    case DeviceType::Cpu: return "cpu";
    case DeviceType::Other: break;
  }
  return "other";
}

Result<std::vector<DeviceInfo>> list_devices() {
  VkInstance instance = PEPITA_TRY(detail::create_instance());
  auto devs = detail::physical_devices(instance);
  std::vector<DeviceInfo> out;
  if (devs)
    for (std::uint32_t i = 0; i < devs->size(); ++i) out.push_back(detail::describe((*devs)[i], i));
  vkDestroyInstance(instance, nullptr);
  if (!devs) return std::unexpected(std::move(devs).error());
  return out;
}

Device::Device(std::shared_ptr<detail::Context> ctx) noexcept : ctx_(std::move(ctx)) {}
Device::Device(Device&&) noexcept = default;
Device& Device::operator=(Device&&) noexcept = default;
Device::~Device() = default;

const DeviceInfo& Device::info() const noexcept { return ctx_->info; }

Result<Device> Device::open(const DeviceOptions& options) {
  auto ctx = std::make_shared<detail::Context>();
  ctx->force_staging = options.force_staging;
  ctx->instance = PEPITA_TRY(detail::create_instance());
  auto devs = PEPITA_TRY(detail::physical_devices(ctx->instance));
  if (devs.empty())
    return fail(ErrorCode::Unsupported,
                "the Vulkan loader found no devices; " + std::string(detail::kInstallHint));

  std::optional<std::uint32_t> want = options.index;
  if (!want) {
    if (const char* env = std::getenv("PEPITA_GPU_DEVICE"); env && *env) {
      char* end = nullptr;
      unsigned long v = std::strtoul(env, &end, 10);
      if (*end != '\0' || v > UINT32_MAX)
        return fail(ErrorCode::InvalidArgument,
                    "PEPITA_GPU_DEVICE='" + std::string(env) + "' is not a device index");
      want = static_cast<std::uint32_t>(v);
    }
  }
  std::optional<std::uint32_t> chosen;
  if (want) {
    if (*want >= devs.size())
      return fail(ErrorCode::NotFound, "GPU device index " + std::to_string(*want) +
                                           " does not exist (" + std::to_string(devs.size()) +
                                           " found; see pepita::gpu::list_devices)");
    if (!detail::compute_family(devs[*want]))
      return fail(ErrorCode::Unsupported,
                  "GPU device " + std::to_string(*want) + " has no compute queue");
    chosen = *want;
  } else {
    int best = -1;
    for (std::uint32_t i = 0; i < devs.size(); ++i) {
      DeviceInfo d = detail::describe(devs[i], i);
      if (!d.has_compute_queue) continue;
      if (detail::preference(d.type) > best) best = detail::preference(d.type), chosen = i;
    }
    if (!chosen)
      return fail(ErrorCode::Unsupported,
                  "no Vulkan device with a compute queue; " + std::string(detail::kInstallHint));
  }

  ctx->phys = devs[*chosen];
  ctx->info = detail::describe(ctx->phys, *chosen);
  ctx->queue_family = *detail::compute_family(ctx->phys);
  vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->memory);

  float priority = 1.0f;
  VkDeviceQueueCreateInfo qi{};
  qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  qi.queueFamilyIndex = ctx->queue_family;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;
  VkDeviceCreateInfo di{};
  di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  const detail::TimelineSupport timeline = detail::timeline_support(ctx->phys);
  VkPhysicalDeviceTimelineSemaphoreFeatures tf{};
  tf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
  tf.timelineSemaphore = VK_TRUE;
  const char* khr_ext = VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME;
  if (timeline != detail::TimelineSupport::None) di.pNext = &tf;
  if (timeline == detail::TimelineSupport::Khr) {
    di.enabledExtensionCount = 1;
    di.ppEnabledExtensionNames = &khr_ext;
  }
  if (VkResult r = vkCreateDevice(ctx->phys, &di, nullptr, &ctx->device); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateDevice(" + ctx->info.name + ")"));
  vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);
  if (timeline != detail::TimelineSupport::None) {
    const bool core = timeline == detail::TimelineSupport::Core;
    // SAFETY: vkGetDeviceProcAddr returns the entry point named, whose real type is the PFN it
    // is cast to (the KHR aliases share the core signatures); null when absent, checked below.
    ctx->timeline_fns.wait = reinterpret_cast<PFN_vkWaitSemaphores>(
        vkGetDeviceProcAddr(ctx->device, core ? "vkWaitSemaphores" : "vkWaitSemaphoresKHR"));
    ctx->timeline_fns.signal = reinterpret_cast<PFN_vkSignalSemaphore>(
        vkGetDeviceProcAddr(ctx->device, core ? "vkSignalSemaphore" : "vkSignalSemaphoreKHR"));
    ctx->timeline_fns.value = reinterpret_cast<PFN_vkGetSemaphoreCounterValue>(vkGetDeviceProcAddr(
        ctx->device, core ? "vkGetSemaphoreCounterValue" : "vkGetSemaphoreCounterValueKHR"));
    if (ctx->timeline_fns)
      ctx->timeline = PEPITA_TRY(detail::create_timeline(ctx->device, 0));
    else
      ctx->timeline_fns = {};  // fall back to fences
  }
  ctx->info.timeline_semaphores = static_cast<bool>(ctx->timeline_fns);

  VkCommandPoolCreateInfo pi{};
  pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pi.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
  pi.queueFamilyIndex = ctx->queue_family;
  if (VkResult r = vkCreateCommandPool(ctx->device, &pi, nullptr, &ctx->pool); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateCommandPool"));
  return Device(std::move(ctx));
}

std::uint64_t Device::submitted() const noexcept {
  std::lock_guard lock(ctx_->mu);
  return ctx_->submitted;
}

Result<std::uint64_t> Device::completed() const {
  detail::Context& c = *ctx_;
  if (c.timeline_fns) {
    std::uint64_t v = 0;
    if (VkResult r = c.timeline_fns.value(c.device, c.timeline, &v); r != VK_SUCCESS)
      return std::unexpected(detail::vk_error(r, "vkGetSemaphoreCounterValue"));
    return v;
  }
  return c.fenced_done.load(std::memory_order_acquire);
}

std::uint64_t Device::dispatch_count() const noexcept {
  return ctx_->dispatches.load(std::memory_order_relaxed);
}

Result<void> Device::wait_idle() {
  std::lock_guard lock(ctx_->mu);  // vkQueueWaitIdle needs the queue externally synchronized
  if (VkResult r = vkQueueWaitIdle(ctx_->queue); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkQueueWaitIdle"));
  return {};
}

bool Device::is_available() const { return completed().has_value(); }

Result<void> Device::copy_buffer(const Buffer& src, Buffer& dst) {
  const detail::RawBuffer& s = *src.impl_->raw;
  const detail::RawBuffer& d = *dst.impl_->raw;
  if (s.ctx != ctx_ || d.ctx != ctx_)
    return fail(ErrorCode::InvalidArgument,
                "gpu::Device::copy_buffer: a buffer was created on another Device");
  if (&s == &d)
    return fail(ErrorCode::InvalidArgument,
                "gpu::Device::copy_buffer: src and dst are the same buffer (overlapping copy)");
  const VkBufferCopy region{0, 0, std::min(s.size, d.size)};
  VkBuffer from = s.buffer, to = d.buffer;
  return ctx_->submit([&](VkCommandBuffer cmd) {
    // Earlier host and shader writes before the copy reads; the copy before later shader and
    // host access.
    VkMemoryBarrier before{};
    before.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    before.srcAccessMask = VK_ACCESS_HOST_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    before.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                         VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0, nullptr, 0, nullptr);
    vkCmdCopyBuffer(cmd, from, to, 1, &region);
    VkMemoryBarrier after{};
    after.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    after.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    after.dstAccessMask =
        VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                         &after, 0, nullptr, 0, nullptr);
  });
}

Result<void> Device::dispatch(const Kernel& kernel, std::span<const Buffer* const> buffers,
                              Groups groups, std::span<const std::byte> push) {
  Dispatch d{&kernel, buffers, groups, push};
  return run(std::span<const Dispatch>(&d, 1));
}

}  // namespace pepita::gpu
