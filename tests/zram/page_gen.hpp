#pragma once
// Test pages of known character: text-like (compressible), random (incompressible -> huge),
// same-filled.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "pepita/zram/zram_store.hpp"

namespace pepita::zram::testing {

inline std::vector<std::byte> text_page(uint32_t seed) {
  static const char* const kWords[] = {
      "the ",   "block ", "layer ",   "zram ", "compress ", "page ", "kernel ", "memory ",
      "queue ", "tag ",   "request ", "of ",   "and ",      "to ",   "slab ",   "object "};
  std::mt19937 rng(seed);
  std::vector<std::byte> page(kPageSize);
  size_t pos = 0;
  while (pos < kPageSize) {
    const char* word = kWords[rng() % 16];
    for (const char* c = word; *c != 0 && pos < kPageSize; ++c)
      page[pos++] = static_cast<std::byte>(*c);
  }
  return page;
}

inline std::vector<std::byte> random_page(uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> page(kPageSize);
  for (size_t i = 0; i < kPageSize; i += 8) {
    const uint64_t word = rng();
    std::memcpy(page.data() + i, &word, 8);
  }
  return page;
}

inline std::vector<std::byte> same_page(uint64_t word) {
  std::vector<std::byte> page(kPageSize);
  for (size_t i = 0; i < kPageSize; i += 8) std::memcpy(page.data() + i, &word, 8);
  return page;
}

}  // namespace pepita::zram::testing
