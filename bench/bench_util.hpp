#pragma once
// Shared by every benchmark under bench/: clocks, alternated rounds of ours and the anchor (the
// order rotates each round — AB BA AB … — so drift in machine load hits both alike), median and
// min–max over rounds, and the one table every bench prints, which names for each figure the
// clock it was taken on (wall, or CPU time of the thread or of the process).

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pepita::bench {

// ---- clocks (seconds) ----

inline double wall_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double clock_s(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// CPU time of the calling thread (user + system, syscalls included): on a shared machine, the
// time the thread actually ran, whatever the neighbours took from the core.
inline double thread_cpu_s() { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

// CPU time of the whole process, every thread (the kernel's work done on our behalf in syscall
// context included).
inline double process_cpu_s() { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

// Wall and CPU seconds of one call of `fn`.
struct Cost {
  double wall = 0, cpu = 0;
};
template <typename F>
Cost cost_of(F&& fn, bool process_cpu = false) {
  const double c0 = process_cpu ? process_cpu_s() : thread_cpu_s();
  const double t0 = wall_s();
  fn();
  return {wall_s() - t0, (process_cpu ? process_cpu_s() : thread_cpu_s()) - c0};
}

// ---- statistics ----

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size()));
  return v[std::min(v.size() - 1, i)];
}

struct Spread {
  double median = 0, min = 0, max = 0;
  std::size_t n = 0;
};

inline Spread spread(const std::vector<double>& v) {
  if (v.empty()) return {};
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return {median(v), *lo, *hi, v.size()};
}

// Element-wise transform of a series (seconds -> ns per op, -> MB/s, ...).
template <typename F>
std::vector<double> map(const std::vector<double>& v, F&& f) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double x : v) out.push_back(f(x));
  return out;
}

// ---- alternated rounds ----

/// The number of rounds: `fallback` (>= 5 in every bench), or PEPITA_BENCH_ROUNDS when set (a
/// quick look while developing; the published tables use the defaults).
inline int rounds(int fallback) {
  if (const char* env = std::getenv("PEPITA_BENCH_ROUNDS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return fallback;
}

/// Runs every contestant once per round for `rounds` rounds. Round r starts with contestant
/// r mod n and goes round from there (two contestants: AB BA AB …; three: ABC BCA CAB …), so
/// neither goes first, or right after the same neighbour, every time. Each contestant records
/// its own samples.
inline void rotate_rounds(int rounds, const std::vector<std::function<void()>>& contestants) {
  const std::size_t n = contestants.size();
  for (int r = 0; r < rounds; ++r)
    for (std::size_t k = 0; k < n; ++k) contestants[(static_cast<std::size_t>(r) + k) % n]();
}

/// Two contestants that each return one sample: returns {ours samples, anchor samples}, one per
/// round, alternated as rotate_rounds does.
template <typename A, typename B>
std::pair<std::vector<double>, std::vector<double>> alternate(int rounds, A&& ours, B&& anchor) {
  std::vector<double> o, a;
  rotate_rounds(rounds, {[&] { o.push_back(ours()); }, [&] { a.push_back(anchor()); }});
  return {std::move(o), std::move(a)};
}

// ---- the table ----

enum class Clock { wall, thread_cpu, process_cpu };

inline const char* clock_name(Clock c) {
  switch (c) {
    case Clock::wall: return "wall";
    case Clock::thread_cpu: return "cpu-thr";
    case Clock::process_cpu: return "cpu-proc";
  }
  return "?";
}

// Time figures (lower is better) or rates (higher is better); the ratio column is always time
// ours/anchor (< 1: ours faster), i.e. anchor/ours for rates.
enum class Kind { time, rate };

inline std::string num(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  } else if (a >= 1e5) {
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  } else if (a >= 1000) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else if (a >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

inline std::string cell(const Spread& s) {
  if (s.n == 0) return "-";
  if (s.n == 1) return num(s.median);
  return num(s.median) + " [" + num(s.min) + "-" + num(s.max) + "]";
}

/// One table per bench: workload, anchor, clock, unit, ours and anchor as median [min-max] over
/// rounds, ratio (time ours/anchor, from the medians), and a free column for what a row needs
/// besides (p99, GFLOP/s, error). Rows without an anchor sample print "-".
class Table {
 public:
  explicit Table(std::string title) : title_(std::move(title)) {}

  void row(std::string workload, std::string anchor, Clock clock, std::string unit,
           const std::vector<double>& ours, const std::vector<double>& theirs,
           Kind kind = Kind::time, std::string extra = {}) {
    const Spread o = spread(ours), a = spread(theirs);
    std::string ratio = "-";
    if (o.n > 0 && a.n > 0 && o.median > 0 && a.median > 0)
      ratio = num(kind == Kind::time ? o.median / a.median : a.median / o.median);
    rows_.push_back({std::move(workload), std::move(anchor), clock_name(clock), std::move(unit),
                     cell(o), cell(a), ratio, std::move(extra)});
    rounds_ = std::max(rounds_, std::max(o.n, a.n));
  }
  void note(std::string line) { notes_.push_back(std::move(line)); }

  void print(std::FILE* out = stdout) const {
    std::fprintf(out, "\n%s\n", title_.c_str());
    std::fprintf(
        out,
        "(%zu rounds, the contestants' order rotating each round: AB BA ...; median [min-max] "
        "over rounds; "
        "clock: wall = elapsed, cpu-thr / cpu-proc = CPU time of the thread / process; "
        "o/a = time ours/anchor, < 1: ours faster)\n",
        rounds_);
    const Line head{"workload", "anchor", "clock", "unit", "ours", "anchor", "o/a", ""};
    std::size_t w[7] = {};
    widen(w, head);
    for (const Line& l : rows_) widen(w, l);
    print_line(out, w, head);
    for (const Line& l : rows_) print_line(out, w, l);
    for (const auto& n : notes_) std::fprintf(out, "  %s\n", n.c_str());
    std::fflush(out);
  }

 private:
  struct Line {
    std::string workload, anchor, clock, unit, ours, theirs, ratio, extra;
  };
  static void widen(std::size_t* w, const Line& l) {
    const std::string* f[7] = {&l.workload, &l.anchor, &l.clock, &l.unit,
                               &l.ours,     &l.theirs, &l.ratio};
    for (int i = 0; i < 7; ++i) w[i] = std::max(w[i], f[i]->size());
  }
  static void print_line(std::FILE* out, const std::size_t* w, const Line& l) {
    std::fprintf(out, "%-*s | %-*s | %-*s | %-*s | %*s | %*s | %*s%s%s\n", static_cast<int>(w[0]),
                 l.workload.c_str(), static_cast<int>(w[1]), l.anchor.c_str(),
                 static_cast<int>(w[2]), l.clock.c_str(), static_cast<int>(w[3]), l.unit.c_str(),
                 static_cast<int>(w[4]), l.ours.c_str(), static_cast<int>(w[5]), l.theirs.c_str(),
                 static_cast<int>(w[6]), l.ratio.c_str(), l.extra.empty() ? "" : " | ",
                 l.extra.c_str());
  }

  std::string title_;
  std::vector<Line> rows_;
  std::vector<std::string> notes_;
  std::size_t rounds_ = 0;
};

// One line on the machine's state: figures taken under load say so.
inline void print_load(std::FILE* out = stdout) {
  double load = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::fprintf(out,
               "# load average %.1f on %ld CPUs (wall figures include time other processes took "
               "from these cores; cpu figures do not)\n",
               load, ::sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace pepita::bench
