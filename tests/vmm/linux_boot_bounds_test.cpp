// Linux boot protocol at its limits: each check of the bzImage and ELF parsers, plan_boot and the
// zero page on both sides of its boundary (the last accepted value and the first refused one),
// with the exact message, and the header fields nothing else in the tests reads back.
#include <elf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/temp_dir.hpp"
#include "common/vmlinux_image.hpp"
#include "linux_boot_test_util.hpp"
#include "pepita/vmm/linux_boot.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {
namespace {

using pepita::test::synthetic_vmlinux;
using test::error_of;
using test::get;
using test::put;
using test::synthetic_bzimage;

using Edit = std::function<void(std::vector<std::byte>&)>;

Result<KernelImage> bzimage_with(const Edit& edit) {
  auto f = synthetic_bzimage();
  edit(f);
  return KernelImage::parse(std::move(f));
}

Result<KernelImage> vmlinux_with(const Edit& edit) {
  auto f = synthetic_vmlinux();
  edit(f);
  return KernelImage::parse(std::move(f));
}

std::string bzimage_error(const Edit& edit) { return error_of(bzimage_with(edit)); }
std::string vmlinux_error(const Edit& edit) { return error_of(vmlinux_with(edit)); }

Edit truncate_to(size_t bytes) {
  return [bytes](std::vector<std::byte>& f) { f.resize(bytes); };
}

constexpr size_t kPhdr0 = sizeof(Elf64_Ehdr);  // the synthetic vmlinux's one program header
constexpr size_t kPaddr = kPhdr0 + offsetof(Elf64_Phdr, p_paddr);
constexpr size_t kMemsz = kPhdr0 + offsetof(Elf64_Phdr, p_memsz);
constexpr size_t kFilesz = kPhdr0 + offsetof(Elf64_Phdr, p_filesz);
constexpr size_t kEntry = offsetof(Elf64_Ehdr, e_entry);

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(LinuxBootBounds, BzImageTruncatedAtEachHeaderCheckSaysWhere) {
  EXPECT_HAS(bzimage_error(truncate_to(0x1ff)),
             "file of 511 bytes is too short for a bzImage boot sector (512 bytes)");
  EXPECT_HAS(bzimage_error(truncate_to(0x200)),
             "setup header truncated: the file ends before the HdrS magic");
  EXPECT_HAS(bzimage_error(truncate_to(0x205)),
             "setup header truncated: the file ends before the HdrS magic");
  EXPECT_HAS(bzimage_error(truncate_to(0x206)),
             "setup header truncated: the file has 518 bytes, the header needs 620");
  EXPECT_HAS(bzimage_error(truncate_to(0x240)),
             "setup header truncated: the file has 576 bytes, the header needs 620");
  // The whole header (to 0x26c) is there: what is missing now is the kernel after the setup.
  EXPECT_HAS(bzimage_error(truncate_to(0x26c)),
             "truncated: 1 setup sectors leave no protected-mode code in 620 bytes");
}

TEST(LinuxBootBounds, Protocol212IsTheOldestAccepted) {
  EXPECT_TRUE(bzimage_with([](auto& f) { put<uint16_t>(f, 0x206, 0x020c); }));
  EXPECT_HAS(bzimage_error([](auto& f) { put<uint16_t>(f, 0x206, 0x020b); }),
             "boot protocol 2.11 is too old");
}

TEST(LinuxBootBounds, SetupHeaderEndingAtInitSizeEndIsAccepted) {
  EXPECT_TRUE(bzimage_with([](auto& f) { put<uint8_t>(f, 0x201, 0x62); }));  // ends at 0x264
  EXPECT_HAS(bzimage_error([](auto& f) { put<uint8_t>(f, 0x201, 0x61); }),
             "setup header of protocol 0x20f ends at 0x263, before init_size");
}

TEST(LinuxBootBounds, ZImageWithoutLoadedHighIsRefused) {
  EXPECT_HAS(bzimage_error([](auto& f) { put<uint8_t>(f, 0x211, 0); }),
             "kernel image: not a bzImage (loadflags LOADED_HIGH clear): a zImage");
}

TEST(LinuxBootBounds, ZeroInitSizeIsRefused) {
  EXPECT_HAS(bzimage_error([](auto& f) { put<uint32_t>(f, 0x260, 0); }),
             "kernel image: init_size is 0");
}

// boot.rst: setup_sects 0 means 4. The file is 10 sectors: 5 of setup leave 5 of kernel.
TEST(LinuxBootBounds, ZeroSetupSectsMeansFour) {
  auto k = bzimage_with([](auto& f) { put<uint8_t>(f, 0x1f1, 0); });
  ASSERT_TRUE(k) << k.error().to_string();
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].bytes.size(), 2560u);
  EXPECT_EQ(k->segments[0].bytes.data(), k->file.data() + 2560);
}

