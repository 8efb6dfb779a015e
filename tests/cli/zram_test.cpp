// `pepita zram bench` as a user runs it, including bad arguments.
#include <gtest/gtest.h>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

TEST(CliZram, BenchReportsARatioAboveOneForText) {
  CliRun run = run_pepita("zram bench --data text --mib 4 --reps 1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("data text"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("ratio"), std::string::npos) << run.output;
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
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("/nonexistent/corpus.bin"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace pepita::test
