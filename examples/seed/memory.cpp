// The reference crate's memory module example (memory.rs) in C++: a physical address, a virtual
// address and the page frame number of the first, which converts back to the same address. Then
// the real memory behind those types: a page-aligned DmaBuffer, locked in RAM where the lock limit
// allows, whose physical address comes from /proc/self/pagemap.
#include <cstdio>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::memory;
  // memory.rs, as written there.
  const PhysAddr phys(0x1000'0000);
  const VirtAddr virt(0xFFFF'8000'0000'0000);
  const Pfn pfn = Pfn::from_addr(phys);
  const bool round_trip = pfn.to_addr() == phys;
  std::printf("phys 0x%llx virt 0x%llx pfn 0x%llx to_addr equal %d\n",
              static_cast<unsigned long long>(phys.as_u64()),
              static_cast<unsigned long long>(virt.as_u64()),
              static_cast<unsigned long long>(pfn.as_u64()), round_trip ? 1 : 0);

  // Three pages of DMA memory (best effort lock: unprivileged users have a small RLIMIT_MEMLOCK).
  auto dma = DmaBuffer::allocate(3 * PAGE_SIZE, DmaDirection::Bidirectional,
                                 {.lock = MemLock::BestEffort});
  if (!dma) {
    std::fprintf(stderr, "DmaBuffer: %s\n", dma.error().to_string().c_str());
    return 1;
  }
  std::printf("dma: %llu pages, page aligned %d, valid %d\n",
              static_cast<unsigned long long>(dma->page_count()), dma->is_page_aligned() ? 1 : 0,
              dma->is_valid() ? 1 : 0);
  return round_trip && dma->page_count() == 3 && dma->is_page_aligned() ? 0 : 1;
}