TEST(LinuxBootBounds, SetupSectorsEndingAtTheFileEndLeaveNoKernel) {
  auto k = bzimage_with([](auto& f) { put<uint8_t>(f, 0x1f1, 8); });  // 9 of 10 sectors
  ASSERT_TRUE(k) << k.error().to_string();
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].bytes.size(), 512u);
  EXPECT_HAS(bzimage_error([](auto& f) { put<uint8_t>(f, 0x1f1, 9); }),
             "truncated: 9 setup sectors leave no protected-mode code in 5120 bytes");
}

TEST(LinuxBootBounds, ZeroPrefAddressLoadsAt1MiB) {
  auto k = bzimage_with([](auto& f) {
    put<uint64_t>(f, 0x258, 0);
    put<uint8_t>(f, 0x234, 0);  // not relocatable: no alignment
  });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->load_address, 0x100000u);
  EXPECT_EQ(k->entry, 0x100200u);
  EXPECT_EQ(k->end, 0x300000u);
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].gpa, 0x100000u);
  // A kernel at exactly 1 MiB is not below it.
  auto plan = plan_boot(*k, 64ull << 20, "", 0);
  EXPECT_TRUE(plan) << plan.error().to_string();
}

// A relocatable kernel goes to pref_address rounded up to kernel_alignment, when that is a power
// of two; otherwise (or when not relocatable) to pref_address itself.
TEST(LinuxBootBounds, RelocatableKernelIsRoundedUpToKernelAlignment) {
  struct Case {
    uint64_t pref;
    uint32_t align;
    uint8_t relocatable;
    uint64_t at;
  };
  const Case cases[] = {
      {0x1100000, 0x200000, 1, 0x1200000},  // rounded up
      {0x1200000, 0x200000, 1, 0x1200000},  // aligned already
      {0x1100001, 0x1000, 1, 0x1101000},    // one byte past a boundary
      {0x1100000, 0x200000, 0, 0x1100000},  // not relocatable
      {0x1100000, 0x300000, 1, 0x1100000},  // not a power of two
      {0x1100000, 0, 1, 0x1100000},         // no alignment
  };
  for (const Case& c : cases) {
    auto k = bzimage_with([&c](auto& f) {
      put<uint64_t>(f, 0x258, c.pref);
      put<uint32_t>(f, 0x230, c.align);
      put<uint8_t>(f, 0x234, c.relocatable);
    });
    ASSERT_TRUE(k) << k.error().to_string();
    EXPECT_EQ(k->load_address, c.at) << std::hex << c.pref << " " << c.align;
    EXPECT_EQ(k->entry, c.at + 0x200) << std::hex << c.pref << " " << c.align;
    EXPECT_EQ(k->end, c.at + 0x200000) << std::hex << c.pref << " " << c.align;
  }
}

TEST(LinuxBootBounds, InitSizeSmallerThanTheImageEndsWhereTheImageEnds) {
  auto k = bzimage_with([](auto& f) { put<uint32_t>(f, 0x260, 0x100); });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->end, 0x1000000u + 4096);
}

TEST(LinuxBootBounds, ElfMagicWithoutAWholeHeaderIsATruncatedElf) {
  for (size_t bytes : {size_t{4}, sizeof(Elf64_Ehdr) - 1})
    EXPECT_HAS(vmlinux_error(truncate_to(bytes)), "kernel image: ELF header truncated");
  EXPECT_HAS(vmlinux_error(truncate_to(3)), "file of 3 bytes is too short");  // not even the magic
  EXPECT_HAS(vmlinux_error(truncate_to(sizeof(Elf64_Ehdr))),
             "ELF program headers lie outside the file");
}

