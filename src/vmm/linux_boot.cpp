// Linux boot protocol (see pepita/vmm/linux_boot.hpp): bzImage setup-header and ELF vmlinux
// parsing, zero page with e820 map, command line and initrd placement, a vCPU in 64-bit CPL0 at
// the kernel's entry, and a run loop that serves the 8250 UART. Offsets: Documentation/arch/x86/
// boot.rst and zero-page.rst; segment and page-table bits: Intel SDM vol. 3A 3.4.5 and 4.5.
#include "pepita/vmm/linux_boot.hpp"

#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "detail/kvm_system.hpp"
#include "detail/sys.hpp"
#include "detail/uart8250.hpp"
#include "detail/watchdog.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/memory/guest_memory.hpp"

namespace pepita::vmm {
namespace {

namespace ll = linux_layout;
using abi::PhysAddr;

constexpr uint64_t kMaxKernelFile = 512ull << 20;
constexpr size_t kSetupHeaderStart = 0x1f1;
constexpr size_t kSetupHeaderLimit = 0x290;  // boot_params: hdr ends where _pad7 begins
constexpr size_t kInitSizeEnd = 0x264;       // the last header field the loader reads
constexpr uint16_t kMinVersion = 0x020c;     // 2.12: xloadflags, the 64-bit entry
constexpr uint64_t kPage = 4096;
constexpr uint64_t kIdentityMapped = 4ull << 30;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

template <typename T>
T load(std::span<const std::byte> bytes, size_t offset) {
  T value{};
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

template <typename T>
void store(std::span<std::byte> bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

std::unexpected<Error> bad(const std::string& what) {
  return fail(ErrorCode::InvalidArgument,
              "kernel image: " + what + "; pass a bzImage (protocol >= 2.12, 64-bit) or an ELF " +
                  "vmlinux (e.g. /boot/vmlinuz-*, or tests/guest/build-guest.sh --kernel-only)");
}

Result<void> parse_bzimage(KernelImage& k) {
  const std::span<const std::byte> f = k.file;
  const uint64_t size = f.size();
  if (size < 0x200)
    return bad(std::string("file of ") + std::to_string(size) +
               " bytes is too short for a bzImage boot sector (512 bytes)");
  SetupHeader& h = k.header;
  h.boot_flag = load<uint16_t>(f, 0x1fe);
  if (h.boot_flag != kBootFlag)
    return bad(std::string("not a Linux kernel: boot flag at 0x1fe is ") + hex(h.boot_flag) +
               ", expected 0xaa55, and no ELF magic");
  if (size < 0x206) return bad("setup header truncated: the file ends before the HdrS magic");
  h.header = load<uint32_t>(f, 0x202);
  if (h.header != kHdrSMagic)
    return bad(std::string("bad setup-header magic ") + hex(h.header) +
               " at 0x202 (expected \"HdrS\", " + hex(kHdrSMagic) +
               "): a pre-2.00 or non-Linux boot image");
  const size_t header_end = 0x202 + static_cast<size_t>(load<uint8_t>(f, 0x201));
  if (size < std::max(header_end, kInitSizeEnd) || size < 0x208)
    return bad(std::string("setup header truncated: the file has ") + std::to_string(size) +
               " bytes, the header needs " + std::to_string(std::max(header_end, kInitSizeEnd)));
  h.version = load<uint16_t>(f, 0x206);
  if (h.version < kMinVersion)
    return bad(std::string("boot protocol ") + std::to_string(h.version >> 8) + "." +
               std::to_string(h.version & 0xff) +
               " is too old: the 64-bit entry needs 2.12 or later (Linux >= 3.8)");
  if (header_end < kInitSizeEnd)
    return bad(std::string("setup header of protocol ") + hex(h.version) + " ends at " +
               hex(header_end) + ", before init_size (0x260)");
  h.setup_sects = load<uint8_t>(f, 0x1f1);
  h.loadflags = load<uint8_t>(f, 0x211);
  h.initrd_addr_max = load<uint32_t>(f, 0x22c);
  h.kernel_alignment = load<uint32_t>(f, 0x230);
  h.relocatable_kernel = load<uint8_t>(f, 0x234);
  h.xloadflags = load<uint16_t>(f, 0x236);
  h.cmdline_size = load<uint32_t>(f, 0x238);
  h.payload_offset = load<uint32_t>(f, 0x248);
  h.payload_length = load<uint32_t>(f, 0x24c);
  h.pref_address = load<uint64_t>(f, 0x258);
  h.init_size = load<uint32_t>(f, 0x260);
  if (!(h.xloadflags & kXlfKernel64))
    return bad(std::string("no 64-bit entry point (xloadflags ") + hex(h.xloadflags) +
               " lacks XLF_KERNEL_64): a 32-bit kernel");
  if (!(h.loadflags & 1)) return bad("not a bzImage (loadflags LOADED_HIGH clear): a zImage");
  const uint64_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
  const uint64_t pm_offset = (setup_sects + 1) * 512;
  if (pm_offset >= size)
    return bad(std::string("truncated: ") + std::to_string(setup_sects) +
               " setup sectors leave no protected-mode code in " + std::to_string(size) + " bytes");
  if (h.init_size == 0) return bad("init_size is 0");
  uint64_t at = h.pref_address != 0 ? h.pref_address : ll::kHighMemory;
  if (h.relocatable_kernel && h.kernel_alignment != 0 &&
      (h.kernel_alignment & (h.kernel_alignment - 1)) == 0)
    at = (at + h.kernel_alignment - 1) & ~uint64_t{h.kernel_alignment - 1};
  const uint64_t pm_size = size - pm_offset;
  k.format = KernelImage::Format::BzImage;
  k.load_address = at;
  k.end = at + std::max<uint64_t>(h.init_size, pm_size);
  k.entry = at + 0x200;  // startup_64 of the 64-bit decompressor
  k.segments.push_back({at, pm_size, f.subspan(pm_offset)});
  return {};
}

Result<void> parse_elf(KernelImage& k) {
  const std::span<const std::byte> f = k.file;
  if (f.size() < sizeof(Elf64_Ehdr)) return bad("ELF header truncated");
  const auto eh = load<Elf64_Ehdr>(f, 0);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
      eh.e_machine != EM_X86_64)
    return bad("ELF is not 64-bit little-endian x86-64");
  if (eh.e_type != ET_EXEC) return bad("ELF is not an executable (a vmlinux is ET_EXEC)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phoff > f.size() ||
      (f.size() - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum)
    return bad("ELF program headers lie outside the file");
  uint64_t lo = ~uint64_t{0}, hi = 0;
  bool entry_ok = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(f, eh.e_phoff + i * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    const std::string which = std::string("segment ") + std::to_string(i) + " ";
    if (ph.p_filesz > ph.p_memsz) return bad(which + "has p_filesz > p_memsz");
    if (ph.p_offset > f.size() || f.size() - ph.p_offset < ph.p_filesz)
      return bad(which + "lies past the end of the file (truncated vmlinux?)");
    if (ph.p_paddr < ll::kHighMemory || ph.p_paddr > kIdentityMapped ||
        kIdentityMapped - ph.p_paddr < ph.p_memsz)
      return bad(which + "has physical address " + hex(ph.p_paddr) +
                 ", outside [1 MiB, 4 GiB): not a kernel loaded by physical address");
    lo = std::min(lo, ph.p_paddr);
    hi = std::max(hi, ph.p_paddr + ph.p_memsz);
    if (eh.e_entry >= ph.p_paddr && eh.e_entry < ph.p_paddr + ph.p_memsz) entry_ok = true;
    k.segments.push_back({ph.p_paddr, ph.p_memsz, f.subspan(ph.p_offset, ph.p_filesz)});
  }
  if (k.segments.empty()) return bad("ELF has no loadable segments");
  if (!entry_ok)
    return bad(std::string("ELF entry ") + hex(eh.e_entry) +
               " is not a physical address inside a segment (a vmlinux's e_entry is)");
  k.format = KernelImage::Format::Elf;
  k.load_address = lo;
  k.end = (hi + kPage - 1) & ~(kPage - 1);
  k.entry = eh.e_entry;
  // What a bzImage's header would say; the loader fills the zero page's header from these.
  SetupHeader& h = k.header;
  h.boot_flag = kBootFlag;
  h.header = kHdrSMagic;
  h.loadflags = 1;
  h.initrd_addr_max = 0x7fffffff;
  h.kernel_alignment = 0x1000000;
  h.xloadflags = kXlfKernel64;
  h.cmdline_size = 2047;  // COMMAND_LINE_SIZE 2048 on x86, NUL included
  return {};
}

Result<std::vector<std::byte>> read_file(const std::string& path, const char* what) {
  const int opened = pepita::sys::open(path.c_str(), O_RDONLY);
  if (opened < 0) return fail_errno(-opened, std::string("open ") + what + " " + path);
  UniqueFd fd(opened);
  struct stat st {};
  if (int r = pepita::sys::fstat(fd.get(), &st); r < 0)
    return fail_errno(-r, std::string("stat ") + what + " " + path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxKernelFile)
    return fail(ErrorCode::InvalidArgument,
                std::string(what) + " " + path + " is not a regular file of at most 512 MiB");
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  const int64_t done = pepita::sys::read_full(fd.get(), bytes.data(), bytes.size());
  if (done < 0)
    return fail_errno(static_cast<int>(-done), std::string("read ") + what + " " + path);
  bytes.resize(static_cast<size_t>(done));
  return bytes;
}

}  // namespace

Result<KernelImage> KernelImage::parse(std::vector<std::byte> file) {
  KernelImage k;
  k.file = std::move(file);
  const bool elf = k.file.size() >= 4 && std::memcmp(k.file.data(), ELFMAG, SELFMAG) == 0;
  if (elf) {
    PEPITA_TRY_VOID(parse_elf(k));
  } else {
    PEPITA_TRY_VOID(parse_bzimage(k));
  }
  return k;
}

Result<KernelImage> KernelImage::load_file(const std::string& path) {
  auto bytes = PEPITA_TRY(read_file(path, "kernel"));
  auto k = parse(std::move(bytes));
  if (!k) {
    Error e = k.error();
    return std::unexpected(e.with_context(path));
  }
  return k;
}

Result<BootPlan> plan_boot(const KernelImage& kernel, uint64_t memory_bytes,
                           std::string_view cmdline, uint64_t initrd_size) {
  const SetupHeader& h = kernel.header;
  const uint64_t cmdline_max = std::min<uint64_t>(h.cmdline_size, ll::kCmdlineMax - 1);
  if (cmdline.size() > cmdline_max)
    return fail(ErrorCode::InvalidArgument,
                std::string("kernel command line of ") + std::to_string(cmdline.size()) +
                    " bytes exceeds the kernel's limit of " + std::to_string(cmdline_max) +
                    " (setup header cmdline_size); shorten it");
  if (cmdline.find('\0') != std::string_view::npos)
    return fail(ErrorCode::InvalidArgument, "kernel command line contains a NUL byte");
  if (kernel.load_address < ll::kHighMemory)
    return fail(ErrorCode::InvalidArgument,
                std::string("kernel load address ") + hex(kernel.load_address) + " is below 1 MiB");
  if (memory_bytes > kIdentityMapped || kernel.end > memory_bytes)
    return fail(ErrorCode::ResourceExhausted, std::string("the kernel needs RAM up to ") +
                                                  hex(kernel.end) + " (" + mib(kernel.end) +
                                                  ") and the VM has " + mib(memory_bytes) +
                                                  "; raise memory_bytes (at most 4 GiB)");
  BootPlan plan;
  if (initrd_size == 0) return plan;
  uint64_t top = memory_bytes;
  if (!(h.xloadflags & kXlfCanBeLoadedAbove4G))
    top = std::min<uint64_t>(top, uint64_t{h.initrd_addr_max} + 1);
  const uint64_t room = top > kernel.end ? top - kernel.end : 0;
  if (initrd_size > room)
    return fail(ErrorCode::ResourceExhausted,
                std::string("initrd of ") + std::to_string(initrd_size) +
                    " bytes does not fit in guest RAM: it must lie between the kernel's end " +
                    hex(kernel.end) + " and " + hex(top) + " (RAM end or initrd_addr_max), " +
                    "which leaves " + std::to_string(room) + " bytes; raise memory_bytes to at " +
                    "least " + mib(kernel.end + initrd_size + kPage));
  plan.initrd_gpa = (top - initrd_size) & ~(kPage - 1);
  plan.initrd_size = initrd_size;
  return plan;
}

std::array<std::byte, 4096> make_boot_params(const KernelImage& kernel, uint64_t memory_bytes,
                                             const BootPlan& plan, std::string_view cmdline) {
  std::array<std::byte, 4096> zp{};
  const std::span<std::byte> z(zp);
  const SetupHeader& h = kernel.header;
  if (kernel.format == KernelImage::Format::BzImage) {
    // boot.rst: the setup header (0x1f1 up to 0x202 + byte at 0x201) is copied, then edited.
    const size_t end = std::min<size_t>(
        {0x202 + static_cast<size_t>(kernel.file[0x201]), kSetupHeaderLimit, kernel.file.size()});
    std::memcpy(zp.data() + kSetupHeaderStart, kernel.file.data() + kSetupHeaderStart,
                end - kSetupHeaderStart);
  } else {
    store<uint16_t>(z, 0x1fe, h.boot_flag);
    store<uint32_t>(z, 0x202, h.header);
    store<uint8_t>(z, 0x211, h.loadflags);
    store<uint32_t>(z, 0x22c, h.initrd_addr_max);
    store<uint32_t>(z, 0x230, h.kernel_alignment);
    store<uint16_t>(z, 0x236, h.xloadflags);
    store<uint32_t>(z, 0x238, h.cmdline_size);
  }
  store<uint8_t>(z, 0x210, 0xff);  // type_of_loader: undefined boot loader
  store<uint32_t>(z, 0x228, static_cast<uint32_t>(plan.cmdline_gpa));
  store<uint32_t>(z, 0x0c8, static_cast<uint32_t>(plan.cmdline_gpa >> 32));  // ext_cmd_line_ptr
  store<uint32_t>(z, 0x238, static_cast<uint32_t>(cmdline.size()));
  store<uint32_t>(z, 0x218, static_cast<uint32_t>(plan.initrd_gpa));
  store<uint32_t>(z, 0x21c, static_cast<uint32_t>(plan.initrd_size));
  store<uint32_t>(z, 0x0c0, static_cast<uint32_t>(plan.initrd_gpa >> 32));   // ext_ramdisk_image
  store<uint32_t>(z, 0x0c4, static_cast<uint32_t>(plan.initrd_size >> 32));  // ext_ramdisk_size
  // e820 (zero-page.rst: e820_entries at 0x1e8, e820_table at 0x2d0, 20 bytes per entry).
  struct Entry {
    uint64_t addr, size;
    uint32_t type;
  };
  const Entry map[] = {
      {0, ll::kEbdaStart, kE820Ram},
      {ll::kEbdaStart, ll::kHighMemory - ll::kEbdaStart, kE820Reserved},  // EBDA, VGA, BIOS
      {ll::kHighMemory, memory_bytes - ll::kHighMemory, kE820Ram},
  };
  size_t n = 0;
  for (const Entry& e : map) {
    if (e.addr >= memory_bytes) break;  // RAM smaller than 1 MiB: no high-memory entry
    const size_t at = 0x2d0 + n * 20;
    store<uint64_t>(z, at, e.addr);
    store<uint64_t>(z, at + 8, e.size);
    store<uint32_t>(z, at + 16, e.type);
    ++n;
  }
  store<uint8_t>(z, 0x1e8, static_cast<uint8_t>(n));
  return zp;
}

namespace {

// Guest memory for the boot: kernel, zero page, command line, initrd, GDT and identity page
// tables (2 MiB pages over the first 4 GiB).
Result<void> write_guest(const memory::GuestMemory& mem, const KernelImage& kernel,
                         uint64_t memory_bytes, const BootPlan& plan, std::string_view cmdline,
                         std::span<const std::byte> initrd) {
  for (const auto& seg : kernel.segments)
    PEPITA_TRY_VOID(mem.write_bytes(PhysAddr(seg.gpa), seg.bytes));  // the rest is zero already
  const auto zp = make_boot_params(kernel, memory_bytes, plan, cmdline);
  PEPITA_TRY_VOID(mem.write_bytes(PhysAddr(ll::kBootParams), zp));
  PEPITA_TRY_VOID(mem.write_bytes(PhysAddr(plan.cmdline_gpa), std::as_bytes(std::span(cmdline))));
  PEPITA_TRY_VOID(mem.write<uint8_t>(PhysAddr(plan.cmdline_gpa + cmdline.size()), 0));
  if (!initrd.empty()) PEPITA_TRY_VOID(mem.write_bytes(PhysAddr(plan.initrd_gpa), initrd));
  // GDT: null, null, __BOOT_CS (64-bit code), __BOOT_DS (flat data).
  const uint64_t gdt[] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
  for (size_t i = 0; i < std::size(gdt); ++i)
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ll::kGdt + i * 8), gdt[i]));
  const uint64_t pdpt = ll::kPml4 + kPage, pd = pdpt + kPage;
  PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(ll::kPml4), pdpt | 0x3));  // present, writable
  for (uint64_t g = 0; g < 4; ++g) {
    PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(pdpt + g * 8), (pd + g * kPage) | 0x3));
    for (uint64_t j = 0; j < 512; ++j)
      PEPITA_TRY_VOID(mem.write<uint64_t>(PhysAddr(pd + g * kPage + j * 8),
                                          ((g << 30) | (j << 21)) | 0x83));  // 2 MiB page
  }
  return {};
}

