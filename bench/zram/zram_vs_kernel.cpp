// ZramDisk (ours) against the kernel's zram (/dev/zram0, O_DIRECT) on the same data sets in the
// same process: write and read throughput and compression ratio (orig_data_size / mem_used_total
// from mm_stat), medians of several repetitions. Both use lz4; ours with zstd is shown too. The
// kernel device is reset and its compressor restored afterwards.
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
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/zram/datasets.hpp"
#include "pepita/zram/zram_disk.hpp"

namespace {

using pepita::UniqueFd;
using pepita::zram::Algorithm;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 128 * 1024;  // bytes per request, both sides
const char* const kSys = "/sys/block/zram0/";

// Wall-clock and CPU seconds of one phase. CPU time is the process's user + system time: the
// kernel's zram compresses in the context of the thread that issues the O_DIRECT write, so both
// sides' work is counted, and it stays meaningful on a machine shared with other jobs.
struct Cost {
  double wall = 0;
  double cpu = 0;
};

double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

class Timer {
 public:
  Timer() : wall_(Clock::now()), cpu_(process_cpu_seconds()) {}
  Cost stop() const {
    return {std::chrono::duration<double>(Clock::now() - wall_).count(),
            process_cpu_seconds() - cpu_};
  }

 private:
  Clock::time_point wall_;
  double cpu_;
};

struct Sample {
  Cost write;
  Cost read;
  double ratio = 0;  // orig_data_size / mem_used_total (inf when nothing used)
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// ---- kernel zram through sysfs ----

std::optional<std::string> read_sys(const std::string& attr) {
  std::ifstream file(kSys + attr);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

bool write_sys(const std::string& attr, const std::string& value) {
  std::ofstream file(kSys + attr);
  if (!file) return false;
  file << value;
  file.flush();
  return static_cast<bool>(file);
}

// Why the anchor cannot run, or empty when it can.
std::string kernel_unavailable() {
  if (::geteuid() != 0) return "not root (configuring /sys/block/zram0 needs root)";
  struct stat st {};
  if (::stat("/dev/zram0", &st) != 0) return "/dev/zram0 does not exist (modprobe zram)";
  auto algorithms = read_sys("comp_algorithm");
  if (!algorithms) return "cannot read /sys/block/zram0/comp_algorithm";
  if (algorithms->find("lz4") == std::string::npos) return "kernel zram has no lz4";
  auto disksize = read_sys("disksize");
  if (disksize && std::strtoull(disksize->c_str(), nullptr, 10) != 0)
    return "/dev/zram0 is busy (already initialised, disksize " +
           disksize->substr(0, disksize->find('\n')) + "); reset it to run the anchor";
  return {};
}

// The compressor to select again on exit; a fixed buffer so the signal handler can use it.
char g_original_algorithm[32] = {};
// The open /dev/zram0 fd, if any: reset fails with EBUSY while the device is open.
volatile std::sig_atomic_t g_zram_fd = -1;

void write_sys_raw(const char* attr, const char* value) {
  char path[96];
  std::snprintf(path, sizeof(path), "%s%s", kSys, attr);
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  [[maybe_unused]] const ssize_t n = ::write(fd, value, std::strlen(value));
  ::close(fd);
}

// Ctrl-C during a run must not leave /dev/zram0 configured: reset it with async-signal-safe
// calls only, then exit.
extern "C" void restore_on_signal(int) {
  if (g_zram_fd >= 0) ::close(g_zram_fd);
  write_sys_raw("reset", "1");
  if (g_original_algorithm[0] != 0) write_sys_raw("comp_algorithm", g_original_algorithm);
  ::_exit(130);
}

// Restores the device on every exit path: reset, previous compressor selected again.
class KernelZramGuard {
 public:
  KernelZramGuard() {
    auto algorithms = read_sys("comp_algorithm").value_or("");
    const auto open = algorithms.find('['), close = algorithms.find(']');
    if (open != std::string::npos && close != std::string::npos)
      original_ = algorithms.substr(open + 1, close - open - 1);
    std::snprintf(g_original_algorithm, sizeof(g_original_algorithm), "%s", original_.c_str());
    std::signal(SIGINT, restore_on_signal);
    std::signal(SIGTERM, restore_on_signal);
  }
  ~KernelZramGuard() {
    write_sys("reset", "1");
    if (!original_.empty()) write_sys("comp_algorithm", original_);
  }
  KernelZramGuard(const KernelZramGuard&) = delete;
  KernelZramGuard& operator=(const KernelZramGuard&) = delete;
  const std::string& original() const { return original_; }

 private:
  std::string original_;
};

// Runs `op(offset, len)` over the data in kChunk pieces, split between `threads` threads by
// contiguous ranges. Returns false if any call failed.
template <typename Op>
bool parallel_chunks(size_t bytes, unsigned threads, Op op) {
  std::vector<std::thread> workers;
  std::vector<char> ok(threads, 1);
  const size_t chunks = bytes / kChunk;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t c = chunks * t / threads; c < chunks * (t + 1) / threads; ++c)
        if (!op(t, c * kChunk, kChunk)) ok[t] = 0;
    });
  }
  for (auto& worker : workers) worker.join();
  return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