TEST(LinuxBootBounds, ElfOf32BitsOrBigEndianIsRefused) {
  EXPECT_HAS(vmlinux_error([](auto& f) { put<uint8_t>(f, EI_CLASS, ELFCLASS32); }),
             "ELF is not 64-bit little-endian x86-64");
  EXPECT_HAS(vmlinux_error([](auto& f) { put<uint8_t>(f, EI_DATA, ELFDATA2MSB); }),
             "ELF is not 64-bit little-endian x86-64");
}

TEST(LinuxBootBounds, ElfProgramHeaderTableMustBeWholeAndInTheFile) {
  const Edit bad[] = {
      [](auto& f) { put<uint16_t>(f, offsetof(Elf64_Ehdr, e_phentsize), 32); },
      [](auto& f) { put<uint16_t>(f, offsetof(Elf64_Ehdr, e_phnum), 0); },
      [](auto& f) { put<uint64_t>(f, offsetof(Elf64_Ehdr, e_phoff), 0x10000); },  // past the end
      [](auto& f) { put<uint64_t>(f, offsetof(Elf64_Ehdr, e_phoff), 0x2000); },   // at the end
      [](auto& f) { put<uint64_t>(f, offsetof(Elf64_Ehdr, e_phoff), 0x2000 - 55); },
  };
  for (const Edit& edit : bad)
    EXPECT_HAS(vmlinux_error(edit), "kernel image: ELF program headers lie outside the file");
  // The table may end exactly at the end of the file.
  auto k = vmlinux_with([](auto& f) {
    std::memcpy(f.data() + 0x2000 - sizeof(Elf64_Phdr), f.data() + kPhdr0, sizeof(Elf64_Phdr));
    put<uint64_t>(f, offsetof(Elf64_Ehdr, e_phoff), 0x2000 - sizeof(Elf64_Phdr));
  });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->load_address, 0x1000000u);
}

// Only PT_LOAD segments with memory are loaded: a note, or a PT_LOAD of no size, is skipped
// whatever its address says; an image of only those has nothing to load.
TEST(LinuxBootBounds, ElfSegmentsThatAreNotLoadedAreSkipped) {
  auto add_segment = [](std::vector<std::byte>& f, uint32_t type, uint64_t memsz) {
    Elf64_Phdr ph{};
    ph.p_type = type;
    ph.p_memsz = memsz;  // at physical 0, which a loaded segment may not be
    std::memcpy(f.data() + kPhdr0 + sizeof(Elf64_Phdr), &ph, sizeof ph);
    put<uint16_t>(f, offsetof(Elf64_Ehdr, e_phnum), 2);
  };
  const std::pair<uint32_t, uint64_t> kSkipped[] = {{PT_NOTE, 0x100}, {PT_LOAD, 0}};
  for (const auto& [type, memsz] : kSkipped) {
    auto k = vmlinux_with(
        [type = type, memsz = memsz, &add_segment](auto& f) { add_segment(f, type, memsz); });
    ASSERT_TRUE(k) << k.error().to_string();
    EXPECT_EQ(k->segments.size(), 1u) << type;
    EXPECT_EQ(k->load_address, 0x1000000u) << type;
  }
  EXPECT_HAS(vmlinux_error([](auto& f) { put<uint32_t>(f, kPhdr0, PT_NOTE); }),
             "kernel image: ELF has no loadable segments");
}

TEST(LinuxBootBounds, ElfSegmentFileSizeMayEqualButNotExceedItsMemorySize) {
  auto k = vmlinux_with([](auto& f) { put<uint64_t>(f, kMemsz, 0x1000); });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->end, 0x1001000u);
  EXPECT_HAS(vmlinux_error([](auto& f) { put<uint64_t>(f, kFilesz, 0x3001); }),
             "segment 0 has p_filesz > p_memsz");
}

