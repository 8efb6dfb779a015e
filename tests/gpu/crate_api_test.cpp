// The crate's gpu names (pepita/gpu/crate_api.hpp) on a real Vulkan device (lavapipe in CI):
// backend probe, limits and device info from the physical device, buffers with usage checks and
// mapping, copy_buffer, ComputeShader/ComputePipeline from reflected SPIR-V, dispatch counts.

#include "pepita/gpu/crate_api.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <ios>
#include <string>
#include <utility>
#include <vector>

#include "gpu_env.hpp"

namespace pepita::gpu {
namespace {

using test::bytes_of;
using test::env;
using test::test_spirv;

TEST(GpuBackendNames, NamesNativenessAndHonestAvailability) {
  EXPECT_EQ(name(GpuBackend::Vulkan), "vulkan");
  EXPECT_EQ(name(GpuBackend::Metal), "metal");
  EXPECT_EQ(name(GpuBackend::None), "none");
  EXPECT_EQ(name(GpuBackend::Dx12), "dx12");
  EXPECT_EQ(name(GpuBackend::OpenGL), "opengl");
  EXPECT_EQ(name(GpuBackend::WebGpu), "webgpu");
  EXPECT_EQ(name(static_cast<GpuBackend>(200)), "?") << "a value outside the enum";
  EXPECT_TRUE(is_native(GpuBackend::Vulkan));
  EXPECT_TRUE(is_native(GpuBackend::Dx12));
  EXPECT_FALSE(is_native(GpuBackend::OpenGL));
  EXPECT_FALSE(is_native(GpuBackend::WebGpu));
  EXPECT_FALSE(is_available(GpuBackend::None));
  EXPECT_FALSE(is_available(GpuBackend::Metal)) << "no Metal on Linux";
  EXPECT_FALSE(is_available(GpuBackend::Dx12));
  auto devices = list_devices();
  bool compute = false;
  if (devices) {
    for (const auto& d : *devices) compute |= d.has_compute_queue;
  }
  EXPECT_EQ(is_available(GpuBackend::Vulkan), compute) << "a real probe of the Vulkan loader";
}

// The vendor string comes from the PCI vendor id, known ids by name, any other id in hex; the
// rest of the info is the DeviceInfo's. No device needed.
TEST(GpuDeviceCrate, VendorIsNamedFromThePciIdOrGivenInHex) {
  const std::pair<std::uint32_t, const char*> vendors[] = {
      {0x10de, "NVIDIA"}, {0x1002, "AMD"},      {0x8086, "Intel"},
      {0x13b5, "ARM"},    {0x5143, "Qualcomm"}, {0x1010, "Imagination"},
      {0x10005, "Mesa"},  {0xabcd, "0xabcd"},   {0, "0x0"}};
  for (const auto& [id, vendor] : vendors) {
    DeviceInfo d;
    d.name = "test device";
    d.vendor_id = id;
    d.type = DeviceType::Discrete;
    const GpuDeviceInfo g = gpu_device_info(d);
    EXPECT_EQ(g.vendor, vendor) << std::hex << id;
    EXPECT_EQ(g.name, "test device");
    EXPECT_EQ(g.backend, GpuBackend::Vulkan);
    EXPECT_EQ(g.device_type, DeviceType::Discrete);
  }
}

TEST(BufferUsageFlags, CrateBitValuesUnionAndContains) {
  EXPECT_EQ(BufferUsage::empty().bits(), 0u);
  EXPECT_EQ(BufferUsage::STORAGE.bits(), 1u << 7);
  EXPECT_EQ(BufferUsage::INDIRECT.bits(), 1u << 8);
  const BufferUsage u = BufferUsage::STORAGE.union_with(BufferUsage::COPY_SRC);
  EXPECT_TRUE(u.contains(BufferUsage::STORAGE));
  EXPECT_TRUE(u.contains(BufferUsage::COPY_SRC));
  EXPECT_FALSE(u.contains(BufferUsage::UNIFORM));
  EXPECT_EQ(u, BufferUsage::STORAGE | BufferUsage::COPY_SRC);
}

TEST(GpuDeviceCrate, InfoAndLimitsComeFromThePhysicalDevice) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  const DeviceInfo& raw = dev.info();
  const GpuDeviceInfo info = gpu_device_info(raw);
  EXPECT_EQ(info.name, raw.name);
  EXPECT_FALSE(info.vendor.empty());
  EXPECT_EQ(info.backend, GpuBackend::Vulkan);
  EXPECT_EQ(info.device_type, raw.type);
  // Vulkan 1.1's required minimums (table "Required Limits").
  EXPECT_GE(info.limits.max_compute_workgroup_size_x, 128u);
  EXPECT_GE(info.limits.max_compute_workgroup_size_z, 64u);
  EXPECT_GE(info.limits.max_compute_workgroups_per_dimension, 65535u);
  EXPECT_GE(info.limits.max_bind_groups, 4u);
  EXPECT_GE(info.limits.max_uniform_buffer_binding_size, 16384u);
  EXPECT_EQ(info.limits.max_buffer_size, raw.max_storage_buffer_range);
  if (raw.type == DeviceType::Cpu) {
    EXPECT_EQ(info.vendor, "Mesa") << "lavapipe reports VK_VENDOR_ID_MESA";
  }
  EXPECT_TRUE(dev.is_available());
}

TEST(GpuDeviceCrate, CpuDeviceOpensLavapipe) {
  PEPITA_REQUIRE_GPU();
  auto devices = list_devices();
  ASSERT_TRUE(devices);
  bool has_cpu = false;
  for (const auto& d : *devices) has_cpu |= d.type == DeviceType::Cpu && d.has_compute_queue;
  auto dev = cpu_device();
  ASSERT_EQ(dev.has_value(), has_cpu) << (dev ? std::string() : dev.error().to_string());
  if (dev) {
    EXPECT_EQ(dev->info().type, DeviceType::Cpu);
  }
}

TEST(GpuDeviceCrate, BuffersCopyAndMapWithUsageChecks) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  const std::vector<std::uint32_t> v{1, 2, 3, 4, 5};
  auto src = create_buffer(dev, bytes_of(v), BufferUsage::STORAGE | BufferUsage::COPY_SRC);
  ASSERT_TRUE(src) << src.error().to_string();
  auto dst = create_buffer_uninit(dev, 12, BufferUsage::STORAGE | BufferUsage::COPY_DST);
  ASSERT_TRUE(dst) << dst.error().to_string();
  EXPECT_NE(src->id(), dst->id());
  EXPECT_GT(dst->id(), src->id()) << "ids in creation order";
  EXPECT_EQ(dst->size(), 12u);
  EXPECT_TRUE(
      src->usage().contains(BufferUsage::STORAGE | BufferUsage::COPY_SRC | BufferUsage::COPY_DST));

