// sdot and saxpy, pepita vs OpenBLAS (cblas_sdot / cblas_saxpy, one thread), on the same data
// in the same process, at 4 KiB (L1), 256 KiB (L2) and 64 MiB (DRAM) per vector. One table:
// median time per call, GFLOP/s and GB/s of each, ratio ours/OpenBLAS (time; < 1 is faster).

#include <cblas.h>

#include <cstdio>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd/bench_util.hpp"

using namespace pepita::simd;

int main() {
  openblas_set_num_threads(1);
  bench::print_banner("bench_simd_blas1: sdot / saxpy, single thread");
  std::printf("%-8s %-9s %12s %12s %9s %9s %9s %9s %8s\n", "kernel", "size", "ours_ns",
              "openblas_ns", "ours_GF", "oblas_GF", "ours_GB/s", "oblas_GB/s", "ratio");
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
    const int samples = s.n > (1u << 20) ? 9 : 21;
    volatile float sink = 0;
    auto [dot_ours, dot_anchor] = bench::race(
        samples, reps, [&] { sink = *dot(std::span<const float>(x), std::span<const float>(y)); },
        [&] { sink = cblas_sdot(n, x.data(), 1, y.data(), 1); });
    const double flops = 2.0 * static_cast<double>(s.n);
    const double bytes_dot = 8.0 * static_cast<double>(s.n);
    std::printf("%-8s %-9s %12.0f %12.0f %9.2f %9.2f %9.1f %9.1f %8.3f\n", "sdot", s.name,
                dot_ours * 1e9, dot_anchor * 1e9, flops / dot_ours / 1e9, flops / dot_anchor / 1e9,
                bytes_dot / dot_ours / 1e9, bytes_dot / dot_anchor / 1e9, dot_ours / dot_anchor);
    // alpha small enough that y stays far from overflow over all repetitions.
    auto [axpy_ours, axpy_anchor] = bench::race(
        samples, reps, [&] { (void)axpy(1e-6f, std::span<const float>(x), std::span<float>(y)); },
        [&] { cblas_saxpy(n, 1e-6f, x.data(), 1, y.data(), 1); });
    const double bytes_axpy = 12.0 * static_cast<double>(s.n);
    std::printf("%-8s %-9s %12.0f %12.0f %9.2f %9.2f %9.1f %9.1f %8.3f\n", "saxpy", s.name,
                axpy_ours * 1e9, axpy_anchor * 1e9, flops / axpy_ours / 1e9,
                flops / axpy_anchor / 1e9, bytes_axpy / axpy_ours / 1e9,
                bytes_axpy / axpy_anchor / 1e9, axpy_ours / axpy_anchor);
    (void)sink;
  }
  return 0;
}
