// bench/pool: process and function task throughput.
//  1. N `/bin/true` process tasks through pepita's Pool, through the `pepita run` CLI (job file
//     with `count = N`, journal on), through `xargs -P` and through GNU `parallel`, all at the
//     same parallelism P (default: online CPUs). GNU parallel runs fewer tasks (it manages
//     ~50-300 tasks/s) and is compared by rate.
//  2. 10^6 tiny function tasks through the Pool (Cpu backend on the work-stealing scheduler),
//     with oneTBB's task_group running the same closures as the anchor.
// Prints one table: workload, ours, anchor, ratio ours/anchor (time per task), medians of REPS.
// Usage: bench_pool_throughput [N=4000] [REPS=3] [FUNCTION_TASKS=1000000]; N=10000 is the
// issue's workload (about 3 minutes on a busy 2-core box, so not the default).
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "pepita/pool/pool.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using pepita::pool::Pool;
using pepita::pool::Task;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds for a shell pipeline; -1 when it fails.
double time_shell(const std::string& cmd) {
  const auto t0 = Clock::now();
  const int rc = std::system(cmd.c_str());
  const double s = since(t0);
  return (rc == 0) ? s : -1;
}

double pool_processes(std::size_t n, std::size_t parallel) {
  auto pool = Pool::builder().process_slots(parallel).cpu_workers(1).retain_results(false).build();
  if (!pool) {
    std::fprintf(stderr, "pool: %s\n", pool.error().message().c_str());
    std::exit(1);
  }
  std::vector<Task> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) tasks.push_back(Task::binary("/bin/true").build().value());
  const auto t0 = Clock::now();
  if (!pool->submit_all(std::move(tasks))) std::exit(1);
  pool->wait_idle();
  const double s = since(t0);
  if (pool->stats().succeeded != n) {
    std::fprintf(stderr, "pool: only %llu of %zu succeeded\n",
                 static_cast<unsigned long long>(pool->stats().succeeded), n);
    std::exit(1);
  }
  return s;
}

double pool_functions(std::size_t n, unsigned workers) {
  auto pool = Pool::builder().cpu_workers(workers).process_slots(1).retain_results(false).build();
  if (!pool) std::exit(1);
  std::atomic<std::uint64_t> sum{0};
  std::vector<Task> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    tasks.push_back(
        Task::function([&sum, i] { sum.fetch_add(i, std::memory_order_relaxed); }).build().value());
  }
  const auto t0 = Clock::now();
  for (auto& t : tasks) {
    if (!pool->submit(std::move(t))) std::exit(1);
  }
  pool->wait_idle();
  const double s = since(t0);
  if (sum.load() != n * (n - 1) / 2) std::exit(1);
  return s;
}

double tbb_functions(std::size_t n, unsigned workers) {
  std::atomic<std::uint64_t> sum{0};
  tbb::task_arena arena(static_cast<int>(workers));
  const auto t0 = Clock::now();
  arena.execute([&] {
    tbb::task_group g;
    for (std::size_t i = 0; i < n; ++i) {
      g.run([&sum, i] { sum.fetch_add(i, std::memory_order_relaxed); });
    }
    g.wait();
  });
  const double s = since(t0);
  if (sum.load() != n * (n - 1) / 2) std::exit(1);
  return s;
}

void row(const char* workload, double ours_rate, double anchor_rate, const char* anchor) {
  // Ratio of time per task, ours/anchor: below 1 means pepita is faster.
  std::printf("%-44s %12.0f/s %12.0f/s  %-16s %6.2f\n", workload, ours_rate, anchor_rate, anchor,
              anchor_rate / ours_rate);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 4000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::size_t fn_tasks = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1000000;
  const auto cpus = static_cast<std::size_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  const std::size_t par = cpus;
  const std::size_t parallel_n = std::max<std::size_t>(n / 40, 50);

  const fs::path exe = fs::read_symlink("/proc/self/exe");
  const fs::path cli = exe.parent_path().parent_path() / "tools" / "pepita" / "pepita";
  const bool have_cli = fs::exists(cli);
  const bool have_parallel = std::system("parallel --version > /dev/null 2>&1") == 0;
  const fs::path tmp =
      fs::temp_directory_path() / ("pepita-bench-pool-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const fs::path job = tmp / "true.toml";
  std::ofstream(job) << "[pool]\nprocess_slots = " << par
                     << "\n[[task]]\nname = \"t\"\ncount = " << n << "\ncommand = \"/bin/true\"\n";

  std::printf(
      "bench/pool: %zu x /bin/true at parallelism %zu, %d reps (medians); GNU parallel "
      "runs %zu tasks\n",
      n, par, reps, parallel_n);
  std::vector<double> t_pool, t_cli, t_xargs, t_par, t_fn, t_tbb;
  const std::string xargs =
      "seq " + std::to_string(n) + " | xargs -P " + std::to_string(par) + " -n 1 /bin/true";
  const std::string gnu =
      "seq " + std::to_string(parallel_n) + " | parallel -j " + std::to_string(par) + " /bin/true";
  const std::string run_cli = cli.string() + " run --quiet --state-dir " +
                              (tmp / "state").string() + " " + job.string() + " > /dev/null";
  for (int r = 0; r < reps; ++r) {  // interleaved, so machine noise hits every contestant alike
    t_pool.push_back(pool_processes(n, par));
    if (have_cli) t_cli.push_back(time_shell(run_cli));
    t_xargs.push_back(time_shell(xargs));
    if (have_parallel) t_par.push_back(time_shell(gnu));
    t_fn.push_back(pool_functions(fn_tasks, static_cast<unsigned>(cpus)));
    t_tbb.push_back(tbb_functions(fn_tasks, static_cast<unsigned>(cpus)));
  }
  fs::remove_all(tmp);

  const double dn = static_cast<double>(n);
  const double pool_rate = dn / median(t_pool);
  const double xargs_rate = dn / median(t_xargs);
  std::printf("\n%-44s %14s %14s  %-16s %6s\n", "workload", "ours", "anchor", "anchor is", "ratio");
  row("/bin/true x N, Pool (library)", pool_rate, xargs_rate, "xargs -P");
  if (have_cli)
    row("/bin/true x N, pepita run (journal on)", dn / median(t_cli), xargs_rate, "xargs -P");
  if (have_parallel) {
    const double par_rate = static_cast<double>(parallel_n) / median(t_par);
    row("/bin/true x N, Pool (library)", pool_rate, par_rate, "GNU parallel");
    if (have_cli)
      row("/bin/true x N, pepita run (journal on)", dn / median(t_cli), par_rate, "GNU parallel");
  }
  row("10^6 tiny functions, Pool (cpu backend)", static_cast<double>(fn_tasks) / median(t_fn),
      static_cast<double>(fn_tasks) / median(t_tbb), "oneTBB task_group");
  std::printf(
      "\nratio = time per task ours/anchor (< 1: pepita faster). Goal on processes: <= 1 vs "
      "xargs -P, <= 0.1 vs GNU parallel.\n");
  return 0;
}
