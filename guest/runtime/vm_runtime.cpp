// Guest side of the pepita micro-VM ABI: entry point, batched host calls through the ring page,
// buffered output and the heap. Runs entirely at CPL3; the only VM exits are ring submissions.
#include "pepita/vmm/guest_abi.hpp"
#include "pepita_guest/runtime.hpp"

namespace ga = pepita::vmm::guest_abi;

namespace pepita::guest {
namespace {

const ga::BootInfo* g_boot = nullptr;
uint64_t g_heap_next = 0;
uint32_t g_pending = 0;  // queued ring entries
bool g_output_refused = false;

constexpr uint64_t kOutCapacity = 16384;
char g_out[kOutCapacity];
uint64_t g_out_used = 0;    // bytes in g_out (some already queued)
uint64_t g_out_queued = 0;  // bytes of g_out covered by queued kWrite entries
int g_out_fd = 1;

ga::HostcallRingHeader* ring_header() {
  // SAFETY: the ring page is mapped read-write for the guest at hostcall_gpa (identity-mapped).
  return reinterpret_cast<ga::HostcallRingHeader*>(g_boot->hostcall_gpa);
}
ga::Hostcall* ring_entries() {
  return reinterpret_cast<ga::Hostcall*>(g_boot->hostcall_gpa + sizeof(ga::HostcallRingHeader));
}

void submit() {
  if (g_pending == 0) return;
  // The host reads the entries after the port write; the asm's memory clobber orders them.
  ring_header()->count = g_pending;
  // SAFETY: IOPL is 3, so outb at CPL3 exits to the VMM, which serves the ring and resumes us.
  asm volatile("outb %%al, %%dx" : : "a"(0), "d"(ga::kHostcallPort) : "memory");
  for (uint32_t i = 0; i < g_pending; ++i)
    if (ring_entries()[i].op == ga::kWrite && ring_entries()[i].result < 0) g_output_refused = true;
  g_pending = 0;
  g_out_used = 0;
  g_out_queued = 0;
}

ga::Hostcall* queue(uint32_t op) {
  if (g_pending == g_boot->hostcall_capacity) submit();
  ga::Hostcall* call = &ring_entries()[g_pending++];
  call->op = op;
  call->reserved = 0;
  call->args[0] = call->args[1] = call->args[2] = call->args[3] = 0;
  call->result = 0;
  return call;
}

// Queues a kWrite for the output bytes not yet covered by one.
void queue_output() {
  if (g_out_used == g_out_queued) return;
  ga::Hostcall* call = queue(ga::kWrite);
  call->args[0] = static_cast<uint64_t>(g_out_fd);
  call->args[1] = reinterpret_cast<uint64_t>(g_out + g_out_queued);
  call->args[2] = g_out_used - g_out_queued;
  g_out_queued = g_out_used;
}

}  // namespace

Bytes input() {
  // input_size is rewritten by the host for each run after a snapshot restore: read it fresh.
  const auto size = *static_cast<const volatile uint64_t*>(&g_boot->input_size);
  return Bytes{reinterpret_cast<const unsigned char*>(g_boot->input_base), size};
}

bool write(int fd, const void* data, uint64_t len) {
  const auto* bytes = static_cast<const char*>(data);
  if (fd != g_out_fd) {
    queue_output();
    g_out_fd = fd;
  }
  while (len > 0) {
    if (g_out_used == kOutCapacity) {
      queue_output();
      submit();
    }
    uint64_t n = kOutCapacity - g_out_used;
    if (n > len) n = len;
    __builtin_memcpy(g_out + g_out_used, bytes, n);
    g_out_used += n;
    bytes += n;
    len -= n;
  }
  return !g_output_refused;
}

void flush() {
  queue_output();
  submit();
}

[[noreturn]] void exit(int code) {
  queue_output();
  queue(ga::kExit)->args[0] = static_cast<uint64_t>(static_cast<int64_t>(code));
  submit();
  for (;;) asm volatile("ud2");  // the host never resumes an exited guest
}

void* alloc(uint64_t bytes, uint64_t align) {
  uint64_t start = (g_heap_next + align - 1) & ~(align - 1);
  const uint64_t end = g_boot->heap_base + g_boot->heap_size;
  if (start < g_heap_next || start > end || bytes > end - start) return nullptr;
  g_heap_next = start + bytes;
  return reinterpret_cast<void*>(start);
}

int64_t nop_roundtrip(uint32_t batch) {
  for (uint32_t i = 0; i < batch; ++i) queue(ga::kNop);
  submit();
  return ring_entries()[0].result;
}

}  // namespace pepita::guest

extern "C" [[noreturn]] void pepita_guest_start(const ga::BootInfo* boot) {
  using namespace pepita::guest;
  g_boot = boot;
  if (boot->magic != ga::kBootMagic || boot->version != ga::kAbiVersion) exit(127);
  g_heap_next = boot->heap_base;
  if (guest_init != nullptr) guest_init();
  if ((boot->flags & ga::kFlagWantReady) != 0) {
    queue_output();
    queue(ga::kReady);
    submit();  // the host may snapshot here and resume copies of us with their own input
  }
  exit(guest_main());
}

// The vCPU starts here at CPL3 with RDI = BootInfo and RSP = top of the stack.
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
