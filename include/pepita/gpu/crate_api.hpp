#pragma once
// The reference crate's gpu module (issue 21) spelled in C++ on pepita's real Vulkan compute:
// GpuDevice is gpu::Device, Buffer is gpu::Buffer, GpuDeviceInfo/GpuLimits come from the physical
// device's properties, ComputeShader takes SPIR-V (the crate's WGSL has no compiler here) and is
// reflected (pepita/gpu/reflect.hpp), ComputePipeline is a gpu::Kernel laid out from it.
//
//   auto dev = PEPITA_TRY(pepita::gpu::GpuDevice::open());            // crate: default_device()
//   auto shader = PEPITA_TRY(pepita::gpu::ComputeShader::from_spirv(words));
//   auto in = PEPITA_TRY(pepita::gpu::create_buffer(dev, bytes, BufferUsage::STORAGE));
//   auto out = PEPITA_TRY(pepita::gpu::create_buffer_uninit(dev, n, BufferUsage::STORAGE));
//   PEPITA_TRY_VOID(pepita::gpu::dispatch(dev, shader, {&in, &out}, {.x = 64}));

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/kernel.hpp"
#include "pepita/gpu/reflect.hpp"

namespace pepita::gpu {

/// The crate's GpuDevice: pepita's Vulkan device (open(), info(), is_available(),
/// dispatch_count(), copy_buffer(), wait_idle() = submit_and_wait).
using GpuDevice = Device;
/// The crate's GpuDeviceType (DiscreteGpu = Discrete, IntegratedGpu = Integrated, VirtualGpu =
/// Virtual, Cpu, Other).
using GpuDeviceType = DeviceType;

/// Graphics API a device is driven through. pepita drives Vulkan only; the others exist so code
/// written against the crate compiles, and report themselves unavailable.
enum class GpuBackend : std::uint8_t { None, Vulkan, Metal, Dx12, OpenGL, WebGpu };

/// "none", "vulkan", "metal", "dx12", "opengl", "webgpu".
std::string_view name(GpuBackend backend) noexcept;
/// Vulkan, Metal and Dx12 (the crate's "native" APIs).
bool is_native(GpuBackend backend) noexcept;
/// Whether this machine can run compute through `backend` now: Vulkan when the loader lists a
/// device with a compute queue (a real probe, not the crate's constant), never the others (no
/// Metal or Direct3D on Linux; OpenGL and WebGPU compute are not implemented here), never None.
bool is_available(GpuBackend backend);

/// The crate's GpuLimits, read from VkPhysicalDeviceLimits.
struct GpuLimits {
  std::uint64_t max_buffer_size = 0;  // largest pepita Buffer a kernel can bind (storage range)
  std::uint32_t max_storage_buffer_binding_size = 0;
  std::uint32_t max_uniform_buffer_binding_size = 0;
  std::uint32_t max_compute_workgroup_size_x = 0;
  std::uint32_t max_compute_workgroup_size_y = 0;
  std::uint32_t max_compute_workgroup_size_z = 0;
  std::uint32_t max_compute_workgroups_per_dimension = 0;  // the smallest of x, y, z
  std::uint32_t max_bind_groups = 0;                       // maxBoundDescriptorSets
};

/// The crate's GpuDeviceInfo.
struct GpuDeviceInfo {
  std::string name;
  std::string vendor;  // from the PCI vendor id: "NVIDIA", "AMD", "Intel", "Mesa", ... or hex
  GpuBackend backend = GpuBackend::Vulkan;
  GpuDeviceType device_type = GpuDeviceType::Other;
  GpuLimits limits;
};

GpuLimits limits_of(const DeviceInfo& info);
GpuDeviceInfo gpu_device_info(const DeviceInfo& info);

/// The crate's GpuDevice::mock, made real: opens Mesa's lavapipe (the CPU Vulkan device), so
/// code and tests run without a GPU. Errors: NotFound when no CPU device is installed (apt-get
/// install mesa-vulkan-drivers), Device::open's otherwise.
[[nodiscard]] Result<Device> cpu_device();

/// The crate's GpuDevice::create_buffer: a storage buffer holding `data`. Errors:
/// InvalidArgument when `usage` asks for anything but STORAGE, COPY_SRC, COPY_DST, MAP_READ,
/// MAP_WRITE (pepita buffers are storage buffers), or MAP_* where buffers are device-local
/// (discrete GPUs, DeviceOptions::force_staging), or `data` is empty; ResourceExhausted over
/// GpuLimits::max_buffer_size.
[[nodiscard]] Result<Buffer> create_buffer(Device& device, std::span<const std::byte> data,
                                           BufferUsage usage);
/// create_buffer of `size` zero bytes (the crate's create_buffer_uninit; pepita zero-fills).
[[nodiscard]] Result<Buffer> create_buffer_uninit(Device& device, std::uint64_t size,
                                                  BufferUsage usage);

/// The crate's ComputeShader: a validated, reflected SPIR-V module and its entry point.
/// Copyable (the words are shared).
class ComputeShader {
 public:
  /// Validates and reflects `spirv` (entry point "main"). Errors: reflect_spirv's.
  [[nodiscard]] static Result<ComputeShader> from_spirv(std::vector<std::uint32_t> spirv);
  /// The same entry point name changed; reflected again. Errors: no such entry point.
  [[nodiscard]] Result<ComputeShader> with_entry_point(std::string_view name) const;

