#pragma once
// Helpers shared by the simd tests: the dispatch levels this machine can run, a guard that forces
// one for a test's duration, and buffers that end exactly at their heap block's end (so ASan
// flags any tail over-read) while starting at a chosen misalignment.

#include <gtest/gtest.h>

#include <cstddef>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "pepita/simd/dispatch.hpp"

namespace pepita::simd::test {

inline std::vector<Level> available_levels() {
  std::vector<Level> levels;
  for (Level l : {Level::scalar, Level::avx2, Level::avx512}) {
    if (l <= detected_level()) levels.push_back(l);
  }
  return levels;
}

inline std::string level_name(const ::testing::TestParamInfo<Level>& info) {
  return std::string(to_string(info.param));
}

/// Forces a level for one scope, restoring the detected level afterwards.
class LevelGuard {
 public:
  explicit LevelGuard(Level level) {
    auto r = set_level(level);
    EXPECT_TRUE(r.has_value()) << r.error().to_string();
  }
  ~LevelGuard() { reset_level(); }
  LevelGuard(const LevelGuard&) = delete;
  LevelGuard& operator=(const LevelGuard&) = delete;
};

/// n elements starting `offset` elements into an allocation that ends right after them.
template <class T>
class Buf {
 public:
  Buf(std::size_t n, std::size_t offset) : store_(n + offset), offset_(offset), n_(n) {}
  T* data() { return store_.data() + offset_; }
  const T* data() const { return store_.data() + offset_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  operator std::span<T>() { return {data(), n_}; }
  operator std::span<const T>() const { return {data(), n_}; }

 private:
  std::vector<T> store_;
  std::size_t offset_;
  std::size_t n_;
};

template <class T>
void fill_uniform(Buf<T>& b, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> d(lo, hi);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<T>(d(rng));
}

/// Lengths every kernel is checked at: all of 0..130 (every tail of every vector width and
/// unroll factor) plus a few large ones.
inline std::vector<std::size_t> test_lengths() {
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 130; ++n) lengths.push_back(n);
  for (std::size_t n : {255u, 1000u, 4099u, 65537u}) lengths.push_back(n);
  return lengths;
}

constexpr double kU32 = 0x1p-24;
constexpr double kU64 = 0x1p-53;

}  // namespace pepita::simd::test
