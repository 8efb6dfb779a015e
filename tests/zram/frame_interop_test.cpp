// A page's stored bytes are real lz4 / zstd data: wrapped as a .lz4 / .zst file they decode with
// the reference command-line tools to the original page.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "pepita/zram/zram_store.hpp"
#include "zram/page_gen.hpp"

namespace pepita::zram {
namespace {

bool tool_available(const char* tool) {
  const std::string probe = std::string("command -v ") + tool + " >/dev/null 2>&1";
  return std::system(probe.c_str()) == 0;
}

// Writes `frame` to a temp file, runs `<tool> -d -q -c`, returns what it printed.
std::vector<std::byte> decode_with_cli(const char* tool, const std::vector<std::byte>& frame) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string stem = "pepita-zram-frame-" + std::to_string(::getpid());
  const auto in = dir / (stem + (std::string(tool) == "lz4" ? ".lz4" : ".zst"));
  const auto out = dir / (stem + ".out");
  {
    std::ofstream file(in, std::ios::binary);
    // SAFETY: ofstream::write takes char*; the bytes are plain data of frame.size() bytes.
    file.write(reinterpret_cast<const char*>(frame.data()),
               static_cast<std::streamsize>(frame.size()));
  }
  const std::string command =
      std::string(tool) + " -d -q -c " + in.string() + " > " + out.string() + " 2>/dev/null";
  const int status = std::system(command.c_str());
  std::ifstream result(out, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(result)),
                          std::istreambuf_iterator<char>());
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  if (status != 0) return {};
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

class FrameInterop : public ::testing::TestWithParam<Algorithm> {};

TEST_P(FrameInterop, ReferenceToolDecodesStoredPages) {
  const char* tool = algorithm_name(GetParam());
  if (!tool_available(tool))
    GTEST_SKIP() << "the `" << tool << "` command-line tool is not installed";
  auto store = ZramStore::create({.disksize = 16 * kPageSize, .algorithm = GetParam()});
  ASSERT_TRUE(store.has_value());
  const std::vector<std::vector<std::byte>> pages = {testing::text_page(1), testing::text_page(2),
                                                     testing::random_page(3)};
  for (size_t i = 0; i < pages.size(); ++i) ASSERT_EQ((*store)->write_page(i, pages[i].data()), 0);
  ASSERT_EQ((*store)->page_info(2).kind, PageInfo::Kind::Huge);
  for (size_t i = 0; i < pages.size(); ++i) {
    auto frame = (*store)->page_frame(i);
    ASSERT_TRUE(frame.has_value()) << frame.error().to_string();
    // The frame carries exactly the stored bytes plus a small header/trailer.
    EXPECT_LE(frame->size(), (*store)->page_info(i).stored_bytes + 32u);
    const auto decoded = decode_with_cli(tool, *frame);
    EXPECT_EQ(decoded, pages[i]) << tool << " failed to decode page " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Compressors, FrameInterop,
                         ::testing::Values(Algorithm::Lz4, Algorithm::Zstd),
                         [](const auto& param_info) {
                           return std::string(algorithm_name(param_info.param));
                         });

}  // namespace
}  // namespace pepita::zram