  /// Process-unique, from 1.
  std::uint64_t id() const noexcept { return id_; }
  /// The module (the crate's source(), which is WGSL there).
  std::span<const std::uint32_t> spirv() const noexcept { return *spirv_; }
  const std::string& entry_point() const noexcept { return interface_.entry_point; }
  /// The module's LocalSize (fixed in SPIR-V; see ShaderInterface::local_size).
  std::array<std::uint32_t, 3> workgroup_size() const noexcept { return interface_.local_size; }
  const ShaderInterface& interface() const noexcept { return interface_; }

 private:
  ComputeShader() = default;
  std::shared_ptr<const std::vector<std::uint32_t>> spirv_;
  ShaderInterface interface_;
  std::uint64_t id_ = 0;
};

/// The crate's ComputePipeline: a Kernel laid out from the shader's reflected interface (its
/// storage buffers at set 0, its push-constant block). Move-only.
class ComputePipeline {
 public:
  /// Errors: InvalidArgument when the shader is not a compute shader or binds anything but
  /// storage buffers at set 0; Kernel::create's.
  [[nodiscard]] static Result<ComputePipeline> create(Device& device, ComputeShader shader,
                                                      std::vector<std::uint32_t> spec = {});
  /// pepita binds one descriptor set: InvalidArgument for any count but 1.
  [[nodiscard]] Result<void> with_bind_groups(std::uint32_t count) const;
  const ComputeShader& shader() const noexcept { return shader_; }
  const Kernel& kernel() const noexcept { return kernel_; }

  /// Runs it: `buffers` in binding order, `push` exactly the shader's block. Errors: those of
  /// Device::dispatch.
  [[nodiscard]] Result<void> dispatch(Device& device, std::span<const Buffer* const> buffers,
                                      Groups groups, std::span<const std::byte> push = {}) const;

 private:
  ComputePipeline(ComputeShader shader, Kernel kernel)
      : shader_(std::move(shader)), kernel_(std::move(kernel)) {}
  ComputeShader shader_;
  Kernel kernel_;
};

/// The crate's GpuDevice::dispatch: builds the pipeline for `shader` and runs it once (build a
/// ComputePipeline to reuse it). Errors: ComputePipeline::create's, then Device::dispatch's.
[[nodiscard]] Result<void> dispatch(Device& device, const ComputeShader& shader,
                                    std::initializer_list<const Buffer*> buffers, Groups groups,
                                    std::span<const std::byte> push = {});

}  // namespace pepita::gpu
