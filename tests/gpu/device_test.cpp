// Device, Buffer and Kernel: device listing and choice, both buffer memory paths, user SPIR-V
// from a file with specialization and push constants, and every rejected input.

#include "pepita/gpu/device.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gpu_env.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/kernel.hpp"

// LeakSanitizer: Mesa's lavapipe (and the LLVM it JITs with) keeps process-lifetime allocations
// it never frees. The loader unloads the driver at vkDestroyInstance, so LSan would see those
// blocks from an "<unknown module>" and could not suppress them by library; the driver is pinned
// (RTLD_NODELETE) so its frames keep their names, and only those libraries are suppressed, never
// pepita's code. Test binary only.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libvulkan_lvp.so\nleak:libLLVM-15.so\nleak:libvulkan.so.1\n";
}

namespace {
[[maybe_unused]] const bool kLavapipePinned =
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE) != nullptr;
}  // namespace

namespace pepita::gpu {
namespace {

using test::env;

std::filesystem::path shader(const char* name) {
  return std::filesystem::path(PEPITA_GPU_TEST_SHADER_DIR) / name;
}

TEST(GpuDevice, ListsDevicesAndPicksOne) {
  PEPITA_REQUIRE_CAPABILITY(vulkan);
  auto devs = list_devices();
  ASSERT_TRUE(devs) << devs.error().to_string();
  ASSERT_FALSE(devs->empty()) << "vulkaninfo lists a device, list_devices() none";
  for (const DeviceInfo& d : *devs) {
    std::printf("gpu device %u: %s (%s)\n", d.index, d.name.c_str(),
                std::string(to_string(d.type)).c_str());
    EXPECT_FALSE(d.name.empty());
  }
  PEPITA_REQUIRE_GPU();
  const DeviceInfo& info = env().device->info();
  EXPECT_TRUE(info.has_compute_queue);
  EXPECT_GE(info.max_group_count[0], 65535u);
  EXPECT_GE(info.max_push_constant_bytes, 128u);
}

TEST(GpuDevice, BadIndexIsNotFound) {
  PEPITA_REQUIRE_GPU();
  auto dev = Device::open({.index = 999});
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code(), ErrorCode::NotFound);
  EXPECT_NE(dev.error().message().find("999"), std::string::npos);
}

TEST(GpuBuffer, RoundTripsAndRejectsOutOfRange) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  std::vector<float> data(1001);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.5f;
  auto buf = Buffer::from<float>(dev, data);
  ASSERT_TRUE(buf) << buf.error().to_string();
  EXPECT_EQ(buf->size(), data.size() * sizeof(float));
  std::vector<float> back(data.size());
  ASSERT_TRUE(buf->download(std::span<float>(back)));
  EXPECT_EQ(back, data);
  // Partial read at an offset.
  float two[2] = {};
  ASSERT_TRUE(buf->download(std::span<float>(two), 10 * sizeof(float)));
  EXPECT_EQ(two[0], 5.0f);
  EXPECT_EQ(two[1], 5.5f);

  std::vector<float> big(1002);
  auto w = buf->upload(std::span<const float>(big));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::InvalidArgument);
  auto r = buf->download(std::span<float>(two), buf->size() - 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  auto r2 = buf->download(std::span<float>(two), SIZE_MAX);
  ASSERT_FALSE(r2);

  auto zero = Buffer::create(dev, 0);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), ErrorCode::InvalidArgument);
}

TEST(GpuBuffer, StagingPathRoundTrips) {
  PEPITA_REQUIRE_GPU();
  DeviceOptions opts;
  opts.force_staging = true;
  auto dev = Device::open(opts);
  ASSERT_TRUE(dev) << dev.error().to_string();
  std::vector<std::uint32_t> data(777);
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<std::uint32_t>(i * 2654435761u);
  auto buf = Buffer::from<std::uint32_t>(*dev, data);
  ASSERT_TRUE(buf) << buf.error().to_string();
  EXPECT_EQ(buf->kind(), MemoryKind::DeviceLocal);
  std::vector<std::uint32_t> back(data.size());
  ASSERT_TRUE(buf->download(std::span<std::uint32_t>(back)));
  EXPECT_EQ(back, data);
  std::uint32_t one = 0;
  ASSERT_TRUE(buf->download(std::span<std::uint32_t>(&one, 1), 5 * 4));
  EXPECT_EQ(one, data[5]);
}

// y = x * SCALE (spec constant 1) + offset (push constant), from a .spv file built by CMake.
struct ScalePush {
  std::uint32_t n;
  float offset;
};

KernelLayout lay(std::uint32_t buffers, std::uint32_t push) {
  KernelLayout l;
  l.buffers = buffers;
  l.push_constant_bytes = push;
  return l;
}

Result<Kernel> scale_kernel(Device& dev, float scale, std::uint32_t wg = 64) {
  return Kernel::from_file(dev, shader("scale_offset.spv"),
                           {.buffers = 2,
                            .push_constant_bytes = sizeof(ScalePush),
                            .spec_constants = {wg, std::bit_cast<std::uint32_t>(scale)}});
}

