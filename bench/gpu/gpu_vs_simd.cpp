// GPU (Vulkan compute; lavapipe when no GPU) vs pepita's CPU SIMD kernels on the same data in the
// same process: sgemm (pepita::simd::sgemm on all cores through the scheduler) and saxpy
// (pepita::simd::axpy). Alternated rounds, wall-clock median [min-max]; ours = GPU, anchor = CPU
// SIMD; ratio = time ours/anchor. GPU times include submission and the fence wait but not
// host<->device copies (the data stays resident, as in a pipeline of kernels). On a CPU Vulkan
// device (lavapipe) the run is cut to sgemm 1024 and saxpy 2^24 (5 rounds each) to stay under a
// minute; --full forces sgemm 2048 and saxpy 2^26 (capped by the device's storage-buffer range).
// Usage: bench_gpu_gpu_vs_simd
// [--full]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/simd/kernels.hpp"
#include "pepita/simd/sgemm.hpp"

namespace {

// Alternated rounds of `gpu` and `cpu`; each sample is seconds per call. Empty when a call fails.
std::pair<std::vector<double>, std::vector<double>> race(int rounds,
                                                         const std::function<bool()>& gpu,
                                                         const std::function<bool()>& cpu) {
  bool ok = true;
  auto timed = [&](const std::function<bool()>& fn) {
    const double t0 = pepita::bench::wall_s();
    ok = fn() && ok;
    return pepita::bench::wall_s() - t0;
  };
  auto samples = pepita::bench::alternate(
      rounds, [&] { return timed(gpu); }, [&] { return timed(cpu); });
  if (!ok) return {};
  return samples;
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Rows in ms, with the rate (GFLOP/s or GB/s) of the medians alongside.
void row(pepita::bench::Table& table, const std::string& workload,
         const std::pair<std::vector<double>, std::vector<double>>& t, double work,
         const char* unit) {
  namespace pb = pepita::bench;
  char extra[96];
  std::snprintf(extra, sizeof extra, "%s %.2f vs %.2f", unit, work / pb::median(t.first) / 1e9,
                work / pb::median(t.second) / 1e9);
  auto ms = [](double s) { return s * 1e3; };
  table.row(workload, "pepita::simd (CPU)", pb::Clock::wall, "ms", pb::map(t.first, ms),
            pb::map(t.second, ms), pb::Kind::time, extra);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pepita;
  bool full = argc > 1 && std::strcmp(argv[1], "--full") == 0;
  auto dev = gpu::Device::open();
  if (!dev) {
    std::printf("bench gpu: skipped, %s\n", dev.error().to_string().c_str());
    return 0;
  }
  auto lib = gpu::Builtins::create(*dev);
  auto sched = scheduler::Scheduler::create();
  if (!lib || !sched) {
    std::printf("bench gpu: setup failed\n");
    return 1;
  }
  const gpu::DeviceInfo& info = dev->info();
  std::printf("device: %s (%s); CPU anchor: pepita::simd on %u scheduler workers\n",
              info.name.c_str(), std::string(gpu::to_string(info.type)).c_str(),
              (*sched)->worker_count());
  pepita::bench::print_load();
  pepita::bench::Table table("GPU (ours) vs CPU SIMD (anchor), ms per call");

  bool quick = !full && info.type == gpu::DeviceType::Cpu;
  const int rounds = pepita::bench::rounds(5);
  std::vector<std::size_t> sizes = {1024};
  if (!quick) sizes.push_back(2048);
  for (std::size_t n : sizes) {
    auto a = random_floats(n * n, 1), b = random_floats(n * n, 2);
    std::vector<float> c(n * n, 0.0f), c_gpu(n * n);
    auto ga = gpu::Buffer::from<float>(*dev, a), gb = gpu::Buffer::from<float>(*dev, b);
    auto gc = gpu::Buffer::create(*dev, n * n * sizeof(float));
    if (!ga || !gb || !gc) return 1;
    auto gpu_run = [&] { return lib->sgemm(n, n, n, 1.0f, *ga, *gb, 0.0f, *gc).has_value(); };
    auto cpu_run = [&] {
      return simd::sgemm(simd::Transpose::no, simd::Transpose::no, n, n, n, 1.0f, a.data(), n,
                         b.data(), n, 0.0f, c.data(), n, {.scheduler = sched->get()})
          .has_value();
    };
    gpu_run(), cpu_run();  // warm-up: pipeline compile, packing buffers
    const auto t = race(rounds, gpu_run, cpu_run);
    if (t.first.empty()) return 1;
    if (!gc->download(std::span<float>(c_gpu))) return 1;
    double max_err = 0;
    for (std::size_t i = 0; i < n * n; ++i)
      max_err = std::max(max_err, static_cast<double>(std::fabs(c_gpu[i] - c[i])));
    std::string name = "sgemm " + std::to_string(n);
    row(table, name, t, 2.0 * static_cast<double>(n * n * n), "GFLOP/s");
    if (max_err > 1e-2)
      table.note("WARNING: " + name + " max |gpu - cpu| = " + std::to_string(max_err));
  }

  std::size_t n = std::min<std::size_t>(std::size_t{1} << 26, info.max_storage_buffer_range / 4);
  if (quick) n = std::min<std::size_t>(n, std::size_t{1} << 24);
  auto x = random_floats(n, 3), y = random_floats(n, 4);
  auto gx = gpu::Buffer::from<float>(*dev, x), gy = gpu::Buffer::from<float>(*dev, y);
  if (!gx || !gy) return 1;
  auto gpu_run = [&] { return lib->saxpy(0.5f, *gx, *gy, n).has_value(); };
  auto cpu_run = [&] {
    return simd::axpy(0.5f, std::span<const float>(x), std::span<float>(y)).has_value();
  };
  gpu_run(), cpu_run();
  const auto t = race(rounds, gpu_run, cpu_run);
  if (t.first.empty()) return 1;
  std::string name = "saxpy 2^" + std::to_string(static_cast<int>(std::log2(n)));
  row(table, name, t, 12.0 * static_cast<double>(n), "GB/s");
  table.note("saxpy moves 12 bytes/element: read x, read y, write y; CPU axpy single-thread");
  table.note("GPU times include submission and the fence wait, not host<->device copies");
  table.print();
  return 0;
}
