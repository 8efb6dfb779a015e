#pragma once
// The contract between pepita's VMM and a freestanding guest: the fixed guest-physical layout,
// the boot-info page and the batched host-call ring. Freestanding (guest code includes it).
// Model: Solo5 hvt's hypercall-by-port-write with arguments in guest memory, batched.
//
// Every vCPU starts in 64-bit mode at CPL3 at the ELF entry with RDI = kBootInfoGpa, RSI = its
// index (0 .. BootInfo.vcpu_count-1), RSP = the top of its own stack and the GS base at its own
// host-call ring page (ring header `vcpu` = its index); memory is identity-mapped
// (guest-virtual == guest-physical). vCPU 0 runs the program; the others are the runtime's workers.
// A guest queues Hostcall entries in the ring page, stores the count, then executes `outb %al,
// $kHostcallPort`: one VM exit serves the whole batch, and the host writes each entry's result
// before the guest resumes.

#include <stddef.h>
#include <stdint.h>

namespace pepita::vmm::guest_abi {

// --- Fixed guest-physical layout (all page-aligned; page 0 is never mapped). ---
inline constexpr uint64_t kGdtGpa = 0x1000;         // GDT + 64-bit TSS (supervisor only)
inline constexpr uint64_t kIdtGpa = 0x2000;         // 256 gates to the fault stubs (supervisor)
inline constexpr uint64_t kFaultStubGpa = 0x3000;   // 256 bytes of `hlt`, one per vector
inline constexpr uint64_t kFaultStackGpa = 0x4000;  // 2 pages; exception frames land here
inline constexpr uint64_t kFaultStackTop = 0x6000;
inline constexpr uint64_t kBootInfoGpa = 0x6000;  // BootInfo, read-only to the guest
inline constexpr uint64_t kHostcallGpa = 0x7000;  // vCPU 0's HostcallRing, read-write to the guest
/// vCPU i's ring page is kHostcallGpa + i * kHostcallStride; at most kMaxVcpus of them, all below
/// kImageMinGpa.
inline constexpr uint64_t kHostcallStride = 0x1000;
inline constexpr uint32_t kMaxVcpus = 64;
inline constexpr uint64_t kImageMinGpa = 0x100000;  // ELF PT_LOAD segments lie at or above 1 MiB

/// virtio-mmio devices (virtio 1.2 section 4.2, version 2) sit above all RAM (memory is at most
/// 4 GiB), one per 4 KiB page, mapped user-accessible and uncached: every register access is a
/// KVM_EXIT_MMIO that the VMM serves. BootInfo.virtio_mmio_devices says how many there are. The
/// guest has no kernel and takes no interrupts, so drivers poll the used ring; a QueueNotify write
/// is served before the guest resumes, so one poll right after it sees what the device finished.
inline constexpr uint64_t kVirtioMmioGpa = 0x100000000ull;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint32_t kVirtioMmioMaxDevices = 8;

/// The only I/O port the VMM serves; any other port access ends the guest as a fault.
inline constexpr uint16_t kHostcallPort = 0x0e9;

inline constexpr uint64_t kBootMagic = 0x6174697065700001ull;  // "pepita" v1
inline constexpr uint32_t kAbiVersion = 1;

/// BootInfo.flags: the host wants a snapshot point; the runtime issues kReady after its setup.
inline constexpr uint32_t kFlagWantReady = 1u << 0;

/// Written by the VMM at kBootInfoGpa; the guest only reads it. input_size is rewritten for each
/// run (after a snapshot restore), so the guest reads it after kReady returns.
struct BootInfo {
  uint64_t magic;
  uint32_t version;
  uint32_t flags;
  uint64_t memory_size;
  uint64_t heap_base;
  uint64_t heap_size;
  uint64_t input_base;
  uint64_t input_capacity;
  uint64_t input_size;
  uint64_t stack_base;
  uint64_t stack_size;
  uint64_t hostcall_gpa;
  uint32_t hostcall_capacity;
  uint32_t virtio_mmio_devices;  // virtio-mmio devices at kVirtioMmioGpa + i * kVirtioMmioStride
  uint32_t vcpu_count;           // vCPUs running this guest (VmConfig::vcpus), 1 .. kMaxVcpus
  uint32_t reserved0;
  /// vCPU i's stack is [stack_base - i * vcpu_stack_stride, + stack_size): the stacks lie below
  /// vCPU 0's, each with an unmapped guard page under it.
  uint64_t vcpu_stack_stride;
};
static_assert(sizeof(BootInfo) == 112);

enum HostcallOp : uint32_t {
  kNop = 0,        // result 0; measures the round trip
  kWrite = 1,      // args: fd (1 stdout, 2 stderr), gpa, len -> bytes written or -errno
  kExit = 2,       // args: exit code; later entries of the batch are ignored
  kReadInput = 3,  // args: input offset, gpa, len -> bytes copied or -errno
  kReady = 4,      // setup done: the host may snapshot here; result 0 when resumed
};
// kExit from any vCPU ends the whole VM (every vCPU) with that code.

/// One request. The host reads op/args and writes result; buffers named by gpa must lie in
/// guest memory the guest itself may access (heap, stack, image, input), else result -EFAULT.
struct Hostcall {
  uint32_t op;
  uint32_t reserved;
  uint64_t args[4];
  int64_t result;
};
static_assert(sizeof(Hostcall) == 48);

/// The ring page: `count` entries of `calls` are pending when the guest writes the port.
/// The host trusts nothing here: count is clamped to kHostcallCapacity and copied once. Each vCPU
/// has its own ring (kHostcallStride apart) and the host serves the ring of the vCPU that wrote the
/// port; `vcpu` is written by the host at creation (the guest reads its index as %gs:4).
struct HostcallRingHeader {
  uint32_t count;
  uint32_t vcpu;
  uint32_t reserved[14];
};
static_assert(sizeof(HostcallRingHeader) == 64);
inline constexpr uint32_t kHostcallCapacity =
    (4096 - sizeof(HostcallRingHeader)) / sizeof(Hostcall);

inline constexpr int64_t kErrFault = -14;    // -EFAULT: buffer outside the guest's own memory
inline constexpr int64_t kErrInval = -22;    // -EINVAL: bad op or argument
inline constexpr int64_t kErrNoSpace = -28;  // -ENOSPC: output limit reached

}  // namespace pepita::vmm::guest_abi
