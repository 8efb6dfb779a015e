// The same runtime API as vm_runtime.cpp for a static Linux process with no libc: input is read
// from stdin, output goes to write(2), exit is exit_group(2). It makes the fork/exec twin of a
// guest that the VMM benchmark compares against.
#include "pepita_guest/runtime.hpp"

namespace pepita::guest {
namespace {

long syscall6(long nr, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  // SAFETY: the Linux x86-64 syscall convention; rcx and r11 are clobbered by the instruction.
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

constexpr long kRead = 0, kWrite = 1, kMmap = 9, kExitGroup = 231;
constexpr uint64_t kInputMax = 256ull << 20, kHeapSize = 64ull << 20;

unsigned char* g_input = nullptr;
uint64_t g_input_size = 0;
uint64_t g_heap_next = 0, g_heap_end = 0;
char g_out[16384];
uint64_t g_out_used = 0;
int g_out_fd = 1;

void* map(uint64_t bytes) {
  // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE
  long p = syscall6(kMmap, 0, static_cast<long>(bytes), 3, 0x22 | 0x4000, -1, 0);
  return p < 0 ? nullptr : reinterpret_cast<void*>(p);
}

void drain() {
  uint64_t done = 0;
  while (done < g_out_used) {
    long n = syscall6(kWrite, g_out_fd, reinterpret_cast<long>(g_out + done),
                      static_cast<long>(g_out_used - done), 0, 0, 0);
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  g_out_used = 0;
}

}  // namespace

Bytes input() { return Bytes{g_input, g_input_size}; }

bool write(int fd, const void* data, uint64_t len) {
  const auto* bytes = static_cast<const char*>(data);
  if (fd != g_out_fd) {
    drain();
    g_out_fd = fd;
  }
  while (len > 0) {
    if (g_out_used == sizeof g_out) drain();
    uint64_t n = sizeof g_out - g_out_used;
    if (n > len) n = len;
    __builtin_memcpy(g_out + g_out_used, bytes, n);
    g_out_used += n;
    bytes += n;
    len -= n;
  }
  return true;
}

void flush() { drain(); }

[[noreturn]] void exit(int code) {
  drain();
  for (;;) syscall6(kExitGroup, code, 0, 0, 0, 0, 0);
}

void* alloc(uint64_t bytes, uint64_t align) {
  uint64_t start = (g_heap_next + align - 1) & ~(align - 1);
  if (start < g_heap_next || start > g_heap_end || bytes > g_heap_end - start) return nullptr;
  g_heap_next = start + bytes;
  return reinterpret_cast<void*>(start);
}

int64_t nop_roundtrip(uint32_t) { return 0; }

// One vCPU: the Linux twin runs the work on its only thread.
uint32_t vcpu_id() { return 0; }
uint32_t vcpu_count() { return 1; }
void run_on_all_vcpus(void (*fn)(uint32_t vcpu, void* arg), void* arg) { fn(0, arg); }
void vcpu_barrier() {}

}  // namespace pepita::guest

extern "C" [[noreturn]] void pepita_native_start() {
  using namespace pepita::guest;
  g_input = static_cast<unsigned char*>(map(kInputMax));
  auto* heap = static_cast<unsigned char*>(map(kHeapSize));
  if (g_input == nullptr || heap == nullptr) exit(126);
  g_heap_next = reinterpret_cast<uint64_t>(heap);
  g_heap_end = g_heap_next + kHeapSize;
  for (;;) {
    long n = syscall6(kRead, 0, reinterpret_cast<long>(g_input + g_input_size),
                      static_cast<long>(kInputMax - g_input_size), 0, 0, 0);
    if (n <= 0) break;
    g_input_size += static_cast<uint64_t>(n);
  }
  if (guest_init != nullptr) guest_init();
  exit(guest_main());
}

asm(R"(
  .pushsection .text.start, "ax"
  .globl _start
  .type _start, @function
_start:
  xorl %ebp, %ebp
  andq $-16, %rsp
  call pepita_native_start
  ud2
  .popsection
)");
