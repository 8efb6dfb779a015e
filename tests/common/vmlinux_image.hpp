#pragma once
// A minimal vmlinux-like ELF for the Linux boot path's tests: one PT_LOAD of 0x1000 bytes from
// file offset 0x1000, at physical 16 MiB (virtual 0xffffffff81000000, 0x3000 bytes in memory),
// entered at physical 0x1000040, where `code` is placed (CPL0, 64-bit).
#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace pepita::test {

inline std::vector<std::byte> synthetic_vmlinux(std::span<const std::uint8_t> code = {}) {
  std::vector<std::byte> f(0x2000);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_entry = 0x1000040;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = 0xffffffff81000000ull;
  ph.p_paddr = 0x1000000;
  ph.p_filesz = 0x1000;
  ph.p_memsz = 0x3000;
  std::memcpy(f.data(), &eh, sizeof eh);
  std::memcpy(f.data() + sizeof eh, &ph, sizeof ph);
  if (!code.empty()) std::memcpy(f.data() + 0x1040, code.data(), code.size());
  return f;
}

/// Writes synthetic_vmlinux(code) to `path` and returns `path`.
inline std::string write_synthetic_vmlinux(const std::string& path,
                                           std::span<const std::uint8_t> code) {
  const std::vector<std::byte> f = synthetic_vmlinux(code);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  return path;
}

}  // namespace pepita::test
