// Device, Buffer and Kernel: device listing and choice, both buffer memory paths, user SPIR-V
// from a file with specialization and push constants, and every rejected input.

#include "pepita/gpu/device.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "detail/context.hpp"
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

// Every VkResult the driver can return maps to the code the caller acts on, and the message
// names the call, the result and (for a missing driver or a lost device) what to do.
TEST(GpuVkError, MapsEachResultToACodeAndSaysWhatToDo) {
  struct Case {
    VkResult result;
    ErrorCode code;
    const char* name;
  };
  const Case cases[] = {
      {VK_SUCCESS, ErrorCode::Internal, "VK_SUCCESS"},
      {VK_NOT_READY, ErrorCode::Internal, "VK_NOT_READY"},
      {VK_TIMEOUT, ErrorCode::Internal, "VK_TIMEOUT"},
      {VK_INCOMPLETE, ErrorCode::Internal, "VK_INCOMPLETE"},
      {VK_ERROR_OUT_OF_HOST_MEMORY, ErrorCode::ResourceExhausted, "VK_ERROR_OUT_OF_HOST_MEMORY"},
      {VK_ERROR_OUT_OF_DEVICE_MEMORY, ErrorCode::ResourceExhausted,
       "VK_ERROR_OUT_OF_DEVICE_MEMORY"},
      {VK_ERROR_INITIALIZATION_FAILED, ErrorCode::Unsupported, "VK_ERROR_INITIALIZATION_FAILED"},
      {VK_ERROR_DEVICE_LOST, ErrorCode::Io, "VK_ERROR_DEVICE_LOST"},
      {VK_ERROR_MEMORY_MAP_FAILED, ErrorCode::Internal, "VK_ERROR_MEMORY_MAP_FAILED"},
      {VK_ERROR_LAYER_NOT_PRESENT, ErrorCode::Unsupported, "VK_ERROR_LAYER_NOT_PRESENT"},
      {VK_ERROR_EXTENSION_NOT_PRESENT, ErrorCode::Unsupported, "VK_ERROR_EXTENSION_NOT_PRESENT"},
      {VK_ERROR_FEATURE_NOT_PRESENT, ErrorCode::Unsupported, "VK_ERROR_FEATURE_NOT_PRESENT"},
      {VK_ERROR_INCOMPATIBLE_DRIVER, ErrorCode::Unsupported, "VK_ERROR_INCOMPATIBLE_DRIVER"},
      {VK_ERROR_TOO_MANY_OBJECTS, ErrorCode::ResourceExhausted, "VK_ERROR_TOO_MANY_OBJECTS"},
      {VK_ERROR_FORMAT_NOT_SUPPORTED, ErrorCode::Internal, "VK_ERROR_FORMAT_NOT_SUPPORTED"},
      {VK_ERROR_FRAGMENTED_POOL, ErrorCode::ResourceExhausted, "VK_ERROR_FRAGMENTED_POOL"},
      {VK_ERROR_OUT_OF_POOL_MEMORY, ErrorCode::ResourceExhausted, "VK_ERROR_OUT_OF_POOL_MEMORY"},
      {VK_ERROR_INVALID_SHADER_NV, ErrorCode::InvalidArgument, "VK_ERROR_INVALID_SHADER_NV"},
      {VK_ERROR_UNKNOWN, ErrorCode::Internal, "VK_ERROR_UNKNOWN"},
  };
  for (const Case& c : cases) {
    const Error e = detail::vk_error(c.result, "vkDoThing");
    EXPECT_EQ(e.code(), c.code) << c.name;
    const std::string& msg = e.message();
    EXPECT_NE(msg.find("vkDoThing failed: " + std::string(c.name) + " (" +
                       std::to_string(static_cast<int>(c.result)) + ")"),
              std::string::npos)
        << msg;
    if (c.code == ErrorCode::Unsupported) {
      EXPECT_NE(msg.find("apt-get install libvulkan1 mesa-vulkan-drivers"), std::string::npos)
          << msg;
    }
    if (c.code == ErrorCode::Io) {
      EXPECT_NE(msg.find("the GPU reset or hung"), std::string::npos) << msg;
    }
  }
}

TEST(GpuDevice, DeviceTypesHaveNames) {
  EXPECT_EQ(to_string(DeviceType::Discrete), "discrete");
  EXPECT_EQ(to_string(DeviceType::Integrated), "integrated");
  EXPECT_EQ(to_string(DeviceType::Virtual), "virtual");
  EXPECT_EQ(to_string(DeviceType::Cpu), "cpu");
  EXPECT_EQ(to_string(DeviceType::Other), "other");
}

