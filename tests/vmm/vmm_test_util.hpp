#pragma once
// Shared helpers for the vmm tests: the KVM requirement (tests/common/require.hpp), guest image
// paths, dot-product inputs.

#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "common/require.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
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

/// Skips the test, printing why, when the independent probe finds no usable /dev/kvm (fails it
/// when PEPITA_REQUIRE names kvm). With /dev/kvm usable, KvmSystem failing is a test failure.
#define PEPITA_REQUIRE_KVM()                                                                \
  do {                                                                                      \
    PEPITA_REQUIRE_CAPABILITY(kvm);                                                         \
    if (auto kvm_ok_ = ::pepita::vmm::kvm_available(); !kvm_ok_)                            \
      FAIL() << "/dev/kvm is usable but KvmSystem failed: " << kvm_ok_.error().to_string(); \
  } while (0)

namespace pepita::vmm::test {

/// Input for the dot guest: a then b, n int32 each; returns the exact int64 dot product.
inline int64_t make_dot_input(size_t n, uint32_t seed, std::vector<std::byte>& out) {
  std::vector<int32_t> v(2 * n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& e : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    e = static_cast<int32_t>(x % (1u << 21)) - (1 << 20);  // |a*b| < 2^40: sums stay exact
  }
  int64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += int64_t{v[i]} * v[n + i];
  out.clear();
  for (int32_t e : v) {
    const auto u = static_cast<uint32_t>(e);
    for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<std::byte>(u >> shift));
  }
  return sum;
}

inline std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

/// One 512-byte sector of `disk`, read through a tag set of its own.
inline std::vector<std::byte> read_sector(blk_mq::BlockDevice& disk, uint64_t sector) {
  blk_mq::TagSet tags(disk.info().tag_set);
  std::vector<std::byte> out(512);
  auto r = blk_mq::execute(disk, tags, 0, blk_mq::Op::Read, sector, out);
  EXPECT_TRUE(r) << r.error().to_string();
  return out;
}

}  // namespace pepita::vmm::test
