// Linux boot protocol: setup-header parsing (a real bzImage from /boot and synthetic images with
// each defect), boot_params layout, initrd/command-line placement, the 8250 UART register file,
// and, with KVM and the test-guest kernel, Debian's 6.12 kernel printing its banner on our UART.
#include "pepita/vmm/linux_boot.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/temp_dir.hpp"
#include "common/vmlinux_image.hpp"
#include "detail/uart8250.hpp"
#include "linux_boot_test_util.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::error_of;
using test::get;
using test::put;
using test::synthetic_bzimage;

std::string boot_vmlinuz() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/boot", ec))
    if (e.path().filename().string().starts_with("vmlinuz-6.12")) return e.path().string();
  return {};
}

TEST(LinuxBootParse, RealBzImageHeaderFromBoot) {
  const std::string path = boot_vmlinuz();
  if (path.empty()) GTEST_SKIP() << "no /boot/vmlinuz-6.12* (scripts/install-deps installs it)";
  auto k = KernelImage::load_file(path);
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->format, KernelImage::Format::BzImage);
  EXPECT_EQ(k->header.header, kHdrSMagic);
  EXPECT_EQ(k->header.boot_flag, kBootFlag);
  EXPECT_GE(k->header.version, 0x020c);
  EXPECT_TRUE(k->header.xloadflags & kXlfKernel64);
  EXPECT_TRUE(k->header.loadflags & 1);
  EXPECT_EQ(k->header.pref_address, 0x1000000u);  // CONFIG_PHYSICAL_START
  EXPECT_EQ(k->load_address, 0x1000000u);
  EXPECT_EQ(k->entry, k->load_address + 0x200);
  EXPECT_GT(k->header.init_size, k->file.size());  // the decompressed kernel is larger
  EXPECT_EQ(k->end, k->load_address + k->header.init_size);
  EXPECT_GE(k->header.cmdline_size, 255u);
  EXPECT_GT(k->header.payload_length, 0u);
  // The compressed kernel lies where payload_offset and payload_length say, in the protected-mode
  // part after the setup sectors, and starts with a compressor's magic (zstd, xz, gzip, lz4).
  const std::size_t pm = (std::size_t{k->header.setup_sects} + 1) * 512;
  const std::size_t at = pm + k->header.payload_offset;
  ASSERT_LE(at + k->header.payload_length, k->file.size());
  std::string magic(6, '\0');
  std::memcpy(magic.data(), k->file.data() + at, magic.size());
  EXPECT_TRUE(magic.starts_with("\x28\xb5\x2f\xfd") ||
              magic.starts_with("\xfd"
                                "7zXZ\0") ||
              magic.starts_with("\x1f\x8b") || magic.starts_with("\x02\x21\x4c\x18"))
      << "no compressor magic at payload_offset " << k->header.payload_offset;
}

TEST(LinuxBootParse, SyntheticBzImagePlacesTheKernelAtPrefAddress) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->format, KernelImage::Format::BzImage);
  EXPECT_EQ(k->load_address, 0x1000000u);
  EXPECT_EQ(k->entry, 0x1000200u);
  EXPECT_EQ(k->end, 0x1200000u);
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].bytes.size(), 4096u);  // everything after the 2 sectors of setup
}

TEST(LinuxBootParse, BadBootFlagIsNamed) {
  auto f = synthetic_bzimage();
  put<uint16_t>(f, 0x1fe, 0x1234);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("boot flag"), std::string::npos) << e;
  EXPECT_NE(e.find("pass a bzImage"), std::string::npos) << e;
}

TEST(LinuxBootParse, BadHdrSMagicIsNamed) {
  auto f = synthetic_bzimage();
  put<uint32_t>(f, 0x202, 0x11223344);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("HdrS"), std::string::npos) << e;
}

TEST(LinuxBootParse, TruncatedHeaderIsNamed) {
  auto f = synthetic_bzimage();
  f.resize(0x240);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  auto tiny = KernelImage::parse(std::vector<std::byte>(100));
  ASSERT_FALSE(tiny);
  EXPECT_NE(tiny.error().to_string().find("too short"), std::string::npos);
}

