// Guest side of the pepita micro-VM ABI: entry point, batched host calls through the ring pages
// (one per vCPU), buffered output, the heap, and work spread over the vCPUs. Runs entirely at CPL3;
// the only VM exits are ring submissions.
#include <stddef.h>

#include "pepita/vmm/guest_abi.hpp"
#include "pepita_guest/runtime.hpp"

namespace ga = pepita::vmm::guest_abi;

namespace pepita::guest {
namespace {

const ga::BootInfo* g_boot = nullptr;
uint64_t g_heap_next = 0;  // 0 until the first alloc (vCPUs share the heap: CAS)

constexpr uint64_t kOutCapacity = 16384;          // vCPU 0's output buffer
constexpr uint64_t kSecondaryOutCapacity = 2048;  // the others', from the heap at first write
char g_out0[kOutCapacity];

// Each vCPU's own host-call ring and output buffer; only that vCPU touches its entry.
struct Cpu {
  uint32_t pending = 0;  // queued ring entries
  bool output_refused = false;
  int out_fd = 1;
  char* out = nullptr;
  uint64_t out_capacity = 0;
  uint64_t out_used = 0;    // bytes in out (some already queued)
  uint64_t out_queued = 0;  // bytes of out covered by queued kWrite entries
};
Cpu g_cpu[ga::kMaxVcpus];

// Work handed to every vCPU by run_on_all_vcpus (written by vCPU 0 before bumping g_job_gen).
void (*g_job_fn)(uint32_t, void*) = nullptr;
void* g_job_arg = nullptr;
uint64_t g_job_gen = 0;
uint32_t g_job_done = 0;
uint32_t g_barrier_count = 0;
uint32_t g_barrier_gen = 0;

uint32_t self() {
  uint32_t v;
  // SAFETY: the VMM sets each vCPU's GS base to its ring page, whose header holds its index.
  asm volatile("movl %%gs:%c1, %0" : "=r"(v) : "i"(offsetof(ga::HostcallRingHeader, vcpu)));
  return v < ga::kMaxVcpus ? v : 0;
}

void spin_pause() { asm volatile("pause" ::: "memory"); }

ga::HostcallRingHeader* ring_header(uint32_t vcpu) {
  // SAFETY: each vCPU's ring page is mapped read-write for the guest (identity-mapped).
  return reinterpret_cast<ga::HostcallRingHeader*>(g_boot->hostcall_gpa +
                                                   vcpu * ga::kHostcallStride);
}
ga::Hostcall* ring_entries(uint32_t vcpu) {
  return reinterpret_cast<ga::Hostcall*>(reinterpret_cast<uint64_t>(ring_header(vcpu)) +
                                         sizeof(ga::HostcallRingHeader));
}

void submit(uint32_t vcpu) {
  Cpu& c = g_cpu[vcpu];
  if (c.pending == 0) return;
  // The host reads the entries after the port write; the asm's memory clobber orders them.
  ring_header(vcpu)->count = c.pending;
  // SAFETY: the TSS I/O bitmap allows this one port at CPL3; outb exits to the VMM, which serves
  // this vCPU's ring and resumes us.
  asm volatile("outb %%al, %%dx" : : "a"(0), "d"(ga::kHostcallPort) : "memory");
  for (uint32_t i = 0; i < c.pending; ++i)
    if (ring_entries(vcpu)[i].op == ga::kWrite && ring_entries(vcpu)[i].result < 0)
      c.output_refused = true;
  c.pending = 0;
  c.out_used = 0;
  c.out_queued = 0;
}

ga::Hostcall* queue(uint32_t vcpu, uint32_t op) {
  if (g_cpu[vcpu].pending == g_boot->hostcall_capacity) submit(vcpu);
  ga::Hostcall* call = &ring_entries(vcpu)[g_cpu[vcpu].pending++];
  call->op = op;
  call->reserved = 0;
  call->args[0] = call->args[1] = call->args[2] = call->args[3] = 0;
  call->result = 0;
  return call;
}

// Queues a kWrite for the output bytes not yet covered by one.
void queue_output(uint32_t vcpu) {
  Cpu& c = g_cpu[vcpu];
  if (c.out_used == c.out_queued) return;
  ga::Hostcall* call = queue(vcpu, ga::kWrite);
  call->args[0] = static_cast<uint64_t>(c.out_fd);
  call->args[1] = reinterpret_cast<uint64_t>(c.out + c.out_queued);
  call->args[2] = c.out_used - c.out_queued;
  c.out_queued = c.out_used;
}

// Workers (vCPUs 1..n-1) wait here for run_on_all_vcpus jobs, spinning with `pause` (no guest
// kernel, so no halting; the host stops them when the VM ends).
[[noreturn]] void worker(uint32_t vcpu) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen;
    while ((gen = __atomic_load_n(&g_job_gen, __ATOMIC_ACQUIRE)) == seen) spin_pause();
    seen = gen;
    g_job_fn(vcpu, g_job_arg);
    flush();
    __atomic_add_fetch(&g_job_done, 1, __ATOMIC_RELEASE);
  }
}

}  // namespace

