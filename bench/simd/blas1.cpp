// sdot and saxpy, pepita vs OpenBLAS (cblas_sdot / cblas_saxpy, one thread), on the same data
// in the same process, at 4 KiB (L1), 256 KiB (L2) and 64 MiB (DRAM) per vector. One table:
// median time per call (wall clock and thread CPU time), GFLOP/s, and ratio ours/OpenBLAS
// (time; < 1 means pepita is faster).

#include <cblas.h>

#include <cstdio>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd/bench_util.hpp"

using namespace pepita::simd;

int main() {
  openblas_set_num_threads(1);
  bench::print_banner("bench_simd_blas1: sdot / saxpy, single thread");
  std::printf("%-6s %-7s %10s %10s %7s | %10s %10s %8s %8s %7s\n", "kernel", "size", "ours_ns",
              "oblas_ns", "ratio", "ours_cpu", "oblas_cpu", "ours_GF", "oblas_GF", "ratio");
  std::printf("%-6s %-7s %10s %10s %7s | %10s %10s %8s %8s %7s\n", "", "", "(wall)", "(wall)",
              "(wall)", "ns", "ns", "(cpu)", "(cpu)", "(cpu)");
  struct Size {
    const char* name;
    std::size_t n;
  };
  for (Size s : {Size{"4KiB", 1024}, Size{"256KiB", 65536}, Size{"64MiB", 16u << 20}}) {
    std::vector<float> x(s.n), y(s.n);
    for (std::size_t i = 0; i < s.n; ++i) {
      x[i] = static_cast<float>(i % 97) * 0.01f;
      y[i] = static_cast<float>(i % 89) * 0.02f;
    }
    const int n = static_cast<int>(s.n);
    // ~20 ms per sample.
    const int reps = static_cast<int>(std::max<std::size_t>(1, (40u << 20) / (s.n * 8)));
    const int samples = s.n > (1u << 20) ? 15 : 21;
    volatile float sink = 0;
    auto row = [&](const char* kernel, const bench::Timing& t) {
      const double flops = 2.0 * static_cast<double>(s.n);
      std::printf("%-6s %-7s %10.0f %10.0f %7.3f | %10.0f %10.0f %8.2f %8.2f %7.3f\n", kernel,
                  s.name, t.wall_ours * 1e9, t.wall_anchor * 1e9, t.wall_ours / t.wall_anchor,
                  t.cpu_ours * 1e9, t.cpu_anchor * 1e9, flops / t.cpu_ours / 1e9,
                  flops / t.cpu_anchor / 1e9, t.cpu_ours / t.cpu_anchor);
    };
    row("sdot", bench::race(
                    samples, reps,
                    [&] { sink = *dot(std::span<const float>(x), std::span<const float>(y)); },
                    [&] { sink = cblas_sdot(n, x.data(), 1, y.data(), 1); }));
    // alpha small enough that y stays far from overflow over all repetitions.
    row("saxpy", bench::race(
                     samples, reps,
                     [&] { (void)axpy(1e-6f, std::span<const float>(x), std::span<float>(y)); },
                     [&] { cblas_saxpy(n, 1e-6f, x.data(), 1, y.data(), 1); }));
    (void)sink;
  }
  return 0;
}