  ASSERT_TRUE(dev.copy_buffer(*src, *dst)) << "copies min(20, 12) bytes";
  std::vector<std::uint32_t> got(3);
  ASSERT_TRUE(dst->download(std::span(got)));
  EXPECT_EQ(got, (std::vector<std::uint32_t>{1, 2, 3}));
  EXPECT_FALSE(dev.copy_buffer(*src, *src)) << "same buffer";
  ASSERT_TRUE(dev.wait_idle());

  if (dst->kind() == MemoryKind::HostVisible) {
    EXPECT_TRUE(dst->usage().contains(BufferUsage::MAP_READ));
    auto w = dst->map_write();
    ASSERT_TRUE(w);
    (*w)[0] = std::byte{42};
    auto r = dst->map_read();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0], std::byte{42});
    EXPECT_EQ(r->size(), 12u);
  } else {
    EXPECT_FALSE(dst->map_read()) << "device-local buffers are not mappable";
  }

  auto uniform = create_buffer(dev, bytes_of(v), BufferUsage::UNIFORM);
  ASSERT_FALSE(uniform);
  EXPECT_NE(uniform.error().message().find("usage:"), std::string::npos);
  auto empty = create_buffer_uninit(dev, 0, BufferUsage::STORAGE);
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("size:"), std::string::npos);
  auto huge =
      create_buffer_uninit(dev, dev.info().max_storage_buffer_range + 1, BufferUsage::STORAGE);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::ResourceExhausted);
}

TEST(GpuDeviceCrate, CopyBufferOnTheStagingPathAndNoMapping) {
  PEPITA_REQUIRE_GPU();
  auto dev = Device::open({.index = env().device->info().index, .force_staging = true});
  ASSERT_TRUE(dev) << dev.error().to_string();
  std::vector<std::uint32_t> v(1000);
  for (std::uint32_t i = 0; i < v.size(); ++i) v[i] = i * 3;
  auto src = create_buffer(*dev, bytes_of(v), BufferUsage::STORAGE);
  auto dst = create_buffer_uninit(*dev, 4000, BufferUsage::STORAGE | BufferUsage::COPY_DST);
  ASSERT_TRUE(src && dst);
  EXPECT_EQ(dst->kind(), MemoryKind::DeviceLocal);
  EXPECT_FALSE(dst->usage().contains(BufferUsage::MAP_READ));
  EXPECT_FALSE(dst->map_read());
  EXPECT_FALSE(dst->map_write());
  auto mapped = create_buffer_uninit(*dev, 16, BufferUsage::STORAGE | BufferUsage::MAP_READ);
  ASSERT_FALSE(mapped) << "device-local buffers cannot promise MAP_READ";
  EXPECT_NE(mapped.error().message().find("usage: MAP_READ/MAP_WRITE"), std::string::npos);
  ASSERT_TRUE(dev->copy_buffer(*src, *dst));
  std::vector<std::uint32_t> got(1000);
  ASSERT_TRUE(dst->download(std::span(got)));
  EXPECT_EQ(got, v);
  auto other = create_buffer_uninit(*env().device, 16, BufferUsage::STORAGE);
  ASSERT_TRUE(other);
  auto cross = dev->copy_buffer(*src, *other);
  ASSERT_FALSE(cross);
  EXPECT_NE(cross.error().message().find("another Device"), std::string::npos);
}