Bytes input() {
  // input_size is rewritten by the host for each run after a snapshot restore: read it fresh.
  const auto size = *static_cast<const volatile uint64_t*>(&g_boot->input_size);
  return Bytes{reinterpret_cast<const unsigned char*>(g_boot->input_base), size};
}

bool write(int fd, const void* data, uint64_t len) {
  const uint32_t vcpu = self();
  Cpu& c = g_cpu[vcpu];
  if (c.out == nullptr) {
    c.out_capacity = vcpu == 0 ? kOutCapacity : kSecondaryOutCapacity;
    c.out = vcpu == 0 ? g_out0 : static_cast<char*>(alloc(c.out_capacity, 64));
    if (c.out == nullptr) return false;
  }
  const auto* bytes = static_cast<const char*>(data);
  if (fd != c.out_fd) {
    queue_output(vcpu);
    c.out_fd = fd;
  }
  while (len > 0) {
    if (c.out_used == c.out_capacity) {
      queue_output(vcpu);
      submit(vcpu);
    }
    uint64_t n = c.out_capacity - c.out_used;
    if (n > len) n = len;
    __builtin_memcpy(c.out + c.out_used, bytes, n);
    c.out_used += n;
    bytes += n;
    len -= n;
  }
  return !c.output_refused;
}

void flush() {
  const uint32_t vcpu = self();
  queue_output(vcpu);
  submit(vcpu);
}

[[noreturn]] void exit(int code) {
  const uint32_t vcpu = self();
  queue_output(vcpu);
  queue(vcpu, ga::kExit)->args[0] = static_cast<uint64_t>(static_cast<int64_t>(code));
  submit(vcpu);
  for (;;) asm volatile("ud2");  // the host never resumes an exited guest
}

void* alloc(uint64_t bytes, uint64_t align) {
  const uint64_t end = g_boot->heap_base + g_boot->heap_size;
  uint64_t next = __atomic_load_n(&g_heap_next, __ATOMIC_RELAXED);
  for (;;) {
    const uint64_t from = next != 0 ? next : g_boot->heap_base;
    const uint64_t start = (from + align - 1) & ~(align - 1);
    if (start < from || start > end || bytes > end - start) return nullptr;
    if (__atomic_compare_exchange_n(&g_heap_next, &next, start + bytes, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
      return reinterpret_cast<void*>(start);
  }
}

int64_t nop_roundtrip(uint32_t batch) {
  const uint32_t vcpu = self();
  for (uint32_t i = 0; i < batch; ++i) queue(vcpu, ga::kNop);
  submit(vcpu);
  return ring_entries(vcpu)[0].result;
}

uint32_t vcpu_id() { return self(); }
uint32_t vcpu_count() { return g_boot->vcpu_count; }

void run_on_all_vcpus(void (*fn)(uint32_t vcpu, void* arg), void* arg) {
  const uint32_t n = g_boot->vcpu_count;
  if (n <= 1 || self() != 0) {
    fn(self(), arg);
    return;
  }
  g_job_fn = fn;
  g_job_arg = arg;
  __atomic_store_n(&g_job_done, 0, __ATOMIC_RELAXED);
  __atomic_add_fetch(&g_job_gen, 1, __ATOMIC_RELEASE);  // publishes fn and arg
  fn(0, arg);
  while (__atomic_load_n(&g_job_done, __ATOMIC_ACQUIRE) != n - 1) spin_pause();
}

void vcpu_barrier() {
  const uint32_t n = g_boot->vcpu_count;
  if (n <= 1) return;
  const uint32_t gen = __atomic_load_n(&g_barrier_gen, __ATOMIC_ACQUIRE);
  if (__atomic_add_fetch(&g_barrier_count, 1, __ATOMIC_ACQ_REL) == n) {
    __atomic_store_n(&g_barrier_count, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g_barrier_gen, 1, __ATOMIC_RELEASE);
    return;
  }
  while (__atomic_load_n(&g_barrier_gen, __ATOMIC_ACQUIRE) == gen) spin_pause();
}

}  // namespace pepita::guest

// vCPU 0 runs the program; the others become workers for run_on_all_vcpus.
extern "C" [[noreturn]] void pepita_guest_start(const ga::BootInfo* boot, uint64_t vcpu) {
  using namespace pepita::guest;
  __atomic_store_n(&g_boot, boot, __ATOMIC_RELAXED);  // every vCPU stores the same pointer
  if (boot->magic != ga::kBootMagic || boot->version != ga::kAbiVersion) exit(127);
  if (vcpu != 0) worker(self());
  if (guest_init != nullptr) guest_init();
  if ((boot->flags & ga::kFlagWantReady) != 0) {
    queue_output(0);
    queue(0, ga::kReady);
    submit(0);  // the host may snapshot here and resume copies of us with their own input
  }
  exit(guest_main());
}

// Each vCPU starts here at CPL3 with RDI = BootInfo, RSI = its index and RSP = top of its stack.
asm(R"(
  .pushsection .text.start, "ax"
  .globl _start
  .type _start, @function
_start:
  xorl %ebp, %ebp
  andq $-16, %rsp
  call pepita_guest_start
  ud2
  .popsection
)");
