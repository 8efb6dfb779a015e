#include "pepita/zram/measure.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "pepita/zram/datasets.hpp"

namespace pepita::zram {
namespace {

TEST(Measure, MixedDataSetRoundTripsWithPlausibleNumbers) {
  auto data = make_dataset("mixed", 2 << 20);
  ASSERT_TRUE(data.has_value()) << data.error().to_string();
  ASSERT_EQ(data->size(), 2u << 20);
  auto result = measure(*data, {.algorithm = Algorithm::Lz4, .queues = 2, .repetitions = 1});
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  // A third of the pages are zero, but 2 MiB spread over ~100 size classes leaves partly filled
  // zspages in each, so only a modest ratio is certain at this size.
  EXPECT_GT(result->ratio, 1.0);
  EXPECT_GT(result->stats.same_pages, 0u);
  EXPECT_GT(result->stats.huge_pages, 0u);
  EXPECT_GT(result->write_mb_per_s, 0);
  // The report prints the measured ratio and the byte counts it came from.
  char line[128];
  std::snprintf(line, sizeof line, "ratio %.2f (orig %llu / mem_used %llu bytes)\n", result->ratio,
                static_cast<unsigned long long>(result->stats.orig_data_size),
                static_cast<unsigned long long>(result->stats.mem_used_total));
  EXPECT_NE(format_measure(*result, {}).find(line), std::string::npos)
      << format_measure(*result, {});
  EXPECT_EQ(result->stats.orig_data_size, 2u << 20);
}

TEST(Measure, DataSetsAreDistinctAndBadInputIsRefused) {
  auto zeros = make_dataset("zeros", 5000);
  ASSERT_TRUE(zeros.has_value());
  EXPECT_EQ(zeros->size(), 8192u);  // rounded up to pages
  auto text = make_dataset("text", 8192);
  ASSERT_TRUE(text.has_value());
  EXPECT_NE(*text, *zeros);
  EXPECT_EQ(make_dataset("nonsense-set", 4096).error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(measure({}, {}).has_value());
  EXPECT_FALSE(measure(*zeros, {.request_bytes = 1000}).has_value());
  EXPECT_FALSE(measure(*zeros, {.repetitions = 0}).has_value());
  auto all_zero = measure(*zeros, {.repetitions = 1});
  ASSERT_TRUE(all_zero.has_value());
  EXPECT_TRUE(std::isinf(all_zero->ratio));
}

}  // namespace
}  // namespace pepita::zram