// A module whose push-constant block has no member offsets cannot be sized by reflection: the
// pipeline is refused before anything is built, pointing at the explicit-layout API.
TEST(GpuDeviceCrate, UnsizablePushConstantBlockPointsAtKernelCreate) {
  PEPITA_REQUIRE_GPU();
  auto spirv = test_spirv("add_scale");
  ASSERT_FALSE(spirv.empty());
  int dropped = 0;
  for (std::size_t at = 5; at < spirv.size() && (spirv[at] >> 16) != 0; at += spirv[at] >> 16) {
    // OpMemberDecorate (72) ... Offset (35) -> RelaxedPrecision (0)
    if ((spirv[at] & 0xffff) == 72 && (spirv[at] >> 16) >= 5 && spirv[at + 3] == 35) {
      spirv[at + 3] = 0;
      ++dropped;
    }
  }
  ASSERT_GT(dropped, 0);
  auto shader = ComputeShader::from_spirv(spirv);
  ASSERT_TRUE(shader) << shader.error().to_string();
  EXPECT_FALSE(shader->interface().push_constant_bytes);
  auto pipeline = ComputePipeline::create(*env().device, *shader);
  ASSERT_FALSE(pipeline);
  EXPECT_EQ(pipeline.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(pipeline.error().message().find("push-constant block could not be sized; use "
                                            "Kernel::create with an explicit KernelLayout"),
            std::string::npos)
      << pipeline.error().message();
}

TEST(GpuDeviceCrate, ComputeShaderDispatchRunsAndIsCounted) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  auto shader = ComputeShader::from_spirv(test_spirv("add_scale"));
  ASSERT_TRUE(shader) << shader.error().to_string();
  EXPECT_EQ(shader->entry_point(), "main");
  EXPECT_EQ(shader->workgroup_size(), (std::array<std::uint32_t, 3>{64, 1, 1}));
  EXPECT_GT(shader->id(), 0u);
  EXPECT_EQ(shader->spirv().size(), test_spirv("add_scale").size()) << "source(): the module";
  EXPECT_EQ(shader->spirv()[0], 0x07230203u);
  auto again = shader->with_entry_point("main");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id(), shader->id());
  EXPECT_FALSE(shader->with_entry_point("nope"));

  const std::vector<float> a{1, 2, 3}, b{0.5f, 0.5f, 0.5f};
  auto ba = create_buffer(dev, bytes_of(a), BufferUsage::STORAGE);
  auto bb = create_buffer(dev, bytes_of(b), BufferUsage::STORAGE);
  auto out = create_buffer_uninit(dev, 12, BufferUsage::STORAGE);
  auto counts = create_buffer_uninit(dev, 12, BufferUsage::STORAGE);
  ASSERT_TRUE(ba && bb && out && counts);
  const std::vector<std::uint32_t> push{3, std::bit_cast<std::uint32_t>(10.0f)};
  const std::uint64_t before = dev.dispatch_count();
  auto ok = dispatch(dev, *shader, {&*ba, &*bb, &*out, &*counts}, {.x = 1},
                     std::as_bytes(std::span(push)));
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(dev.dispatch_count(), before + 1);
  std::vector<float> o(3);
  ASSERT_TRUE(out->download(std::span(o)));
  EXPECT_EQ(o, (std::vector<float>{15, 25, 35}));

  auto pipeline = ComputePipeline::create(dev, *shader);
  ASSERT_TRUE(pipeline) << pipeline.error().to_string();
  EXPECT_TRUE(pipeline->with_bind_groups(1));
  auto two = pipeline->with_bind_groups(2);
  ASSERT_FALSE(two);
  EXPECT_NE(two.error().message().find("bind_groups: 2"), std::string::npos);
  EXPECT_EQ(pipeline->shader().id(), shader->id());
  const Buffer* three[] = {&*ba, &*bb, &*out};
  EXPECT_FALSE(pipeline->dispatch(dev, three, {.x = 1}, std::as_bytes(std::span(push))))
      << "wrong buffer count";
  EXPECT_EQ(dev.dispatch_count(), before + 1) << "a refused dispatch is not counted";
}

}  // namespace
}  // namespace pepita::gpu
