// The crate's gpu names on pepita's Vulkan types: backend probe, limits and device info from
// DeviceInfo, buffer creation with usage checks, reflected ComputeShader and ComputePipeline.

#include "pepita/gpu/crate_api.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <utility>

#include "pepita/core/format.hpp"

namespace pepita::gpu {
namespace {

// What a pepita Buffer can be asked to do (see Buffer::usage()).
constexpr BufferUsage kSupported = BufferUsage::STORAGE | BufferUsage::COPY_SRC |
                                   BufferUsage::COPY_DST | BufferUsage::MAP_READ |
                                   BufferUsage::MAP_WRITE;

std::string vendor_name(std::uint32_t id) {
  switch (id) {
    case 0x10de: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x13b5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x10005: return "Mesa";  // VK_VENDOR_ID_MESA: lavapipe and other Mesa software devices
    default: {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%x", id);
      return hex;
    }
  }
}

Result<void> check_usage(const Device& device, BufferUsage usage, std::uint64_t size) {
  if (!kSupported.contains(usage))
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("usage: bits {} are not supported; pepita buffers are storage buffers "
                            "(STORAGE, COPY_SRC, COPY_DST, MAP_READ, MAP_WRITE)",
                            usage.bits() & ~kSupported.bits()));
  if (size == 0) return fail(ErrorCode::InvalidArgument, "size: a buffer needs at least 1 byte");
  if (size > device.info().max_storage_buffer_range)
    return fail(ErrorCode::ResourceExhausted,
                pepita::fmt("size: {} bytes is over the device's max_buffer_size of {}", size,
                            device.info().max_storage_buffer_range));
  return {};
}

// MAP_READ/MAP_WRITE are known only once the buffer exists (device-local on discrete GPUs and
// with DeviceOptions::force_staging).
Result<Buffer> with_usage(Buffer buf, BufferUsage usage, const Device& device) {
  if (!buf.usage().contains(usage))
    return fail(ErrorCode::InvalidArgument,
                "usage: MAP_READ/MAP_WRITE need host-visible buffers; buffers on " +
                    device.info().name + " are device-local here (use Buffer::read/write)");
  return buf;
}

}  // namespace

std::string_view name(GpuBackend backend) noexcept {
  switch (backend) {
    case GpuBackend::None: return "none";
    case GpuBackend::Vulkan: return "vulkan";
    case GpuBackend::Metal: return "metal";
    case GpuBackend::Dx12: return "dx12";
    case GpuBackend::OpenGL: return "opengl";
    case GpuBackend::WebGpu: return "webgpu";
  }
  return "?";
}

bool is_native(GpuBackend backend) noexcept {
  return backend == GpuBackend::Vulkan || backend == GpuBackend::Metal ||
         backend == GpuBackend::Dx12;
}

bool is_available(GpuBackend backend) {
  if (backend != GpuBackend::Vulkan) return false;
  auto devices = list_devices();
  return devices && std::any_of(devices->begin(), devices->end(),
                                [](const DeviceInfo& d) { return d.has_compute_queue; });
}

GpuLimits limits_of(const DeviceInfo& info) {
  GpuLimits l;
  l.max_buffer_size = info.max_storage_buffer_range;
  l.max_storage_buffer_binding_size = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(info.max_storage_buffer_range, UINT32_MAX));
  l.max_uniform_buffer_binding_size = info.max_uniform_buffer_range;
  l.max_compute_workgroup_size_x = info.max_group_size[0];
  l.max_compute_workgroup_size_y = info.max_group_size[1];
  l.max_compute_workgroup_size_z = info.max_group_size[2];
  l.max_compute_workgroups_per_dimension =
      std::min({info.max_group_count[0], info.max_group_count[1], info.max_group_count[2]});
  l.max_bind_groups = info.max_bound_descriptor_sets;
  return l;
}

GpuDeviceInfo gpu_device_info(const DeviceInfo& info) {
  return {info.name, vendor_name(info.vendor_id), GpuBackend::Vulkan, info.type, limits_of(info)};
}

