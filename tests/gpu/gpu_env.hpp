#pragma once
// Shared test device: opened once per test binary (lavapipe in CI); tests skip with the reason
// when no Vulkan device exists.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/device.hpp"

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

#define PEPITA_GPU_OR_SKIP()                                                      \
  do {                                                                            \
    if (!::pepita::gpu::test::env().device)                                       \
      GTEST_SKIP() << "no Vulkan device: " << ::pepita::gpu::test::env().why_not; \
  } while (0)

}  // namespace pepita::gpu::test
