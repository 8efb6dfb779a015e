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
#include <vector>

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

// The mixed set is seeded (7): its page classes come in a fixed order from the very first page.
// Seed 7 makes page 0 text, page 1 bf16 weights and page 2 zero.
TEST(Datasets, MixedFillsFromTheFirstPageInTheSeededOrder) {
  constexpr std::size_t kPages = 4;
  auto data = make_dataset("mixed", kPages * kPageSize);
  ASSERT_TRUE(data) << data.error().message();
  ASSERT_EQ(data->size(), kPages * kPageSize);
  auto page = [&](std::size_t n) {
    return std::vector<std::byte>(data->begin() + static_cast<std::ptrdiff_t>(n * kPageSize),
                                  data->begin() + static_cast<std::ptrdiff_t>((n + 1) * kPageSize));
  };
  const std::vector<std::byte> zero(kPageSize);
  EXPECT_NE(page(0), zero);  // filled like the rest, not left as allocated
  std::set<std::byte> text_bytes(data->begin(), data->begin() + kPageSize);
  EXPECT_GT(text_bytes.size(), 10u);  // text, not a same-filled page
  // Weights: float32 rounded to bf16, so every word's low 16 bits are zero, and not all zero.
  const std::vector<std::byte> weights = page(1);
  std::set<uint32_t> words;
  for (std::size_t i = 0; i < kPageSize; i += 4) {
    uint32_t word = 0;
    std::memcpy(&word, weights.data() + i, 4);
    ASSERT_EQ(word & 0xffffu, 0u) << "byte " << i;
    words.insert(word);
  }
  EXPECT_GT(words.size(), 100u);
  EXPECT_EQ(page(2), zero);
  // The same bytes each run, so measurements compare.
  auto again = make_dataset("mixed", kPages * kPageSize);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(*data, *again);
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