TEST(LinuxBootParse, ProtocolOlderThan212IsRefused) {
  auto f = synthetic_bzimage();
  put<uint16_t>(f, 0x206, 0x020b);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("too old"), std::string::npos) << e;
  EXPECT_NE(e.find("2.12"), std::string::npos) << e;
}

TEST(LinuxBootParse, KernelWithoutA64BitEntryIsRefused) {
  auto f = synthetic_bzimage();
  put<uint16_t>(f, 0x236, 0);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("XLF_KERNEL_64"), std::string::npos) << e;
}

using pepita::test::synthetic_vmlinux;
using pepita::test::write_synthetic_vmlinux;

TEST(LinuxBootParse, ElfVmlinuxLoadsAtPhysicalAddresses) {
  auto k = KernelImage::parse(synthetic_vmlinux());
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->format, KernelImage::Format::Elf);
  EXPECT_EQ(k->entry, 0x1000040u);
  EXPECT_EQ(k->load_address, 0x1000000u);
  EXPECT_EQ(k->end, 0x1003000u);
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].bytes.size(), 0x1000u);
  EXPECT_EQ(k->header.cmdline_size, 2047u);
}

TEST(LinuxBootParse, TruncatedElfSegmentIsNamed) {
  auto f = synthetic_vmlinux();
  f.resize(0x1800);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("past the end of the file"), std::string::npos) << e;
}

TEST(LinuxBootParse, SetupHeaderEndingBeforeInitSizeIsRefused) {
  auto f = synthetic_bzimage();
  put<uint8_t>(f, 0x201, 0x50);  // the jump: header ends at 0x252, before init_size
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("setup header of protocol 0x20f ends at 0x252, before init_size"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("pass a bzImage"), std::string::npos) << e;
}

TEST(LinuxBootParse, SetupSectorsCoveringTheWholeFileAreATruncatedImage) {
  auto f = synthetic_bzimage();
  put<uint8_t>(f, 0x1f1, 200);  // 201 sectors of setup in a 5 KiB file
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("truncated: 200 setup sectors leave no protected-mode code in 5120 bytes"),
            std::string::npos)
      << e;
}

TEST(LinuxBootParse, ElfForAnotherMachineIsRefused) {
  auto f = synthetic_vmlinux();
  put<uint16_t>(f, offsetof(Elf64_Ehdr, e_machine), EM_386);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("ELF is not 64-bit little-endian x86-64"), std::string::npos) << e;
  auto g = synthetic_vmlinux();
  put<uint16_t>(g, offsetof(Elf64_Ehdr, e_type), ET_DYN);
  EXPECT_NE(error_of(KernelImage::parse(std::move(g))).find("not an executable"),
            std::string::npos);
}

TEST(LinuxBootParse, ElfProgramHeadersOutsideTheFileAreRefused) {
  auto f = synthetic_vmlinux();
  put<uint64_t>(f, offsetof(Elf64_Ehdr, e_phoff), 0x1ff0);  // one header needs 56 bytes
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("ELF program headers lie outside the file"), std::string::npos) << e;
}

TEST(LinuxBootParse, ElfSegmentBelow1MiBIsRefused) {
  auto f = synthetic_vmlinux();
  put<uint64_t>(f, sizeof(Elf64_Ehdr) + offsetof(Elf64_Phdr, p_paddr), 0x8000);
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("segment 0 has physical address 0x8000, outside [1 MiB, 4 GiB)"),
            std::string::npos)
      << e;
}

TEST(LinuxBootParse, ElfEntryOutsideEverySegmentIsRefused) {
  auto f = synthetic_vmlinux();
  put<uint64_t>(f, offsetof(Elf64_Ehdr, e_entry), 0xffffffff81000040ull);  // virtual, not physical
  const std::string e = error_of(KernelImage::parse(std::move(f)));
  EXPECT_NE(e.find("ELF entry 0xffffffff81000040 is not a physical address inside a segment"),
            std::string::npos)
      << e;
}

TEST(LinuxBootParse, LoadFileNamesThePathOfAMalformedKernel) {
  pepita::test::TempDir dir("linux-parse");
  const std::string path = dir.file("not-a-kernel");
  std::ofstream(path) << std::string(600, 'x');
  auto k = KernelImage::load_file(path);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(k.error().to_string().find(path), std::string::npos) << k.error().to_string();
  EXPECT_NE(k.error().to_string().find("boot flag"), std::string::npos) << k.error().to_string();
}

