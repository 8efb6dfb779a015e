// Guest layout, CPL3 system structures and W^X identity page tables.
#include "detail/layout.hpp"

#include <cstddef>
#include <string>

#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm::detail {
namespace {

namespace ga = guest_abi;
using abi::PAGE_SIZE;
using abi::PhysAddr;

constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kUser = 1ull << 2;
constexpr uint64_t kWriteThrough = 1ull << 3;
constexpr uint64_t kCacheDisable = 1ull << 4;
constexpr uint64_t kAccessed = 1ull << 5;
constexpr uint64_t kDirty = 1ull << 6;
constexpr uint64_t kNoExecute = 1ull << 63;

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

uint64_t page_table_pages(uint64_t memory, uint32_t mmio_devices) {
  uint64_t pts = (memory + (2ull << 20) - 1) >> 21;
  uint64_t pds = (memory + (1ull << 30) - 1) >> 30;
  // PML4 + PDPT + PDs + PTs, then one PD and one PT for the virtio-mmio window above RAM.
  return 2 + pds + pts + (mmio_devices > 0 ? 2 : 0);
}

// Code/data descriptor for 64-bit mode (base/limit ignored except for data in compat mode).
uint64_t descriptor(bool code, unsigned dpl) {
  uint64_t d = 0xffff;                  // limit 15:0
  d |= 0xfull << 48;                    // limit 19:16
  d |= (code ? 0xbull : 0x3ull) << 40;  // type: exec/read/accessed or read/write/accessed
  d |= 1ull << 44;                      // S: code/data
  d |= uint64_t{dpl} << 45;
  d |= 1ull << 47;                        // present
  d |= (code ? 1ull << 53 : 1ull << 54);  // L for code, D/B for data
  d |= 1ull << 55;                        // 4 KiB granularity
  return d;
}

Result<void> map_page(const memory::GuestMemory& mem, const Layout& layout, uint64_t gpa,
                      uint64_t flags) {
  // Tables are laid out flat: PML4, PDPT, PDs (one per GiB), PTs (one per 2 MiB), all
  // pre-linked in write_tables(); here only the leaf entry is written.
  const uint64_t pds = (layout.memory_size + (1ull << 30) - 1) >> 30;
  const uint64_t pt_page = layout.page_table_base + (2 + pds + (gpa >> 21)) * PAGE_SIZE;
  const uint64_t entry = pt_page + ((gpa >> 12) & 511) * 8;
  return mem.write<uint64_t>(PhysAddr(entry), gpa | flags | kPresent | kAccessed);
}

Result<void> map_range(const memory::GuestMemory& mem, const Layout& layout, uint64_t gpa,
                       uint64_t len, uint64_t flags) {
  for (uint64_t page = abi::align_down(gpa, PAGE_SIZE); page < gpa + len; page += PAGE_SIZE)
    PEPITA_TRY_VOID(map_page(mem, layout, page, flags));
  return {};
}

Result<void> write_tables(const memory::GuestMemory& mem, const Layout& layout) {
  const uint64_t base = layout.page_table_base;
  const uint64_t pds = (layout.memory_size + (1ull << 30) - 1) >> 30;
  const uint64_t pts = (layout.memory_size + (2ull << 20) - 1) >> 21;
  // Non-leaf entries are user+writable so the leaf alone decides (SDM 4.6: rights combine with
  // AND).
  const uint64_t link = kPresent | kWritable | kUser | kAccessed;
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(base), (base + PAGE_SIZE) | link));
  for (uint64_t i = 0; i < pds; ++i)
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(base + PAGE_SIZE + i * 8),
                                        (base + (2 + i) * PAGE_SIZE) | link));
  for (uint64_t i = 0; i < pts; ++i)
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(base + 2 * PAGE_SIZE + i * 8),
                                        (base + (2 + pds + i) * PAGE_SIZE) | link));
  return {};
}

// Maps the virtio-mmio pages: no memory slot backs them, so each access exits to the VMM. The
// window is in the fifth GiB (PDPT entry 4), which RAM (at most 4 GiB) never uses.
Result<void> map_mmio(const memory::GuestMemory& mem, const Layout& layout) {
  static_assert(ga::kVirtioMmioGpa == 4ull << 30, "PDPT entry 4, PD entry 0");
  const uint64_t pd = layout.page_table_base + layout.page_table_bytes - 2 * PAGE_SIZE;
  const uint64_t pt = pd + PAGE_SIZE;
  const uint64_t link = kPresent | kWritable | kUser | kAccessed;
  PEPITA_TRY_VOID(
      mem.write<uint64_t>(PhysAddr(layout.page_table_base + PAGE_SIZE + 4 * 8), pd | link));
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(pd), pt | link));
  for (uint32_t i = 0; i < layout.mmio_devices; ++i) {
    const uint64_t gpa = ga::kVirtioMmioGpa + i * ga::kVirtioMmioStride;
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(pt + i * 8),
                                        gpa | kPresent | kWritable | kUser | kAccessed | kDirty |
                                            kWriteThrough | kCacheDisable | kNoExecute));
  }
  return {};
}

}  // namespace

