// The ELF loader treats guest images as untrusted input: every malformed header is a Protocol
// error naming the problem, never a crash or an out-of-bounds read.
#include "pepita/vmm/elf_image.hpp"

#include <elf.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

// A minimal valid image: one R-X segment at 1 MiB holding `ret`, optionally more segments.
struct ElfBuilder {
  Elf64_Ehdr eh{};
  std::vector<Elf64_Phdr> ph;
  std::vector<std::byte> body = std::vector<std::byte>(4096, std::byte{0xc3});

  ElfBuilder() {
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = 0x100000;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    segment(PT_LOAD, PF_R | PF_X, 0x100000, 4096, 4096);
  }
  Elf64_Phdr& segment(uint32_t type, uint32_t flags, uint64_t vaddr, uint64_t filesz,
                      uint64_t memsz) {
    Elf64_Phdr p{};
    p.p_type = type;
    p.p_flags = flags;
    p.p_offset = 4096;
    p.p_vaddr = p.p_paddr = vaddr;
    p.p_filesz = filesz;
    p.p_memsz = memsz;
    p.p_align = 4096;
    ph.push_back(p);
    return ph.back();
  }
  std::vector<std::byte> bytes() {
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_phnum = static_cast<uint16_t>(ph.size());
    // Sized once and filled with memcpy: g++ 12 -O2 wrongly flags vector::insert here as out of
    // bounds (-Warray-bounds).
    std::vector<std::byte> out(4096 + body.size());
    std::memcpy(out.data(), &eh, sizeof eh);
    std::memcpy(out.data() + sizeof eh, ph.data(), ph.size() * sizeof(Elf64_Phdr));
    if (!body.empty()) std::memcpy(out.data() + 4096, body.data(), body.size());
    return out;
  }
};

void expect_rejected(ElfBuilder& b, const std::string& needle) {
  auto bytes = b.bytes();
  auto image = GuestImage::parse(bytes);
  ASSERT_FALSE(image) << "accepted an image that should fail with: " << needle;
  EXPECT_EQ(image.error().code(), ErrorCode::Protocol);
  EXPECT_NE(image.error().message().find(needle), std::string::npos) << image.error().message();
}

TEST(GuestImage, ParsesAMinimalImage) {
  ElfBuilder b;
  b.segment(PT_LOAD, PF_R | PF_W, 0x102000, 16, 8192);
  auto bytes = b.bytes();
  auto image = GuestImage::parse(bytes);
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->entry(), 0x100000u);
  ASSERT_EQ(image->segments().size(), 2u);
  EXPECT_TRUE(image->segments()[0].executable);
  EXPECT_FALSE(image->segments()[0].writable);
  EXPECT_TRUE(image->segments()[1].writable);
  EXPECT_EQ(image->segments()[1].data.size(), 16u);
  EXPECT_EQ(image->end(), 0x104000u);
}

TEST(GuestImage, RejectsMalformedHeaders) {
  {
    std::vector<std::byte> tiny(10);
    EXPECT_FALSE(GuestImage::parse(tiny));
  }
  {
    ElfBuilder b;
    b.eh.e_ident[0] = 0;
    expect_rejected(b, "no ELF magic");
  }
  {
    ElfBuilder b;
    b.eh.e_ident[EI_CLASS] = ELFCLASS32;
    expect_rejected(b, "ELF64");
  }
  {
    ElfBuilder b;
    b.eh.e_machine = EM_AARCH64;
    expect_rejected(b, "x86-64");
  }
  {
    ElfBuilder b;
    b.eh.e_type = ET_DYN;
    expect_rejected(b, "static executable");
  }
  {
    ElfBuilder b;
    b.eh.e_phentsize = 10;
    expect_rejected(b, "e_phentsize");
  }
  {
    ElfBuilder b;
    auto bytes = b.bytes();
    Elf64_Ehdr eh;
    std::memcpy(&eh, bytes.data(), sizeof eh);
    eh.e_phoff = ~0ull - 8;  // wraps
    std::memcpy(bytes.data(), &eh, sizeof eh);
    auto image = GuestImage::parse(bytes);
    ASSERT_FALSE(image);
    EXPECT_NE(image.error().message().find("outside the file"), std::string::npos);
  }
}