TEST(LinuxBootParse, ADirectoryIsNotAKernelFile) {
  pepita::test::TempDir dir("linux-parse");
  auto k = KernelImage::load_file(dir.path());
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(k.error().to_string().find("kernel " + dir.path() +
                                       " is not a regular file of at most 512 MiB"),
            std::string::npos)
      << k.error().to_string();
}

TEST(LinuxBootPlan, CommandLineWithANulByteIsRefused) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 64ull << 20, std::string_view("console=ttyS0\0x", 15), 0);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(plan.error().to_string().find("contains a NUL byte"), std::string::npos);
}

TEST(LinuxBootPlan, KernelLoadAddressBelow1MiBIsRefused) {
  auto f = synthetic_bzimage();
  put<uint64_t>(f, 0x258, 0x80000);  // pref_address 512 KiB
  put<uint8_t>(f, 0x234, 0);         // not relocatable: loaded there
  auto k = KernelImage::parse(std::move(f));
  ASSERT_TRUE(k) << k.error().to_string();
  auto plan = plan_boot(*k, 64ull << 20, "", 0);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(plan.error().to_string().find("kernel load address 0x80000 is below 1 MiB"),
            std::string::npos)
      << plan.error().to_string();
}

TEST(LinuxBootPlan, InitrdStaysBelowInitrdAddrMaxOfAKernelThatCannotGoAbove4G) {
  auto f = synthetic_bzimage();
  put<uint16_t>(f, 0x236, 0x1);        // XLF_KERNEL_64 only
  put<uint32_t>(f, 0x22c, 0x1ffffff);  // initrd_addr_max: 32 MiB - 1
  auto k = KernelImage::parse(std::move(f));
  ASSERT_TRUE(k) << k.error().to_string();
  auto plan = plan_boot(*k, 64ull << 20, "", 10000);
  ASSERT_TRUE(plan) << plan.error().to_string();
  EXPECT_EQ(plan->initrd_gpa, (0x2000000u - 10000) & ~0xfffull);  // at the top of 32 MiB, not 64
  EXPECT_GE(plan->initrd_gpa, k->end);
}

TEST(LinuxBootPlan, InitrdPastRamIsAClearError) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 32ull << 20, "console=ttyS0", 31ull << 20);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(plan.error().to_string().find("initrd of"), std::string::npos);
  EXPECT_NE(plan.error().to_string().find("raise memory_bytes"), std::string::npos);
}

TEST(LinuxBootPlan, InitrdGoesPageAlignedToTheTopOfRam) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 64ull << 20, "console=ttyS0", 10000);
  ASSERT_TRUE(plan) << plan.error().to_string();
  EXPECT_EQ(plan->initrd_gpa % 4096, 0u);
  EXPECT_GE(plan->initrd_gpa, k->end);
  EXPECT_LE(plan->initrd_gpa + plan->initrd_size, 64ull << 20);
  EXPECT_GT(plan->initrd_gpa + 4096 + plan->initrd_size, 64ull << 20);  // as high as it goes
}

TEST(LinuxBootPlan, CommandLineLongerThanCmdlineSizeIsRefused) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 64ull << 20, std::string(3000, 'x'), 0);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(plan.error().to_string().find("cmdline_size"), std::string::npos);
  EXPECT_NE(plan.error().to_string().find("shorten"), std::string::npos);
}

TEST(LinuxBootPlan, KernelLargerThanRamIsRefused) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 16ull << 20, "", 0);  // the kernel needs up to 18 MiB
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(plan.error().to_string().find("raise memory_bytes"), std::string::npos);
}

