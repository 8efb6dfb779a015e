// Exercises the multi-vCPU runtime and the VMM's pause/resume/stop. The input is a command:
//   "ids"      every vCPU prints "vcpu <i> of <n>" after a barrier that checks all of them arrived
//   "fault"    vCPU 1 writes to unmapped address 8 (a #PF on vCPU 1) while vCPU 0 waits
//   "count N"  vCPU 0 counts to N in the first 8 bytes of the heap (BootInfo.heap_base, its first
//              alloc), then prints "count <value>"; N = 0 counts forever (for stop())
#include "pepita_guest/runtime.hpp"

namespace {

using namespace pepita::guest;

bool is(Bytes in, const char* word) {
  uint64_t i = 0;
  for (; word[i] != '\0'; ++i)
    if (i >= in.size || in.data[i] != static_cast<unsigned char>(word[i])) return false;
  return i == in.size || in.data[i] == ' ';
}

uint64_t number_after_space(Bytes in) {
  uint64_t i = 0, v = 0;
  while (i < in.size && in.data[i] != ' ') ++i;
  for (++i; i < in.size && in.data[i] >= '0' && in.data[i] <= '9'; ++i)
    v = v * 10 + (in.data[i] - '0');
  return v;
}

uint32_t g_arrived = 0;

void ids(uint32_t vcpu, void*) {
  __atomic_add_fetch(&g_arrived, 1, __ATOMIC_RELAXED);
  vcpu_barrier();
  const bool all = __atomic_load_n(&g_arrived, __ATOMIC_RELAXED) == vcpu_count();
  print("vcpu ");
  print_u64(vcpu);
  print(" of ");
  print_u64(vcpu_count());
  print(all ? " barrier ok\n" : " barrier BROKEN\n");
}

void fault(uint32_t vcpu, void*) {
  if (vcpu == 1) {
    uint64_t address = 8;              // page 0 is never mapped
    asm volatile("" : "+r"(address));  // opaque to the compiler: no null-pointer folding
    *reinterpret_cast<volatile uint64_t*>(address) = 1;
  }
  if (vcpu == 0)
    for (;;) asm volatile("pause");  // the host ends the VM at vCPU 1's fault
}

}  // namespace

extern "C" int guest_main() {
  Bytes in = input();
  if (is(in, "ids")) {
    run_on_all_vcpus(ids, nullptr);
    return 0;
  }
  if (is(in, "fault")) {
    if (vcpu_count() < 2) return 3;
    run_on_all_vcpus(fault, nullptr);
    return 4;
  }
  if (is(in, "count")) {
    auto* counter = static_cast<volatile uint64_t*>(alloc(8, 8));
    const uint64_t n = number_after_space(in);
    for (uint64_t i = 1; n == 0 || i <= n; ++i) *counter = i;
    print("count ");
    print_u64(*counter);
    print("\n");
    return 0;
  }
  print("vcpus: unknown command; use ids, fault or count N\n");
  return 2;
}