struct FreeBytes {
  void operator()(std::byte* bytes) const { std::free(bytes); }
};
// Page-aligned (O_DIRECT-safe) buffer.
struct AlignedBytes {
  explicit AlignedBytes(size_t bytes)
      : mem(static_cast<std::byte*>(std::aligned_alloc(4096, bytes))), size(bytes) {
    if (!mem) std::abort();
  }
  std::byte* data() const { return mem.get(); }
  std::unique_ptr<std::byte[], FreeBytes> mem;
  size_t size;
};

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

// Medians over repetitions, as MB/s of wall time and MB per CPU-second.
struct Medians {
  double write_wall = 0, write_cpu = 0, read_wall = 0, read_cpu = 0, ratio = 0;
};

Medians summarise(const std::vector<Sample>& samples, size_t bytes) {
  std::vector<double> ww, wc, rw, rc, ratio;
  for (const auto& s : samples) {
    ww.push_back(s.write.wall);
    wc.push_back(s.write.cpu);
    rw.push_back(s.read.wall);
    rc.push_back(s.read.cpu);
    ratio.push_back(s.ratio);
  }
  const auto mb = static_cast<double>(bytes) / 1e6;
  return {mb / median(ww), mb / median(wc), mb / median(rw), mb / median(rc), median(ratio)};
}

struct Row {
  std::string data;
  unsigned threads;
  Algorithm algorithm;
  Medians ours;
  std::optional<Medians> kernel;
};

