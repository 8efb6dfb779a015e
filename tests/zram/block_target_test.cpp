// zram::make_target (zram/block_target.hpp): the one constructor builds each kind from its text
// form with the documented geometry, and a spec validate_target refuses creates nothing.
#include "pepita/zram/block_target.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "pepita/blk_mq/tag_allocator.hpp"

namespace pepita::zram {
namespace {

std::unique_ptr<blk_mq::BlockDevice> built(const std::string& text) {
  auto spec = blk_mq::parse_target_spec(text);
  EXPECT_TRUE(spec) << text << ": " << spec.error().to_string();
  if (!spec) return nullptr;
  auto disk = make_target(*spec);
  EXPECT_TRUE(disk) << text << ": " << disk.error().to_string();
  return disk ? std::move(*disk) : nullptr;
}

struct TempPath {
  TempPath() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pepita-target-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) dir = tmpl;
  }
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
};

TEST(BlockTarget, BuildsEveryKindFromItsTextForm) {
  TempPath tmp;
  const std::string image = (tmp.dir / "disk.img").string();
  struct Case {
    std::string text;
    uint32_t logical_block_size;
  };
  const std::vector<Case> cases = {{"null:1M", 512},
                                   {"mem:1M", 512},
                                   {"zram:1M", 4096},
                                   {"zram:1M,zstd", 4096},
                                   {"file:" + image + ",1M", 512}};
  for (const auto& c : cases) {
    auto disk = built(c.text);
    ASSERT_NE(disk, nullptr) << c.text;
    EXPECT_EQ(disk->info().capacity_bytes(), 1u << 20) << c.text;
    EXPECT_EQ(disk->info().logical_block_size, c.logical_block_size) << c.text;
    // One page written and read back through the device (null drops it: only the write counts).
    std::vector<std::byte> page(4096, std::byte{0x5a}), back(4096);
    blk_mq::TagSet tags(disk->info().tag_set);
    ASSERT_TRUE(blk_mq::execute(*disk, tags, 0, blk_mq::Op::Write, 8, page)) << c.text;
    ASSERT_TRUE(blk_mq::execute(*disk, tags, 0, blk_mq::Op::Read, 8, back)) << c.text;
    if (!c.text.starts_with("null")) {
      EXPECT_EQ(back, page) << c.text;
    }
  }
  // file:PATH without a size takes the file's (made 1 MiB above).
  auto again = built("file:" + image);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->info().capacity_bytes(), 1u << 20);
}

TEST(BlockTarget, RefusedSpecCreatesNothing) {
  TempPath tmp;
  const std::string image = (tmp.dir / "new.img").string();
  auto spec = blk_mq::parse_target_spec("file:" + image + ",1000");
  ASSERT_TRUE(spec);
  const auto disk = make_target(*spec);
  ASSERT_FALSE(disk);
  EXPECT_EQ(disk.error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(image)) << "a refused file target created its file";

  auto missing = blk_mq::parse_target_spec("file:" + image);  // no size, no file
  ASSERT_TRUE(missing);
  EXPECT_EQ(make_target(*missing).error().code(), ErrorCode::NotFound);
  EXPECT_FALSE(std::filesystem::exists(image));
}

}  // namespace
}  // namespace pepita::zram
