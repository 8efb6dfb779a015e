#pragma once
// One measured pass of a data set through a ZramDisk: what `pepita zram bench` prints (ratio and
// throughput). The kernel comparison lives in bench/zram; this is ours alone.
//
//   auto data = PEPITA_TRY(make_dataset("mixed", 64 << 20));
//   MeasureResult r = PEPITA_TRY(measure(data, {.algorithm = Algorithm::Zstd, .queues = 2}));
//   std::printf("%s", format_measure(r).c_str());

#include <cstddef>
#include <span>
#include <string>

#include "pepita/error.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {

struct MeasureOptions {
  Algorithm algorithm = Algorithm::Lz4;
  int zstd_level = 3;
  uint32_t queues = 1;                  // writer/reader threads, one hardware queue each
  uint32_t request_bytes = 128 * 1024;  // per request; a multiple of 4096
  int repetitions = 3;                  // the median is reported
};

struct MeasureResult {
  size_t bytes = 0;
  double write_mb_per_s = 0;  // median wall clock
  double read_mb_per_s = 0;
  double ratio = 0;  // orig_data_size / mem_used_total; infinity when nothing was stored
  ZramStats stats;   // of the last repetition, after the writes
};

/// Writes `data` (a multiple of 4096 bytes) to a fresh ZramDisk, reads it back and checks it.
/// Corrupted if the data read back differs; InvalidArgument for bad options.
Result<MeasureResult> measure(std::span<const std::byte> data, const MeasureOptions& options);

/// A few lines: ratio, write/read MB/s, and the mm_stat-style counters.
std::string format_measure(const MeasureResult& result, const MeasureOptions& options);

}  // namespace pepita::zram
