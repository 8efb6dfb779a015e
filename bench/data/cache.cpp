// bench/data/cache: the result cache's costs (issue 24).
//  (a) cache check per task for 100k cached tasks, each with one small input and one output:
//      ResultCache::lookup on the fast path (every file unchanged, so the index answers from a
//      stat), wall time per task, one thread; goal < 20 us. Two policies, rounds alternated:
//      `pepita run`'s (StatPolicy::OncePerRun, a fresh open per round as each run is: the
//      binary all tasks share is stat'ed once) and the library default (every lookup stats).
//  (b) content hashing: pepita::sha256_file vs `sha256sum` on the same 1 GiB file, page cache
//      warm, rounds alternated; MB/s, goal >= 1x.
// PEPITA_BENCH_TASKS and PEPITA_BENCH_HASH_MIB shrink the workloads for a quick look;
// PEPITA_BENCH_DIR picks the scratch directory (default: $TMPDIR).
#include "pepita/pool/cache.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/core/sha256.hpp"

namespace {

namespace fs = std::filesystem;
using namespace pepita;

std::size_t env_size(const char* name, std::size_t fallback) {
  if (const char* v = std::getenv(name)) {
    const long long n = std::atoll(v);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  return fallback;
}

void write_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) std::exit(1);
  ::close(fd);
}

}  // namespace