TEST(GpuKernel, UserSpirvFromFileWithSpecializationConstants) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  auto k = scale_kernel(dev, 3.0f);
  ASSERT_TRUE(k) << k.error().to_string();
  constexpr std::uint32_t n = 1000;  // not a multiple of the 64-wide workgroup
  std::vector<float> x(n);
  for (std::uint32_t i = 0; i < n; ++i) x[i] = static_cast<float>(i);
  auto bx = Buffer::from<float>(dev, x);
  auto by = Buffer::create(dev, (n + 24) * sizeof(float));
  ASSERT_TRUE(bx && by);
  std::vector<float> sentinel(n + 24, -7.0f);
  ASSERT_TRUE(by->upload(std::span<const float>(sentinel)));
  ScalePush push{n, 0.25f};
  const Buffer* bufs[] = {&*bx, &*by};
  auto ok = dev.dispatch(*k, bufs, {(n + 63) / 64}, std::as_bytes(std::span(&push, 1)));
  ASSERT_TRUE(ok) << ok.error().to_string();
  std::vector<float> y(n + 24);
  ASSERT_TRUE(by->download(std::span<float>(y)));
  for (std::uint32_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 3.0f * static_cast<float>(i) + 0.25f) << i;
  for (std::uint32_t i = n; i < n + 24; ++i) ASSERT_EQ(y[i], -7.0f) << "wrote past n at " << i;
}

TEST(GpuKernel, InvalidSpirvIsRejectedClearly) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  std::vector<std::uint32_t> junk = {0xdeadbeef, 1, 2, 3, 4, 5};
  auto k = Kernel::create(dev, junk, lay(1, 0));
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(k.error().message().find("magic"), std::string::npos) << k.error().message();

  auto good = load_spirv(shader("scale_offset.spv"));
  ASSERT_TRUE(good) << good.error().to_string();
  ASSERT_TRUE(validate_spirv(*good));
  // Truncated mid-instruction.
  std::vector<std::uint32_t> cut(good->begin(), good->begin() + good->size() / 2);
  bool cut_ok = true;
  // Halving may land on an instruction boundary; trim until an instruction straddles the end.
  for (std::size_t trim = 0; trim < 8 && cut_ok; ++trim) {
    cut_ok = validate_spirv(cut).has_value();
    if (cut_ok) cut.pop_back();
  }
  auto kc = Kernel::create(dev, cut, lay(2, 8));
  ASSERT_FALSE(kc);
  EXPECT_EQ(kc.error().code(), ErrorCode::InvalidArgument);

  auto tiny = Kernel::create(dev, std::span<const std::uint32_t>(good->data(), 3), lay(2, 0));
  ASSERT_FALSE(tiny);
  EXPECT_EQ(tiny.error().code(), ErrorCode::InvalidArgument);

  auto wrong_entry = Kernel::create(
      dev, *good,
      {.buffers = 2, .push_constant_bytes = 8, .spec_constants = {}, .entry_point = "nope"});
  ASSERT_FALSE(wrong_entry);
  EXPECT_NE(wrong_entry.error().message().find("nope"), std::string::npos);

  auto big_push = Kernel::create(dev, *good, lay(2, 4096));
  ASSERT_FALSE(big_push);
  EXPECT_EQ(big_push.error().code(), ErrorCode::InvalidArgument);
}

TEST(GpuKernel, SpirvFileErrors) {
  auto missing = load_spirv("/nonexistent/pepita.spv");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);

  auto path = std::filesystem::temp_directory_path() / "pepita_gpu_odd.spv";
  {
    std::ofstream out(path, std::ios::binary);
    out << "abcde";  // 5 bytes: not whole words
  }
  auto odd = load_spirv(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code(), ErrorCode::InvalidArgument);
}

TEST(GpuDispatch, RejectsBadDispatches) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  auto k = scale_kernel(dev, 1.0f);
  ASSERT_TRUE(k) << k.error().to_string();
  auto bx = Buffer::create(dev, 64 * sizeof(float));
  auto by = Buffer::create(dev, 64 * sizeof(float));
  ASSERT_TRUE(bx && by);
  ScalePush push{64, 0.0f};
  auto pb = std::as_bytes(std::span(&push, 1));
  const Buffer* bufs[] = {&*bx, &*by};
  const DeviceInfo& info = dev.info();

  // (If the limit is UINT32_MAX, + 1 wraps to 0, which must be rejected too.)
  auto too_many = dev.dispatch(*k, bufs, {info.max_group_count[0] + 1u}, pb);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(too_many.error().message().find("group count"), std::string::npos);

  auto too_many_y = dev.dispatch(*k, bufs, {1, info.max_group_count[1] + 1u, 1}, pb);
  ASSERT_FALSE(too_many_y);

  auto zero = dev.dispatch(*k, bufs, {0}, pb);
  ASSERT_FALSE(zero);

  const Buffer* one[] = {&*bx};
  auto few = dev.dispatch(*k, one, {1}, pb);
  ASSERT_FALSE(few);
  EXPECT_NE(few.error().message().find("buffers"), std::string::npos);

  auto short_push = dev.dispatch(*k, bufs, {1}, pb.first(4));
  ASSERT_FALSE(short_push);
  EXPECT_NE(short_push.error().message().find("push-constant"), std::string::npos);

  const Buffer* null_buf[] = {&*bx, nullptr};
  ASSERT_FALSE(dev.dispatch(*k, null_buf, {1}, pb));

  // A kernel from one device used on another.
  auto other = Device::open();
  ASSERT_TRUE(other);
  auto foreign = other->dispatch(*k, bufs, {1}, pb);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message().find("another Device"), std::string::npos);

  // The device still works after all the rejections.
  ASSERT_TRUE(dev.dispatch(*k, bufs, {1}, pb));
}

}  // namespace
}  // namespace pepita::gpu