kvm_segment boot_segment(uint16_t selector, bool code) {
  kvm_segment seg{};
  seg.limit = 0xffffffff;
  seg.selector = selector;
  seg.type = code ? 11 : 3;  // execute/read accessed; read/write accessed
  seg.present = 1;
  seg.s = 1;
  seg.l = code ? 1 : 0;
  seg.db = code ? 0 : 1;
  seg.g = 1;
  return seg;
}

// Teardown is the reverse of declaration: kvm_run page, vCPU fd, VM fd, then guest RAM (KVM
// drops its memslot reference when the VM fd closes, before the RAM is unmapped).
struct LinuxVm {
  memory::GuestMemory mem;
  UniqueFd vm_fd, vcpu_fd;
  Mapping run_page;
  detail::Uart8250 uart;
  // SAFETY: run_page is the vCPU's kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE bytes, page-aligned).
  kvm_run* run() const noexcept { return static_cast<kvm_run*>(run_page.data()); }
};

Result<void> create_machine(LinuxVm& vm, const KvmSystem& kvm, const LinuxBootOptions& options) {
  int fd = sys::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  if (fd < 0) return fail_errno(-fd, "KVM_CREATE_VM");
  vm.vm_fd.reset(fd);
  uint32_t slot = 0;
  for (const auto& r : vm.mem.regions()) {
    kvm_userspace_memory_region region{};
    region.slot = slot++;
    region.guest_phys_addr = r.base().raw();
    region.memory_size = r.size();
    // SAFETY: KVM takes the host address as an integer; RAM outlives the VM fd (LinuxVm order).
    region.userspace_addr = reinterpret_cast<uint64_t>(r.host().data());
    if (int res = sys::ioctl_ptr(fd, KVM_SET_USER_MEMORY_REGION, &region); res < 0)
      return fail_errno(-res, "KVM_SET_USER_MEMORY_REGION");
  }
  // A PC's interrupt controllers and timer, in the kernel, when KVM has them: Linux calibrates
  // against the PIT and takes timer interrupts once it is past early boot.
  if (sys::ioctl(fd, KVM_CREATE_IRQCHIP, 0) == 0) {
    kvm_pit_config pit{};
    (void)sys::ioctl_ptr(fd, KVM_CREATE_PIT2, &pit);
  }
  int vcpu = sys::ioctl(fd, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) return fail_errno(-vcpu, "KVM_CREATE_VCPU");
  vm.vcpu_fd.reset(vcpu);
  vm.run_page = PEPITA_TRY(Mapping::map(static_cast<size_t>(kvm.vcpu_mmap_size()),
                                        PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0, "kvm_run"));
  // The supported CPUID, less the leaf-1 ECX bits the options hide.
  const auto nent = static_cast<uint32_t>(kvm.cpuid_table()[0]);
  const size_t words = 1 + (nent * sizeof(kvm_cpuid_entry2) + 7) / 8;
  std::vector<uint64_t> table(kvm.cpuid_table(), kvm.cpuid_table() + words);
  // SAFETY: entries follow the 8-byte header; copied out, edited and copied back.
  auto* bytes = reinterpret_cast<char*>(table.data()) + 8;
  for (uint32_t i = 0; i < nent; ++i) {
    kvm_cpuid_entry2 e;
    std::memcpy(&e, bytes + i * sizeof e, sizeof e);
    if (e.function == 1) e.ecx &= ~options.hide_leaf1_ecx;
    if (e.function == 7 && e.index == 0) e.ebx &= ~options.hide_leaf7_ebx;
    std::memcpy(bytes + i * sizeof e, &e, sizeof e);
  }
  if (int res = sys::ioctl_ptr(vcpu, sys::kSetCpuid2, table.data()); res < 0)
    return fail_errno(-res, "KVM_SET_CPUID2");
  return {};
}