// A segment with no file bytes (all bss) may start at the very end of the file, not past it.
TEST(LinuxBootBounds, ElfSegmentOffsetPastTheFileIsRefused) {
  auto k = vmlinux_with([](auto& f) {
    put<uint64_t>(f, kPhdr0 + offsetof(Elf64_Phdr, p_offset), 0x2000);
    put<uint64_t>(f, kFilesz, 0);
  });
  ASSERT_TRUE(k) << k.error().to_string();
  ASSERT_EQ(k->segments.size(), 1u);
  EXPECT_EQ(k->segments[0].bytes.size(), 0u);
  EXPECT_EQ(k->end, 0x1003000u);
  EXPECT_HAS(vmlinux_error([](auto& f) {
               put<uint64_t>(f, kPhdr0 + offsetof(Elf64_Phdr, p_offset), 0x2001);
               put<uint64_t>(f, kFilesz, 0);
             }),
             "segment 0 lies past the end of the file (truncated vmlinux?)");
}

// The identity map covers [1 MiB, 4 GiB): a segment may start at 1 MiB and end at 4 GiB.
TEST(LinuxBootBounds, ElfSegmentsMustLieBetween1MiBAnd4GiB) {
  auto at = [](uint64_t paddr, uint64_t memsz) {
    return vmlinux_with([=](auto& f) {
      put<uint64_t>(f, kPaddr, paddr);
      put<uint64_t>(f, kMemsz, memsz);
      put<uint64_t>(f, kEntry, paddr);
    });
  };
  auto low = at(0x100000, 0x1000);
  ASSERT_TRUE(low) << low.error().to_string();
  EXPECT_EQ(low->load_address, 0x100000u);
  auto high = at(0xfffff000, 0x1000);
  ASSERT_TRUE(high) << high.error().to_string();
  EXPECT_EQ(high->end, 0x100000000u);
  EXPECT_HAS(error_of(at(0xfffff000, 0x2000)),
             "segment 0 has physical address 0xfffff000, outside [1 MiB, 4 GiB)");
  EXPECT_HAS(error_of(at(0x100001000, 0x1000)),
             "segment 0 has physical address 0x100001000, outside [1 MiB, 4 GiB)");
  EXPECT_HAS(error_of(at(0xfffff, 0x1000)), "segment 0 has physical address 0xfffff, outside");
}

TEST(LinuxBootBounds, ElfEntryMayBeTheFirstButNotPastTheLastByteOfASegment) {
  auto first = vmlinux_with([](auto& f) { put<uint64_t>(f, kEntry, 0x1000000); });
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(first->entry, 0x1000000u);
  auto last = vmlinux_with([](auto& f) { put<uint64_t>(f, kEntry, 0x1002fff); });
  ASSERT_TRUE(last) << last.error().to_string();
  EXPECT_HAS(vmlinux_error([](auto& f) { put<uint64_t>(f, kEntry, 0x1003000); }),
             "ELF entry 0x1003000 is not a physical address inside a segment");
}

// Two segments, the higher first: the kernel spans from the lower's start to the higher's end,
// rounded up to a page.
TEST(LinuxBootBounds, ElfKernelSpansAllItsSegments) {
  auto k = vmlinux_with([](auto& f) {
    std::memcpy(f.data() + kPhdr0 + sizeof(Elf64_Phdr), f.data() + kPhdr0, sizeof(Elf64_Phdr));
    put<uint64_t>(f, kPaddr, 0x2000000);
    put<uint64_t>(f, kMemsz, 0x1800);
    put<uint64_t>(f, kFilesz, 0);
    put<uint16_t>(f, offsetof(Elf64_Ehdr, e_phnum), 2);
  });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->load_address, 0x1000000u);
  EXPECT_EQ(k->end, 0x2002000u);
  ASSERT_EQ(k->segments.size(), 2u);
  EXPECT_EQ(k->segments[0].gpa, 0x2000000u);
  EXPECT_EQ(k->segments[0].bytes.size(), 0u);
  EXPECT_EQ(k->segments[1].gpa, 0x1000000u);
  EXPECT_EQ(k->segments[1].bytes.size(), 0x1000u);
}

