// A hostile guest: the first input byte picks one escape attempt. Each must end as a guest fault
// reported by the VMM (or a timeout), with the host unharmed. 'b' is the one attempt the guest can
// observe itself: a host call aimed at the page tables must fail with -EFAULT (exit 42). 'q' and
// 'O' are the well-formed and the unknown host call (exit 43 and 44 when answered right). 'v' may
// be refused without a fault: KVM answers a hypercall from CPL3 with -KVM_EPERM (exit 45).
#include "pepita/vmm/guest_abi.hpp"
#include "pepita_guest/runtime.hpp"

namespace ga = pepita::vmm::guest_abi;

namespace {

int recurse(int depth) {
  volatile char pad[512];
  pad[0] = static_cast<char>(depth);
  if (depth == (1 << 30)) return 0;  // never reached: the 256 KiB stack ends first
  return recurse(depth + 1) + pad[0];
}

// One host call, alone in this vCPU's ring, issued with the raw ABI: its result.
int64_t raw_call(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2) {
  auto* ring = reinterpret_cast<ga::HostcallRingHeader*>(ga::kHostcallGpa);
  auto* call = reinterpret_cast<ga::Hostcall*>(ga::kHostcallGpa + sizeof(ga::HostcallRingHeader));
  call->op = op;
  call->args[0] = a0;
  call->args[1] = a1;
  call->args[2] = a2;
  call->result = 0;
  ring->count = 1;
  asm volatile("outb %%al, %%dx" : : "a"(0), "d"(ga::kHostcallPort) : "memory");
  return call->result;
}

uint64_t boot_field(uint64_t offset) {
  return *reinterpret_cast<const volatile uint64_t*>(ga::kBootInfoGpa + offset);
}

}  // namespace

extern "C" int guest_main() {
  using namespace pepita::guest;
  Bytes in = input();
  const char mode = in.size > 0 ? static_cast<char>(in.data[0]) : '?';
  const uint64_t mem = boot_field(__builtin_offsetof(ga::BootInfo, memory_size));
  switch (mode) {
    case 'r':  // just past the end of guest RAM
      return static_cast<int>(*reinterpret_cast<volatile uint64_t*>(mem + 0x1000));
    case 'R':  // far outside: 1 TiB
      return static_cast<int>(*reinterpret_cast<volatile uint64_t*>(1ull << 40));
    case 'p':  // the page tables (top of RAM, never mapped)
      return static_cast<int>(*reinterpret_cast<volatile uint64_t*>(mem - 8));
    case 'g':  // the GDT (supervisor page)
      return static_cast<int>(*reinterpret_cast<volatile uint64_t*>(ga::kGdtGpa));
    case 'k':  // write the read-only boot info
      *reinterpret_cast<volatile uint64_t*>(ga::kBootInfoGpa) = 0;
      return 1;
    case 'w':  // write our own code (W^X)
      *reinterpret_cast<volatile unsigned char*>(reinterpret_cast<uintptr_t>(&guest_main)) = 0xc3;
      return 1;
    case 'x': {  // execute from the heap (NX)
      auto* code = static_cast<unsigned char*>(alloc(16));
      code[0] = 0xc3;  // ret
      reinterpret_cast<void (*)()>(code)();
      return 1;
    }
    case 'j':  // jump into the supervisor fault stubs
      reinterpret_cast<void (*)()>(ga::kFaultStubGpa)();
      return 1;
    case 'z':  // call through a null pointer
      reinterpret_cast<void (*)()>(static_cast<uintptr_t>(in.size - in.size))();
      return 1;
    case 'h': asm volatile("hlt"); return 1;
    case 'c': asm volatile("mov %0, %%cr3" : : "r"(uint64_t{0}) : "memory"); return 1;
    case 'm': asm volatile("wrmsr" : : "c"(0xc0000080u), "a"(0u), "d"(0u)); return 1;
    case 'l': {
      struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
      } gdtr{0, 0};
      asm volatile("lgdt %0" : : "m"(gdtr));
      return 1;
    }
    case 'i': asm volatile("int $0x80"); return 1;
    case '3': asm volatile("int3"); return 1;
    case 's': asm volatile("syscall" : : : "rcx", "r11", "memory"); return 1;
    case 'v': {  // a hypercall from CPL3: KVM refuses it in place with -KVM_EPERM (-1) or faults
      int64_t rax = 0;
      asm volatile("vmcall" : "+a"(rax) : : "memory");
      return rax == -1 ? 45 : 1;
    }
    case 'u': asm volatile("ud2"); return 1;
    case 'd': {
      volatile int zero = 0;
      return 10 / zero;
    }
    case 'o': asm volatile("outb %%al, %%dx" : : "a"(0), "d"(uint16_t{0x80})); return 1;
    case 'n': {
      unsigned char v;
      asm volatile("inb %%dx, %%al" : "=a"(v) : "d"(uint16_t{0x60}));
      return v;
    }
    case 'e': return recurse(0);  // runs into the stack guard page
    case 'f':
      for (;;) asm volatile("" ::: "memory");  // spin until the watchdog
    case 'b':  // ask the host to write input into the page tables: must be refused
      return raw_call(ga::kReadInput, 0, mem - 4096, 1) == ga::kErrFault ? 42 : 1;
    case 'W': {  // ask the host to write input over our own code, then over the input itself
      const bool code =
          raw_call(ga::kReadInput, 0, reinterpret_cast<uint64_t>(&recurse), 1) == ga::kErrFault;
      const bool input =
          raw_call(ga::kReadInput, 0, reinterpret_cast<uint64_t>(in.data), 1) == ga::kErrFault;
      return code && input ? 46 : 1;
    }
    case 'q': {  // a well-formed read of the input into our stack
      volatile char buf[2] = {0, 0};
      const int64_t n = raw_call(ga::kReadInput, 0, reinterpret_cast<uint64_t>(buf), sizeof buf);
      return n == static_cast<int64_t>(in.size < 2 ? in.size : 2) && buf[0] == 'q' ? 43 : 1;
    }
    case 'O':  // an op the host does not know
      return raw_call(0x7777, 0, 0, 0) == ga::kErrInval ? 44 : 1;
    case 'I': {  // read from the host-call port instead of writing to it
      uint8_t v;
      asm volatile("inb %%dx, %%al" : "=a"(v) : "d"(ga::kHostcallPort) : "memory");
      return v;
    }
    case 'C': {  // a batch count far beyond the ring
      reinterpret_cast<ga::HostcallRingHeader*>(ga::kHostcallGpa)->count = 0xffffffffu;
      asm volatile("outb %%al, %%dx" : : "a"(0), "d"(ga::kHostcallPort) : "memory");
      return 1;
    }
    default: print("escape: unknown mode\n"); return 2;
  }
}