// boot.rst "64-bit BOOT PROTOCOL": long mode, paging on with the loaded ranges identity-mapped,
// a GDT with __BOOT_CS/__BOOT_DS, interrupts off, RSI = the zero page.
Result<void> enter_kernel(LinuxVm& vm, uint64_t entry) {
  const int vcpu = vm.vcpu_fd.get();
  kvm_sregs sregs{};
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS");
  sregs.cs = boot_segment(0x10, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = boot_segment(0x18, false);
  kvm_segment tr{};
  tr.limit = 0x67;
  tr.type = 11;  // busy 64-bit TSS: VM entry wants a usable TR; Linux loads its own
  tr.present = 1;
  sregs.tr = tr;
  sregs.ldt = kvm_segment{};
  sregs.ldt.unusable = 1;
  sregs.gdt.base = ll::kGdt;
  sregs.gdt.limit = 4 * 8 - 1;
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cr0 = 0x80000031ull;  // PG | NE | ET | PE
  sregs.cr4 = 1ull << 5;      // PAE
  sregs.cr3 = ll::kPml4;
  sregs.efer = (1ull << 8) | (1ull << 10) | (1ull << 11);  // LME | LMA | NXE
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_SET_SREGS (64-bit kernel entry)");
  kvm_regs regs{};
  regs.rip = entry;
  regs.rsi = ll::kBootParams;
  regs.rsp = regs.rbp = ll::kBootStack;
  regs.rflags = 0x2;
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_SET_REGS");
  return {};
}

Result<void> record_fault(LinuxVm& vm, std::string reason, RunResult& r) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  if (int res = sys::ioctl_ptr(vm.vcpu_fd.get(), KVM_GET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_GET_REGS");
  if (int res = sys::ioctl_ptr(vm.vcpu_fd.get(), KVM_GET_SREGS, &sregs); res < 0)
    return fail_errno(-res, "KVM_GET_SREGS");
  GuestFault f;
  f.reason = std::move(reason);
  f.rip = regs.rip, f.rsp = regs.rsp, f.rflags = regs.rflags, f.cr2 = sregs.cr2;
  f.rax = regs.rax, f.rbx = regs.rbx, f.rcx = regs.rcx, f.rdx = regs.rdx;
  f.rsi = regs.rsi, f.rdi = regs.rdi, f.rbp = regs.rbp;
  f.r8 = regs.r8, f.r9 = regs.r9, f.r10 = regs.r10, f.r11 = regs.r11;
  f.r12 = regs.r12, f.r13 = regs.r13, f.r14 = regs.r14, f.r15 = regs.r15;
  r.kind = ExitKind::Fault;
  r.fault = std::move(f);
  return {};
}

// This KVM's CPL0 emulator cannot run `int3` (kvm-here.md), which Linux executes on purpose (its
// int3 self-test, text_poke_bp). When the failed instruction is an int3, do what the CPU would:
// step past it and deliver #BP to the guest's IDT. False when it was another instruction.
Result<bool> reflect_int3(LinuxVm& vm) {
  const int vcpu = vm.vcpu_fd.get();
  kvm_regs regs{};
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_GET_REGS");
  kvm_translation tr{};
  tr.linear_address = regs.rip;
  if (sys::ioctl_ptr(vcpu, KVM_TRANSLATE, &tr) < 0 || !tr.valid) return false;
  auto byte = vm.mem.read<uint8_t>(PhysAddr(tr.physical_address));
  if (!byte || *byte != 0xcc) return false;
  regs.rip += 1;  // #BP is a trap: the handler sees the address after the int3
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_REGS, &regs); res < 0)
    return fail_errno(-res, "KVM_SET_REGS");
  kvm_vcpu_events events{};
  if (int res = sys::ioctl_ptr(vcpu, KVM_GET_VCPU_EVENTS, &events); res < 0)
    return fail_errno(-res, "KVM_GET_VCPU_EVENTS");
  events.exception.injected = 1;
  events.exception.nr = 3;
  events.exception.has_error_code = 0;
  events.flags = 0;
  if (int res = sys::ioctl_ptr(vcpu, KVM_SET_VCPU_EVENTS, &events); res < 0)
    return fail_errno(-res, "KVM_SET_VCPU_EVENTS (#BP)");
  return true;
}

