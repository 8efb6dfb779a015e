// The reference crate's zram names on ZramStore: Algorithm::None (pages stored raw, counted as
// huge), reset() (pages dropped, statistics zeroed, slabs returned), the ZramConfig builder and
// its enforced mem_limit, ZramStats' derived numbers and PageEntry/ZramDevice.

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "page_gen.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {
namespace {

std::unique_ptr<ZramDevice> make(const ZramConfig& config) {
  auto store = ZramDevice::create(config);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

std::vector<std::byte> read_back(ZramStore& store, uint64_t index) {
  std::vector<std::byte> page(kPageSize, std::byte{0x5a});
  EXPECT_EQ(store.read_page(index, page.data()), 0);
  return page;
}

TEST(ZramCrateNames, NoneStoresEveryNonSamePageRawAndCountsIt) {
  auto store = make(ZramConfig::with_size(64 * kPageSize).compressor(ZramCompressor::None));
  ASSERT_TRUE(store);
  EXPECT_EQ(store->config().algorithm, ZramCompressor::None);
  const auto text = testing::text_page(1);  // lz4 would shrink this; None must not
  const auto noise = testing::random_page(2);
  const auto same = testing::same_page(0x0101010101010101ull);
  ASSERT_EQ(store->write_page(0, text.data()), 0);
  ASSERT_EQ(store->write_page(1, noise.data()), 0);
  ASSERT_EQ(store->write_page(2, same.data()), 0);
  EXPECT_EQ(read_back(*store, 0), text);
  EXPECT_EQ(read_back(*store, 1), noise);
  EXPECT_EQ(read_back(*store, 2), same);
  EXPECT_EQ(store->page_info(0).kind, PageInfo::Kind::Huge);
  EXPECT_EQ(store->page_info(2).kind, PageInfo::Kind::Same);
  const ZramStats s = store->stats();
  EXPECT_EQ(s.huge_pages, 2u);
  EXPECT_EQ(s.compr_data_size, 2u * kPageSize);
  EXPECT_EQ(s.orig_data_size, 3u * kPageSize);
  EXPECT_EQ(s.special_pages(), 1u);
  EXPECT_EQ(store->stored_pages(), 3u);
  // The "frame" of an uncompressed page is the page itself.
  auto frame = store->page_frame(0);
  ASSERT_TRUE(frame.has_value()) << frame.error().to_string();
  EXPECT_EQ(*frame, text);
}

TEST(ZramCrateNames, CompressorNamesParseAndRatios) {
  EXPECT_STREQ(name(ZramCompressor::None), "none");
  EXPECT_STREQ(name(ZramCompressor::Lz4), "lz4");
  EXPECT_EQ(parse_algorithm("none").value(), Algorithm::None);
  EXPECT_DOUBLE_EQ(typical_ratio(ZramCompressor::None), 1.0);
  EXPECT_GT(typical_ratio(ZramCompressor::Lz4), 1.0);
  auto bad = parse_algorithm("lzo");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("none"), std::string::npos) << bad.error().message();
}

TEST(ZramCrateNames, ResetDropsPagesZeroesStatsAndReturnsMemory) {
  auto store = make(ZramConfig::with_size(256 * kPageSize));
  ASSERT_TRUE(store);
  for (uint64_t i = 0; i < 200; ++i) {
    const auto page = i % 3 == 0 ? testing::random_page(static_cast<uint32_t>(i))
                                 : testing::text_page(static_cast<uint32_t>(i));
    ASSERT_EQ(store->write_page(i, page.data()), 0);
  }
  ASSERT_EQ(store->write_page(255, testing::same_page(0).data()), 0);
  ASSERT_GT(store->stats().mem_used_total, 0u);
  ASSERT_TRUE(store->reset().has_value());
  const ZramStats s = store->stats();
  EXPECT_EQ(s.orig_data_size, 0u);
  EXPECT_EQ(s.compr_data_size, 0u);
  EXPECT_EQ(s.mem_used_total, 0u);
  EXPECT_EQ(s.mem_used_max, 0u);
  EXPECT_EQ(s.same_pages, 0u);
  EXPECT_EQ(s.huge_pages, 0u);
  EXPECT_EQ(s.huge_pages_since, 0u);
  EXPECT_EQ(store->stored_pages(), 0u);
  EXPECT_TRUE(store->page_info(7).is_empty());
  EXPECT_EQ(read_back(*store, 7), std::vector<std::byte>(kPageSize));
  // Usable again after the reset.
  const auto again = testing::text_page(99);
  ASSERT_EQ(store->write_page(7, again.data()), 0);
  EXPECT_EQ(read_back(*store, 7), again);
  EXPECT_EQ(store->stored_pages(), 1u);
}

TEST(ZramCrateNames, MemLimitIsEnforcedWritesPastItFailNamingTheLimit) {
  ZramConfig config = ZramConfig::with_size(64 * kPageSize)
                          .compressor(ZramCompressor::None)
                          .with_mem_limit(8 * kPageSize)
                          .num_streams(4);
  EXPECT_EQ(config.max_pages(), 64u);
  EXPECT_EQ(config.effective_mem_limit(), 8u * kPageSize);
  auto store = make(config);
  ASSERT_TRUE(store);
  uint64_t written = 0;
  Result<void> last;
  for (uint64_t i = 0; i < 64 && last.has_value(); ++i) {
    const auto page = testing::random_page(static_cast<uint32_t>(i));
    last = store->write(i * kPageSize, page);
    if (last) ++written;
  }
  ASSERT_FALSE(last.has_value()) << "64 raw pages fit under an 8-page mem_limit";
  EXPECT_EQ(last.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(last.error().message().find("mem_limit"), std::string::npos);
  EXPECT_LE(written, 8u);
  EXPECT_LE(store->stats().mem_used_total, 8u * kPageSize);
  // Reset frees the room: writing works again.
  ASSERT_TRUE(store->reset().has_value());
  EXPECT_EQ(store->write_page(0, testing::random_page(1).data()), 0);
}

TEST(ZramCrateNames, StatsDerivedNumbersFollowTheirDefinitions) {
  ZramStats empty;
  EXPECT_DOUBLE_EQ(empty.compression_ratio(), 1.0);
  EXPECT_DOUBLE_EQ(empty.memory_efficiency(), 1.0);
  auto store = make(ZramConfig::with_size(64 * kPageSize).compressor(ZramCompressor::Lz4));
  ASSERT_TRUE(store);
  for (uint64_t i = 0; i < 32; ++i)
    ASSERT_EQ(store->write_page(i, testing::text_page(static_cast<uint32_t>(i)).data()), 0);
  const ZramStats s = store->stats();
  EXPECT_GT(s.compression_ratio(), 1.5);
  EXPECT_DOUBLE_EQ(s.compression_ratio(),
                   static_cast<double>(s.orig_data_size) / static_cast<double>(s.compr_data_size));
  EXPECT_DOUBLE_EQ(s.memory_efficiency(),
                   static_cast<double>(s.orig_data_size) / static_cast<double>(s.mem_used_total));
  const PageEntry entry = store->page_info(0);
  EXPECT_FALSE(entry.is_empty());
  EXPECT_GT(entry.memory_size(), 0u);
  EXPECT_LT(entry.memory_size(), kPageSize);
}

TEST(ZramCrateNames, ZeroSizeConfigIsRejectedNamingDisksize) {
  auto store = ZramDevice::create(ZramConfig::with_size(0));
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(store.error().message().find("disksize"), std::string::npos);
}

}  // namespace
}  // namespace pepita::zram
