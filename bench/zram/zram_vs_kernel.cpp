// ZramDisk (ours) against the kernel's zram (/dev/zram0, O_DIRECT) on the same data sets in the
// same process: write and read throughput and compression ratio (orig_data_size / mem_used_total
// from mm_stat), median [min-max] over alternated rounds. Both use lz4; ours with zstd is shown
// too. The kernel device is reset and its compressor restored afterwards.
//
// The kernel side pays pwrite/pread, the block layer and zram's bookkeeping, ours an in-process
// call. So the anchor is the kernel's figure minus a baseline measured in the same rounds on the
// same I/O path with no compression (its median subtracted from each kernel round): the same
// /dev/zram0, same threads and requests, written with zero pages, which zram stores as same-filled
// without compressing (brd and null_blk are not built for this kernel). This also subtracts zram's
// per-page slot bookkeeping, which ours still pays: the subtraction errs toward the kernel. The raw
// kernel figure is printed alongside. The zeros data set is the baseline itself, so it has no
// anchor figure (ours and the raw kernel's are printed).
//
//   sudo bench_zram_zram_vs_kernel [--mib 64] [--reps 5] [--threads 2] [--data zeros,text,...]

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/zram/datasets.hpp"
#include "pepita/zram/zram_disk.hpp"
#include "zram/kernel_zram.hpp"

namespace {

using pepita::UniqueFd;
using pepita::zram::Algorithm;
namespace pb = pepita::bench;
namespace kz = pepita::bench::kzram;

// Wall-clock and CPU seconds of one phase. CPU time is the process's user + system time: the
// kernel's zram compresses in the context of the thread that issues the O_DIRECT write, so both
// sides' work is counted, and it stays meaningful on a machine shared with other jobs.
using Cost = pb::Cost;

class Timer {
 public:
  Timer() : wall_(pb::wall_s()), cpu_(pb::process_cpu_s()) {}
  Cost stop() const { return {pb::wall_s() - wall_, pb::process_cpu_s() - cpu_}; }

