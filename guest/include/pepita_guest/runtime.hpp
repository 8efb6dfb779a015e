#pragma once
// pepita guest runtime: what a freestanding micro-VM guest program links against. The same API is
// implemented twice: for a pepita micro-VM (vm_runtime.cpp: host calls batched through the ring
// page of pepita/vmm/guest_abi.hpp) and for a static Linux process (native_runtime.cpp: raw
// syscalls), so one program source gives both the guest and its fork/exec twin.
//
//   extern "C" int guest_main() {
//     pepita::guest::print("hello\n");
//     return 0;                        // exit code; buffered output is flushed with it
//   }

#include <stddef.h>
#include <stdint.h>

namespace pepita::guest {

/// The task's input, read-only, valid for the whole run.
struct Bytes {
  const unsigned char* data;
  uint64_t size;
};
Bytes input();

/// Buffered output to fd 1 (stdout) or 2 (stderr); reaches the host at flush(), when the buffer or
/// host-call ring fills, or at exit. Returns false once the host refused (output limit).
bool write(int fd, const void* data, uint64_t len);
void print(const char* text);
void print_u64(uint64_t value);
void print_i64(int64_t value);
/// Submits queued host calls now (one VM exit).
void flush();
/// Flushes output and ends the program with `code` (one VM exit for both).
[[noreturn]] void exit(int code);
/// Bump allocation from the heap; nullptr when exhausted. Never freed.
void* alloc(uint64_t bytes, uint64_t align = 16);
/// One host-call round trip that does nothing (benchmarks the exit path); returns its result.
int64_t nop_roundtrip(uint32_t batch);

/// Several vCPUs (VmConfig::vcpus): guest_main runs on vCPU 0; the others wait (spinning) for
/// work. Everything above may be called on any vCPU (each has its own stack, host-call ring and
/// output buffer; alloc is shared and lock-free; exit on any vCPU ends the whole VM).
/// The calling vCPU's index, 0 .. vcpu_count()-1 (always 0 in the Linux twin).
uint32_t vcpu_id();
uint32_t vcpu_count();
/// Runs fn(vcpu, arg) on every vCPU at once, vCPU 0 included, and returns when all are done
/// (each vCPU's output is flushed). Call it from vCPU 0; from another vCPU it runs fn there only.
void run_on_all_vcpus(void (*fn)(uint32_t vcpu, void* arg), void* arg);
/// Inside run_on_all_vcpus: waits until every vCPU has reached it (atomics in guest memory).
void vcpu_barrier();

}  // namespace pepita::guest

/// The program. Returns its exit code.
extern "C" int guest_main();
/// Optional setup run before the snapshot point: whatever it computes is in every restored VM.
extern "C" void guest_init() __attribute__((weak));