int main() {
  const std::string base = [] {
    const char* d = std::getenv("PEPITA_BENCH_DIR");
    return d ? std::string(d) : fs::temp_directory_path().string();
  }();
  const std::string dir = base + "/pepita-bench-cache-" + std::to_string(::getpid());
  fs::create_directories(dir + "/files");
  const std::size_t n = env_size("PEPITA_BENCH_TASKS", 100'000);
  const int rounds = bench::rounds(5);
  bench::Table table("bench/data/cache: result-cache check and file hashing");

  // ---- (a) cache check per task ----
  {
    std::vector<task::Task> tasks;
    tasks.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string id = std::to_string(i);
      write_file(dir + "/files/in-" + id + ".txt", "input of task " + id + "\n");
      write_file(dir + "/files/out-" + id + ".txt", "output of task " + id + "\n");
      tasks.push_back(task::Task::binary("/bin/true")
                          .name("t-" + id)
                          .args({id})
                          .cwd(dir + "/files")
                          .inputs({"in-" + id + ".txt"})
                          .outputs({"out-" + id + ".txt"})
                          .build()
                          .value());
    }
    auto cache = pool::ResultCache::open(dir + "/cache").value();
    for (const auto& t : tasks) {
      auto l = cache->lookup(t);
      auto r = executor::ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
      if (!cache->store(t, l, r)) std::exit(1);
    }
    // Past the index's "racily clean" margin, then one pass that indexes every file.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::size_t hits = 0;
    for (const auto& t : tasks) hits += cache->lookup(t).hit ? 1 : 0;
    if (hits != n) {
      std::fprintf(stderr, "warm-up: %zu of %zu hits\n", hits, n);
      return 1;
    }
    cache->flush_index();
    // Each round, alternated: the library's default policy on the warm cache (every lookup
    // stats the binary, the input and the output), and one `pepita run`'s policy (OncePerRun):
    // a fresh open per round, as each run is, so the shared binary is stat'ed once per run and
    // each task's own files once.
    std::vector<double> us_per_task, cpu_us_per_task, run_us, run_cpu_us;
    auto check_all = [&](pool::ResultCache& c, std::vector<double>& wall,
                         std::vector<double>& cpu) {
      std::size_t h = 0;
      const auto cost = bench::cost_of([&] {
        for (const auto& t : tasks) h += c.lookup(t).hit ? 1 : 0;
      });
      wall.push_back(cost.wall * 1e6 / static_cast<double>(n));
      cpu.push_back(cost.cpu * 1e6 / static_cast<double>(n));
      return h == n;
    };
    for (int r = 0; r < rounds; ++r) {
      auto run = pool::ResultCache::open(dir + "/cache", {.stats = pool::StatPolicy::OncePerRun});
      if (!run) return 1;
      const bool every_first = r % 2 == 0;
      if (every_first && !check_all(*cache, us_per_task, cpu_us_per_task)) return 1;
      if (!check_all(**run, run_us, run_cpu_us)) return 1;
      if (!every_first && !check_all(*cache, us_per_task, cpu_us_per_task)) return 1;
    }
    // A fresh process's view: the index loaded from files.idx, then the same check.
    std::vector<double> cold_open;
    for (int r = 0; r < rounds; ++r) {
      const double t0 = bench::wall_s();
      auto again = pool::ResultCache::open(dir + "/cache").value();
      std::size_t h = 0;
      for (const auto& t : tasks) h += again->lookup(t).hit ? 1 : 0;
      const double s = bench::wall_s() - t0;
      if (h != n) return 1;
      cold_open.push_back(s * 1e6 / static_cast<double>(n));
    }
    // As the pool checks: lookups on several threads at once (CachingExecutor's workers).
    const unsigned threads = std::max(2u, std::thread::hardware_concurrency());
    std::vector<double> parallel;
    for (int r = 0; r < rounds; ++r) {
      std::atomic<std::size_t> h{0};
      const double t0 = bench::wall_s();
      std::vector<std::thread> pool;
      for (unsigned k = 0; k < threads; ++k) {
        pool.emplace_back([&, k] {
          std::size_t mine = 0;
          for (std::size_t i = k; i < n; i += threads) mine += cache->lookup(tasks[i]).hit ? 1 : 0;
          h += mine;
        });
      }
      for (auto& t : pool) t.join();
      const double s = bench::wall_s() - t0;
      if (h != n) return 1;
      parallel.push_back(s * 1e6 / static_cast<double>(n));
    }
    table.row(
        std::to_string(n) + " cached tasks: check/task, " + std::to_string(threads) + " threads",
        "-", bench::Clock::wall, "us", parallel, {}, bench::Kind::time,
        "wall per task, lookups in parallel as the pool runs them");
    table.row(std::to_string(n) + " cached tasks: check/task, pepita run", "-", bench::Clock::wall,
              "us", run_us, {}, bench::Kind::time,
              std::string("stat once per run; goal < 20 us (one thread): ")
                  .append(bench::median(run_us) < 20.0 ? "met" : "MISSED"));
    table.row(std::to_string(n) + " cached tasks: check/task, pepita run", "-",
              bench::Clock::thread_cpu, "us", run_cpu_us, {}, bench::Kind::time,
              "the same rounds' CPU time (user + system): the cost without the machine's load");
    table.row(std::to_string(n) + " cached tasks: check/task, every lookup", "-",
              bench::Clock::wall, "us", us_per_task, {}, bench::Kind::time,
              "the library's default: each lookup stats binary, input and output");
    table.row(std::to_string(n) + " cached tasks: check/task, every lookup", "-",
              bench::Clock::thread_cpu, "us", cpu_us_per_task, {}, bench::Kind::time,
              "the same rounds' CPU time");
    table.row(std::to_string(n) + " cached tasks: open+check/task", "-", bench::Clock::wall, "us",
              cold_open, {}, bench::Kind::time, "index loaded from files.idx");
  }

  // ---- (b) hashing speed vs sha256sum ----
  {
    const std::size_t mib = env_size("PEPITA_BENCH_HASH_MIB", 1024);
    const std::string big = dir + "/big.bin";
    {
      std::string block(1 << 20, '\0');
      std::uint64_t x = 0x9e3779b97f4a7c15ull;
      const int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      for (std::size_t m = 0; m < mib; ++m) {
        for (std::size_t i = 0; i < block.size(); i += 8) {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          std::memcpy(&block[i], &x, 8);
        }
        if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
          return 1;
        }
      }
      ::close(fd);
    }
    const std::string ours_hex = sha256_file(big).value();  // warms the page cache
    const std::string cmd = "sha256sum " + big + " > " + dir + "/sum.txt";
    if (std::system(cmd.c_str()) != 0) return 1;
    std::ifstream sum(dir + "/sum.txt");
    std::string theirs_hex;
    sum >> theirs_hex;
    if (theirs_hex != ours_hex) {
      std::fprintf(stderr, "hash mismatch: ours %s, sha256sum %s\n", ours_hex.c_str(),
                   theirs_hex.c_str());
      return 1;
    }
    const double mb = static_cast<double>(mib) * 1048576.0 / 1e6;
    auto [ours, theirs] = bench::alternate(
        rounds,
        [&] {
          const double t0 = bench::wall_s();
          if (!sha256_file(big)) std::exit(1);
          return mb / (bench::wall_s() - t0);
        },
        [&] {
          const double t0 = bench::wall_s();
          if (std::system(cmd.c_str()) != 0) std::exit(1);
          return mb / (bench::wall_s() - t0);
        });
    table.row("sha256 of a " + std::to_string(mib) + " MiB file (warm)", "sha256sum",
              bench::Clock::wall, "MB/s", ours, theirs, bench::Kind::rate, "goal >= 1x");
  }
  table.print();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