 private:
  double wall_;
  double cpu_;
};

struct Sample {
  Cost write;
  Cost read;
  double ratio = 0;  // orig_data_size / mem_used_total (inf when nothing used)
};

// The kernel's zram is driven through bench/zram/kernel_zram.hpp (shared with recompress.cpp).
using kz::AlignedBytes;
using kz::g_zram_fd;
using kz::kChunk;
using kz::parallel_chunks;
using kz::read_sys;
using kz::write_sys;

std::optional<Sample> run_kernel(const AlignedBytes& data, AlignedBytes& back, unsigned threads,
                                 std::string& why) {
  if (!write_sys("reset", "1") || !write_sys("comp_algorithm", "lz4") ||
      !write_sys("disksize", std::to_string(data.size))) {
    why = "configuring /sys/block/zram0 failed";
    return std::nullopt;
  }
  UniqueFd fd(::open("/dev/zram0", O_RDWR | O_DIRECT | O_CLOEXEC));
  g_zram_fd = fd.get();
  if (!fd) {
    why = std::string("open /dev/zram0: ") + std::strerror(errno);
    return std::nullopt;
  }
  Sample sample;
  Timer timer;
  bool ok = parallel_chunks(data.size, threads, [&](unsigned, size_t offset, size_t len) {
    return ::pwrite(fd.get(), data.data() + offset, len, static_cast<off_t>(offset)) ==
           static_cast<ssize_t>(len);
  });
  sample.write = timer.stop();
  std::istringstream mm(read_sys("mm_stat").value_or(""));
  uint64_t orig = 0, compr = 0, used = 0;
  mm >> orig >> compr >> used;
  sample.ratio = used == 0 ? INFINITY : static_cast<double>(orig) / static_cast<double>(used);
  timer = Timer();
  ok = ok && parallel_chunks(data.size, threads, [&](unsigned, size_t offset, size_t len) {
         return ::pread(fd.get(), back.data() + offset, len, static_cast<off_t>(offset)) ==
                static_cast<ssize_t>(len);
       });
  sample.read = timer.stop();
  g_zram_fd = -1;
  fd.reset();
  write_sys("reset", "1");
  if (!ok || std::memcmp(data.data(), back.data(), data.size) != 0) {
    why = "kernel zram I/O failed or read back different data";
    return std::nullopt;
  }
  return sample;
}

std::optional<Sample> run_ours(const AlignedBytes& data, AlignedBytes& back, Algorithm algorithm,
                               unsigned threads, std::string& why) {
  auto disk = pepita::zram::ZramDisk::create(
      {.store = {.disksize = data.size, .algorithm = algorithm}, .queues = threads});
  if (!disk) {
    why = disk.error().to_string();
    return std::nullopt;
  }
  pepita::blk_mq::TagSet tags((*disk)->info().tag_set);
  auto io = [&](pepita::blk_mq::Op op, std::byte* base) {
    return [&, op, base](unsigned queue, size_t offset, size_t len) {
      return pepita::blk_mq::execute(**disk, tags, queue, op, offset / 512, {base + offset, len})
          .has_value();
    };
  };
  Sample sample;
  Timer timer;
  bool ok = parallel_chunks(data.size, threads, io(pepita::blk_mq::Op::Write, data.data()));
  sample.write = timer.stop();
  const auto stats = (*disk)->store().stats();
  sample.ratio = stats.mem_used_total == 0 ? INFINITY
                                           : static_cast<double>(stats.orig_data_size) /
                                                 static_cast<double>(stats.mem_used_total);
  timer = Timer();
  ok = ok && parallel_chunks(data.size, threads, io(pepita::blk_mq::Op::Read, back.data()));
  sample.read = timer.stop();
  if (!ok || std::memcmp(data.data(), back.data(), data.size) != 0) {
    why = "ZramDisk I/O failed or read back different data";
    return std::nullopt;
  }
  return sample;
}

// Samples of one contestant over the rounds.
struct Series {
  std::vector<Sample> samples;
  std::vector<double> get(double Cost::*clock, bool read) const {
    std::vector<double> out;
    for (const Sample& s : samples) out.push_back((read ? s.read : s.write).*clock);
    return out;
  }
  double ratio() const {
    std::vector<double> r;
    for (const Sample& s : samples) r.push_back(s.ratio);
    return pb::median(r);
  }
};

// Seconds -> MB/s (of the clock the seconds were taken on).
std::vector<double> mb_per_s(const std::vector<double>& seconds, size_t bytes) {
  const double mb = static_cast<double>(bytes) / 1e6;
  return pb::map(seconds, [mb](double s) { return s > 0 ? mb / s : 0.0; });
}

// Each round's kernel time minus the baseline's median (one estimate of the I/O path, steadier
// than round-by-round differences on a loaded machine). A round the subtraction leaves at or
// below zero is dropped and counted in `dropped`.
std::vector<double> minus(const std::vector<double>& kernel, const std::vector<double>& base,
                          int& dropped) {
  const double path = pb::median(base);
  std::vector<double> out;
  for (double k : kernel) {
    if (k - path > 0) {
      out.push_back(k - path);
    } else {
      ++dropped;
    }
  }
  return out;
}

std::string fmt_ratio(double ratio) {
  if (std::isinf(ratio)) return "inf";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", ratio);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = kz::parse_args(argc, argv,
                                   {.mib = 64,
                                    .reps = pb::rounds(5),
                                    .threads = 2,
                                    .sets = {"zeros", "text", "random", "mixed"}});
  if (!args) return 2;
  const size_t mib = args->mib;
  const int reps = args->reps;
  const unsigned max_threads = args->threads;
  const std::vector<std::string>& sets = args->sets;
  const size_t bytes = mib << 20;
  std::string skip = kz::unavailable();
  std::optional<kz::Guard> guard;
  if (skip.empty()) guard.emplace();
  pb::print_load();
  if (!skip.empty()) std::printf("anchor skipped: %s\n", skip.c_str());

  char title[256];
  std::snprintf(title, sizeof title,
                "[1] CPU cost on 1 queue, MB per CPU-second (process CPU time, user + sys), "
                "%zu MiB per data set, %zu KiB requests",
                mib, kChunk / 1024);
  pb::Table cpu_table(title);
  std::snprintf(title, sizeof title,
                "[2] Wall-clock throughput by queues = threads, MB/s, lz4 (ours on each queue "
                "count against the kernel on as many threads)");
  pb::Table wall_table(title);
  const char* const kAnchor = "kernel lz4 - I/O path";
  const char* const kAnchorRaw = "none (= the I/O path)";

