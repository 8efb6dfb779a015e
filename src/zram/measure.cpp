// measure(): a data set through a ZramDisk with N queue threads, medians of wall-clock time.
#include "pepita/zram/measure.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/format.hpp"
#include "pepita/zram/zram_disk.hpp"

namespace pepita::zram {
namespace {

using Clock = std::chrono::steady_clock;

// Runs requests over the data split into contiguous ranges, one thread per queue.
bool run_queues(blk_mq::BlockDevice& disk, blk_mq::TagSet& tags, blk_mq::Op op, std::byte* base,
                size_t bytes, uint32_t queues, uint32_t request) {
  std::vector<std::thread> threads;
  std::vector<char> ok(queues, 1);
  const size_t requests = (bytes + request - 1) / request;
  for (uint32_t q = 0; q < queues; ++q) {
    threads.emplace_back([&, q] {
      for (size_t r = requests * q / queues; r < requests * (q + 1) / queues; ++r) {
        const size_t offset = r * request;
        const size_t len = std::min<size_t>(request, bytes - offset);
        if (!blk_mq::execute(disk, tags, q, op, offset / 512, {base + offset, len})) ok[q] = 0;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

Result<MeasureResult> measure(std::span<const std::byte> data, const MeasureOptions& options) {
  using pepita::fmt;
  if (data.empty() || data.size() % kPageSize != 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("data of {} bytes must be a non-zero multiple of 4096", data.size()));
  if (options.request_bytes == 0 || options.request_bytes % kPageSize != 0 ||
      options.request_bytes > 1024 * 1024)
    return fail(
        ErrorCode::InvalidArgument,
        fmt("request size {} must be a multiple of 4096 up to 1 MiB", options.request_bytes));
  if (options.repetitions < 1)
    return fail(ErrorCode::InvalidArgument, "repetitions must be at least 1");
  // Writes need a mutable buffer in the Request; copy once so the caller's data stays const.
  std::vector<std::byte> source(data.begin(), data.end());
  std::vector<std::byte> back(data.size());
  std::vector<double> write_s, read_s;
  MeasureResult result;
  result.bytes = data.size();
  for (int rep = 0; rep < options.repetitions; ++rep) {
    auto disk = PEPITA_TRY(ZramDisk::create({.store = {.disksize = data.size(),
                                                       .algorithm = options.algorithm,
                                                       .zstd_level = options.zstd_level},
                                             .queues = options.queues}));
    blk_mq::TagSet tags(disk->info().tag_set);
    auto start = Clock::now();
    const bool wrote = run_queues(*disk, tags, blk_mq::Op::Write, source.data(), source.size(),
                                  options.queues, options.request_bytes);
    write_s.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    result.stats = disk->store().stats();
    start = Clock::now();
    const bool read = run_queues(*disk, tags, blk_mq::Op::Read, back.data(), back.size(),
                                 options.queues, options.request_bytes);
    read_s.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (!wrote || !read)
      return fail(ErrorCode::Io, "a ZramDisk request failed during the measurement");
    if (std::memcmp(source.data(), back.data(), back.size()) != 0)
      return fail(ErrorCode::Corrupted,
                  "data read back from the ZramDisk differs from what was written");
  }
  const double mb = static_cast<double>(data.size()) / 1e6;
  result.write_mb_per_s = mb / median(write_s);
  result.read_mb_per_s = mb / median(read_s);
  result.ratio = result.stats.mem_used_total == 0
                     ? INFINITY
                     : static_cast<double>(result.stats.orig_data_size) /
                           static_cast<double>(result.stats.mem_used_total);
  return result;
}

std::string format_measure(const MeasureResult& r, const MeasureOptions& options) {
  char text[512];
  std::snprintf(text, sizeof(text),
                "compressor %s, %u queue(s), %zu MiB, median of %d\n"
                "ratio %.2f (orig %llu / mem_used %llu bytes)\n"
                "write %.0f MB/s, read %.0f MB/s\n"
                "same_pages %llu, huge_pages %llu, compr_data_size %llu\n",
                algorithm_name(options.algorithm), options.queues, r.bytes >> 20,
                options.repetitions, r.ratio,
                static_cast<unsigned long long>(r.stats.orig_data_size),
                static_cast<unsigned long long>(r.stats.mem_used_total), r.write_mb_per_s,
                r.read_mb_per_s, static_cast<unsigned long long>(r.stats.same_pages),
                static_cast<unsigned long long>(r.stats.huge_pages),
                static_cast<unsigned long long>(r.stats.compr_data_size));
  return text;
}

}  // namespace pepita::zram
