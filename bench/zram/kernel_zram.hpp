#pragma once
// Driving the kernel's zram (/dev/zram0 through sysfs and O_DIRECT) from a bench: attribute
// access, a guard that resets the device and restores its compressor on every exit path (Ctrl-C
// included), page-aligned buffers, the split of a data set into requests across threads, and the
// command line both benches take.
// Used by bench/zram/zram_vs_kernel.cpp and bench/zram/recompress.cpp.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pepita::bench::kzram {

inline constexpr size_t kChunk = 128 * 1024;  // bytes per request, both sides
inline constexpr const char* kSys = "/sys/block/zram0/";

inline std::optional<std::string> read_sys(const std::string& attr) {
  std::ifstream file(kSys + attr);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

inline bool write_sys(const std::string& attr, const std::string& value) {
  std::ofstream file(kSys + attr);
  if (!file) return false;
  file << value;
  file.flush();
  return static_cast<bool>(file);
}

/// Why /dev/zram0 cannot be driven, or empty when it can.
inline std::string unavailable() {
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

// The compressor to select again on exit, and the open device fd; plain globals so the signal
// handler can use them.
inline char g_original_algorithm[32] = {};
inline volatile std::sig_atomic_t g_zram_fd = -1;

inline void write_sys_raw(const char* attr, const char* value) {
  char path[96];
  std::snprintf(path, sizeof(path), "%s%s", kSys, attr);
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  [[maybe_unused]] const ssize_t n = ::write(fd, value, std::strlen(value));
  ::close(fd);
}

// Ctrl-C during a run must not leave /dev/zram0 configured: async-signal-safe calls only.
extern "C" inline void restore_on_signal(int) {
  if (g_zram_fd >= 0) ::close(g_zram_fd);
  write_sys_raw("reset", "1");
  if (g_original_algorithm[0] != 0) write_sys_raw("comp_algorithm", g_original_algorithm);
  ::_exit(130);
}

/// Restores the device on every exit path: reset, previous compressor selected again.
class Guard {
 public:
  Guard() {
    auto algorithms = read_sys("comp_algorithm").value_or("");
    const auto open = algorithms.find('['), close = algorithms.find(']');
    if (open != std::string::npos && close != std::string::npos)
      original_ = algorithms.substr(open + 1, close - open - 1);
    std::snprintf(g_original_algorithm, sizeof(g_original_algorithm), "%s", original_.c_str());
    std::signal(SIGINT, restore_on_signal);
    std::signal(SIGTERM, restore_on_signal);
  }
  ~Guard() {
    write_sys("reset", "1");
    if (!original_.empty()) write_sys("comp_algorithm", original_);
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  std::string original_;
};

/// Runs `op(thread, offset, len)` over `bytes` in kChunk pieces, split between `threads` threads
/// by contiguous ranges. False if any call failed.
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
/// Page-aligned (O_DIRECT-safe) buffer.
struct AlignedBytes {
  explicit AlignedBytes(size_t bytes)
      : mem(static_cast<std::byte*>(std::aligned_alloc(4096, bytes))), size(bytes) {
    if (!mem) std::abort();
  }
  std::byte* data() const { return mem.get(); }
  std::unique_ptr<std::byte[], FreeBytes> mem;
  size_t size;
};

/// The command line of the zram benches: --mib N --reps N --threads N --data a,b,FILE.
struct Args {
  size_t mib = 64;
  int reps = 5;
  unsigned threads = 1;
  std::vector<std::string> sets;
};

/// `defaults` overridden by argv; on bad input prints the usage (naming the default data sets) or
/// the range rule and returns nothing (the bench exits 2).
inline std::optional<Args> parse_args(int argc, char** argv, Args defaults) {
  Args a = std::move(defaults);
  std::string listed;
  for (const auto& s : a.sets) listed.append(s).append(",");
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mib" && i + 1 < argc) {
      a.mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--reps" && i + 1 < argc) {
      a.reps = std::atoi(argv[++i]);
    } else if (arg == "--threads" && i + 1 < argc) {
      a.threads = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (arg == "--data" && i + 1 < argc) {
      a.sets.clear();
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) a.sets.push_back(item);
    } else {
      std::fprintf(stderr, "usage: %s [--mib N] [--reps N] [--threads N] [--data %sFILE]\n",
                   argv[0], listed.c_str());
      return std::nullopt;
    }
  }
  if (a.mib == 0 || a.reps < 1 || a.threads < 1 || a.threads > 128) {
    std::fprintf(stderr, "--mib, --reps and --threads must be positive (threads <= 128)\n");
    return std::nullopt;
  }
  return a;
}

}  // namespace pepita::bench::kzram
