#pragma once
// Booting a Linux kernel in a micro-VM: the x86 64-bit boot protocol (Documentation/arch/x86/
// boot.rst, "64-bit BOOT PROTOCOL"; zero-page.rst) for VmConfig::kernel_path/cmdline/initrd.
//
//   auto r = PEPITA_TRY(vmm::boot_linux({.memory_bytes = 256 << 20,
//                                        .timeout = std::chrono::seconds(30),
//                                        .kernel_path = "vmlinux",
//                                        .cmdline = "earlyprintk=serial console=ttyS0"}));
//   std::cout << r.output;  // what the kernel wrote to its 8250 UART at port 0x3f8
//
// Two kernel formats: a bzImage (setup header at 0x1f1, "HdrS", protocol >= 2.12 with
// XLF_KERNEL_64; its protected-mode part loaded at pref_address and entered at load + 0x200, where
// the decompressor runs) and an uncompressed ELF vmlinux (segments loaded at their physical
// addresses, entered at e_entry, as Firecracker does on x86_64). Either way the vCPU starts in
// 64-bit CPL0 with the first 4 GiB identity-mapped, CS = __BOOT_CS (0x10), DS/ES/SS = __BOOT_DS
// (0x18), interrupts off and RSI = the boot_params (zero page) address. The machine: guest RAM from
// 0 (e820: [0, 0x9fc00) and [1 MiB, end) usable), an in-kernel PIC/IOAPIC/PIT when KVM offers
// them, and an 8250 UART (COM1) whose transmitted bytes are RunResult::output. Other port I/O
// reads as 0xff (nothing there) and writes are dropped, as on a PC.
//
// What this proves on a KVM that emulates guest CPL0 (kvm_pvm, /work/shared/notes/kvm-here.md):
// the kernel's early boot up to its banner and early console lines. A host with hardware
// virtualisation (VMX/SVM) runs the same boot at native speed to userspace; docs/linux-boot.md.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {

/// The setup-header fields the loader reads (boot.rst, "THE REAL-MODE KERNEL HEADER").
struct SetupHeader {
  uint8_t setup_sects = 0;         // 0x1f1; 0 means 4
  uint16_t boot_flag = 0;          // 0x1fe, 0xAA55
  uint32_t header = 0;             // 0x202, "HdrS"
  uint16_t version = 0;            // 0x206, e.g. 0x020f for 2.15
  uint8_t loadflags = 0;           // 0x211; bit 0 LOADED_HIGH
  uint32_t initrd_addr_max = 0;    // 0x22c, highest byte address the initrd may occupy
  uint32_t kernel_alignment = 0;   // 0x230
  uint8_t relocatable_kernel = 0;  // 0x234
  uint16_t xloadflags = 0;         // 0x236; bit 0 XLF_KERNEL_64 (64-bit entry at +0x200)
  uint32_t cmdline_size = 0;       // 0x238, maximum command line length without the NUL
  uint32_t payload_offset = 0;     // 0x248
  uint32_t payload_length = 0;     // 0x24c
  uint64_t pref_address = 0;       // 0x258, preferred load address
  uint32_t init_size = 0;          // 0x260, bytes the kernel needs from its load address on
};

inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint16_t kXlfKernel64 = 1u << 0;
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 1u << 1;

// Guest-physical layout of a Linux boot (Firecracker's x86_64 choices).
namespace linux_layout {
inline constexpr uint64_t kGdt = 0x500;
inline constexpr uint64_t kBootParams = 0x7000;  // the zero page, in RSI at entry
inline constexpr uint64_t kBootStack = 0x8ff0;
inline constexpr uint64_t kPml4 = 0x9000;  // then the PDPT and 4 page directories to 0xefff
inline constexpr uint64_t kCmdline = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // up to the next 64 KiB
inline constexpr uint64_t kEbdaStart = 0x9fc00;   // end of usable low RAM
inline constexpr uint64_t kHighMemory = 0x100000;
}  // namespace linux_layout

/// One range to copy into guest RAM: `bytes` at `gpa`, then zeros up to mem_size.
struct KernelSegment {
  uint64_t gpa = 0;
  uint64_t mem_size = 0;
  std::span<const std::byte> bytes;  // views KernelImage::file
};

