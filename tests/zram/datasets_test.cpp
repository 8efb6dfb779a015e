// zram::make_dataset: the "random" set, the same-filled pages of "mixed", and a file as a data set
// (the named sets "zeros", "text" and "mixed" are also exercised by measure_test.cpp).
#include "pepita/zram/datasets.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include "common/temp_dir.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {
namespace {

TEST(Datasets, RandomIsPageRoundedRepeatableAndVaried) {
  auto a = make_dataset("random", kPageSize + 1);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->size(), 2 * kPageSize);
  auto b = make_dataset("random", kPageSize + 1);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(*a, *b);  // seeded: the same bytes each run, so measurements compare
  std::set<std::byte> values(a->begin(), a->end());
  EXPECT_GT(values.size(), 200u);  // all byte values, not a filled page
  EXPECT_NE(std::vector<std::byte>(a->begin(), a->begin() + kPageSize),
            std::vector<std::byte>(a->begin() + kPageSize, a->end()));
}

// About 5% of the mixed set's pages are same-filled with 1.0f (the pages zram stores as one word):
// each such page holds 1.0f in every one of its 1024 floats, not only in its first ones.
TEST(Datasets, MixedSameFilledPagesHoldOneFloatInEveryWord) {
  constexpr std::size_t kPages = 256;
  auto data = make_dataset("mixed", kPages * kPageSize);
  ASSERT_TRUE(data) << data.error().message();
  ASSERT_EQ(data->size(), kPages * kPageSize);
  constexpr uint32_t kOne = 0x3f800000u;  // 1.0f
  std::size_t filled = 0;
  for (std::size_t page = 0; page < kPages; ++page) {
    const std::byte* base = data->data() + page * kPageSize;
    uint32_t first = 0;
    std::memcpy(&first, base, 4);
    if (first != kOne) continue;  // weights ~ N(0, 0.02), text and random never start with 1.0f
    ++filled;
    for (std::size_t i = 0; i < kPageSize; i += 4) {
      uint32_t word = 0;
      std::memcpy(&word, base + i, 4);
      ASSERT_EQ(word, kOne) << "page " << page << " byte " << i;
    }
  }
  EXPECT_GE(filled, 3u);  // seeded: the same pages every run
  EXPECT_LE(filled, 30u);
}

TEST(Datasets, FileIsRepeatedToTheRoundedSize) {
  pepita::test::TempDir dir{"zram-datasets"};
  const std::string path = dir.file("abc.bin");
  std::ofstream(path, std::ios::binary) << "abc";
  auto data = make_dataset(path, 10);
  ASSERT_TRUE(data) << data.error().message();
  ASSERT_EQ(data->size(), kPageSize);
  for (std::size_t i = 0; i < data->size(); ++i) {
    ASSERT_EQ(static_cast<char>((*data)[i]), "abc"[i % 3]) << i;
  }
}

TEST(Datasets, EmptyFileIsRefusedNamingIt) {
  pepita::test::TempDir dir{"zram-datasets"};
  const std::string path = dir.file("empty.bin");
  std::ofstream(path, std::ios::binary).flush();
  auto data = make_dataset(path, kPageSize);
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().code(), ErrorCode::NotFound);
  EXPECT_NE(data.error().message().find("cannot read data file '" + path + "'"), std::string::npos)
      << data.error().message();
}

}  // namespace
}  // namespace pepita::zram
