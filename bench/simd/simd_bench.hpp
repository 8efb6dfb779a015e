#pragma once
// Helpers of the simd benchmarks on top of bench/bench_util.hpp: alternated rounds timing a
// kernel on both clocks, the environment banner (OpenBLAS build and core), and a measured FMA
// peak of this core for the "% of peak" column.

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.hpp"
#include "pepita/simd/dispatch.hpp"

namespace pepita::simd::bench {

using pepita::bench::thread_cpu_s;

struct Timing {
  // Seconds per call, one sample per round: wall clock and the calling thread's CPU time.
  std::vector<double> wall_ours, wall_anchor, cpu_ours, cpu_anchor;
};

/// Runs `ours` and `anchor` in alternated rounds (pepita::bench::rotate_rounds), each sample
/// timing `reps` calls; returns the per-call samples of each.
template <class A, class B>
Timing race(int rounds, int reps, A&& ours, B&& anchor) {
  Timing t;
  ours();  // warm caches, page in, let OpenBLAS spin up its threads
  anchor();
  auto sample = [reps](auto& fn, std::vector<double>& wall, std::vector<double>& cpu) {
    const pepita::bench::Cost c = pepita::bench::cost_of([&] {
      for (int r = 0; r < reps; ++r) fn();
    });
    wall.push_back(c.wall / reps);
    cpu.push_back(c.cpu / reps);
  };
  pepita::bench::rotate_rounds(rounds, {[&] { sample(ours, t.wall_ours, t.cpu_ours); },
                                        [&] { sample(anchor, t.wall_anchor, t.cpu_anchor); }});
  return t;
}

// 16 independent chains of 512-bit (or 256-bit) FMAs: the core's f32 FMA throughput.
// GCC 12's AVX-512 intrinsics trip -Wuninitialized (bug 105593), hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,fma"))) inline double fma_peak_avx512(long iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  const double t0 = thread_cpu_s();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  const double dt = thread_cpu_s() - t0;
  float sink = 0;
  for (int i = 0; i < 16; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  if (sink == 1.2345f) std::puts("");
  return static_cast<double>(iters) * 16 * 16 * 2 / dt / 1e9;
}

// AVX2 has 16 YMM registers: 12 chains plus the two operands fit without spilling.
__attribute__((target("avx2,fma"))) inline double fma_peak_avx2(long iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  const double t0 = thread_cpu_s();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  const double dt = thread_cpu_s() - t0;
  alignas(32) float out[8];
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  _mm256_store_ps(out, s);
  if (out[0] == 1.2345f) std::puts("");
  return static_cast<double>(iters) * 12 * 8 * 2 / dt / 1e9;
}
#pragma GCC diagnostic pop

/// Single-core f32 peak GFLOP/s at the active level, measured in thread CPU time (best of 5).
inline double measured_peak_gflops() {
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    double g = 0;
    if (active_level() == Level::avx512) {
      g = fma_peak_avx512(2'000'000);
    } else if (active_level() == Level::avx2) {
      g = fma_peak_avx2(2'000'000);
    }
    best = std::max(best, g);
  }
  return best;
}

inline void print_banner(const char* what) {
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::printf("# %s\n# pepita simd level: %s\n", what, level_summary().c_str());
  std::printf("#%s, core: %s, OPENBLAS_CORETYPE=%s\n", OPENBLAS_VERSION, openblas_get_corename(),
              coretype != nullptr ? coretype : "(unset)");
  pepita::bench::print_load();
}

}  // namespace pepita::simd::bench
