#pragma once
// Vulkan compute device (issue 9): instance + physical-device choice (discrete GPU first, then
// integrated, virtual, and Mesa's lavapipe CPU device last), one compute queue, and batched
// dispatch with a fence. Follows the Vulkan 1.1 spec, chapters "Devices and Queues" and
// "Dispatching Commands".
//
//   auto dev = PEPITA_TRY(pepita::gpu::Device::open());
//   auto x = PEPITA_TRY(pepita::gpu::Buffer::from<float>(dev, xs));
//   auto k = PEPITA_TRY(pepita::gpu::Kernel::from_file(dev, "scale.spv", {.buffers = 2}));
//   const pepita::gpu::Buffer* bufs[] = {&x, &y};
//   PEPITA_TRY_VOID(dev.dispatch(k, bufs, {.x = groups}, push_bytes));

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::gpu {

namespace detail {
struct Context;
}
class Buffer;
class Kernel;

enum class DeviceType : std::uint8_t { Discrete, Integrated, Virtual, Cpu, Other };

/// "discrete", "integrated", "virtual", "cpu", "other".
std::string_view to_string(DeviceType type) noexcept;

/// What pepita needs to know about one Vulkan physical device.
struct DeviceInfo {
  std::uint32_t index = 0;  // position in vkEnumeratePhysicalDevices order
  std::string name;         // e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
  DeviceType type = DeviceType::Other;
  std::uint32_t api_version = 0;  // VK_MAKE_API_VERSION encoding
  bool has_compute_queue = false;
  /// Timeline semaphores (Vulkan 1.2 core or VK_KHR_timeline_semaphore) are available; the
  /// device's queue then tracks submissions on one, and TimelineSemaphore works.
  bool timeline_semaphores = false;
  /// Device memory is host memory (integrated GPU, CPU device): buffers are host-visible and
  /// mapped, no staging copies.
  bool unified = false;
  std::uint64_t device_local_bytes = 0;
  std::array<std::uint32_t, 3> max_group_count{};
  std::uint32_t max_group_invocations = 0;
  std::uint32_t max_shared_bytes = 0;
  std::uint32_t max_push_constant_bytes = 0;
  std::uint32_t max_storage_buffers = 0;
  std::uint64_t max_storage_buffer_range = 0;  // largest buffer a kernel may bind, in bytes
  // Also reported (the crate's GpuDeviceInfo / GpuLimits, pepita/gpu/crate_api.hpp):
  std::uint32_t vendor_id = 0;  // PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel, ...)
  std::array<std::uint32_t, 3> max_group_size{};  // invocations per workgroup along x, y, z
  std::uint32_t max_uniform_buffer_range = 0;
  std::uint32_t max_bound_descriptor_sets = 0;
};

/// Every Vulkan physical device the loader reports, in enumeration order. Errors: Unsupported
/// when no Vulkan driver is installed (message names the Debian packages to install).
[[nodiscard]] Result<std::vector<DeviceInfo>> list_devices();

struct DeviceOptions {
  /// Use this device (DeviceInfo::index) instead of the best one; the environment variable
  /// PEPITA_GPU_DEVICE=<index> does the same when this is unset.
  std::optional<std::uint32_t> index;
  /// Give buffers device-local memory reached through staging copies even on a unified device
  /// (exercises the discrete-GPU path on lavapipe; slower).
  bool force_staging = false;
};

/// Workgroup counts of one dispatch; each must be 1..DeviceInfo::max_group_count.
struct Groups {
  std::uint32_t x = 1, y = 1, z = 1;
};

/// One kernel launch: the kernel, its buffers in binding order (binding i = buffers[i]), the
/// group counts and the push-constant bytes (exactly KernelLayout::push_constant_bytes).
struct Dispatch {
  const Kernel* kernel = nullptr;
  std::span<const Buffer* const> buffers;
  Groups groups;
  std::span<const std::byte> push;
};

/// An open logical device with one compute queue. Move-only. Buffers and kernels made from it
/// keep the underlying Vulkan device alive, so they may outlive this object. Calls on one
/// Device are thread-safe: recording and submission take turns on its queue, and each caller then
/// waits for its own submission (a queue timeline value), so several can be in flight at once.
class Device {
 public:
  /// Opens the chosen device (see DeviceOptions) or the best one: discrete > integrated >
  /// virtual > CPU (lavapipe). Errors: Unsupported when Vulkan or a compute-capable device is
  /// missing, NotFound for an index that does not exist, ResourceExhausted on out-of-memory.
  [[nodiscard]] static Result<Device> open(const DeviceOptions& options = {});

  Device(Device&&) noexcept;
  Device& operator=(Device&&) noexcept;
  ~Device();

  const DeviceInfo& info() const noexcept;

  /// Records all dispatches in one command buffer, in order, with a compute->compute memory
  /// barrier between consecutive ones (later dispatches see earlier writes), submits it and waits
  /// on a fence. Buffer contents are visible to Buffer::read when this returns.
  /// Errors: InvalidArgument for a null kernel, wrong buffer count, push size mismatch, a group
  /// count of 0 or over the device limit, a buffer over max_storage_buffer_range, or a kernel or
  /// buffer from another device; Io when the device is lost.
  [[nodiscard]] Result<void> run(std::span<const Dispatch> dispatches);

  /// Queue submissions made so far and those the device has finished (every run(), and each
  /// staging copy, is one). Equal when the queue is idle. Errors: Io when the device is lost.
  std::uint64_t submitted() const noexcept;
  [[nodiscard]] Result<std::uint64_t> completed() const;

  /// run() with a single dispatch.
  [[nodiscard]] Result<void> dispatch(const Kernel& kernel, std::span<const Buffer* const> buffers,
                                      Groups groups, std::span<const std::byte> push = {});

  // ---- the crate's GpuDevice operations (pepita/gpu/crate_api.hpp) ----
  /// Kernel launches run() has completed on this device (the crate's dispatch_count).
  std::uint64_t dispatch_count() const noexcept;
  /// Copies min(src.size(), dst.size()) bytes from `src` to `dst` on the device queue
  /// (vkCmdCopyBuffer) and waits; visible to kernels and Buffer::read afterwards.
  /// Errors: InvalidArgument for a buffer from another Device or `src` and `dst` the same
  /// buffer; Io when the device is lost.
  [[nodiscard]] Result<void> copy_buffer(const Buffer& src, Buffer& dst);
  /// Waits until every submission made so far, by any thread, has finished (vkQueueWaitIdle);
  /// the crate's submit_and_wait (pepita's run() already waits for its own). Errors: Io when the
  /// device is lost.
  [[nodiscard]] Result<void> wait_idle();
  /// False once the device is lost (the queue timeline can no longer be read).
  bool is_available() const;

 private:
  friend class Buffer;
  friend class Kernel;
  friend class Builtins;
  friend class TimelineSemaphore;
  friend class GpuExecutor;
  explicit Device(std::shared_ptr<detail::Context> ctx) noexcept;
  std::shared_ptr<detail::Context> ctx_;
};

}  // namespace pepita::gpu
