// ELF64 guest image parsing: every header field the loader depends on is checked against the
// file size and the guest layout with overflow-checked arithmetic before anything is copied.
#include "pepita/vmm/elf_image.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm {
namespace {

constexpr uint64_t kMaxFile = 256ull << 20;
constexpr uint16_t kMaxSegments = 64;

std::unexpected<Error> bad(const std::string& what) {
  return fail(ErrorCode::Protocol, "guest ELF image: " + what);
}

template <typename T>
T load(std::span<const std::byte> file, uint64_t offset) {
  T value;
  std::memcpy(&value, file.data() + offset, sizeof(T));
  return value;
}

}  // namespace

Result<GuestImage> GuestImage::parse(std::span<const std::byte> file, uint64_t max_end) {
  if (file.size() < sizeof(Elf64_Ehdr)) return bad("shorter than an ELF header");
  const auto eh = load<Elf64_Ehdr>(file, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return bad("no ELF magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return bad("not ELF64 little-endian");
  if (eh.e_machine != EM_X86_64)
    return bad("not x86-64 (e_machine " + std::to_string(eh.e_machine) + ")");
  if (eh.e_type != ET_EXEC)
    return bad("not a static executable (e_type " + std::to_string(eh.e_type) +
               "); link with -static -no-pie");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return bad("unexpected e_phentsize");
  if (eh.e_phnum == 0 || eh.e_phnum > kMaxSegments) return bad("e_phnum must be 1..64");
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > file.size() || ph_bytes > file.size() - eh.e_phoff)
    return bad("program headers lie outside the file");

  GuestImage image;
  image.entry_ = eh.e_entry;
  bool entry_ok = false;
  struct PageRange {
    uint64_t first, last;
  };
  std::vector<PageRange> ranges;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    const auto ph = load<Elf64_Phdr>(file, eh.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    const std::string which = "segment " + std::to_string(i) + ": ";
    if (ph.p_type == PT_INTERP || ph.p_type == PT_DYNAMIC)
      return bad(which + "dynamic linking is not supported; link with -static");
    if (ph.p_type == PT_TLS) return bad(which + "thread-local storage is not supported");
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz) return bad(which + "p_filesz exceeds p_memsz");
    if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset)
      return bad(which + "file bytes lie outside the file");
    uint64_t end = 0;
    if (__builtin_add_overflow(ph.p_vaddr, ph.p_memsz, &end) || end > max_end ||
        abi::align_up(end, abi::PAGE_SIZE) < end)
      return bad(which + "extends past guest memory");
    if (ph.p_vaddr < guest_abi::kImageMinGpa)
      return bad(which + "starts below 1 MiB; link guests at 0x100000 or above");
    const bool w = (ph.p_flags & PF_W) != 0, x = (ph.p_flags & PF_X) != 0;
    if (w && x) return bad(which + "is writable and executable (W^X); split it");
    PageRange r{abi::align_down(ph.p_vaddr, abi::PAGE_SIZE), abi::align_up(end, abi::PAGE_SIZE)};
    for (const auto& o : ranges)
      if (r.first < o.last && o.first < r.last)
        return bad(which + "shares a page with another segment; align segments to 4096");
    ranges.push_back(r);
    if (x && eh.e_entry >= ph.p_vaddr && eh.e_entry < end) entry_ok = true;
    ImageSegment seg;
    seg.gpa = abi::PhysAddr(ph.p_vaddr);
    seg.mem_size = ph.p_memsz;
    seg.writable = w;
    seg.executable = x;
    seg.data.assign(file.begin() + static_cast<ptrdiff_t>(ph.p_offset),
                    file.begin() + static_cast<ptrdiff_t>(ph.p_offset + ph.p_filesz));
    image.end_ = std::max(image.end_, r.last);
    image.segments_.push_back(std::move(seg));
  }
  if (image.segments_.empty()) return bad("no loadable segments");
  if (!entry_ok) return bad("entry point is not inside an executable segment");
  return image;
}

Result<GuestImage> GuestImage::load_file(const std::string& path) {
  const int opened = sys::open(path.c_str(), O_RDONLY);
  if (opened < 0) return fail_errno(opened, "open guest image " + path);
  UniqueFd fd(opened);
  struct stat st {};
  if (int r = sys::fstat(fd.get(), &st); r < 0) return fail_errno(r, "stat guest image " + path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxFile)
    return fail(ErrorCode::InvalidArgument, path + " is not a regular file of at most 256 MiB");
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  const int64_t done = sys::read_full(fd.get(), bytes.data(), bytes.size());  // short only at EOF
  if (done < 0) return fail_errno(static_cast<int>(done), "read guest image " + path);
  bytes.resize(static_cast<size_t>(done));
  auto image = parse(bytes);
  if (!image) {
    Error e = image.error();
    return std::unexpected(e.with_context(path));
  }
  return image;
}

}  // namespace pepita::vmm