  AlignedBytes zeros(bytes), back(bytes);
  std::memset(zeros.data(), 0, bytes);
  int failures = 0;
  int dropped = 0;  // kernel rounds no slower than the I/O path alone (noise)
  for (const auto& name : sets) {
    auto generated = pepita::zram::make_dataset(name, bytes);
    if (!generated) {
      std::fprintf(stderr, "%s\n", generated.error().to_string().c_str());
      return 1;
    }
    AlignedBytes data(bytes);
    std::memcpy(data.data(), generated->data(), bytes);
    const bool raw = name == "zeros";  // the data set is the baseline: compare raw
    for (unsigned threads = 1; threads <= max_threads; threads *= 2) {
      Series kernel, base, lz4, zstd;
      std::string why;
      auto kernel_round = [&](const AlignedBytes& what, Series& into) {
        if (!skip.empty() || !why.empty()) return;
        if (auto s = run_kernel(what, back, threads, why)) into.samples.push_back(*s);
      };
      auto ours_round = [&](Algorithm algorithm, Series& into) {
        std::string our_why;
        if (auto s = run_ours(data, back, algorithm, threads, our_why)) {
          into.samples.push_back(*s);
        } else {
          std::fprintf(stderr, "ours failed on %s: %s\n", name.c_str(), our_why.c_str());
          ++failures;
        }
      };
      std::vector<std::function<void()>> contestants = {[&] { kernel_round(data, kernel); },
                                                        [&] { ours_round(Algorithm::Lz4, lz4); }};
      if (!raw) contestants.push_back([&] { kernel_round(zeros, base); });
      if (threads == 1) contestants.push_back([&] { ours_round(Algorithm::Zstd, zstd); });
      pb::rotate_rounds(reps, contestants);
      if (!why.empty()) {
        std::printf("anchor skipped: %s\n", why.c_str());
        skip = why;
        kernel.samples.clear();
        base.samples.clear();
      }
      if (failures != 0) break;

      for (bool read : {false, true}) {
        const std::string op = read ? " read" : " write";
        auto anchor = [&](double Cost::*clock) {
          const auto k = kernel.get(clock, read);
          if (raw) return std::vector<double>{};  // kernel minus its own I/O path: nothing left
          return mb_per_s(minus(k, base.get(clock, read), dropped), bytes);
        };
        auto extra = [&](double Cost::*clock, const Series& ours) {
          std::string e;
          if (!kernel.samples.empty()) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "raw kernel %.0f MB/s",
                          pb::median(mb_per_s(kernel.get(clock, read), bytes)));
            e = buf;
            if (!raw) {
              std::snprintf(buf, sizeof buf, ", I/O path alone %.0f MB/s",
                            pb::median(mb_per_s(base.get(clock, read), bytes)));
              e += buf;
            }
          }
          if (!read) {
            e += (e.empty() ? "" : "; ") + std::string("ratio ") + fmt_ratio(ours.ratio());
            if (!kernel.samples.empty()) e += " vs " + fmt_ratio(kernel.ratio());
          }
          return e;
        };
        if (threads == 1) {
          for (const Series* ours : {&lz4, &zstd}) {
            const char* alg = ours == &lz4 ? "lz4" : "zstd";
            cpu_table.row(name + op + ", ours " + alg, raw ? kAnchorRaw : kAnchor,
                          pb::Clock::process_cpu, "MB/cpu-s",
                          mb_per_s(ours->get(&Cost::cpu, read), bytes), anchor(&Cost::cpu),
                          pb::Kind::rate, extra(&Cost::cpu, *ours));
          }
        }
        wall_table.row(name + op + ", " + std::to_string(threads) + " thr",
                       raw ? kAnchorRaw : kAnchor, pb::Clock::wall, "MB/s",
                       mb_per_s(lz4.get(&Cost::wall, read), bytes), anchor(&Cost::wall),
                       pb::Kind::rate, extra(&Cost::wall, lz4));
      }
    }
  }
  for (pb::Table* t : {&cpu_table, &wall_table}) {
    t->note(
        std::string("anchor: Linux zram (lz4) on /dev/zram0 via O_DIRECT pwrite/pread, same "
                    "data, same process, minus the median of the same I/O path with zero "
                    "pages (no compression) measured in the same rounds; zeros: that path "
                    "itself, so no anchor (raw kernel alongside)"));
    t->note("ratio = compression ratio, orig_data_size / mem_used_total (ours vs kernel)");
    if (!skip.empty()) t->note("anchor skipped: " + skip);
    if (dropped != 0)
      t->note(std::to_string(dropped) +
              " kernel rounds (both tables) came out no slower than the "
              "I/O path alone and were dropped: the machine is too noisy for those rows");
    t->print();
  }
  return failures == 0 ? 0 : 1;
}