TEST(LinuxBootParams, ZeroPageCarriesHeaderCmdlineInitrdAndE820) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k);
  const uint64_t mem = 64ull << 20;
  auto plan = plan_boot(*k, mem, "console=ttyS0", 8192);
  ASSERT_TRUE(plan);
  const auto zp = make_boot_params(*k, mem, *plan, "console=ttyS0");
  const std::span<const std::byte> z(zp);
  EXPECT_EQ(get<uint32_t>(z, 0x202), kHdrSMagic);              // header copied from the image
  EXPECT_EQ(get<uint16_t>(z, 0x206), 0x020f);                  // version
  EXPECT_EQ(get<uint64_t>(z, 0x258), 0x1000000u);              // pref_address
  EXPECT_EQ(get<uint8_t>(z, 0x210), 0xff);                     // type_of_loader
  EXPECT_EQ(get<uint32_t>(z, 0x228), linux_layout::kCmdline);  // cmd_line_ptr
  EXPECT_EQ(get<uint32_t>(z, 0x218), plan->initrd_gpa);        // ramdisk_image
  EXPECT_EQ(get<uint32_t>(z, 0x21c), 8192u);                   // ramdisk_size
  ASSERT_EQ(get<uint8_t>(z, 0x1e8), 3);                        // e820_entries
  // [0, 0x9fc00) RAM, [0x9fc00, 1 MiB) reserved, [1 MiB, end) RAM.
  EXPECT_EQ(get<uint64_t>(z, 0x2d0), 0u);
  EXPECT_EQ(get<uint64_t>(z, 0x2d8), 0x9fc00u);
  EXPECT_EQ(get<uint32_t>(z, 0x2e0), kE820Ram);
  EXPECT_EQ(get<uint32_t>(z, 0x2e4 + 16), kE820Reserved);
  EXPECT_EQ(get<uint64_t>(z, 0x2f8), 0x100000u);
  EXPECT_EQ(get<uint64_t>(z, 0x300), mem - 0x100000);
  EXPECT_EQ(get<uint32_t>(z, 0x308), kE820Ram);
}

TEST(LinuxBootParams, ElfKernelGetsASynthesizedHeader) {
  auto k = KernelImage::parse(synthetic_vmlinux());
  ASSERT_TRUE(k);
  auto plan = plan_boot(*k, 64ull << 20, "", 0);
  ASSERT_TRUE(plan);
  const auto zp = make_boot_params(*k, 64ull << 20, *plan, "");
  const std::span<const std::byte> z(zp);
  EXPECT_EQ(get<uint16_t>(z, 0x1fe), kBootFlag);
  EXPECT_EQ(get<uint32_t>(z, 0x202), kHdrSMagic);
  EXPECT_EQ(get<uint8_t>(z, 0x210), 0xff);
  EXPECT_EQ(get<uint32_t>(z, 0x218), 0u);  // no initrd
  EXPECT_EQ(get<uint32_t>(z, 0x21c), 0u);
}

TEST(Uart8250, TransmitsBytesAndAnswersTheProbes) {
  detail::Uart8250 uart;
  std::string out;
  EXPECT_EQ(uart.read(0x3fd) & 0x60, 0x60);  // LSR: THR and transmitter empty
  EXPECT_FALSE(uart.write(0x3f8, 'h', out, 100));
  EXPECT_TRUE(uart.write(0x3f8, '\n', out, 100));
  EXPECT_EQ(out, "h\n");
  uart.write(0x3ff, 0x5a, out, 100);  // scratch register holds a byte
  EXPECT_EQ(uart.read(0x3ff), 0x5a);
  uart.write(0x3f9, 0x0f, out, 100);  // IER
  EXPECT_EQ(uart.read(0x3f9), 0x0f);
  uart.write(0x3fb, 0x83, out, 100);  // DLAB on: offsets 0/1 are the divisor
  uart.write(0x3f8, 0x01, out, 100);
  EXPECT_EQ(uart.read(0x3f8), 0x01);
  EXPECT_EQ(out, "h\n");  // divisor writes are not output
  uart.write(0x3fb, 0x03, out, 100);
  uart.write(0x3fc, 0x1a, out, 100);         // MCR loopback | OUT2 | RTS
  EXPECT_EQ(uart.read(0x3fe) & 0xf0, 0x90);  // MSR: DCD | CTS, what 8250's probe expects
  EXPECT_EQ(uart.read(0x3fa) & 0x0f, 0x01);  // IIR: no interrupt pending
  uart.write(0x3f8, 'x', out, 2);            // output limit reached: dropped
  EXPECT_EQ(out, "h\n");
}

