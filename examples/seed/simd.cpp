// The reference crate's simd module example (simd.rs) in C++: detect the CPU's vector
// capabilities, then add two 1024-element f32 vectors (1 + 2) with the best kernel level.
// Mismatched lengths are an error naming the sizes, not a read past a buffer.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::simd;
  const Level level = active_level();
  const int width = level == Level::avx512 ? 512 : level == Level::avx2 ? 256 : 128;
  std::printf("Best vector width: %d bits (%s)\n", width, std::string(to_string(level)).c_str());

  const std::vector<float> a(1024, 1.0f);
  const std::vector<float> b(1024, 2.0f);
  std::vector<float> c(1024, 0.0f);
  if (auto added = add(a, b, c); !added) {
    std::fprintf(stderr, "add: %s\n", added.error().to_string().c_str());
    return 1;
  }
  const bool all_three = std::all_of(c.begin(), c.end(), [](float v) { return v == 3.0f; });
  std::vector<float> short_out(10);
  const bool refused = !add(a, b, short_out);
  std::printf("c[0] %.1f c[1023] %.1f all 3 %d, short output refused %d\n",
              static_cast<double>(c[0]), static_cast<double>(c[1023]), all_three ? 1 : 0,
              refused ? 1 : 0);
  return all_three && refused ? 0 : 1;
}
