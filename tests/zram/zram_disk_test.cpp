#include "pepita/zram/zram_disk.hpp"

#include <gtest/gtest.h>

#include "blk_mq/device_conformance.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "zram/page_gen.hpp"

namespace pepita::zram {
namespace {

TEST(ZramDisk, PassesTheBlockDeviceConformanceChecks) {
  for (uint32_t lbs : {512u, 4096u}) {
    for (Algorithm algorithm : {Algorithm::Lz4, Algorithm::Zstd}) {
      auto disk = ZramDisk::create({.store = {.disksize = 1 << 20, .algorithm = algorithm},
                                    .logical_block_size = lbs,
                                    .queues = 2});
      ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
      blk_mq::TagSet tags((*disk)->info().tag_set);
      blk_mq::testing::expect_round_trip(**disk, tags);
      blk_mq::testing::expect_discard_and_write_zeroes_read_zero(**disk, tags);
      blk_mq::testing::expect_bad_requests_refused(**disk, tags);
    }
  }
}

TEST(ZramDisk, WriteOverMemLimitCompletesWithEnospc) {
  auto disk = ZramDisk::create(
      {.store = {.disksize = 64 * kPageSize, .mem_limit = 4 * kPageSize}, .queues = 1});
  ASSERT_TRUE(disk.has_value());
  blk_mq::TagSet tags((*disk)->info().tag_set);
  std::vector<std::byte> pages;
  for (uint32_t i = 0; i < 8; ++i) {
    auto page = testing::random_page(i);
    pages.insert(pages.end(), page.begin(), page.end());
  }
  auto res = blk_mq::execute(**disk, tags, 0, blk_mq::Op::Write, 0, pages);
  ASSERT_FALSE(res.has_value());
  EXPECT_EQ(res.error().sys_errno(), ENOSPC);
  EXPECT_EQ((*disk)->store().stats().mem_used_total, 4u * kPageSize);
  std::vector<std::byte> back(4 * kPageSize);
  ASSERT_TRUE(blk_mq::execute(**disk, tags, 0, blk_mq::Op::Read, 0, back).has_value());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), pages.begin()));
}

TEST(ZramDisk, RejectsBadGeometry) {
  EXPECT_FALSE(ZramDisk::create({.store = {.disksize = 1 << 20}, .logical_block_size = 1000}));
  EXPECT_FALSE(ZramDisk::create({.store = {.disksize = 1 << 20}, .queues = 129}));
  EXPECT_FALSE(ZramDisk::create({.store = {.disksize = 0}}));
}

}  // namespace
}  // namespace pepita::zram