// What the loader tells an ELF kernel in place of a bzImage's header, in the image and the zero
// page (cmdline_size there is the command line's length).
TEST(LinuxBootBounds, ElfKernelHeaderFieldsReachTheZeroPage) {
  auto k = KernelImage::parse(synthetic_vmlinux());
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_EQ(k->header.boot_flag, kBootFlag);
  EXPECT_EQ(k->header.header, kHdrSMagic);
  EXPECT_EQ(k->header.loadflags, 1u);
  EXPECT_EQ(k->header.initrd_addr_max, 0x7fffffffu);
  EXPECT_EQ(k->header.kernel_alignment, 0x1000000u);
  EXPECT_EQ(k->header.xloadflags, kXlfKernel64);
  const auto zp = make_boot_params(*k, 64ull << 20, BootPlan{}, "console=ttyS0");
  const std::span<const std::byte> z(zp);
  EXPECT_EQ(get<uint8_t>(z, 0x211), 1u);
  EXPECT_EQ(get<uint32_t>(z, 0x22c), 0x7fffffffu);
  EXPECT_EQ(get<uint32_t>(z, 0x230), 0x1000000u);
  EXPECT_EQ(get<uint16_t>(z, 0x236), kXlfKernel64);
  EXPECT_EQ(get<uint32_t>(z, 0x238), 13u);
}

TEST(LinuxBootBounds, CommandLineMayBeAsLongAsTheKernelsLimit) {
  auto k = bzimage_with([](auto& f) { put<uint32_t>(f, 0x238, 255); });
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_TRUE(plan_boot(*k, 64ull << 20, std::string(255, 'x'), 0));
  auto plan = plan_boot(*k, 64ull << 20, std::string(256, 'x'), 0);
  ASSERT_FALSE(plan);
  EXPECT_HAS(plan.error().to_string(),
             "kernel command line of 256 bytes exceeds the kernel's limit of 255 (setup header "
             "cmdline_size); shorten it");
  // A header allowing more than the 64 KiB the layout leaves is held to that.
  auto big = bzimage_with([](auto& f) { put<uint32_t>(f, 0x238, 0x100000); });
  ASSERT_TRUE(big) << big.error().to_string();
  EXPECT_TRUE(plan_boot(*big, 64ull << 20, std::string(0xffff, 'x'), 0));
  plan = plan_boot(*big, 64ull << 20, std::string(0x10000, 'x'), 0);
  ASSERT_FALSE(plan);
  EXPECT_HAS(plan.error().to_string(), "of 65536 bytes exceeds the kernel's limit of 65535");
}

TEST(LinuxBootBounds, KernelMayEndAtTheEndOfRamOf4GiBAtMost) {
  auto k = KernelImage::parse(synthetic_bzimage());  // ends at 18 MiB
  ASSERT_TRUE(k) << k.error().to_string();
  auto plan = plan_boot(*k, 0x1200000, "", 0);
  ASSERT_TRUE(plan) << plan.error().to_string();
  EXPECT_EQ(plan->cmdline_gpa, linux_layout::kCmdline);
  EXPECT_EQ(plan->initrd_gpa, 0u);
  EXPECT_EQ(plan->initrd_size, 0u);
  plan = plan_boot(*k, 0x1200000 - 4096, "", 0);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_HAS(plan.error().to_string(),
             "the kernel needs RAM up to 0x1200000 (18 MiB) and the VM has 18 MiB; raise "
             "memory_bytes (at most 4 GiB)");
  EXPECT_TRUE(plan_boot(*k, 4ull << 30, "", 0));
  plan = plan_boot(*k, (4ull << 30) + 4096, "", 0);
  ASSERT_FALSE(plan);
  EXPECT_HAS(plan.error().to_string(), "and the VM has 4097 MiB; raise memory_bytes");
}

