// sdot and saxpy, pepita vs OpenBLAS (cblas_sdot / cblas_saxpy, one thread), on the same data
// in the same process, at 4 KiB (L1), 256 KiB (L2) and 64 MiB (DRAM) per vector. One table:
// time per call on thread CPU time and on the wall clock (median [min-max] over alternated
// rounds), GFLOP/s alongside, and ratio ours/OpenBLAS (time; < 1 means pepita is faster).

#include <cblas.h>

#include <cstdio>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd/simd_bench.hpp"

using namespace pepita::simd;
namespace pb = pepita::bench;

int main() {
  openblas_set_num_threads(1);
  bench::print_banner("bench_simd_blas1: sdot / saxpy, single thread");
  pb::Table table("sdot / saxpy vs OpenBLAS, one thread, ns per call");
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
    const int rounds = pb::rounds(s.n > (1u << 20) ? 15 : 21);
    volatile float sink = 0;
    auto rows = [&](const char* kernel, const bench::Timing& t) {
      const double flops = 2.0 * static_cast<double>(s.n);
      auto ns = [](double sec) { return sec * 1e9; };
      char gf[64];
      std::snprintf(gf, sizeof gf, "GFLOP/s %.2f vs %.2f", flops / pb::median(t.cpu_ours) / 1e9,
                    flops / pb::median(t.cpu_anchor) / 1e9);
      const std::string w = std::string(kernel) + " " + s.name;
      table.row(w, "OpenBLAS", pb::Clock::thread_cpu, "ns", pb::map(t.cpu_ours, ns),
                pb::map(t.cpu_anchor, ns), pb::Kind::time, gf);
      table.row(w, "OpenBLAS", pb::Clock::wall, "ns", pb::map(t.wall_ours, ns),
                pb::map(t.wall_anchor, ns));
    };
    rows("sdot", bench::race(
                     rounds, reps,
                     [&] { sink = *dot(std::span<const float>(x), std::span<const float>(y)); },
                     [&] { sink = cblas_sdot(n, x.data(), 1, y.data(), 1); }));
    // alpha small enough that y stays far from overflow over all repetitions.
    rows("saxpy", bench::race(
                      rounds, reps,
                      [&] { (void)axpy(1e-6f, std::span<const float>(x), std::span<float>(y)); },
                      [&] { cblas_saxpy(n, 1e-6f, x.data(), 1, y.data(), 1); }));
    (void)sink;
  }
  table.print();
  return 0;
}