Result<Device> cpu_device() {
  auto devices = PEPITA_TRY(list_devices());
  for (const DeviceInfo& d : devices) {
    if (d.type == DeviceType::Cpu && d.has_compute_queue) return Device::open({.index = d.index});
  }
  return fail(ErrorCode::NotFound,
              "no CPU Vulkan device (lavapipe): apt-get install mesa-vulkan-drivers");
}

Result<Buffer> create_buffer(Device& device, std::span<const std::byte> data, BufferUsage usage) {
  PEPITA_TRY_VOID(check_usage(device, usage, data.size()));
  auto raw = PEPITA_TRY(Buffer::create(device, data.size()));
  auto buf = PEPITA_TRY(with_usage(std::move(raw), usage, device));
  PEPITA_TRY_VOID(buf.write(data));
  return buf;
}

Result<Buffer> create_buffer_uninit(Device& device, std::uint64_t size, BufferUsage usage) {
  PEPITA_TRY_VOID(check_usage(device, usage, size));
  auto raw = PEPITA_TRY(Buffer::create(device, static_cast<std::size_t>(size)));
  auto buf = PEPITA_TRY(with_usage(std::move(raw), usage, device));
  const std::vector<std::byte> zeros(static_cast<std::size_t>(size));
  PEPITA_TRY_VOID(buf.write(zeros));
  return buf;
}

Result<ComputeShader> ComputeShader::from_spirv(std::vector<std::uint32_t> spirv) {
  static std::atomic<std::uint64_t> next_id{1};
  ComputeShader s;
  s.interface_ = PEPITA_TRY(reflect_spirv(spirv, "main"));
  s.spirv_ = std::make_shared<const std::vector<std::uint32_t>>(std::move(spirv));
  s.id_ = next_id.fetch_add(1, std::memory_order_relaxed);
  return s;
}

Result<ComputeShader> ComputeShader::with_entry_point(std::string_view name) const {
  ComputeShader s = *this;
  s.interface_ = PEPITA_TRY(reflect_spirv(*spirv_, name));
  return s;
}

Result<ComputePipeline> ComputePipeline::create(Device& device, ComputeShader shader,
                                                std::vector<std::uint32_t> spec) {
  const ShaderInterface& in = shader.interface();
  const std::size_t buffers = in.bindings.size();
  const std::uint32_t push = in.push_constant_bytes.value_or(0);
  if (!in.push_constant_bytes)
    return fail(ErrorCode::InvalidArgument,
                "push_constants: the shader's push-constant block could not be sized; use "
                "Kernel::create with an explicit KernelLayout");
  PEPITA_TRY_VOID(check_compute_interface(in, buffers, push));
  KernelLayout layout;
  layout.buffers = static_cast<std::uint32_t>(buffers);
  layout.push_constant_bytes = push;
  layout.spec_constants = std::move(spec);
  layout.entry_point = in.entry_point;
  auto kernel = PEPITA_TRY(Kernel::create(device, shader.spirv(), std::move(layout)));
  return ComputePipeline(std::move(shader), std::move(kernel));
}

Result<void> ComputePipeline::with_bind_groups(std::uint32_t count) const {
  if (count != 1)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("bind_groups: {} requested; pepita binds exactly one descriptor set "
                            "(set 0) per pipeline",
                            count));
  return {};
}

Result<void> ComputePipeline::dispatch(Device& device, std::span<const Buffer* const> buffers,
                                       Groups groups, std::span<const std::byte> push) const {
  return device.dispatch(kernel_, buffers, groups, push);
}

Result<void> dispatch(Device& device, const ComputeShader& shader,
                      std::initializer_list<const Buffer*> buffers, Groups groups,
                      std::span<const std::byte> push) {
  auto pipeline = PEPITA_TRY(ComputePipeline::create(device, shader));
  return pipeline.dispatch(device, std::span<const Buffer* const>(buffers.begin(), buffers.size()),
                           groups, push);
}

}  // namespace pepita::gpu
