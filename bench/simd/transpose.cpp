// f32 matrix transpose, pepita (blocked; AVX-512 16x16 register tiles) vs a naive double loop and
// vs Eigen 3 (`out.noalias() = in.transpose()` on row-major maps, built for this host's ISA), on
// the same matrices in the same process, alternated rounds (rotate_rounds: ABC BCA CAB ...).
// Square sizes from L1-resident to DRAM-sized plus ragged shapes. One table: time per call on the
// wall clock and on thread CPU time, median [min-max], GB/s moved (read + write) alongside, and
// ratio ours/anchor (time; < 1 means pepita is faster).

#include <Eigen/Core>
#include <cstdio>
#include <string>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd/simd_bench.hpp"

using namespace pepita::simd;
namespace pb = pepita::bench;

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The textbook loop; noinline so the compiler cannot specialise it on the call site's sizes.
[[gnu::noinline]] void naive_transpose(const float* in, std::size_t rows, std::size_t cols,
                                       float* out) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) out[j * rows + i] = in[i * cols + j];
}

struct Samples {
  std::vector<double> wall, cpu;
};

template <class F>
void sample(F& fn, int reps, Samples& s) {
  const pb::Cost c = pb::cost_of([&] {
    for (int r = 0; r < reps; ++r) fn();
  });
  s.wall.push_back(c.wall / reps);
  s.cpu.push_back(c.cpu / reps);
}

}  // namespace

int main() {
  bench::print_banner("bench_simd_transpose: f32 transpose, single thread");
  std::printf("# Eigen %d.%d.%d, SIMD instruction sets: %s\n", EIGEN_WORLD_VERSION,
              EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse());
  pb::Table table("transpose vs naive loop and Eigen, one thread, us per call");
  struct Shape {
    std::size_t rows, cols;
  };
  for (Shape s : {Shape{64, 64}, Shape{256, 256}, Shape{1024, 1024}, Shape{4096, 4096},
                  Shape{1000, 3000}, Shape{4099, 257}}) {
    const std::size_t n = s.rows * s.cols;
    std::vector<float> in(n), out_ours(n), out_naive(n), out_eigen(n);
    for (std::size_t i = 0; i < n; ++i) in[i] = static_cast<float>(i % 1013) * 0.5f;
    Eigen::Map<const RowMajor> ein(in.data(), static_cast<Eigen::Index>(s.rows),
                                   static_cast<Eigen::Index>(s.cols));
    Eigen::Map<RowMajor> eout(out_eigen.data(), static_cast<Eigen::Index>(s.cols),
                              static_cast<Eigen::Index>(s.rows));
    auto ours = [&] { (void)transpose(in, s.rows, s.cols, out_ours); };
    auto naive = [&] { naive_transpose(in.data(), s.rows, s.cols, out_naive.data()); };
    auto eigen = [&] { eout.noalias() = ein.transpose(); };
    ours();  // warm up, page in the outputs
    naive();
    eigen();
    if (out_ours != out_naive || out_eigen != out_naive) {
      std::fprintf(stderr, "transpose %zux%zu: results differ; not timing a wrong kernel\n", s.rows,
                   s.cols);
      return 1;
    }
    // ~20 ms per sample at ~5 GB/s.
    const int reps = static_cast<int>(std::max<std::size_t>(1, (50u << 20) / (n * 8)));
    const int rounds = pb::rounds(n > (1u << 22) ? 11 : 21);
    Samples so, sn, se;
    pb::rotate_rounds(rounds, {[&] { sample(ours, reps, so); }, [&] { sample(naive, reps, sn); },
                               [&] { sample(eigen, reps, se); }});
    const double bytes = 2.0 * static_cast<double>(n) * sizeof(float);
    auto us = [](double sec) { return sec * 1e6; };
    const std::string w = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    for (auto [anchor, samples] : {std::pair<const char*, Samples*>{"naive", &sn},
                                   std::pair<const char*, Samples*>{"Eigen", &se}}) {
      char gb[64];
      std::snprintf(gb, sizeof gb, "GB/s %.1f vs %.1f", bytes / pb::median(so.wall) / 1e9,
                    bytes / pb::median(samples->wall) / 1e9);
      table.row(w, anchor, pb::Clock::wall, "us", pb::map(so.wall, us), pb::map(samples->wall, us),
                pb::Kind::time, gb);
      table.row(w, anchor, pb::Clock::thread_cpu, "us", pb::map(so.cpu, us),
                pb::map(samples->cpu, us));
    }
  }
  table.print();
  return 0;
}
