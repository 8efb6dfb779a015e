// GPU (Vulkan compute; lavapipe when no GPU) vs pepita's CPU SIMD kernels on the same data in the
// same process: sgemm (pepita::simd::sgemm on all cores through the scheduler) and saxpy
// (pepita::simd::axpy). Wall-clock medians; ours = GPU, anchor = CPU SIMD; ratio = time
// ours/anchor. GPU times include submission and the fence wait but not host<->device copies (the
// data stays resident, as in a pipeline of kernels). On a CPU Vulkan device (lavapipe) the run is
// cut to sgemm 1024 and saxpy 2^24 with 3 repetitions to stay under a minute; --full forces sgemm
// 2048 and saxpy 2^26 (capped by the device's storage-buffer range). Usage: bench_gpu_gpu_vs_simd
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

#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/simd/kernels.hpp"
#include "pepita/simd/sgemm.hpp"

namespace {

double median_s(int reps, const std::function<bool()>& fn) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (!fn()) return -1;
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void row(const char* workload, double gpu_s, double cpu_s, double work, const char* unit) {
  std::printf("%-22s %10.2f %10.2f %8s %10.2f %10.2f %8.2f\n", workload, gpu_s * 1e3,
              work / gpu_s / 1e9, unit, cpu_s * 1e3, work / cpu_s / 1e9, gpu_s / cpu_s);
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
  std::printf("%-22s %10s %10s %8s %10s %10s %8s\n", "workload", "gpu ms", "gpu rate", "unit",
              "cpu ms", "cpu rate", "gpu/cpu");

  bool quick = !full && info.type == gpu::DeviceType::Cpu;
  int reps_small = quick ? 3 : 5;
  std::vector<std::size_t> sizes = {1024};
  if (!quick) sizes.push_back(2048);
  for (std::size_t n : sizes) {
    auto a = random_floats(n * n, 1), b = random_floats(n * n, 2);
    std::vector<float> c(n * n, 0.0f), c_gpu(n * n);
    auto ga = gpu::Buffer::from<float>(*dev, a), gb = gpu::Buffer::from<float>(*dev, b);
    auto gc = gpu::Buffer::create(*dev, n * n * sizeof(float));
    if (!ga || !gb || !gc) return 1;
    int reps = n <= 1024 ? reps_small : 3;
    auto gpu_run = [&] { return lib->sgemm(n, n, n, 1.0f, *ga, *gb, 0.0f, *gc).has_value(); };
    auto cpu_run = [&] {
      return simd::sgemm(simd::Transpose::no, simd::Transpose::no, n, n, n, 1.0f, a.data(), n,
                         b.data(), n, 0.0f, c.data(), n, {.scheduler = sched->get()})
          .has_value();
    };
    gpu_run(), cpu_run();  // warm-up: pipeline compile, packing buffers
    double tg = median_s(reps, gpu_run), tc = median_s(reps, cpu_run);
    if (tg < 0 || tc < 0) return 1;
    if (!gc->download(std::span<float>(c_gpu))) return 1;
    double max_err = 0;
    for (std::size_t i = 0; i < n * n; ++i)
      max_err = std::max(max_err, static_cast<double>(std::fabs(c_gpu[i] - c[i])));
    std::string name = "sgemm " + std::to_string(n);
    row(name.c_str(), tg, tc, 2.0 * n * n * n, "GFLOP/s");
    if (max_err > 1e-2) std::printf("  WARNING: max |gpu - cpu| = %g\n", max_err);
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
  double tg = median_s(reps_small, gpu_run), tc = median_s(reps_small, cpu_run);
  if (tg < 0 || tc < 0) return 1;
  std::string name = "saxpy 2^" + std::to_string(static_cast<int>(std::log2(n)));
  row(name.c_str(), tg, tc, 12.0 * static_cast<double>(n), "GB/s");
  std::printf("(saxpy moves 12 bytes/element: read x, read y, write y; CPU axpy single-thread)\n");
  return 0;
}
