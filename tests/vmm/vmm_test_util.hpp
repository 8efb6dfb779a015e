#pragma once
// Shared helpers for the vmm tests: KVM detection with a printed skip reason, guest image paths.

#include <gtest/gtest.h>

#include <string>

#include "pepita/vmm/vm.hpp"

namespace pepita::vmm::test {

inline std::string guest_path(const std::string& name) {
  return std::string(PEPITA_BINARY_DIR) + "/guest/" + name + ".elf";
}

inline GuestImage load_guest(const std::string& name) {
  auto image = GuestImage::load_file(guest_path(name));
  EXPECT_TRUE(image) << image.error().to_string();
  return image ? std::move(*image) : GuestImage{};
}

}  // namespace pepita::vmm::test

/// Skips the test, printing why, when /dev/kvm cannot create VMs here.
#define PEPITA_REQUIRE_KVM()                                              \
  do {                                                                    \
    if (auto kvm_ok_ = ::pepita::vmm::kvm_available(); !kvm_ok_)          \
      GTEST_SKIP() << "KVM unavailable: " << kvm_ok_.error().to_string(); \
  } while (0)