Result<Layout> Layout::compute(const VmConfig& config, const GuestImage& image) {
  Layout l;
  const uint64_t mem = config.memory_bytes;
  if (mem < kMinMemory || mem > kMaxMemory || !abi::is_aligned(mem, PAGE_SIZE))
    return fail(ErrorCode::InvalidArgument,
                "VM memory " + std::to_string(mem) +
                    " bytes: must be a multiple of 4096 between 2 MiB and 4 GiB");
  if (config.stack_bytes < PAGE_SIZE || config.stack_bytes > mem / 2)
    return fail(ErrorCode::InvalidArgument, "VM stack size must be 4 KiB .. half of memory");
  if (config.vcpus < 1 || config.vcpus > ga::kMaxVcpus)
    return fail(ErrorCode::InvalidArgument, "VM vcpus = " + std::to_string(config.vcpus) +
                                                ": must be 1 .. " + std::to_string(ga::kMaxVcpus) +
                                                " (and at most the host's KVM limit)");
  if (config.input_capacity > mem)
    return fail(ErrorCode::InvalidArgument, "VM input capacity exceeds its memory");
  const uint32_t devices = (config.virtio_console ? 1 : 0) + (config.virtio_blk ? 1 : 0) +
                           (config.vsock_path.empty() ? 0 : 1);
  static_assert(ga::kVirtioMmioMaxDevices >= 3);
  l.memory_size = mem;
  l.mmio_devices = devices;
  l.image_end = image.end();
  l.page_table_bytes = page_table_pages(mem, devices) * PAGE_SIZE;
  l.page_table_base = mem - l.page_table_bytes;
  l.stack_size = abi::align_up(config.stack_bytes, PAGE_SIZE);
  l.input_capacity = abi::align_up(
      config.input_capacity != 0 ? config.input_capacity : abi::align_down(mem / 4, PAGE_SIZE),
      PAGE_SIZE);
  l.vcpus = config.vcpus;
  l.stack_stride = l.stack_size + PAGE_SIZE;
  // Top down: page tables | stack 0 | guard | stack 1 | guard | ... | input | guard | heap | guard
  // | image.
  const uint64_t need = l.image_end + PAGE_SIZE + PAGE_SIZE + l.input_capacity + PAGE_SIZE +
                        l.stack_size + (l.vcpus - 1) * l.stack_stride + l.page_table_bytes;
  if (l.image_end > mem || need > mem)
    return fail(ErrorCode::ResourceExhausted,
                "VM memory " + mib(mem) + " is too small for this image, a " +
                    mib(l.input_capacity) + " input window and " + std::to_string(l.vcpus) + " x " +
                    mib(l.stack_size) + " stack: give at least " + mib(need + PAGE_SIZE));
  l.stack_base = l.page_table_base - l.stack_size;
  l.input_base = l.stack_base - (l.vcpus - 1) * l.stack_stride - PAGE_SIZE - l.input_capacity;
  l.heap_base = l.image_end + PAGE_SIZE;
  l.heap_size = l.input_base - PAGE_SIZE - l.heap_base;
  for (const auto& seg : image.segments())
    l.image_regions.push_back({seg.gpa.raw(), seg.mem_size, seg.writable});
  return l;
}

