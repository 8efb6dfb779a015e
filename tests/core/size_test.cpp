// parse_size and format_size (core/size.hpp): every suffix, every way a size can be wrong, and
// format_size's output read back exactly for any 64-bit size.
#include "pepita/core/size.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdint>

namespace pepita {
namespace {

TEST(Size, ParsesNumbersAndBinarySuffixes) {
  EXPECT_EQ(parse_size("1").value(), 1u);
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("4096B").value(), 4096u);
  EXPECT_EQ(parse_size("2k").value(), 2048u);
  EXPECT_EQ(parse_size("2KiB").value(), 2048u);
  EXPECT_EQ(parse_size("64M").value(), 64ull << 20);
  EXPECT_EQ(parse_size("64mb").value(), 64ull << 20);
  EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
  EXPECT_EQ(parse_size("3T").value(), 3ull << 40);
  EXPECT_EQ(parse_size("16777215T").value(), 16777215ull << 40);  // the largest in T
  EXPECT_EQ(parse_size("18446744073709551615").value(), UINT64_MAX);
}

TEST(Size, RefusesWhatIsNotASize) {
  for (const char* bad : {"", "G", "0", "0K", "-1", "+1", " 1", "1 ", "1.5G", "12Q", "1KK", "1GiBs",
                          "18446744073709551616", "16777216T", "20000000T", "0x10"}) {
    const auto size = parse_size(bad);
    ASSERT_FALSE(size) << bad;
    EXPECT_EQ(size.error().code(), ErrorCode::InvalidArgument) << bad;
    EXPECT_NE(size.error().message().find(std::string("'") + bad + "'"), std::string::npos)
        << size.error().message();
    EXPECT_NE(size.error().message().find("e.g. 4096, 64M, 1G"), std::string::npos) << bad;
  }
}

TEST(Size, FormatsWithTheLargestExactSuffix) {
  EXPECT_EQ(format_size(0), "0");
  EXPECT_EQ(format_size(4097), "4097");
  EXPECT_EQ(format_size(4096), "4K");
  EXPECT_EQ(format_size(1536ull << 10), "1536K");
  EXPECT_EQ(format_size(1ull << 30), "1G");
  EXPECT_EQ(format_size(5ull << 40), "5T");
  EXPECT_EQ(format_size(UINT64_MAX), "18446744073709551615");
}

RC_GTEST_PROP(Size, FormatThenParseIsTheIdentity, ()) {
  const unsigned shift = *rc::gen::inRange(0u, 64u);
  const uint64_t bytes = (*rc::gen::arbitrary<uint64_t>() >> shift) << shift;
  RC_PRE(bytes != 0);
  const auto back = parse_size(format_size(bytes));
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == bytes);
}

}  // namespace
}  // namespace pepita
