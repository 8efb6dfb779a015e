// Benchmark data sets: zeros, a text corpus from /usr/include and /usr/share, random, and a mix.
#include "pepita/zram/datasets.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "pepita/core/format.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {
namespace {

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void fill_random(std::byte* out, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i += 8) {
    const uint64_t word = splitmix(seed);
    std::memcpy(out + i, &word, std::min<size_t>(8, len - i));
  }
}

bool read_file(const std::filesystem::path& path, std::vector<std::byte>& out, size_t limit) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  std::vector<char> chars((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const size_t take = std::min(chars.size(), limit - out.size());
  if (take == 0) return true;  // memcpy may not be given the null data() of an empty vector
  const size_t old = out.size();
  out.resize(old + take);
  std::memcpy(out.data() + old, chars.data(), take);
  return true;
}

// Real text: C headers and documentation, in sorted path order so the corpus is reproducible.
std::vector<std::byte> text_corpus(size_t bytes) {
  std::vector<std::filesystem::path> files;
  for (const char* root : {"/usr/include", "/usr/share/common-licenses", "/usr/share/doc"}) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             root, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      const auto& path = it->path();
      const auto ext = path.extension().string();
      if (it->is_regular_file(ec) && (ext == ".h" || ext == ".hpp" || ext == ".txt" ||
                                      ext == ".md" || ext == "" || path.filename() == "copyright"))
        files.push_back(path);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::byte> out;
  out.reserve(bytes);
  for (const auto& path : files) {
    if (out.size() >= bytes) break;
    read_file(path, out, bytes);
  }
  if (out.empty()) {  // no corpus on this system: synthesise English-like words
    static const char* const kWords[] = {"the ", "memory ", "page ", "of ", "and ", "block "};
    uint64_t seed = 1;
    while (out.size() < bytes) {
      const char* word = kWords[splitmix(seed) % 6];
      for (const char* c = word; *c != 0; ++c) out.push_back(static_cast<std::byte>(*c));
    }
  }
  // Repeat the corpus if the system's is smaller than asked.
  for (size_t src = 0; out.size() < bytes; ++src) out.push_back(out[src]);
  out.resize(bytes);
  return out;
}

// Model weights: float32 ~ N(0, 0.02) rounded to bf16 precision (low 16 bits zero), as weights
// up-cast from bf16 checkpoints look in memory.
void fill_weights(std::byte* out, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (size_t i = 0; i < kPageSize; i += 4) {
    const uint32_t bits = std::bit_cast<uint32_t>(normal(rng)) & 0xffff0000u;
    std::memcpy(out + i, &bits, 4);
  }
}

}  // namespace

Result<std::vector<std::byte>> make_dataset(std::string_view name, size_t bytes) {
  bytes = (bytes + kPageSize - 1) / kPageSize * kPageSize;
  std::vector<std::byte> data(bytes);
  if (name == "zeros") return data;
  if (name == "random") {
    fill_random(data.data(), bytes, 42);
    return data;
  }
  if (name == "text") return text_corpus(bytes);
  if (name == "mixed") {
    // Per page: 30% zero, 5% same-filled, 35% bf16 weights, 20% text, 10% random.
    const std::vector<std::byte> text = text_corpus(std::min<size_t>(bytes, 32u << 20));
    uint64_t seed = 7;
    for (size_t page = 0; page < bytes / kPageSize; ++page) {
      std::byte* out = data.data() + page * kPageSize;
      const uint64_t roll = splitmix(seed) % 100;
      if (roll < 30) continue;
      if (roll < 35) {
        const uint64_t word = 0x3f800000'3f800000ull;  // a page of 1.0f
        for (size_t i = 0; i < kPageSize; i += 8) std::memcpy(out + i, &word, 8);
      } else if (roll < 70) {
        fill_weights(out, page);
      } else if (roll < 90) {
        const size_t from = (splitmix(seed) % (text.size() / kPageSize)) * kPageSize;
        std::memcpy(out, text.data() + from, kPageSize);
      } else {
        fill_random(out, kPageSize, page);
      }
    }
    return data;
  }
  const std::filesystem::path path(name);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("data set '{}' is neither zeros, text, random, mixed nor a "
                            "readable file",
                            name));
  std::vector<std::byte> file;
  if (!read_file(path, file, bytes) || file.empty())
    return fail(ErrorCode::NotFound, pepita::fmt("cannot read data file '{}'", name));
  for (size_t i = 0; i < bytes; ++i) data[i] = file[i % file.size()];
  return data;
}

}  // namespace pepita::zram
