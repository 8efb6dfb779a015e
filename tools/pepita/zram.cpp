// `pepita zram bench`: measures pepita's compressed RAM store on a data set (ratio, write/read
// throughput, mm_stat counters). The comparison with kernel zram lives in bench/zram.
#include <cstdio>
#include <memory>
#include <string>

#include "command.hpp"
#include "pepita/zram/datasets.hpp"
#include "pepita/zram/measure.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::cli {
namespace {

struct ZramBenchOptions {
  std::string data = "mixed";
  std::string algorithm = "lz4";
  std::uint32_t queues = 1;
  std::uint64_t mib = 64;
  int repetitions = 3;
};

int run_zram_bench(const ZramBenchOptions& options) {
  auto algorithm = zram::parse_algorithm(options.algorithm);
  if (!algorithm) {
    std::fprintf(stderr, "pepita zram bench: %s\n", algorithm.error().message().c_str());
    return kExitUsage;
  }
  auto data = zram::make_dataset(options.data, options.mib << 20);
  if (!data) {
    std::fprintf(stderr, "pepita zram bench: %s\n", data.error().message().c_str());
    return data.error().code() == ErrorCode::InvalidArgument ? kExitUsage : kExitFailure;
  }
  const zram::MeasureOptions measure_options{
      .algorithm = *algorithm, .queues = options.queues, .repetitions = options.repetitions};
  auto result = zram::measure(*data, measure_options);
  if (!result) {
    std::fprintf(stderr, "pepita zram bench: %s\n", result.error().message().c_str());
    return kExitFailure;
  }
  std::printf("data %s, %llu MiB\n%s", options.data.c_str(),
              static_cast<unsigned long long>(options.mib),
              zram::format_measure(*result, measure_options).c_str());
  return kExitOk;
}

void add_zram(CLI::App& app, Dispatch& dispatch) {
  auto* zram_command = app.add_subcommand("zram", "pepita's compressed RAM block store");
  auto* bench = zram_command->add_subcommand("bench", "Measure ratio and throughput on a data set");
  auto options = std::make_shared<ZramBenchOptions>();
  bench->add_option("--data", options->data, "zeros, text, random, mixed, or a file path")
      ->capture_default_str();
  bench->add_option("--algorithm", options->algorithm, "lz4, zstd or none")->capture_default_str();
  bench->add_option("--queues", options->queues, "Parallel queues (threads)")
      ->check(CLI::Range(1, 128))
      ->capture_default_str();
  bench->add_option("--mib", options->mib, "Data set size in MiB")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  bench->add_option("--reps", options->repetitions, "Repetitions (the median is printed)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  zram_command->require_subcommand(1);
  dispatch.on(bench, [options] { return run_zram_bench(*options); });
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(zram, pepita::cli::add_zram);