// In loopback each modem-control output drives its own status input: DTR->DSR, RTS->CTS,
// OUT1->RI, OUT2->DCD, one bit at a time.
TEST(Uart8250, LoopbackMapsEachModemControlBitToItsStatusBit) {
  detail::Uart8250 uart;
  std::string out;
  const std::pair<uint8_t, uint8_t> kMap[] = {{0x01, 0x20}, {0x02, 0x10}, {0x04, 0x40},
                                              {0x08, 0x80}, {0x0f, 0xf0}, {0x00, 0x00}};
  for (const auto& [mcr, msr] : kMap) {
    uart.write(0x3fc, static_cast<uint8_t>(0x10 | mcr), out, 100);  // MCR: loopback | outputs
    EXPECT_EQ(uart.read(0x3fe), msr) << "MCR outputs " << int{mcr};
  }
  EXPECT_EQ(out, "");
}

// The uncompressed vmlinux of the test-guest kernel, extracted (once, cached) by build-guest.sh.
std::string guest_vmlinux(const pepita::test::TempDir& dir, std::string& why) {
  const std::string script = std::string(PEPITA_SOURCE_DIR) + "/tests/guest/build-guest.sh";
  const std::string log = dir.file("build-guest.log");
  const int status = std::system(
      ("'" + script + "' --kernel-only --out '" + dir.path() + "' >'" + log + "' 2>&1").c_str());
  std::ifstream in(log);
  why.assign(std::istreambuf_iterator<char>(in), {});
  if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return dir.file("vmlinux");
  if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 77) why = "SKIP " + why;
  return {};
}

TEST(LinuxBootKvm, Debian612KernelPrintsItsBannerOnOurUart) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-boot");
  std::string why;
  const std::string vmlinux = guest_vmlinux(dir, why);
  if (vmlinux.empty()) {
    if (why.starts_with("SKIP ")) GTEST_SKIP() << why.substr(5);
    FAIL() << "build-guest.sh --kernel-only failed: " << why;
  }
  VmConfig config;
  config.memory_bytes = 512ull << 20;
  // The banner needs ~20 s of vCPU time here (guest CPL0 is emulated); the limit leaves room
  // for a loaded machine. A hardware-virtualisation host prints it in well under a second.
  config.timeout = std::chrono::seconds(180);
  config.kernel_path = vmlinux;
  config.cmdline = "earlyprintk=serial,ttyS0,115200 console=ttyS0 nokaslr";
  LinuxBootOptions options;
  // Stop once the banner and three lines after it arrived (the early console prints the log
  // buffer at once when it registers).
  options.stop_when = [](std::string_view out) {
    const auto at = out.find("Linux version 6.12");
    if (at == std::string_view::npos) return false;
    return std::count(out.begin() + static_cast<ptrdiff_t>(at), out.end(), '\n') >= 4;
  };
  auto r = boot_linux(config, options);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->output.find("Linux version 6.12"), std::string::npos)
      << r->describe() << "\noutput:\n"
      << r->output;
  EXPECT_NE(r->output.find("Command line: " + config.cmdline), std::string::npos) << r->output;
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << r->describe();  // stopped by stop_when
}

// The synthetic vmlinux with `code` at its entry (64-bit, paging on, CPL0), booted in 64 MiB and
// stopped at the first line on the UART (a `hlt` would wait on the in-kernel irqchip for ever).
Result<RunResult> boot_code(const pepita::test::TempDir& dir, std::span<const uint8_t> code,
                            size_t at = 0x1040) {
  auto f = synthetic_vmlinux();
  for (size_t i = 0; i < code.size(); ++i) f[at + i] = std::byte{code[i]};
  const std::string path = dir.file("vmlinux");
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  VmConfig config;
  config.memory_bytes = 64ull << 20;
  config.timeout = std::chrono::seconds(20);
  config.kernel_path = path;
  LinuxBootOptions options;
  options.stop_when = [](std::string_view) { return true; };  // at the first line
  return boot_linux(config, options);
}

