// sgemm, pepita vs OpenBLAS (cblas_sgemm, row-major, no transposes, alpha 1, beta 0) on the same
// matrices in the same process: single thread at 256..2048, then 2048 on 2 workers (pepita's
// work-stealing scheduler vs OpenBLAS's own threads). Median wall time and GFLOP/s; for the
// single-thread rows also thread-CPU-time GFLOP/s, % of the measured single-core FMA peak, and
// ratio ours/OpenBLAS (time; < 1 means pepita is faster).

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
  const bench::Timing t = bench::race(
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
  for (std::size_t i = 0; i < c1.size(); ++i) {
    maxdiff = std::max(maxdiff, double{std::fabs(c1[i] - c2[i])});
  }
  const double gw_o = flops / t.wall_ours / 1e9, gw_a = flops / t.wall_anchor / 1e9;
  std::printf("%-9s %5zu %3d %9.2f %9.2f %7.1f %7.1f %6.3f |", label, sz, threads,
              t.wall_ours * 1e3, t.wall_anchor * 1e3, gw_o, gw_a, t.wall_ours / t.wall_anchor);
  if (threads == 1) {
    // Thread CPU time is only meaningful when the calling thread does all the work.
    const double gc_o = flops / t.cpu_ours / 1e9, gc_a = flops / t.cpu_anchor / 1e9;
    std::printf(" %7.1f %7.1f %5.0f%% %5.0f%% %6.3f", gc_o, gc_a, 100 * gc_o / peak,
                100 * gc_a / peak, t.cpu_ours / t.cpu_anchor);
  } else {
    std::printf(" %7s %7s %6s %6s %6s", "-", "-", "-", "-", "-");
  }
  std::printf(" %8.1e\n", maxdiff);
}

}  // namespace

int main() {
  bench::print_banner("bench_simd_sgemm: C = A B, row-major square, f32");
  const double peak = bench::measured_peak_gflops();
  std::printf("# measured single-core FMA peak at this level (thread CPU time): %.1f GFLOP/s\n",
              peak);
  std::printf("%-9s %5s %3s %9s %9s %7s %7s %6s | %7s %7s %6s %6s %6s %8s\n", "workload", "size",
              "thr", "ours_ms", "oblas_ms", "ours_GF", "oblas_GF", "ratio", "ours_GF", "oblas_GF",
              "ours%", "oblas%", "ratio", "max|diff|");
  std::printf("%-9s %5s %3s %9s %9s %7s %7s %6s | %7s %7s %6s %6s %6s\n", "", "", "", "(wall)",
              "(wall)", "(wall)", "(wall)", "(wall)", "(cpu)", "(cpu)", "peak", "peak", "(cpu)");
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