// In 64 MiB above a kernel ending at 18 MiB there is room for an initrd of 46 MiB exactly.
TEST(LinuxBootBounds, InitrdMayFillAllTheRoomAboveTheKernel) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k) << k.error().to_string();
  auto plan = plan_boot(*k, 64ull << 20, "", 0x2e00000);
  ASSERT_TRUE(plan) << plan.error().to_string();
  EXPECT_EQ(plan->initrd_gpa, 0x1200000u);
  EXPECT_EQ(plan->initrd_size, 0x2e00000u);
  plan = plan_boot(*k, 64ull << 20, "", 0x2e00001);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_HAS(plan.error().to_string(),
             "initrd of 48234497 bytes does not fit in guest RAM: it must lie between the "
             "kernel's end 0x1200000 and 0x4000000 (RAM end or initrd_addr_max), which leaves "
             "48234496 bytes; raise memory_bytes to at least 65 MiB");
}

// A kernel that cannot take an initrd above 4 GiB and whose initrd_addr_max lies at or below its
// own end leaves no room for one, however much RAM there is.
TEST(LinuxBootBounds, InitrdAddrMaxAtOrBelowTheKernelsEndLeavesNoRoom) {
  for (uint32_t max : {0x11fffffu, 0xffffffu}) {
    auto k = bzimage_with([max](auto& f) {
      put<uint16_t>(f, 0x236, kXlfKernel64);
      put<uint32_t>(f, 0x22c, max);
    });
    ASSERT_TRUE(k) << k.error().to_string();
    auto plan = plan_boot(*k, 64ull << 20, "", 1);
    ASSERT_FALSE(plan) << std::hex << max;
    EXPECT_HAS(plan.error().to_string(), "which leaves 0 bytes");
  }
}

// boot.rst: the setup header from 0x1f1 to 0x202 + the byte at 0x201 (at most to 0x290) is
// copied into the zero page; nothing before or after it is.
TEST(LinuxBootBounds, ZeroPageCopiesTheSetupHeaderAndNothingAroundIt) {
  auto mark = [](std::vector<std::byte>& f) {
    for (size_t at : {0x1f0, 0x26b, 0x26c, 0x28f, 0x290}) put<uint8_t>(f, at, 0xee);
  };
  auto k = bzimage_with(mark);  // header ends at 0x26c
  ASSERT_TRUE(k) << k.error().to_string();
  auto zp = make_boot_params(*k, 64ull << 20, BootPlan{}, "");
  std::span<const std::byte> z(zp);
  EXPECT_EQ(get<uint8_t>(z, 0x1f0), 0u);
  EXPECT_EQ(get<uint8_t>(z, 0x1f1), 1u);  // setup_sects
  EXPECT_EQ(get<uint8_t>(z, 0x26b), 0xeeu);
  EXPECT_EQ(get<uint8_t>(z, 0x26c), 0u);
  k = bzimage_with([&mark](auto& f) {
    mark(f);
    put<uint8_t>(f, 0x201, 0xff);  // header "ends" at 0x301: capped at 0x290
  });
  ASSERT_TRUE(k) << k.error().to_string();
  zp = make_boot_params(*k, 64ull << 20, BootPlan{}, "");
  z = std::span<const std::byte>(zp);
  EXPECT_EQ(get<uint8_t>(z, 0x28f), 0xeeu);
  EXPECT_EQ(get<uint8_t>(z, 0x290), 0u);
}

// Addresses and sizes above 4 GiB go to the ext_ fields (zero-page.rst).
TEST(LinuxBootBounds, ZeroPageSplitsAddressesAbove4GiBIntoTheExtFields) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k) << k.error().to_string();
  BootPlan plan;
  plan.cmdline_gpa = 0x200020000ull;
  plan.initrd_gpa = 0x123456000ull;
  plan.initrd_size = 0x100001000ull;
  const auto zp = make_boot_params(*k, 64ull << 20, plan, "console=ttyS0");
  const std::span<const std::byte> z(zp);
  EXPECT_EQ(get<uint32_t>(z, 0x228), 0x20000u);     // cmd_line_ptr
  EXPECT_EQ(get<uint32_t>(z, 0x0c8), 2u);           // ext_cmd_line_ptr
  EXPECT_EQ(get<uint32_t>(z, 0x238), 13u);          // cmdline_size: this command line's
  EXPECT_EQ(get<uint32_t>(z, 0x218), 0x23456000u);  // ramdisk_image
  EXPECT_EQ(get<uint32_t>(z, 0x0c0), 1u);           // ext_ramdisk_image
  EXPECT_EQ(get<uint32_t>(z, 0x21c), 0x1000u);      // ramdisk_size
  EXPECT_EQ(get<uint32_t>(z, 0x0c4), 1u);           // ext_ramdisk_size
}