// Reads of guest-physical addresses no device answers see all ones, as on a PC's bus (Linux's
// probes of absent hardware rely on it).
TEST(LinuxBootKvm, UnbackedMmioReadsAllOnes) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-mmio");
  // mov al, [0x40000000] (1 GiB: identity-mapped, past the RAM); mov dx, 0x3f8; out dx, al;
  // mov al, '\n'; out dx, al; jmp $
  constexpr uint8_t kCode[] = {0x8a, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40, 0x66, 0xba,
                               0xf8, 0x03, 0xee, 0xb0, 0x0a, 0xee, 0xeb, 0xfe};
  auto r = boot_code(dir, kCode);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->output, "\xff\n") << r->describe();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << "stopped at the line: " << r->describe();
}

// A string read (rep insb) exits once for several bytes: each gets its own slot of the exit's
// data, in order, so a port no device answers reads all ones in every one of them.
TEST(LinuxBootKvm, RepInsbFromAnUnbackedPortFillsEveryByteWithOnes) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-insb");
  // mov edi, 0x2000000 (32 MiB: RAM, zero); mov ecx, 4; mov dx, 0x2f8 (COM2: no device);
  // rep insb; mov esi, 0x2000000; mov ecx, 4; mov dx, 0x3f8;
  // 1: lodsb; out dx, al; dec ecx; jnz 1b; mov al, '\n'; out dx, al; jmp $
  constexpr uint8_t kCode[] = {0xbf, 0x00, 0x00, 0x00, 0x02, 0xb9, 0x04, 0x00, 0x00, 0x00, 0x66,
                               0xba, 0xf8, 0x02, 0xf3, 0x6c, 0xbe, 0x00, 0x00, 0x00, 0x02, 0xb9,
                               0x04, 0x00, 0x00, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xac, 0xee, 0xff,
                               0xc9, 0x75, 0xfa, 0xb0, 0x0a, 0xee, 0xeb, 0xfe};
  auto r = boot_code(dir, kCode);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->output, "\xff\xff\xff\xff\n") << r->describe();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << "stopped at the line: " << r->describe();
}

// Linux executes int3 on purpose (its self-test, text_poke_bp); where this KVM cannot emulate it
// at CPL0 the VMM delivers the #BP itself. The guest's own IDT handler must run, after the int3.
TEST(LinuxBootKvm, Int3AtCpl0ReachesTheGuestsBreakpointHandler) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-int3");
  // Entry (0x1000040): mov rsp, 0x1002000; lidt [0x1000200]; int3; jmp $.
  constexpr uint8_t kEntry[] = {0x48, 0xc7, 0xc4, 0x00, 0x20, 0x00, 0x01, 0x0f, 0x01,
                                0x1c, 0x25, 0x00, 0x02, 0x00, 0x01, 0xcc, 0xeb, 0xfe};
  // #BP handler (0x1000100): mov al, 'B'; mov dx, 0x3f8; out dx, al; mov al, '\n'; out dx, al;
  // jmp $.
  constexpr uint8_t kHandler[] = {0xb0, 'B',  0x66, 0xba, 0xf8, 0x03,
                                  0xee, 0xb0, 0x0a, 0xee, 0xeb, 0xfe};
  // IDTR (0x1000200): limit 4 gates, base 0x1000300. Gate 3 (0x1000330): the handler through
  // __BOOT_CS (0x10), present 64-bit interrupt gate.
  constexpr uint8_t kIdtr[] = {63, 0, 0x00, 0x03, 0x00, 0x01, 0, 0, 0, 0};
  constexpr uint8_t kGate3[] = {0x00, 0x01, 0x10, 0x00, 0x00, 0x8e, 0x00, 0x01,
                                0,    0,    0,    0,    0,    0,    0,    0};
  std::vector<uint8_t> code(0x340, 0);
  std::copy(std::begin(kEntry), std::end(kEntry), code.begin() + 0x40);
  std::copy(std::begin(kHandler), std::end(kHandler), code.begin() + 0x100);
  std::copy(std::begin(kIdtr), std::end(kIdtr), code.begin() + 0x200);
  std::copy(std::begin(kGate3), std::end(kGate3), code.begin() + 0x330);
  auto r = boot_code(dir, code, 0x1000);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->output, "B\n") << r->describe();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << "stopped at the line: " << r->describe();
}