// Sets PEPITA_GPU_DEVICE for one scope and puts back what was there.
class ScopedDeviceEnv {
 public:
  explicit ScopedDeviceEnv(const char* value) {
    if (const char* old = std::getenv("PEPITA_GPU_DEVICE")) old_ = old;
    ::setenv("PEPITA_GPU_DEVICE", value, 1);
  }
  ~ScopedDeviceEnv() {
    if (old_) {
      ::setenv("PEPITA_GPU_DEVICE", old_->c_str(), 1);
    } else {
      ::unsetenv("PEPITA_GPU_DEVICE");
    }
  }
  ScopedDeviceEnv(const ScopedDeviceEnv&) = delete;
  ScopedDeviceEnv& operator=(const ScopedDeviceEnv&) = delete;

 private:
  std::optional<std::string> old_;
};

TEST(GpuDevice, PepitaGpuDeviceEnvironmentPicksTheIndexOrSaysItIsNotOne) {
  PEPITA_REQUIRE_GPU();
  for (const char* bad : {"gpu0", "1x", "99999999999"}) {
    ScopedDeviceEnv set(bad);
    auto dev = Device::open();
    ASSERT_FALSE(dev) << bad;
    EXPECT_EQ(dev.error().code(), ErrorCode::InvalidArgument) << bad;
    EXPECT_NE(dev.error().message().find("PEPITA_GPU_DEVICE='" + std::string(bad) +
                                         "' is not a device index"),
              std::string::npos)
        << dev.error().message();
  }
  {
    ScopedDeviceEnv set("999");
    auto dev = Device::open();
    ASSERT_FALSE(dev);
    EXPECT_EQ(dev.error().code(), ErrorCode::NotFound);
    EXPECT_NE(dev.error().message().find("see pepita::gpu::list_devices"), std::string::npos);
  }
  const std::uint32_t index = env().device->info().index;
  ScopedDeviceEnv set(std::to_string(index).c_str());
  auto dev = Device::open();
  ASSERT_TRUE(dev) << dev.error().to_string();
  EXPECT_EQ(dev->info().index, index);
  EXPECT_EQ(dev->info().name, env().device->info().name);
  // An explicit index wins over the environment.
  ScopedDeviceEnv junk("junk");
  auto explicit_index = Device::open({.index = index});
  EXPECT_TRUE(explicit_index) << explicit_index.error().to_string();
}

TEST(GpuDevice, MoveAssignedDeviceKeepsWorking) {
  PEPITA_REQUIRE_GPU();
  auto a = Device::open();
  auto b = Device::open();
  ASSERT_TRUE(a && b);
  auto buf = Buffer::create(*b, 16);
  ASSERT_TRUE(buf);
  *a = std::move(*b);  // a's old device closes; b's lives on in a (and in buf)
  const std::vector<std::uint32_t> data = {1, 2, 3, 4};
  auto fresh = Buffer::from<std::uint32_t>(*a, data);
  ASSERT_TRUE(fresh) << fresh.error().to_string();
  ASSERT_TRUE(a->copy_buffer(*fresh, *buf));
  std::vector<std::uint32_t> back(4);
  ASSERT_TRUE(buf->download(std::span<std::uint32_t>(back)));
  EXPECT_EQ(back, data);
  ASSERT_TRUE(a->wait_idle());
  EXPECT_TRUE(a->is_available());
}

// A logical device opened without the timeline-semaphore feature, as on a Vulkan 1.1 driver
// without VK_KHR_timeline_semaphore: Context::submit then waits on a fence.
struct FencedContext {
  std::shared_ptr<detail::Context> ctx = std::make_shared<detail::Context>();

  Result<void> open(std::uint32_t index) {
    ctx->instance = PEPITA_TRY(detail::create_instance());
    std::uint32_t n = 0;
    vkEnumeratePhysicalDevices(ctx->instance, &n, nullptr);
    std::vector<VkPhysicalDevice> devs(n);
    vkEnumeratePhysicalDevices(ctx->instance, &n, devs.data());
    if (index >= n) return fail(ErrorCode::NotFound, "device index");
    ctx->phys = devs[index];
    ctx->info = detail::describe(ctx->phys, index);
    std::uint32_t families = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &families, nullptr);
    std::vector<VkQueueFamilyProperties> props(families);
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &families, props.data());
    std::optional<std::uint32_t> compute;
    for (std::uint32_t i = 0; i < families && !compute; ++i)
      if (props[i].queueFlags & VK_QUEUE_COMPUTE_BIT) compute = i;
    if (!compute) return fail(ErrorCode::Unsupported, "no compute queue");
    ctx->queue_family = *compute;
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->memory);
    const float priority = 1.0f;
    VkDeviceQueueCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qi.queueFamilyIndex = ctx->queue_family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &priority;
    VkDeviceCreateInfo di{};
    di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    if (VkResult r = vkCreateDevice(ctx->phys, &di, nullptr, &ctx->device); r != VK_SUCCESS)
      return std::unexpected(detail::vk_error(r, "vkCreateDevice"));
    vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);
    VkCommandPoolCreateInfo pi{};
    pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pi.queueFamilyIndex = ctx->queue_family;
    if (VkResult r = vkCreateCommandPool(ctx->device, &pi, nullptr, &ctx->pool); r != VK_SUCCESS)
      return std::unexpected(detail::vk_error(r, "vkCreateCommandPool"));
    return {};
  }
};