TEST(GuestImage, RejectsBadSegments) {
  {
    ElfBuilder b;
    b.segment(PT_LOAD, PF_R | PF_W | PF_X, 0x200000, 0, 4096);
    expect_rejected(b, "W^X");
  }
  {
    ElfBuilder b;
    b.segment(PT_LOAD, PF_R | PF_W, 0x100800, 0, 16);  // same page as the code
    expect_rejected(b, "shares a page");
  }
  {
    ElfBuilder b;
    b.ph[0].p_vaddr = 0x1000;
    b.eh.e_entry = 0x1000;
    expect_rejected(b, "below 1 MiB");
  }
  {
    ElfBuilder b;
    b.ph[0].p_filesz = 8192;  // more than memsz
    expect_rejected(b, "p_filesz exceeds p_memsz");
  }
  {
    ElfBuilder b;
    b.ph[0].p_offset = 1ull << 40;
    expect_rejected(b, "outside the file");
  }
  {
    ElfBuilder b;
    b.ph[0].p_memsz = ~0ull;
    b.ph[0].p_filesz = 16;
    expect_rejected(b, "past guest memory");
  }
  {
    ElfBuilder b;
    b.eh.e_entry = 0x300000;
    expect_rejected(b, "entry point");
  }
  {
    ElfBuilder b;
    b.segment(PT_INTERP, PF_R, 0x200000, 8, 8);
    expect_rejected(b, "dynamic linking");
  }
  {
    ElfBuilder b;
    b.ph[0].p_type = PT_NOTE;
    expect_rejected(b, "no loadable segments");
  }
}

TEST(GuestImage, LoadsTheBuiltGuests) {
  for (const char* name : {"hello", "dot", "escape", "calls"}) {
    auto image = GuestImage::load_file(test::guest_path(name));
    ASSERT_TRUE(image) << name << ": " << image.error().to_string();
    for (const auto& seg : image->segments()) EXPECT_FALSE(seg.writable && seg.executable) << name;
  }
}

// load_file reads the whole image into memory, so it refuses a file over 256 MiB before reading
// it; a valid image padded (sparsely: truncate allocates no blocks) to exactly 256 MiB still loads.
TEST(GuestImage, LoadFileAcceptsExactly256MiBAndRefusesOneByteMore) {
  constexpr uint64_t kLimit = 256ull << 20;
  pepita::test::TempDir dir{"vmm-elf-size"};
  const std::string path = dir.file("padded.elf");
  {
    ElfBuilder b;
    const auto bytes = b.bytes();
    std::ofstream out(path, std::ios::binary);
    // SAFETY: ofstream::write takes char*; the bytes are plain data of bytes.size() bytes.
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.flush()) << path;
  }
  std::error_code ec;
  std::filesystem::resize_file(path, kLimit, ec);
  ASSERT_FALSE(ec) << path << ": " << ec.message();
  {
    auto image = GuestImage::load_file(path);
    ASSERT_TRUE(image) << image.error().to_string();
    EXPECT_EQ(image->entry(), 0x100000u);
    EXPECT_EQ(image->segments().size(), 1u);
  }
  std::filesystem::resize_file(path, kLimit + 1, ec);
  ASSERT_FALSE(ec) << path << ": " << ec.message();
  auto image = GuestImage::load_file(path);
  ASSERT_FALSE(image) << "accepted a guest image of 256 MiB + 1 byte";
  EXPECT_EQ(image.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(image.error().message().find(path + " is not a regular file of at most 256 MiB"),
            std::string::npos)
      << image.error().message();
}

// An empty file reads 0 bytes without error: it reaches the parser, whose Protocol error names
// the problem, not a read failure.
TEST(GuestImage, LoadFileOfAnEmptyFileIsTheParsersError) {
  pepita::test::TempDir dir{"vmm-elf-empty"};
  const std::string path = dir.file("empty.elf");
  {
    std::ofstream out(path, std::ios::binary);
    ASSERT_TRUE(out.flush()) << path;
  }
  auto image = GuestImage::load_file(path);
  ASSERT_FALSE(image) << "accepted an empty guest image";
  EXPECT_EQ(image.error().code(), ErrorCode::Protocol) << image.error().to_string();
  EXPECT_NE(image.error().to_string().find("shorter than an ELF header"), std::string::npos)
      << image.error().to_string();
  EXPECT_NE(image.error().to_string().find(path), std::string::npos) << image.error().to_string();
}

// Random corruption of a real guest never crashes the parser, and whatever it accepts still obeys
// the loader's invariants.
RC_GTEST_PROP(GuestImage, CorruptedImagesAreRejectedOrSafe, ()) {
  static const std::vector<std::byte> original = [] {
    ElfBuilder b;
    b.segment(PT_LOAD, PF_R | PF_W, 0x102000, 16, 8192);
    return b.bytes();
  }();
  auto bytes = original;
  const auto flips = *rc::gen::inRange(1, 16);
  for (int i = 0; i < flips; ++i) {
    const auto at = *rc::gen::inRange<size_t>(0, 4096 + 64);
    bytes[at] = static_cast<std::byte>(*rc::gen::arbitrary<uint8_t>());
  }
  if (*rc::gen::arbitrary<bool>()) bytes.resize(*rc::gen::inRange<size_t>(0, bytes.size()));
  auto image = GuestImage::parse(bytes);
  if (!image) return;
  for (const auto& seg : image->segments()) {
    RC_ASSERT(!(seg.writable && seg.executable));
    RC_ASSERT(seg.gpa.raw() >= guest_abi::kImageMinGpa);
    RC_ASSERT(seg.data.size() <= seg.mem_size);
    RC_ASSERT(seg.gpa.raw() + seg.mem_size <= image->end());
  }
}

}  // namespace
}  // namespace pepita::vmm
