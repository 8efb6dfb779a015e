// sgemm, pepita vs OpenBLAS (cblas_sgemm, row-major, no transposes, alpha 1, beta 0) on the same
// matrices in the same process: single thread at 256..2048, then 2048 on 2 workers (pepita's
// work-stealing scheduler vs OpenBLAS's own threads). ms per call, median [min-max] over
// alternated rounds: on thread CPU time for the single-thread rows (with GFLOP/s and % of the
// measured single-core FMA peak), on the wall clock for all; ratio ours/OpenBLAS (time; < 1 means
// pepita is faster).

#include "pepita/simd/sgemm.hpp"

#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "pepita/scheduler/scheduler.hpp"
#include "simd/simd_bench.hpp"

using namespace pepita::simd;
namespace pb = pepita::bench;

namespace {

void run(pb::Table& table, const char* label, std::size_t sz, int threads, double peak,
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
  const int rounds = pb::rounds(sz >= 2048 ? 5 : 9);
  GemmOptions opts{.scheduler = sched};
  const bench::Timing t = bench::race(
      rounds, reps,
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
  auto ms = [](double s) { return s * 1e3; };
  const std::string w = std::string(label) + " " + std::to_string(sz);
  char extra[128];
  if (threads == 1) {
    // Thread CPU time is only meaningful when the calling thread does all the work.
    const double gc_o = flops / pb::median(t.cpu_ours) / 1e9;
    const double gc_a = flops / pb::median(t.cpu_anchor) / 1e9;
    std::snprintf(extra, sizeof extra, "GFLOP/s %.1f vs %.1f (%.0f%% vs %.0f%% of peak)", gc_o,
                  gc_a, 100 * gc_o / peak, 100 * gc_a / peak);
    table.row(w, "OpenBLAS", pb::Clock::thread_cpu, "ms", pb::map(t.cpu_ours, ms),
              pb::map(t.cpu_anchor, ms), pb::Kind::time, extra);
  }
  std::snprintf(extra, sizeof extra, "GFLOP/s %.1f vs %.1f, max|diff| %.1e",
                flops / pb::median(t.wall_ours) / 1e9, flops / pb::median(t.wall_anchor) / 1e9,
                maxdiff);
  table.row(w, "OpenBLAS", pb::Clock::wall, "ms", pb::map(t.wall_ours, ms),
            pb::map(t.wall_anchor, ms), pb::Kind::time, extra);
}

}  // namespace

int main() {
  bench::print_banner("bench_simd_sgemm: C = A B, row-major square, f32");
  const double peak = bench::measured_peak_gflops();
  std::printf("# measured single-core FMA peak at this level (thread CPU time): %.1f GFLOP/s\n",
              peak);
  pb::Table table("sgemm vs OpenBLAS (1t: one thread each; 2t: two workers each), ms per call");
  openblas_set_num_threads(1);
  for (std::size_t sz : {256u, 512u, 1024u, 2048u}) run(table, "sgemm-1t", sz, 1, peak, nullptr);
  auto sched = pepita::scheduler::Scheduler::create({.workers = 2});
  if (!sched) {
    std::printf("cannot start scheduler: %s\n", sched.error().to_string().c_str());
    return 1;
  }
  openblas_set_num_threads(2);
  run(table, "sgemm-2t", 2048, 2, peak, sched->get());
  table.print();
  return 0;
}
