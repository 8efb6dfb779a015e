#pragma once
// Shared test device: opened once per test process (lavapipe in CI); tests skip with the reason
// when the probe finds no Vulkan device, and fail when it finds one that cannot be set up.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/require.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu::test {

struct Env {
  std::optional<Device> device;
  std::optional<Builtins> builtins;
  std::string why_not;
};

inline Env& env() {
  static Env e = [] {
    Env out;
    auto dev = Device::open();
    if (!dev) {
      out.why_not = dev.error().to_string();
      return out;
    }
    out.device.emplace(std::move(*dev));
    auto lib = Builtins::create(*out.device);
    if (!lib) {
      out.why_not = lib.error().to_string();
      out.device.reset();
      return out;
    }
    out.builtins.emplace(std::move(*lib));
    return out;
  }();
  return e;
}

/// Skips the test (fails it when PEPITA_REQUIRE names vulkan) when the independent probe
/// (vulkaninfo, tests/common/require.hpp) finds no Vulkan device. With a device there, failing to
/// open it or to build the builtins is a test failure.
#define PEPITA_REQUIRE_GPU()                                                                  \
  do {                                                                                        \
    PEPITA_REQUIRE_CAPABILITY(vulkan);                                                        \
    if (!::pepita::gpu::test::env().device)                                                   \
      FAIL() << "vulkaninfo lists a Vulkan device, but the test device could not be set up: " \
             << ::pepita::gpu::test::env().why_not;                                           \
  } while (0)

/// A test shader's SPIR-V, compiled from tests/gpu/shaders/<name>.comp at build time (empty, and a
/// test failure, when it cannot be read).
inline std::vector<std::uint32_t> test_spirv(const std::string& name) {
  auto words = load_spirv(std::string(PEPITA_GPU_TEST_SHADER_DIR) + "/" + name + ".spv");
  EXPECT_TRUE(words) << words.error().to_string();
  return words ? *words : std::vector<std::uint32_t>{};
}

/// The bytes of a vector of trivially copyable values (a buffer's contents).
template <typename T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  auto s = std::as_bytes(std::span(v));
  return {s.begin(), s.end()};
}

}  // namespace pepita::gpu::test
