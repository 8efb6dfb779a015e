// bench/pool: process tasks against their limit (issue 27, "Process tasks"). N `/bin/true` tasks at
// parallelism P (default 2) through
//   - a C loop of posix_spawn + waitpid, P children at a time: the limit, no bookkeeping at all;
//   - pepita's Pool with the process backend (library, no journal; building the pool is timed);
//   - `pepita run` of a job file with `count = N` and its journal on (its whole process timed,
//     a fresh state dir each round).
// Same binary, same N and P for each; rounds alternated (rotating order), medians [min-max]. Two
// figures per contestant: tasks/s on the wall clock, and CPU time per task of every process
// involved (this process plus its reaped descendants: the driver, the shell and CLI, each
// /bin/true), which a loaded shared machine disturbs far less than the wall clock.
// Goals: pepita run >= 0.95x the C loop's tasks/s, and >= 1x the Pool's.
// Usage: bench_pool_spawn_limit [N=1000] [ROUNDS=5] [P=2]; the CLI is found beside the bench
// (../tools/pepita/pepita) or named by PEPITA_CLI.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "pepita/pool/pool.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace pb = pepita::bench;
using Clock = std::chrono::steady_clock;
using pepita::pool::Pool;
using pepita::pool::Task;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU seconds of this process and of its reaped descendants so far.
double cpu_with_children() {
  rusage self{}, kids{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &kids);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; };
  return s(self.ru_utime) + s(self.ru_stime) + s(kids.ru_utime) + s(kids.ru_stime);
}

// Runs `fn` (seconds on the wall, or -1), recording the wall time and the CPU time.
template <typename F>
void measure(std::vector<double>& wall, std::vector<double>& cpu, F&& fn) {
  const double c0 = cpu_with_children();
  wall.push_back(fn());
  cpu.push_back(cpu_with_children() - c0);
}

// The limit: posix_spawn (glibc's CLONE_VM|CLONE_VFORK) and wait, `par` children at a time.
double c_loop(std::size_t n, std::size_t par) {
  char arg0[] = "true";
  char* argv[] = {arg0, nullptr};
  const auto t0 = Clock::now();
  std::size_t started = 0, done = 0, running = 0;
  while (done < n) {
    while (running < par && started < n) {
      pid_t pid;
      if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) return -1;
      ++running;
      ++started;
    }
    int status = 0;
    if (::waitpid(-1, &status, 0) < 0) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    --running;
    ++done;
  }
  return since(t0);
}

double pool_processes(std::size_t n, std::size_t par) {
  const auto t0 = Clock::now();  // building the pool is part of the cost
  auto pool = Pool::builder().process_slots(par).cpu_workers(1).retain_results(false).build();
  if (!pool) {
    std::fprintf(stderr, "pool: %s\n", pool.error().message().c_str());
    return -1;
  }
  std::vector<Task> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) tasks.push_back(Task::binary("/bin/true").build().value());
  if (!pool->submit_all(std::move(tasks))) return -1;
  pool->wait_idle();
  const double s = since(t0);
  return pool->stats().succeeded == n ? s : -1;
}

double time_shell(const std::string& cmd) {
  const auto t0 = Clock::now();
  const int rc = std::system(cmd.c_str());
  const double s = since(t0);
  return rc == 0 ? s : -1;
}

