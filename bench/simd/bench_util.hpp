#pragma once
// Shared helpers of the simd benchmarks: the median of interleaved samples (ours and the anchor
// alternate so frequency drift and neighbours' load hit both alike), the environment banner,
// and a measured FMA peak of this core for the "% of peak" column.

#include <cblas.h>
#include <immintrin.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "pepita/simd/dispatch.hpp"

namespace pepita::simd::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread: on a shared machine this is the time the thread actually ran,
// so single-threaded comparisons survive neighbours stealing the core.
inline double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Timing {
  double wall_ours, wall_anchor;  // median seconds per call, wall clock
  double cpu_ours, cpu_anchor;    // median seconds per call, calling thread's CPU time
};

/// Runs `ours` and `anchor` alternately `samples` times, each sample timing `reps` calls;
/// returns the medians per call of each.
template <class A, class B>
Timing race(int samples, int reps, A&& ours, B&& anchor) {
  std::vector<double> wo, wa, co, ca;
  ours();  // warm caches, page in, let OpenBLAS spin up its threads
  anchor();
  for (int s = 0; s < samples; ++s) {
    double t0 = now_s(), c0 = cpu_s();
    for (int r = 0; r < reps; ++r) ours();
    wo.push_back((now_s() - t0) / reps);
    co.push_back((cpu_s() - c0) / reps);
    t0 = now_s();
    c0 = cpu_s();
    for (int r = 0; r < reps; ++r) anchor();
    wa.push_back((now_s() - t0) / reps);
    ca.push_back((cpu_s() - c0) / reps);
  }
  return {median(wo), median(wa), median(co), median(ca)};
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
  const double t0 = cpu_s();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  const double dt = cpu_s() - t0;
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
  const double t0 = cpu_s();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  const double dt = cpu_s() - t0;
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
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::printf("# %s\n# pepita simd level: %s\n", what, level_summary().c_str());
  std::printf("#%s, core: %s, OPENBLAS_CORETYPE=%s\n", OPENBLAS_VERSION, openblas_get_corename(),
              coretype != nullptr ? coretype : "(unset)");
  std::printf(
      "# load average %.1f on %ld CPUs: wall-clock columns include time other processes took\n"
      "# from this core; the cpu columns (thread CPU time) do not\n",
      load, sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace pepita::simd::bench
