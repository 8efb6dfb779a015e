// The page codecs (src/zram/detail/codec.hpp) as pure functions: a page round-trips through each
// algorithm, and stored bytes that are not exactly one page are refused with -EIO.
#include "detail/codec.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <vector>

#include "zram/page_gen.hpp"

namespace pepita::zram::detail {
namespace {

TEST(Codec, NoneStoresRawPagesAndRefusesAnyOtherLength) {
  const std::vector<std::byte> page = testing::text_page(3);
  std::vector<std::byte> dst(kCompressScratch);
  // None never compresses: 0 tells the store to keep the page raw.
  EXPECT_EQ(compress_page({.algorithm = Algorithm::None}, page.data(), dst.data(), dst.size()), 0);
  std::vector<std::byte> out(kPageSize);
  EXPECT_EQ(decompress_page(Algorithm::None, page.data(), kPageSize, out.data()), 0);
  EXPECT_EQ(out, page);
  EXPECT_EQ(decompress_page(Algorithm::None, page.data(), kPageSize - 1, out.data()), -EIO);
  EXPECT_EQ(decompress_page(Algorithm::None, page.data(), 100, out.data()), -EIO);
}

TEST(Codec, CompressedPagesRoundTripAndTruncatedOnesDoNotDecode) {
  const std::vector<std::byte> page = testing::text_page(5);
  for (Algorithm a : {Algorithm::Lz4, Algorithm::Zstd}) {
    std::vector<std::byte> dst(kCompressScratch);
    const int n = compress_page({.algorithm = a}, page.data(), dst.data(), dst.size());
    ASSERT_GT(n, 0) << algorithm_name(a);
    ASSERT_LT(n, static_cast<int>(kPageSize)) << algorithm_name(a);
    std::vector<std::byte> out(kPageSize);
    EXPECT_EQ(decompress_page(a, dst.data(), static_cast<std::size_t>(n), out.data()), 0);
    EXPECT_EQ(out, page) << algorithm_name(a);
    EXPECT_EQ(decompress_page(a, dst.data(), static_cast<std::size_t>(n) / 2, out.data()), -EIO)
        << algorithm_name(a);
  }
}

}  // namespace
}  // namespace pepita::zram::detail