std::string goal_cell(const std::vector<double>& ours, const std::vector<double>& anchor,
                      double goal) {
  const double o = pb::median(ours), a = pb::median(anchor);
  const double x = a > 0 ? o / a : 0;
  char buf[96];
  std::snprintf(buf, sizeof buf, "goal >= %.2fx: %.2fx, %s", goal, x, x >= goal ? "met" : "MISSED");
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000;
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : pb::rounds(5);
  const std::size_t par =
      argc > 3 ? std::max<std::size_t>(1, std::strtoull(argv[3], nullptr, 10)) : 2;
  if (n == 0) {
    std::fprintf(stderr, "bench_pool_spawn_limit: N must be > 0\n");
    return 2;
  }

  const fs::path exe = fs::read_symlink("/proc/self/exe");
  const char* env_cli = std::getenv("PEPITA_CLI");
  const fs::path cli =
      env_cli ? fs::path(env_cli) : exe.parent_path().parent_path() / "tools" / "pepita" / "pepita";
  const bool have_cli = fs::exists(cli);
  const fs::path tmp =
      fs::temp_directory_path() / ("pepita-bench-spawn-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const fs::path job = tmp / "true.toml";
  std::ofstream(job) << "[pool]\nprocess_slots = " << par
                     << "\n[[task]]\nname = \"t\"\ncount = " << n << "\ncommand = \"/bin/true\"\n";
  const std::string run_cli = cli.string() + " run --quiet --state-dir " +
                              (tmp / "state").string() + " " + job.string() + " > /dev/null";

  pb::print_load();
  std::printf("bench/pool spawn_limit: %zu x /bin/true at parallelism %zu, %d rounds\n", n, par,
              rounds);
  std::vector<double> t_loop, t_pool, t_cli, c_loop_s, c_pool, c_cli;
  std::vector<std::function<void()>> contestants = {
      [&] { measure(t_loop, c_loop_s, [&] { return c_loop(n, par); }); },
      [&] { measure(t_pool, c_pool, [&] { return pool_processes(n, par); }); }};
  if (have_cli) {
    contestants.push_back([&] {
      fs::remove_all(tmp / "state");  // a fresh journal each round, not a resume
      measure(t_cli, c_cli, [&] { return time_shell(run_cli); });
    });
  }
  pb::rotate_rounds(rounds, contestants);
  fs::remove_all(tmp);
  for (const auto* t : {&t_loop, &t_pool, &t_cli}) {
    if (std::find(t->begin(), t->end(), -1.0) != t->end()) {
      std::fprintf(stderr, "bench/pool spawn_limit: a contestant failed\n");
      return 1;
    }
  }

  const auto rate = [n](double s) { return s > 0 ? static_cast<double>(n) / s : 0.0; };
  const auto loop_r = pb::map(t_loop, rate), pool_r = pb::map(t_pool, rate),
             cli_r = pb::map(t_cli, rate);
  const auto W = pb::Clock::wall;
  pb::Table table("process tasks at their limit (issue 27), /bin/true tasks/s");
  table.row("/bin/true x N, Pool (library, process backend)", "C posix_spawn+waitpid loop", W,
            "tasks/s", pool_r, loop_r, pb::Kind::rate, goal_cell(pool_r, loop_r, 0.95));
  if (have_cli) {
    table.row("/bin/true x N, pepita run (journal on)", "C posix_spawn+waitpid loop", W, "tasks/s",
              cli_r, loop_r, pb::Kind::rate, goal_cell(cli_r, loop_r, 0.95));
    table.row("/bin/true x N, pepita run (journal on)", "Pool (library, no journal)", W, "tasks/s",
              cli_r, pool_r, pb::Kind::rate, goal_cell(cli_r, pool_r, 1.0));
  }
  const auto per_task_us = [n](double s) { return s * 1e6 / static_cast<double>(n); };
  const auto P = pb::Clock::process_cpu;
  table.row("/bin/true x N, Pool (library, process backend)", "C posix_spawn+waitpid loop", P,
            "us CPU/task", pb::map(c_pool, per_task_us), pb::map(c_loop_s, per_task_us));
  if (have_cli) {
    table.row("/bin/true x N, pepita run (journal on)", "C posix_spawn+waitpid loop", P,
              "us CPU/task", pb::map(c_cli, per_task_us), pb::map(c_loop_s, per_task_us));
  } else {
    table.note("pepita CLI not found at " + cli.string() +
               " (build pepita_cli or set PEPITA_CLI): its rows are MISSING");
  }
  table.note("N = " + std::to_string(n) + " and parallelism " + std::to_string(par) +
             " for every contestant; the Pool's time includes building it, the CLI's its whole "
             "process (job parse, journal, exit)");
  table.note(
      "cpu-proc rows: user+system CPU of this process and every descendant it reaped "
      "(for pepita run: the shell, the CLI and its tasks), per task; no goal of their own");
  table.note("Goals (issue 27): pepita run >= 0.95x the C loop, >= 1x the Pool library (tasks/s)");
  table.print();
  return 0;
}
