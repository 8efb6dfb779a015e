#pragma once
// Shared helpers for the Linux boot tests (linux_boot_test.cpp, linux_boot_bounds_test.cpp): byte
// pokes into an image or zero page, a minimal synthetic bzImage, and a parse result as text.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pepita/vmm/linux_boot.hpp"

namespace pepita::vmm::test {

template <typename T>
void put(std::vector<std::byte>& f, size_t at, T v) {
  std::memcpy(f.data() + at, &v, sizeof v);
}
template <typename T>
T get(std::span<const std::byte> f, size_t at) {
  T v{};
  std::memcpy(&v, f.data() + at, sizeof v);
  return v;
}

// A minimal bzImage: one setup sector, protocol 2.15, 64-bit entry, 4 KiB of "kernel".
inline std::vector<std::byte> synthetic_bzimage() {
  std::vector<std::byte> f(2 * 512 + 4096, std::byte{0x90});
  std::fill(f.begin(), f.begin() + 1024, std::byte{0});
  put<uint8_t>(f, 0x1f1, 1);            // setup_sects
  put<uint16_t>(f, 0x1fe, 0xaa55);      // boot_flag
  put<uint8_t>(f, 0x201, 0x6a);         // jump: header ends at 0x26c
  put<uint32_t>(f, 0x202, 0x53726448);  // "HdrS"
  put<uint16_t>(f, 0x206, 0x020f);      // version 2.15
  put<uint8_t>(f, 0x211, 0x01);         // LOADED_HIGH
  put<uint32_t>(f, 0x22c, 0x7fffffff);  // initrd_addr_max
  put<uint32_t>(f, 0x230, 0x200000);    // kernel_alignment
  put<uint8_t>(f, 0x234, 1);            // relocatable
  put<uint16_t>(f, 0x236, 0x3);         // XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
  put<uint32_t>(f, 0x238, 2047);        // cmdline_size
  put<uint64_t>(f, 0x258, 0x1000000);   // pref_address
  put<uint32_t>(f, 0x260, 0x200000);    // init_size
  return f;
}

inline std::string error_of(const Result<KernelImage>& r) {
  return r ? std::string("parsed") : r.error().to_string();
}

}  // namespace pepita::vmm::test