Result<void> build_guest(const memory::GuestMemory& mem, const Layout& layout,
                         const GuestImage& image, bool want_ready) {
  // GDT: null, unused, kernel code/data (fault delivery), user32 code placeholder, user data,
  // user code, then the 16-byte TSS descriptor.
  const uint64_t gdt[8] = {
      0, 0, descriptor(true, 0), descriptor(false, 0), 0, descriptor(false, 3), descriptor(true, 3),
      0};
  for (unsigned i = 0; i < 8; ++i)
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ga::kGdtGpa + i * 8), gdt[i]));
  // The TSS ends with an I/O permission bitmap that allows only kHostcallPort: a CPL3 `out` to any
  // other port is a #GP even if IOPL were lowered. Ports past the limit count as denied
  // (SDM 19.5.2).
  const uint64_t iomap_offset = 0x68;
  const uint64_t iomap_bytes = ga::kHostcallPort / 8 + 2;  // through the port's byte, then 0xff
  const uint64_t tss_limit = iomap_offset + iomap_bytes - 1;
  uint64_t tss_lo = tss_limit | ((kTssGpa & 0xffffff) << 16) | (0xbull << 40) | (1ull << 47) |
                    (((kTssGpa >> 24) & 0xff) << 56);
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ga::kGdtGpa + 8 * 8), tss_lo));
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ga::kGdtGpa + 9 * 8), kTssGpa >> 32));
  // TSS: RSP0 is where the CPU pushes the exception frame when a CPL3 fault enters CPL0.
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(kTssGpa + 4), ga::kFaultStackTop));
  PEPITA_TRY_VOID(mem.write<uint16_t>(PhysAddr(kTssGpa + 0x66), iomap_offset));
  for (uint64_t i = 0; i < iomap_bytes; ++i) {
    uint8_t deny = 0xff;
    if (i == ga::kHostcallPort / 8) deny = static_cast<uint8_t>(~(1u << (ga::kHostcallPort % 8)));
    PEPITA_TRY_VOID(mem.write<uint8_t>(PhysAddr(kTssGpa + iomap_offset + i), deny));
  }

  // IDT: gate v -> kFaultStubGpa + v, a `hlt` at CPL0. DPL 0, so `int n` from CPL3 is a #GP.
  for (uint64_t v = 0; v < 256; ++v) {
    const uint64_t target = ga::kFaultStubGpa + v;
    const uint64_t lo = (target & 0xffff) | (uint64_t{kKernelCs} << 16) | (0xeull << 40) |
                        (1ull << 47) | (((target >> 16) & 0xffff) << 48);
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ga::kIdtGpa + v * 16), lo));
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ga::kIdtGpa + v * 16 + 8), target >> 32));
  }
  auto stubs = PEPITA_TRY(mem.span(PhysAddr(ga::kFaultStubGpa), 256));
  for (auto& b : stubs) b = std::byte{0xf4};  // hlt

  ga::BootInfo info{};
  info.magic = ga::kBootMagic;
  info.version = ga::kAbiVersion;
  info.flags = want_ready ? ga::kFlagWantReady : 0;
  info.memory_size = layout.memory_size;
  info.heap_base = layout.heap_base;
  info.heap_size = layout.heap_size;
  info.input_base = layout.input_base;
  info.input_capacity = layout.input_capacity;
  info.stack_base = layout.stack_base;
  info.stack_size = layout.stack_size;
  info.hostcall_gpa = ga::kHostcallGpa;
  info.hostcall_capacity = ga::kHostcallCapacity;
  info.virtio_mmio_devices = layout.mmio_devices;
  info.vcpu_count = layout.vcpus;
  info.vcpu_stack_stride = layout.stack_stride;
  PEPITA_TRY_VOID(mem.write(PhysAddr(ga::kBootInfoGpa), info));

  for (const auto& seg : image.segments()) PEPITA_TRY_VOID(mem.write_bytes(seg.gpa, seg.data));

  PEPITA_TRY_VOID(write_tables(mem, layout));
  // Supervisor-only system pages (no user bit): a CPL3 access is a #PF.
  PEPITA_TRY_VOID(map_range(mem, layout, ga::kGdtGpa, 2 * PAGE_SIZE, kNoExecute | kWritable));
  PEPITA_TRY_VOID(map_range(mem, layout, ga::kFaultStubGpa, PAGE_SIZE, 0));
  PEPITA_TRY_VOID(
      map_range(mem, layout, ga::kFaultStackGpa, 2 * PAGE_SIZE, kNoExecute | kWritable | kDirty));
  PEPITA_TRY_VOID(map_range(mem, layout, ga::kBootInfoGpa, PAGE_SIZE, kNoExecute | kUser));
  for (uint32_t v = 0; v < layout.vcpus; ++v) {
    const uint64_t ring = ga::kHostcallGpa + v * ga::kHostcallStride;
    PEPITA_TRY_VOID(
        mem.write<uint32_t>(PhysAddr(ring + offsetof(ga::HostcallRingHeader, vcpu)), v));
    PEPITA_TRY_VOID(
        map_range(mem, layout, ring, PAGE_SIZE, kNoExecute | kUser | kWritable | kDirty));
  }
  for (const auto& seg : image.segments()) {
    uint64_t flags = kUser;
    if (seg.writable) flags |= kWritable | kDirty;
    if (!seg.executable) flags |= kNoExecute;
    PEPITA_TRY_VOID(map_range(mem, layout, seg.gpa.raw(), seg.mem_size, flags));
  }
  const uint64_t rw = kNoExecute | kUser | kWritable;
  PEPITA_TRY_VOID(map_range(mem, layout, layout.heap_base, layout.heap_size, rw));
  PEPITA_TRY_VOID(
      map_range(mem, layout, layout.input_base, layout.input_capacity, kNoExecute | kUser));
  for (uint32_t v = 0; v < layout.vcpus; ++v)
    PEPITA_TRY_VOID(map_range(mem, layout, layout.vcpu_stack_top(v) - layout.stack_size,
                              layout.stack_size, rw));
  if (layout.mmio_devices > 0) PEPITA_TRY_VOID(map_mmio(mem, layout));
  return {};
}

bool guest_may_access(const Layout& layout, uint64_t gpa, uint64_t len, bool write) {
  auto inside = [&](uint64_t base, uint64_t size) {
    return gpa >= base && gpa - base <= size && len <= size - (gpa - base);
  };
  if (inside(layout.heap_base, layout.heap_size)) return true;
  for (uint32_t v = 0; v < layout.vcpus; ++v)
    if (inside(layout.vcpu_stack_top(v) - layout.stack_size, layout.stack_size)) return true;
  if (!write && inside(layout.input_base, layout.input_capacity)) return true;
  for (const auto& r : layout.image_regions)
    if ((r.writable || !write) && inside(r.gpa, r.size)) return true;
  return false;
}

}  // namespace pepita::vmm::detail