TEST(GpuDevice, WithoutTimelineSemaphoresSubmissionsWaitOnAFence) {
  PEPITA_REQUIRE_GPU();
  FencedContext fenced;
  auto opened = fenced.open(env().device->info().index);
  ASSERT_TRUE(opened) << opened.error().to_string();
  detail::Context& c = *fenced.ctx;
  ASSERT_FALSE(c.timeline_fns);
  int recorded = 0;
  for (int i = 0; i < 3; ++i) {
    auto done = c.submit([&](VkCommandBuffer cmd) {
      EXPECT_NE(cmd, VK_NULL_HANDLE);
      ++recorded;
    });
    ASSERT_TRUE(done) << done.error().to_string();
  }
  EXPECT_EQ(recorded, 3);
  EXPECT_EQ(c.submitted, 3u);
  EXPECT_EQ(c.fenced_done.load(), 3u) << "each fenced submission is counted once it completed";

  // No memory type has every property bit: NotFound, naming the flags and the device.
  auto none = c.memory_type(0, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::NotFound);
  EXPECT_NE(none.error().message().find("no Vulkan memory type with property flags " +
                                        std::to_string(VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) +
                                        " on " + c.info.name),
            std::string::npos)
      << none.error().message();
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

TEST(GpuKernel, LayoutOverTheDeviceLimitsOrAZeroWordCountIsRefused) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  auto good = load_spirv(shader("scale_offset.spv"));
  ASSERT_TRUE(good) << good.error().to_string();

  auto zero = *good;
  zero[5] = 0;  // the first instruction after the header claims 0 words
  auto z = validate_spirv(zero);
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(z.error().message().find("instruction at word 5 has a word count of 0"),
            std::string::npos)
      << z.error().message();

  const std::uint32_t limit = dev.info().max_storage_buffers;
  auto many = Kernel::create(dev, *good, lay(limit + 1, 8));
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(many.error().message().find("kernel layout has " + std::to_string(limit + 1) +
                                        " storage buffers; the device allows " +
                                        std::to_string(limit) + " per stage"),
            std::string::npos)
      << many.error().message();

  // A kernel keeps the layout it was built with, also after a move-assignment.
  auto k = scale_kernel(dev, 2.0f);
  auto k2 = scale_kernel(dev, 5.0f, 32);
  ASSERT_TRUE(k && k2);
  EXPECT_EQ(k->layout().buffers, 2u);
  EXPECT_EQ(k->layout().push_constant_bytes, sizeof(ScalePush));
  *k = std::move(*k2);
  EXPECT_EQ(k->layout().spec_constants.at(0), 32u);
  EXPECT_EQ(k->layout().spec_constants.at(1), std::bit_cast<std::uint32_t>(5.0f));
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
  // That device's own kernel with this device's buffers.
  auto other_k = scale_kernel(*other, 1.0f);
  ASSERT_TRUE(other_k) << other_k.error().to_string();
  auto foreign_buf = other->dispatch(*other_k, bufs, {1}, pb);
  ASSERT_FALSE(foreign_buf);
  EXPECT_EQ(foreign_buf.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(foreign_buf.error().message().find("buffer 0 was created on another Device"),
            std::string::npos)
      << foreign_buf.error().message();

  // The device still works after all the rejections.
  ASSERT_TRUE(dev.dispatch(*k, bufs, {1}, pb));
}

TEST(GpuDispatch, BufferOverTheStorageBufferRangeIsRefused) {
  PEPITA_REQUIRE_GPU();
  Device& dev = *env().device;
  const std::size_t range = dev.info().max_storage_buffer_range;
  if (range > (std::size_t{256} << 20))
    GTEST_SKIP() << "the storage-buffer range is " << range << " bytes; a buffer past it is too "
                 << "large to allocate in a unit test";
  auto k = scale_kernel(dev, 1.0f);
  ASSERT_TRUE(k) << k.error().to_string();
  auto bx = Buffer::create(dev, 64 * sizeof(float));
  auto huge = Buffer::create(dev, range + 4);
  ASSERT_TRUE(bx) << bx.error().to_string();
  ASSERT_TRUE(huge) << huge.error().to_string();
  ScalePush push{64, 0.0f};
  const Buffer* bufs[] = {&*bx, &*huge};
  auto r = dev.dispatch(*k, bufs, {1}, std::as_bytes(std::span(&push, 1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("buffer 1 is " + std::to_string(range + 4) +
                                     " bytes, over the device's storage-buffer range of " +
                                     std::to_string(range)),
            std::string::npos)
      << r.error().message();
}

}  // namespace
}  // namespace pepita::gpu