/// A parsed kernel, ready to place. parse() checks every field it uses against the file size.
struct KernelImage {
  enum class Format : uint8_t { BzImage, Elf };
  Format format = Format::Elf;
  SetupHeader header;  // bzImage: read from the file; ELF vmlinux: what the loader supplies
  std::vector<std::byte> file;
  std::vector<KernelSegment> segments;
  uint64_t load_address = 0;  // lowest byte the kernel occupies
  uint64_t end = 0;           // first byte past what the kernel needs (bzImage: load + init_size)
  uint64_t entry = 0;         // 64-bit entry, guest-physical

  /// InvalidArgument naming the problem and what to use instead: not a bzImage or ELF, bad boot
  /// flag or "HdrS" magic, a header cut short, protocol < 2.12 or no 64-bit entry, segments past
  /// the file.
  static Result<KernelImage> parse(std::vector<std::byte> file);
  /// Reads `path` (at most 512 MiB) and parses it.
  static Result<KernelImage> load_file(const std::string& path);
};

/// The e820 types boot_params uses.
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

/// Where the loader put things, for boot_params and the tests.
struct BootPlan {
  uint64_t cmdline_gpa = linux_layout::kCmdline;
  uint64_t initrd_gpa = 0, initrd_size = 0;
};

/// Checks that the kernel, command line and an initrd of `initrd_size` bytes fit in
/// `memory_bytes` of RAM and says where the initrd goes: as high as RAM and initrd_addr_max
/// allow, page-aligned, above the kernel. InvalidArgument for a command line longer than the
/// kernel's cmdline_size; ResourceExhausted (naming the memory needed) when something does not fit.
Result<BootPlan> plan_boot(const KernelImage& kernel, uint64_t memory_bytes,
                           std::string_view cmdline, uint64_t initrd_size);

/// The 4096-byte zero page: the image's setup header (bzImage) or a minimal one (ELF), with
/// type_of_loader 0xff, cmd_line_ptr, ramdisk_image/size and the e820 map for `memory_bytes`.
std::array<std::byte, 4096> make_boot_params(const KernelImage& kernel, uint64_t memory_bytes,
                                             const BootPlan& plan, std::string_view cmdline);

/// Options of one boot beyond VmConfig.
struct LinuxBootOptions {
  /// Called with the console output after each UART line; returning true ends the run as
  /// ExitKind::Cancelled (the caller has seen what it wanted, e.g. the banner).
  std::function<bool(std::string_view output)> stop_when;
  /// CPUID bits to hide from the guest, for KVMs that emulate guest CPL0 (kvm_pvm) and fail on
  /// some instructions: leaf 1 ECX CX16 | XSAVE | OSXSAVE | AVX (so Linux uses neither
  /// cmpxchg16b in SLUB nor xrstor for its FPU state) and leaf 7 EBX BMI2 (no shrx). Measured on
  /// kvm_pvm: the guest still saw XSAVE; add `noxsave clearcpuid=cx16,bmi2` to the command line.
  uint32_t hide_leaf1_ecx = (1u << 13) | (1u << 26) | (1u << 27) | (1u << 28);
  uint32_t hide_leaf7_ebx = 1u << 8;
  /// When emulation fails on an `int3`, step past it and deliver #BP to the guest (the CPU's
  /// behaviour, which this KVM's emulator lacks) instead of ending the run.
  bool reflect_int3 = true;
};

/// Boots config.kernel_path with config.cmdline (and config.initrd when set) in a new VM of
/// config.memory_bytes and runs it until config.timeout, a shutdown/triple fault, an emulation
/// failure, `stop`, or options.stop_when. RunResult::output is the UART's output (at most
/// config.output_limit bytes); a fault carries the vCPU's registers. Errors are the host's:
/// unreadable or malformed kernel/initrd, no KVM, an ioctl failure.
Result<RunResult> boot_linux(const VmConfig& config, const LinuxBootOptions& options = {},
                             std::stop_token stop = {});

}  // namespace pepita::vmm
