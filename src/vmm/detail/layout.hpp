#pragma once
// Per-VM guest-physical layout and the structures that let a vCPU start in 64-bit CPL3 without
// any guest kernel: GDT/TSS, an IDT whose gates point at one-byte `hlt` stubs (so a fault stops
// the vCPU with the vector encoded in RIP), and identity page tables with W^X and user bits.
// Intel SDM vol. 3A: 4.5 (4-level paging), 5.8.3 (call gates), 6.14 (64-bit IDT), 7.7 (TSS).

#include <cstdint>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/vmm/elf_image.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm::detail {

// GDT selectors, Linux's layout (the fast one on this KVM, see docs/kvm-here).
inline constexpr uint16_t kKernelCs = 0x10;
inline constexpr uint16_t kKernelDs = 0x18;
inline constexpr uint16_t kUserDs = 0x2b;
inline constexpr uint16_t kUserCs = 0x33;
inline constexpr uint16_t kTss = 0x40;
inline constexpr uint64_t kTssGpa = 0x1800;  // inside the GDT page
inline constexpr uint32_t kGdtEntries = 10;

struct Layout {
  struct Region {
    uint64_t gpa, size;
    bool writable;
  };
  uint64_t memory_size = 0;
  uint64_t image_end = 0;
  uint64_t heap_base = 0, heap_size = 0;
  uint64_t input_base = 0, input_capacity = 0;
  uint64_t stack_base = 0, stack_size = 0;  // vCPU 0's stack
  uint32_t vcpus = 1;
  uint64_t stack_stride = 0;     // vCPU i's stack starts at stack_base - i * stack_stride
  uint64_t page_table_base = 0;  // PML4 here, then PDPT, PDs, PTs; never mapped for the guest
  uint64_t page_table_bytes = 0;
  uint32_t mmio_devices = 0;          // virtio-mmio pages mapped at guest_abi::kVirtioMmioGpa
  std::vector<Region> image_regions;  // the ELF segments, for host-call buffer checks

  /// Places heap, input window, stack and page tables for this config and image. InvalidArgument
  /// for sizes out of range, ResourceExhausted when memory is too small, naming how much is needed.
  static Result<Layout> compute(const VmConfig& config, const GuestImage& image);

  uint64_t vcpu_stack_top(uint32_t vcpu) const noexcept {
    return stack_base - vcpu * stack_stride + stack_size;
  }
};

/// Writes GDT, TSS, IDT, fault stubs, BootInfo, the loaded image and the page tables into `mem`
/// (zero-filled, layout.memory_size bytes).
Result<void> build_guest(const memory::GuestMemory& mem, const Layout& layout,
                         const GuestImage& image, bool want_ready);

/// True when [gpa, gpa+len) lies in memory the guest itself may read (write when `write`): image,
/// heap, stack, input (read only). Host calls check buffers with this, so a guest can never make
/// the host touch its page tables, GDT or IDT.
bool guest_may_access(const Layout& layout, uint64_t gpa, uint64_t len, bool write);

}  // namespace pepita::vmm::detail