// The e820 map leaves out what lies past the end of RAM: with 1 MiB there is no high-memory
// entry, with 512 KiB no reserved one either.
TEST(LinuxBootBounds, E820MapStopsAtTheEndOfRam) {
  auto k = KernelImage::parse(synthetic_bzimage());
  ASSERT_TRUE(k) << k.error().to_string();
  auto zp = make_boot_params(*k, 1ull << 20, BootPlan{}, "");
  std::span<const std::byte> z(zp);
  ASSERT_EQ(get<uint8_t>(z, 0x1e8), 2u);
  EXPECT_EQ(get<uint64_t>(z, 0x2e4), 0x9fc00u);  // reserved: EBDA, VGA, BIOS
  EXPECT_EQ(get<uint64_t>(z, 0x2ec), 0x100000u - 0x9fc00u);
  EXPECT_EQ(get<uint32_t>(z, 0x2f4), kE820Reserved);
  EXPECT_EQ(get<uint64_t>(z, 0x2f8), 0u);  // no third entry
  zp = make_boot_params(*k, 512ull << 10, BootPlan{}, "");
  z = std::span<const std::byte>(zp);
  ASSERT_EQ(get<uint8_t>(z, 0x1e8), 1u);
  EXPECT_EQ(get<uint64_t>(z, 0x2d8), 0x9fc00u);
  EXPECT_EQ(get<uint32_t>(z, 0x2f4), 0u);
}

TEST(LinuxBootBounds, BootLinuxTakesExactlyTheMinimumMemory) {
  VmConfig config;
  config.kernel_path = "/nonexistent/vmlinux";
  config.memory_bytes = kMinMemory;  // accepted: the missing kernel is what fails
  auto r = boot_linux(config);
  ASSERT_FALSE(r);
  EXPECT_HAS(r.error().to_string(), "open kernel /nonexistent/vmlinux");
  config.memory_bytes = kMinMemory - 4096;
  r = boot_linux(config);
  ASSERT_FALSE(r);
  EXPECT_HAS(r.error().to_string(), "memory_bytes must be a multiple of 4096 of at least 2 MiB");
}

// An empty file is read (0 bytes is no read error) and then refused as too short for a kernel.
TEST(LinuxBootBounds, EmptyKernelFileIsTooShort) {
  pepita::test::TempDir dir("linux-bounds");
  const std::string path = dir.file("empty");
  std::ofstream{path};
  auto k = KernelImage::load_file(path);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::InvalidArgument);
  EXPECT_HAS(k.error().to_string(), "file of 0 bytes is too short");
  EXPECT_HAS(k.error().to_string(), path);
}

// The size check comes before the read: a sparse file one byte over 512 MiB is refused unread.
TEST(LinuxBootBounds, KernelFileOver512MiBIsRefused) {
  pepita::test::TempDir dir("linux-bounds");
  const std::string path = dir.file("huge");
  std::ofstream(path) << "x";
  std::filesystem::resize_file(path, (512ull << 20) + 1);
  auto k = KernelImage::load_file(path);
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error().code(), ErrorCode::InvalidArgument);
  EXPECT_HAS(k.error().to_string(), "kernel " + path + " is not a regular file of at most 512 MiB");
}

// The initrd is read like the kernel, before any VM exists: a directory is named as the initrd.
TEST(LinuxBootBounds, InitrdThatIsNotARegularFileIsRefused) {
  pepita::test::TempDir dir("linux-bounds");
  VmConfig config;
  config.kernel_path = pepita::test::write_synthetic_vmlinux(dir.file("vmlinux"), {});
  config.memory_bytes = 64ull << 20;
  config.initrd = dir.path();
  auto r = boot_linux(config);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_HAS(r.error().to_string(),
             "initrd " + dir.path() + " is not a regular file of at most 512 MiB");
}

}  // namespace
}  // namespace pepita::vmm
