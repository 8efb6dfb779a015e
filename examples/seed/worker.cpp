// worker: the `./worker` of the reference crate's quick start (examples/seed/quick_start.cpp).
//   worker --input FILE    prints "worker: FILE: <bytes> bytes, crc32c <8 hex digits>"
// Exit 0 on success; 2 on a usage error, 1 when the file cannot be read (with the reason).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/core/crc32c.hpp"

int main(int argc, char** argv) {
  std::string input;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--input" && i + 1 < argc) {
      input = argv[++i];
    } else {
      std::fprintf(stderr, "worker: unknown argument '%s'; usage: worker --input FILE\n", argv[i]);
      return 2;
    }
  }
  if (input.empty()) {
    std::fprintf(stderr, "worker: --input FILE is required\n");
    return 2;
  }
  std::ifstream in(input, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "worker: cannot open %s: %s\n", input.c_str(), std::strerror(errno));
    return 1;
  }
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in),
                                std::istreambuf_iterator<char>()};
  const std::uint32_t crc = pepita::crc32c(std::string_view(bytes.data(), bytes.size()));
  std::printf("worker: %s: %zu bytes, crc32c %08x\n", input.c_str(), bytes.size(), crc);
  return 0;
}