enum class IoEnd { Continue, Stop };

// Port I/O: the UART at COM1; elsewhere reads see a floating bus (0xff) and writes are dropped.
IoEnd serve_io(LinuxVm& vm, const VmConfig& config, const LinuxBootOptions& options, RunResult& r) {
  const auto& io = vm.run()->io;
  // SAFETY: KVM puts count * size data bytes at data_offset inside the kvm_run mapping.
  auto* data = reinterpret_cast<uint8_t*>(vm.run()) + io.data_offset;
  bool line_done = false;
  for (uint32_t i = 0; i < io.count; ++i) {
    uint8_t* item = data + static_cast<size_t>(i) * io.size;
    if (io.direction == KVM_EXIT_IO_OUT) {
      if (vm.uart.owns(io.port))
        line_done |= vm.uart.write(io.port, item[0], r.output, config.output_limit);
    } else {
      std::memset(item, 0xff, io.size);
      if (vm.uart.owns(io.port)) item[0] = vm.uart.read(io.port);
    }
  }
  if (line_done && options.stop_when && options.stop_when(r.output)) return IoEnd::Stop;
  return IoEnd::Continue;
}

}  // namespace

Result<RunResult> boot_linux(const VmConfig& config, const LinuxBootOptions& options,
                             std::stop_token stop) {
  if (config.kernel_path.empty())
    return fail(ErrorCode::InvalidArgument, "boot_linux needs VmConfig::kernel_path");
  if (config.memory_bytes < kMinMemory || config.memory_bytes % kPage != 0)
    return fail(ErrorCode::InvalidArgument,
                "memory_bytes must be a multiple of 4096 of at least 2 MiB");
  const auto kernel = PEPITA_TRY(KernelImage::load_file(config.kernel_path));
  std::vector<std::byte> initrd;
  if (!config.initrd.empty()) initrd = PEPITA_TRY(read_file(config.initrd, "initrd"));
  const auto plan =
      PEPITA_TRY(plan_boot(kernel, config.memory_bytes, config.cmdline, initrd.size()));
  const KvmSystem* kvm = PEPITA_TRY(KvmSystem::get());
  LinuxVm vm;
  vm.mem = PEPITA_TRY(memory::GuestMemory::anonymous(PhysAddr(0), config.memory_bytes));
  PEPITA_TRY_VOID(write_guest(vm.mem, kernel, config.memory_bytes, plan, config.cmdline, initrd));
  PEPITA_TRY_VOID(create_machine(vm, *kvm, options));
  PEPITA_TRY_VOID(enter_kernel(vm, kernel.entry));

  RunResult r;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&](ExitKind kind) -> Result<RunResult> {
    r.elapsed = std::chrono::steady_clock::now() - start;
    if (kind != ExitKind::Fault && kind != ExitKind::Exited) {
      // Where the kernel was when the run was stopped: r.fault carries the registers (how far a
      // boot got), while r.kind says it was stopped, not faulted.
      PEPITA_TRY_VOID(record_fault(vm, "stopped here", r));
    }
    if (kind != ExitKind::Fault) r.kind = kind;
    return r;
  };
  kvm_run* run = vm.run();
  auto watchdog = PEPITA_TRY(detail::Watchdog::arm(run, config.timeout));
  std::atomic<bool> cancelled{false};
  std::stop_callback on_cancel(stop, [&cancelled, self = ::pthread_self()] {
    cancelled.store(true);
    detail::kick(self);
  });
  for (;;) {
    const int res = sys::ioctl(vm.vcpu_fd.get(), KVM_RUN, 0);
    if (res == -EINTR || (res == 0 && run->exit_reason == KVM_EXIT_INTR)) {
      __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
      if (cancelled.load()) return finish(ExitKind::Cancelled);
      if (watchdog.expired()) return finish(ExitKind::TimedOut);
      continue;
    }
    if (res == -EAGAIN) continue;
    if (res < 0) return fail_errno(-res, "KVM_RUN");
    ++r.exits;
    switch (run->exit_reason) {
      case KVM_EXIT_IO:
        if (serve_io(vm, config, options, r) == IoEnd::Stop) return finish(ExitKind::Cancelled);
        break;
      case KVM_EXIT_MMIO:
        // No MMIO devices: reads see all ones, writes are dropped.
        if (!run->mmio.is_write) std::memset(run->mmio.data, 0xff, sizeof run->mmio.data);
        break;
      case KVM_EXIT_HLT:
        PEPITA_TRY_VOID(record_fault(vm, "vCPU halted with interrupts off (kernel stopped)", r));
        return finish(ExitKind::Fault);
      case KVM_EXIT_SHUTDOWN:
        PEPITA_TRY_VOID(record_fault(vm, "shutdown: triple fault or reboot", r));
        return finish(ExitKind::Fault);
      case KVM_EXIT_SYSTEM_EVENT: r.exit_code = 0; return finish(ExitKind::Exited);
      case KVM_EXIT_INTERNAL_ERROR:
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && options.reflect_int3 &&
            PEPITA_TRY(reflect_int3(vm)))
          break;
        PEPITA_TRY_VOID(record_fault(
            vm,
            std::string("KVM internal error, suberror ") + std::to_string(run->internal.suberror) +
                (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                     ? " (instruction emulation failed: this KVM emulates guest CPL0)"
                     : ""),
            r));
        return finish(ExitKind::Fault);
      default:
        PEPITA_TRY_VOID(record_fault(
            vm, std::string("unexpected KVM exit reason ") + std::to_string(run->exit_reason), r));
        return finish(ExitKind::Fault);
    }
    if (cancelled.load()) return finish(ExitKind::Cancelled);
    if (watchdog.expired()) return finish(ExitKind::TimedOut);
  }
}

}  // namespace pepita::vmm
