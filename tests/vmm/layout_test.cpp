// Guest layout rules: regions never overlap, page tables stay outside the guest's reach, and
// host-call buffers are accepted only inside memory the guest may itself access.
#include "detail/layout.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "detail/virtio_bus.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm::detail {
namespace {

namespace ga = guest_abi;

TEST(Layout, RegionsAreOrderedAndGuarded) {
  auto image = test::load_guest("hello");
  for (uint64_t mem : {2ull << 20, 16ull << 20, 1ull << 30}) {
    VmConfig config;
    config.memory_bytes = mem;
    config.input_capacity = 64 << 10;
    config.stack_bytes = 64 << 10;
    auto l = Layout::compute(config, image);
    ASSERT_TRUE(l) << mem << ": " << l.error().to_string();
    EXPECT_GE(l->heap_base, l->image_end + abi::PAGE_SIZE);
    EXPECT_LE(l->heap_base + l->heap_size + abi::PAGE_SIZE, l->input_base);
    EXPECT_LE(l->input_base + l->input_capacity + abi::PAGE_SIZE, l->stack_base);
    EXPECT_EQ(l->stack_base + l->stack_size, l->page_table_base);
    EXPECT_EQ(l->page_table_base + l->page_table_bytes, mem);
  }
}

// The page-table area holds exactly the identity tables: PML4, PDPT, one PD per started GiB and one
// PT per started 2 MiB of RAM, plus one PD and one PT for the virtio-mmio window when a device is
// configured; a whole number of GiB needs no extra PD.
TEST(Layout, PageTableAreaHoldsOnePdPerGibAndOnePtPer2MiB) {
  auto image = test::load_guest("hello");
  struct Case {
    uint64_t memory;
    uint64_t pages;  // without virtio-mmio devices
  };
  for (const Case c :
       {Case{2ull << 20, 2 + 1 + 1}, Case{(2ull << 20) + 4096, 2 + 1 + 2},
        Case{1ull << 30, 2 + 1 + 512}, Case{(1ull << 30) + (2ull << 20), 2 + 2 + 513},
        Case{4ull << 30, 2 + 4 + 2048}}) {
    for (const bool console : {false, true}) {
      SCOPED_TRACE(testing::Message() << c.memory << " bytes, console " << console);
      VmConfig config;
      config.memory_bytes = c.memory;
      config.input_capacity = 64 << 10;
      config.stack_bytes = 64 << 10;
      config.virtio_console = console;
      auto l = Layout::compute(config, image);
      ASSERT_TRUE(l) << l.error().to_string();
      EXPECT_EQ(l->page_table_bytes, (c.pages + (console ? 2 : 0)) * abi::PAGE_SIZE);
      EXPECT_EQ(l->page_table_base + l->page_table_bytes, c.memory);
    }
  }
}

TEST(Layout, HostCallBuffersMustBeGuestAccessible) {
  auto image = test::load_guest("hello");
  auto l = Layout::compute(VmConfig{}, image);
  ASSERT_TRUE(l);
  EXPECT_TRUE(guest_may_access(*l, l->heap_base, 4096, true));
  EXPECT_TRUE(guest_may_access(*l, l->stack_base, l->stack_size, true));
  EXPECT_TRUE(guest_may_access(*l, l->input_base, 16, false));
  EXPECT_FALSE(guest_may_access(*l, l->input_base, 16, true));  // input is read-only
  EXPECT_FALSE(guest_may_access(*l, l->page_table_base, 8, false));
  EXPECT_FALSE(guest_may_access(*l, ga::kGdtGpa, 8, false));
  EXPECT_FALSE(guest_may_access(*l, ga::kBootInfoGpa, 8, true));
  EXPECT_FALSE(guest_may_access(*l, l->heap_base + l->heap_size - 8, 16, true));  // straddles
  EXPECT_FALSE(guest_may_access(*l, l->heap_base, ~0ull, false));                 // wraps
  EXPECT_FALSE(guest_may_access(*l, ~0ull - 4, 8, false));
  const auto& code = image.segments()[0];
  EXPECT_TRUE(guest_may_access(*l, code.gpa.raw(), 16, false));
  EXPECT_FALSE(guest_may_access(*l, code.gpa.raw(), 16, true));  // code is not writable
}

// The GDT, TSS descriptor and IDT gates build_guest writes, checked against the SDM's formats
// (vol. 3A 3.4.5, 7.2.3, 6.14.1): a wrong bit here only shows when a CPL3 fault makes the CPU
// load CS from the GDT through an IDT gate, which needs KVM, so it is checked without it too.
TEST(Layout, GdtTssAndIdtEntriesHaveTheArchitecturalFormat) {
  auto image = test::load_guest("hello");
  VmConfig config;
  auto l = Layout::compute(config, image);
  ASSERT_TRUE(l) << l.error().to_string();
  auto mem = memory::GuestMemory::anonymous(abi::PhysAddr(0), config.memory_bytes);
  ASSERT_TRUE(mem);
  ASSERT_TRUE(build_guest(*mem, *l, image, false));
  auto gdt = [&](uint16_t selector) {
    return mem->read<uint64_t>(abi::PhysAddr(ga::kGdtGpa + (selector & ~7u))).value();
  };
  // Flat 4 GiB limit, G=1, P=1, S=1; code: L=1, type execute/read/accessed; data: D/B=1, type
  // read/write/accessed. These are Linux's own __KERNEL_CS/__KERNEL_DS/__USER_DS/__USER_CS.
  EXPECT_EQ(gdt(0), 0u) << "null descriptor";
  // Slot 1 and slot 4 (where SYSRET would look for a 32-bit user code segment) stay null: no
  // selector but the four above and the TSS names a usable segment.
  EXPECT_EQ(gdt(0x08), 0u) << std::hex << gdt(0x08);
  EXPECT_EQ(gdt(0x20), 0u) << std::hex << gdt(0x20);
  EXPECT_EQ(gdt(kKernelCs), 0x00af9b000000ffffull) << std::hex << gdt(kKernelCs);
  EXPECT_EQ(gdt(kKernelDs), 0x00cf93000000ffffull) << std::hex << gdt(kKernelDs);
  EXPECT_EQ(gdt(kUserDs), 0x00cff3000000ffffull) << std::hex << gdt(kUserDs);
  EXPECT_EQ(gdt(kUserCs), 0x00affb000000ffffull) << std::hex << gdt(kUserCs);
  EXPECT_EQ(kUserDs & 3, 3) << "user selectors carry RPL 3";
  EXPECT_EQ(kUserCs & 3, 3);
  // The 16-byte TSS descriptor: type 0xb (busy 64-bit TSS), present, DPL 0, base kTssGpa, and a
  // limit that covers the I/O bitmap through the host-call port's byte.
  const uint64_t tss_lo = gdt(kTss);
  const uint64_t tss_hi = mem->read<uint64_t>(abi::PhysAddr(ga::kGdtGpa + kTss + 8)).value();
  EXPECT_EQ((tss_lo >> 40) & 0xff, 0x8bu) << "P=1, DPL=0, type 0xb";
  const uint64_t base =
      ((tss_lo >> 16) & 0xffffff) | (((tss_lo >> 56) & 0xff) << 24) | (tss_hi << 32);
  EXPECT_EQ(base, kTssGpa);
  const uint64_t limit = (tss_lo & 0xffff) | (((tss_lo >> 48) & 0xf) << 16);
  EXPECT_EQ(limit, 0x68 + ga::kHostcallPort / 8 + 1) << "I/O bitmap at 0x68, through the port";
  EXPECT_EQ(mem->read<uint64_t>(abi::PhysAddr(kTssGpa + 4)).value(), ga::kFaultStackTop)
      << "RSP0: where a CPL3 fault's frame lands";
  // Every IDT gate: a present DPL-0 64-bit interrupt gate (type 0xe) to the vector's `hlt` stub
  // through the kernel code segment.
  for (uint64_t v = 0; v < 256; ++v) {
    const uint64_t lo = mem->read<uint64_t>(abi::PhysAddr(ga::kIdtGpa + v * 16)).value();
    const uint64_t hi = mem->read<uint64_t>(abi::PhysAddr(ga::kIdtGpa + v * 16 + 8)).value();
    const uint64_t target = (lo & 0xffff) | (((lo >> 48) & 0xffff) << 16) | (hi << 32);
    ASSERT_EQ(target, ga::kFaultStubGpa + v) << "vector " << v;
    ASSERT_EQ((lo >> 16) & 0xffff, kKernelCs) << "vector " << v;
    ASSERT_EQ((lo >> 40) & 0xff, 0x8eu) << "vector " << v << ": P=1, DPL=0, type 0xe";
    ASSERT_EQ(mem->read<uint8_t>(abi::PhysAddr(ga::kFaultStubGpa + v)).value(), 0xf4u)
        << "vector " << v << ": hlt";
  }
}

RC_GTEST_PROP(Layout, AcceptedRangesNeverTouchSystemMemory, (uint64_t gpa, uint32_t len, bool w)) {
  static const GuestImage image = test::load_guest("hello");
  static const Layout l = *Layout::compute(VmConfig{}, image);
  const uint64_t at = *rc::gen::element(gpa, gpa % l.memory_size);
  if (!guest_may_access(l, at, len, w)) return;
  RC_ASSERT(at >= ga::kImageMinGpa);
  RC_ASSERT(at + len <= l.page_table_base);
  RC_ASSERT(at + len >= at);
}

// Walks the guest's 4-level tables for `va`; 0 when any level is not present.
uint64_t leaf_entry(const memory::GuestMemory& mem, const Layout& l, uint64_t va) {
  uint64_t table = l.page_table_base;
  for (int shift : {39, 30, 21, 12}) {
    const uint64_t e = mem.read<uint64_t>(abi::PhysAddr(table + ((va >> shift) & 511) * 8)).value();
    if ((e & 1) == 0) return 0;
    if (shift == 12) return e;
    table = e & 0x000ffffffffff000ull;
  }
  return 0;
}

TEST(Layout, VirtioMmioWindowIsMappedOnlyForConfiguredDevices) {
  auto image = test::load_guest("hello");
  for (int devices : {0, 1, 2, 3}) {
    SCOPED_TRACE(devices);
    VmConfig config;
    config.memory_bytes = 4ull << 20;
    config.virtio_console = devices >= 1;
    if (devices >= 2)
      config.virtio_blk = std::shared_ptr<blk_mq::BlockDevice>(
          blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value());
    if (devices == 3) config.vsock_path = "/tmp/pepita-layout-test.vsock";  // not opened here
    auto l = Layout::compute(config, image);
    ASSERT_TRUE(l) << l.error().to_string();
    const auto expect = static_cast<uint32_t>(devices);
    EXPECT_EQ(l->mmio_devices, expect);
    auto mem = memory::GuestMemory::anonymous(abi::PhysAddr(0), config.memory_bytes);
    ASSERT_TRUE(mem);
    ASSERT_TRUE(build_guest(*mem, *l, image, false));
    const auto info = mem->read<ga::BootInfo>(abi::PhysAddr(ga::kBootInfoGpa)).value();
    EXPECT_EQ(info.virtio_mmio_devices, expect);
    const uint64_t pte = leaf_entry(*mem, *l, ga::kVirtioMmioGpa);
    if (expect == 0) {
      EXPECT_EQ(pte, 0u) << "no devices: the window is not mapped at all";
      continue;
    }
    EXPECT_EQ(pte & 0x000ffffffffff000ull, ga::kVirtioMmioGpa) << "identity-mapped";
    EXPECT_EQ(pte & 0x1f, 0x1fu) << "present, writable, user, write-through, cache-disabled";
    EXPECT_NE(pte >> 63, 0u) << "never executable";
    EXPECT_NE(leaf_entry(*mem, *l, ga::kVirtioMmioGpa + (expect - 1) * ga::kVirtioMmioStride), 0u);
    EXPECT_EQ(leaf_entry(*mem, *l, ga::kVirtioMmioGpa + expect * ga::kVirtioMmioStride), 0u)
        << "only configured slots are mapped";
    // The extra tables are inside the page-table area the guest cannot reach.
    EXPECT_EQ(l->page_table_base + l->page_table_bytes, config.memory_bytes);
    // Devices see only the guest's own memory.
    auto view = device_view(*mem, *l);
    ASSERT_TRUE(view) << view.error().message();
    const auto& ram = *view;
    EXPECT_TRUE(ram.span(abi::PhysAddr(l->heap_base), 4096));
    EXPECT_TRUE(ram.span(image.segments()[0].gpa, 16)) << "code may be sent";
    EXPECT_FALSE(ram.span(abi::PhysAddr(l->page_table_base), 8));
    EXPECT_FALSE(ram.span(abi::PhysAddr(ga::kGdtGpa), 8));
    EXPECT_FALSE(ram.span(abi::PhysAddr(ga::kIdtGpa), 16));
    EXPECT_FALSE(ram.span(abi::PhysAddr(l->heap_base + l->heap_size - 8), 16)) << "straddles";
  }
}

}  // namespace
}  // namespace pepita::vmm::detail
