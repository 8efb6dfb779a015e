// `pepita zram bench` as a user runs it, including bad arguments.
#include <gtest/gtest.h>

#include <cstdio>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

TEST(CliZram, BenchReportsARatioAboveOneForText) {
  CliRun run = run_pepita("zram bench --data text --mib 4 --reps 1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("data text, 4 MiB\n"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("compressor lz4, 1 queue(s), 4 MiB, median of 1\n"), std::string::npos)
      << run.output;

  // "ratio R (orig O / mem_used M bytes)": every byte of the data set was stored, it took less
  // memory than it holds, and the printed ratio is O / M (to its two printed decimals).
  const auto at = run.output.find("ratio ");
  ASSERT_NE(at, std::string::npos) << run.output;
  double ratio = 0;
  unsigned long long orig = 0, mem_used = 0;
  ASSERT_EQ(std::sscanf(run.output.c_str() + at, "ratio %lf (orig %llu / mem_used %llu bytes)",
                        &ratio, &orig, &mem_used),
            3)
      << run.output;
  EXPECT_EQ(orig, 4ull << 20) << run.output;
  ASSERT_GT(mem_used, 0u) << run.output;
  EXPECT_LT(mem_used, orig) << run.output;
  EXPECT_GT(ratio, 1.0) << run.output;
  EXPECT_NEAR(ratio, static_cast<double>(orig) / static_cast<double>(mem_used), 0.006)
      << run.output;

  // Both directions moved data: the throughputs are positive numbers.
  const auto speeds = run.output.find("write ");
  ASSERT_NE(speeds, std::string::npos) << run.output;
  double write_mb_s = 0, read_mb_s = 0;
  ASSERT_EQ(std::sscanf(run.output.c_str() + speeds, "write %lf MB/s, read %lf MB/s", &write_mb_s,
                        &read_mb_s),
            2)
      << run.output;
  EXPECT_GT(write_mb_s, 0) << run.output;
  EXPECT_GT(read_mb_s, 0) << run.output;
}

TEST(CliZram, UnknownAlgorithmIsAUsageError) {
  CliRun run = run_pepita("zram bench --algorithm lzma --mib 1");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("lz4"), std::string::npos) << run.output;
}

TEST(CliZram, OutOfRangeQueuesIsAUsageError) {
  CliRun run = run_pepita("zram bench --queues 0");
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

TEST(CliZram, MissingDataFileFailsClearly) {
  CliRun run = run_pepita("zram bench --data /nonexistent/corpus.bin --mib 1");
  EXPECT_EQ(run.exit_code, 2) << run.output;  // a --data that names nothing is a bad argument
  EXPECT_NE(run.output.find("data set '/nonexistent/corpus.bin' is neither zeros, text, random, "
                            "mixed nor a readable file"),
            std::string::npos)
      << run.output;
}

}  // namespace
}  // namespace pepita::test