std::string fmt_ratio(double ratio) {
  if (std::isinf(ratio)) return "inf";
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", ratio);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 64;
  int reps = 5;
  unsigned max_threads = 2;
  std::vector<std::string> sets = {"zeros", "text", "random", "mixed"};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mib" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (arg == "--threads" && i + 1 < argc) {
      max_threads = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (arg == "--data" && i + 1 < argc) {
      sets.clear();
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) sets.push_back(item);
    } else {
      std::fprintf(
          stderr,
          "usage: %s [--mib N] [--reps N] [--threads N] [--data zeros,text,random,mixed,FILE]\n",
          argv[0]);
      return 2;
    }
  }
  if (mib == 0 || reps < 1 || max_threads < 1 || max_threads > 128) {
    std::fprintf(stderr, "--mib, --reps and --threads must be positive (threads <= 128)\n");
    return 2;
  }
  const size_t bytes = mib << 20;
  std::string skip = kernel_unavailable();
  std::optional<KernelZramGuard> guard;
  if (skip.empty()) guard.emplace();
  if (!skip.empty()) std::printf("anchor skipped: %s\n", skip.c_str());

  std::vector<Row> rows;
  int failures = 0;
  for (const auto& name : sets) {
    auto generated = pepita::zram::make_dataset(name, bytes);
    if (!generated) {
      std::fprintf(stderr, "%s\n", generated.error().to_string().c_str());
      return 1;
    }
    AlignedBytes data(bytes), back(bytes);
    std::memcpy(data.data(), generated->data(), bytes);
    for (unsigned threads = 1; threads <= max_threads; threads *= 2) {
      std::vector<Sample> kernel;
      std::string why;
      if (skip.empty()) {
        for (int r = 0; r < reps && why.empty(); ++r)
          if (auto s = run_kernel(data, back, threads, why)) kernel.push_back(*s);
        if (!why.empty()) {
          std::printf("anchor skipped: %s\n", why.c_str());
          skip = why;
          kernel.clear();
        }
      }
      for (Algorithm algorithm : {Algorithm::Lz4, Algorithm::Zstd}) {
        if (algorithm == Algorithm::Zstd && threads != 1) continue;
        std::vector<Sample> ours;
        for (int r = 0; r < reps; ++r) {
          std::string our_why;
          auto s = run_ours(data, back, algorithm, threads, our_why);
          if (!s) {
            std::fprintf(stderr, "ours failed on %s: %s\n", name.c_str(), our_why.c_str());
            ++failures;
            break;
          }
          ours.push_back(*s);
        }
        if (ours.size() != static_cast<size_t>(reps)) continue;
        rows.push_back(
            {name, threads, algorithm, summarise(ours, bytes),
             kernel.empty() ? std::nullopt : std::optional<Medians>(summarise(kernel, bytes))});
      }
    }
  }

  auto cell = [](const std::optional<Medians>& m, double Medians::*field) {
    if (!m) return std::string("-");
    if (field == &Medians::ratio) return fmt_ratio((*m).*field);
    return std::to_string(static_cast<long>((*m).*field));
  };
  // Time ratio ours/kernel = kernel throughput / our throughput (< 1: ours faster).
  auto time_ratio = [](const Medians& o, const std::optional<Medians>& k, double Medians::*field) {
    return k ? fmt_ratio((*k).*field / o.*field) : std::string("-");
  };
  std::printf(
      "\nzram, %zu MiB per data set, %d reps, medians, %zu KiB requests. Anchor: Linux "
      "zram (lz4) on /dev/zram0 via O_DIRECT, same data, same process.\n",
      mib, reps, kChunk / 1024);
  std::printf(
      "\n[1] Compression ratio (orig_data_size / mem_used_total, r/k = ours / kernel's) "
      "and CPU cost on 1 queue (MB per CPU-second; t/k = our CPU time / kernel's)\n");
  std::printf("%-7s %-5s | %7s %7s %7s | %9s %9s %6s | %9s %9s %6s\n", "data", "ours", "ratio",
              "kernel", "r/k", "wr MB/cs", "kernel", "t/k", "rd MB/cs", "kernel", "t/k");
  for (const auto& row : rows) {
    if (row.threads != 1) continue;
    const Medians& o = row.ours;
    std::string rk = "-";
    if (row.kernel)
      rk = std::isinf(o.ratio) && std::isinf(row.kernel->ratio)
               ? "1.00"
               : fmt_ratio(o.ratio / row.kernel->ratio);
    std::printf("%-7s %-5s | %7s %7s %7s | %9.0f %9s %6s | %9.0f %9s %6s\n", row.data.c_str(),
                pepita::zram::algorithm_name(row.algorithm), fmt_ratio(o.ratio).c_str(),
                cell(row.kernel, &Medians::ratio).c_str(), rk.c_str(), o.write_cpu,
                cell(row.kernel, &Medians::write_cpu).c_str(),
                time_ratio(o, row.kernel, &Medians::write_cpu).c_str(), o.read_cpu,
                cell(row.kernel, &Medians::read_cpu).c_str(),
                time_ratio(o, row.kernel, &Medians::read_cpu).c_str());
  }
  std::printf(
      "\n[2] Wall-clock throughput by queues = threads (MB/s; t/k = our time / kernel's)\n");
  std::printf("%-7s %-3s %-5s | %9s %9s %6s | %9s %9s %6s\n", "data", "thr", "ours", "wr MB/s",
              "kernel", "t/k", "rd MB/s", "kernel", "t/k");
  for (const auto& row : rows) {
    const Medians& o = row.ours;
    std::printf("%-7s %-3u %-5s | %9.0f %9s %6s | %9.0f %9s %6s\n", row.data.c_str(), row.threads,
                pepita::zram::algorithm_name(row.algorithm), o.write_wall,
                cell(row.kernel, &Medians::write_wall).c_str(),
                time_ratio(o, row.kernel, &Medians::write_wall).c_str(), o.read_wall,
                cell(row.kernel, &Medians::read_wall).c_str(),
                time_ratio(o, row.kernel, &Medians::read_wall).c_str());
  }
  if (!skip.empty()) std::printf("anchor skipped: %s\n", skip.c_str());
  return failures == 0 ? 0 : 1;
}