TEST(LinuxBootKvm, MissingKernelPathOrBadMemorySizeIsAnError) {
  VmConfig config;
  auto r = boot_linux(config);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().to_string().find("boot_linux needs VmConfig::kernel_path"),
            std::string::npos);
  config.kernel_path = "/nonexistent/vmlinux";
  for (uint64_t bytes : {uint64_t{1} << 20, (uint64_t{64} << 20) + 100}) {
    config.memory_bytes = bytes;
    r = boot_linux(config);
    ASSERT_FALSE(r) << bytes;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << bytes;
    EXPECT_NE(
        r.error().to_string().find("memory_bytes must be a multiple of 4096 of at least 2 MiB"),
        std::string::npos)
        << r.error().to_string();
  }
}

// A kernel spinning at its entry (jmp $) is stopped by the timeout, then by a stop request;
// either way the result carries where it was.
TEST(LinuxBootKvm, SpinningKernelIsStoppedByTheTimeoutOrAStopRequest) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-spin");
  const uint8_t spin[] = {0xeb, 0xfe};  // jmp $
  const std::string path = write_synthetic_vmlinux(dir.file("vmlinux"), spin);
  VmConfig config;
  config.memory_bytes = 64ull << 20;
  config.kernel_path = path;
  config.timeout = std::chrono::milliseconds(300);
  auto r = boot_linux(config);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::TimedOut) << r->describe();
  ASSERT_TRUE(r->fault) << r->describe();
  EXPECT_EQ(r->fault->rip, 0x1000040u) << r->describe();

  config.timeout = std::chrono::seconds(120);
  std::stop_source stop;
  std::jthread stopper([&stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.request_stop();
  });
  r = boot_linux(config, {}, stop.get_token());
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Cancelled) << r->describe();
  EXPECT_LT(r->elapsed, std::chrono::seconds(60)) << r->describe();
}

// An int3 the VMM does not reflect (reflect_int3 off) is the emulator's failure, reported as a
// fault naming it; ud2 with an empty IDT triple-faults.
TEST(LinuxBootKvm, UnreflectedInt3AndATripleFaultAreFaults) {
  PEPITA_REQUIRE_KVM();
  pepita::test::TempDir dir("linux-fault");
  auto boot = [&](std::span<const uint8_t> code, LinuxBootOptions options) {
    const std::string path = write_synthetic_vmlinux(dir.file("vmlinux"), code);
    VmConfig config;
    config.memory_bytes = 64ull << 20;
    config.timeout = std::chrono::seconds(30);
    config.kernel_path = path;
    return boot_linux(config, options);
  };
  constexpr uint8_t kInt3[] = {0xcc, 0xeb, 0xfe};  // int3; jmp $
  LinuxBootOptions no_reflect;
  no_reflect.reflect_int3 = false;
  auto r = boot(kInt3, no_reflect);
  ASSERT_TRUE(r) << r.error().to_string();
  if (r->kind == ExitKind::Fault && r->fault &&
      r->fault->reason.find("KVM internal error") != std::string::npos) {
    EXPECT_NE(r->fault->reason.find("suberror"), std::string::npos) << r->describe();
  } else {
    // Hardware virtualisation runs int3 itself: the guest's empty IDT then triple-faults.
    EXPECT_EQ(r->kind, ExitKind::Fault) << r->describe();
  }
  // lidt [limit 0]; ud2: #UD, #GP, #DF through an empty IDT is a triple fault (shutdown).
  constexpr uint8_t kTriple[] = {0x0f, 0x01, 0x1c, 0x25, 0x00, 0x02, 0x00, 0x01, 0x0f, 0x0b};
  r = boot(kTriple, {});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Fault) << r->describe();
  ASSERT_TRUE(r->fault) << r->describe();
  EXPECT_NE(r->fault->reason.find("shutdown: triple fault"), std::string::npos) << r->describe();
}

TEST(LinuxBootKvm, MissingKernelFileIsAnError) {
  VmConfig config;
  config.kernel_path = "/nonexistent/vmlinux";
  auto r = boot_linux(config);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().to_string().find("/nonexistent/vmlinux"), std::string::npos);
}

}  // namespace
}  // namespace pepita::vmm
