// sgemm, pepita vs OpenBLAS (cblas_sgemm, row-major, no transposes, alpha 1, beta 0) on the same
// matrices in the same process: single thread at 256..2048, then 2048 on 2 workers (pepita's
// work-stealing scheduler vs OpenBLAS's own threads). Median time, GFLOP/s, % of the measured
// single-core FMA peak (x threads), and ratio ours/OpenBLAS (time; < 1 is faster).

#include "pepita/simd/sgemm.hpp"

#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "pepita/scheduler/scheduler.hpp"
#include "simd/bench_util.hpp"

using namespace pepita::simd;

namespace {

void run(const char* label, std::size_t sz, int threads, double peak,
         pepita::scheduler::Scheduler* sched) {
  std::vector<float> a(sz * sz), b(sz * sz), c1(sz * sz), c2(sz * sz);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.1f - 0.6f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.1f - 0.5f;
  }
  const int n = static_cast<int>(sz);
  const double flops =
      2.0 * static_cast<double>(sz) * static_cast<double>(sz) * static_cast<double>(sz);
  const int reps = flops > 4e9 ? 1 : static_cast<int>(4e9 / flops / 4) + 1;
  const int samples = sz >= 2048 ? 5 : 9;
  GemmOptions opts{.scheduler = sched};
  auto [ours, anchor] = bench::race(
      samples, reps,
      [&] {
        auto r = sgemm(Transpose::no, Transpose::no, sz, sz, sz, 1.0f, a.data(), sz, b.data(), sz,
                       0.0f, c1.data(), sz, opts);
        if (!r) std::printf("sgemm failed: %s\n", r.error().to_string().c_str());
      },
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                    n, 0.0f, c2.data(), n);
      });
  double maxdiff = 0;
  for (std::size_t i = 0; i < c1.size(); ++i)
    maxdiff = std::max(maxdiff, double{std::fabs(c1[i] - c2[i])});
  const double g_ours = flops / ours / 1e9, g_anchor = flops / anchor / 1e9;
  std::printf("%-10s %6zu %4d %10.2f %10.2f %8.1f %8.1f %6.0f%% %6.0f%% %7.3f %9.1e\n", label, sz,
              threads, ours * 1e3, anchor * 1e3, g_ours, g_anchor, 100 * g_ours / (peak * threads),
              100 * g_anchor / (peak * threads), ours / anchor, maxdiff);
}

}  // namespace

int main() {
  bench::print_banner("bench_simd_sgemm: C = A B, row-major square, f32");
  const double peak = bench::measured_peak_gflops();
  std::printf("# measured single-core FMA peak at this level: %.1f GFLOP/s\n", peak);
  std::printf("%-10s %6s %4s %10s %10s %8s %8s %7s %7s %7s %9s\n", "workload", "size", "thr",
              "ours_ms", "oblas_ms", "ours_GF", "oblas_GF", "ours%pk", "obl%pk", "ratio",
              "max|diff|");
  openblas_set_num_threads(1);
  for (std::size_t sz : {256u, 512u, 1024u, 2048u}) run("sgemm-1t", sz, 1, peak, nullptr);
  auto sched = pepita::scheduler::Scheduler::create({.workers = 2});
  if (!sched) {
    std::printf("cannot start scheduler: %s\n", sched.error().to_string().c_str());
    return 1;
  }
  openblas_set_num_threads(2);
  run("sgemm-2t", 2048, 2, peak, sched->get());
  return 0;
}
