// Parallel dot product: the input is dot.cpp's (two int32 vectors a and b of n elements each, 8n
// bytes, little-endian); each vCPU sums its own slice, vCPU 0 adds the partial sums and prints
// "dot <sum> vcpus <count>". Exact integer arithmetic, so the host can check it.
#include "pepita_guest/runtime.hpp"

namespace {

using pepita::guest::Bytes;

struct Job {
  const unsigned char* a;
  const unsigned char* b;
  uint64_t n;
  int64_t partial[64];
};

int64_t load_i32(const unsigned char* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

void slice(uint32_t vcpu, void* arg) {
  auto* job = static_cast<Job*>(arg);
  const uint64_t count = pepita::guest::vcpu_count();
  const uint64_t from = job->n * vcpu / count, to = job->n * (vcpu + 1) / count;
  int64_t sum = 0;
  for (uint64_t i = from; i < to; ++i) sum += load_i32(job->a + 4 * i) * load_i32(job->b + 4 * i);
  job->partial[vcpu] = sum;  // each vCPU its own slot; run_on_all_vcpus orders it before the sum
}

}  // namespace

extern "C" int guest_main() {
  using namespace pepita::guest;
  Bytes in = input();
  if (in.size % 8 != 0) {
    print("pdot: input must be two int32 vectors of equal length\n");
    return 2;
  }
  Job job{};
  job.n = in.size / 8;
  job.a = in.data;
  job.b = in.data + 4 * job.n;
  run_on_all_vcpus(slice, &job);
  int64_t sum = 0;
  for (uint32_t v = 0; v < vcpu_count(); ++v) sum += job.partial[v];
  print("dot ");
  print_i64(sum);
  print(" vcpus ");
  print_u64(vcpu_count());
  print("\n");
  return 0;
}
