// bench/executor: what a sandbox costs per task (issue 23). Spawn-to-exit of /bin/true, one task
// at a time, through executor::ProcessExecutor with the task's sandbox none, standard and
// strict (task::SandboxPolicy), against two anchors doing the same work outside pepita: a plain
// posix_spawn + waitpid (no isolation: the floor any spawner pays) and Debian's bubblewrap
// building the same isolation (`bwrap --unshare-all --die-with-parent --ro-bind /usr /usr ...
// --proc /proc --dev /dev --tmpfs /tmp`, plus --share-net for standard). One process; every
// round runs each contestant's batch of TASKS spawns, the order rotating each round; the figure
// is wall time per task, median [min-max] over rounds, and CPU time per task (ours and our reaped
// children's, getrusage: the supervisor, the task, bwrap's processes; the kernel's workers, which
// tear namespaces down after the exit, are not in it). Goal of the issue: strict adds < 1 ms per
// task (wall) over none and is faster than bwrap.
// Below the table's head, strict taken apart: its parts switched on one at a time (user ns, mount
// ns with the minimal root, pid ns, ipc+uts, no_new_privs+seccomp, the loopback-only net ns, the
// work dir's tmpfs, the pids limit), each row against the one before, in the same rounds.
// Usage: bench_executor_sandbox [ROUNDS=9] [TASKS=50] [ONLY]
// ONLY (for profiling one contestant, e.g. with perf): run only the contestants whose name is
// exactly ONLY ("strict", "none", "bwrap-strict"...); the rows missing a side print "-".
#include "pepita/task/sandbox.hpp"

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/task/task.hpp"

extern char** environ;

namespace {

namespace bench = pepita::bench;
using pepita::executor::ExecutionResult;
using pepita::executor::ProcessExecutor;
using pepita::executor::Status;
using pepita::task::SandboxPolicy;
using pepita::task::Task;

constexpr const char* kTrue = "/bin/true";
constexpr const char* kBwrap = "/usr/bin/bwrap";

// Spawns argv and waits for it; false when it could not start or did not exit 0.
bool spawn_and_wait(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return false;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// bwrap's rendering of our sandbox: a fresh root of read-only system binds, /proc, /dev, a
// tmpfs /tmp, every namespace (the network one too unless `share_net`), dies with its parent.
std::vector<std::string> bwrap_args(bool share_net) {
  std::vector<std::string> a{kBwrap, "--unshare-all"};
  if (share_net) a.emplace_back("--share-net");
  for (const char* s : {"--die-with-parent",
                        "--new-session",
                        "--ro-bind",
                        "/usr",
                        "/usr",
                        "--symlink",
                        "usr/bin",
                        "/bin",
                        "--symlink",
                        "usr/lib",
                        "/lib",
                        "--symlink",
                        "usr/lib64",
                        "/lib64",
                        "--symlink",
                        "usr/sbin",
                        "/sbin",
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                        "--tmpfs",
                        "/tmp",
                        kTrue}) {
    a.emplace_back(s);
  }
  return a;
}

// One task at a time through the executor: start, wait for its completion.
class Sequential {
 public:
  explicit Sequential(ProcessExecutor& ex) : ex_(ex) {}
  bool run(const Task& t) {
    std::unique_lock lock(mu_);
    done_ = false;
    ok_ = false;
    lock.unlock();
    auto started = ex_.start(t, std::stop_token{}, [this](ExecutionResult r) {
      std::lock_guard l(mu_);
      ok_ = r.status == Status::Succeeded;
      if (!ok_ && error_.empty()) error_ = std::string(to_string(r.status)) + ": " + r.error;
      done_ = true;
      cv_.notify_one();
    });
    if (!started) {
      error_ = started.error().to_string();
      return false;
    }
    lock.lock();
    cv_.wait(lock, [this] { return done_; });
    return ok_;
  }
  const std::string& error() const { return error_; }

 private:
  ProcessExecutor& ex_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool ok_ = false;
  std::string error_;
};

// CPU seconds (user + system) of this process and of the children it has reaped: a task's
// supervisor and the task (the supervisor reaps it), posix_spawn's child, bwrap and its children.
double cpu_with_children_s() {
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
  };
  rusage self{}, kids{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &kids);
  return s(self.ru_utime) + s(self.ru_stime) + s(kids.ru_utime) + s(kids.ru_stime);
}

// Wall and CPU seconds per task of `batch` runs of `one`; counts failures.
bench::Cost per_task(int batch, const std::function<bool()>& one, int& failures) {
  const double c0 = cpu_with_children_s();
  const double t0 = bench::wall_s();
  for (int i = 0; i < batch; ++i) failures += one() ? 0 : 1;
  return {(bench::wall_s() - t0) / batch, (cpu_with_children_s() - c0) / batch};
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = bench::rounds(argc > 1 ? std::atoi(argv[1]) : 9);
  const int batch = argc > 2 ? std::max(1, std::atoi(argv[2])) : 50;
  bench::print_load();

  auto made = ProcessExecutor::create({.slots = 1, .kill_grace = std::chrono::milliseconds(500)});
  if (!made) {
    std::fprintf(stderr, "cannot create the process executor: %s\n",
                 made.error().to_string().c_str());
    return 1;
  }
  ProcessExecutor& ex = **made;
  Sequential seq(ex);
  auto task_with = [](SandboxPolicy p) {
    auto b = Task::binary(kTrue);
    if (p.enabled()) b.sandbox(std::move(p));
    return b.build().value();
  };
  const Task none = task_with(SandboxPolicy::none());
  const Task standard = task_with(SandboxPolicy::standard());
  const Task strict = task_with(SandboxPolicy::strict());
  // Where strict's time goes: its parts switched on one at a time, cumulatively (a custom
  // policy), from none up to strict itself. Each row's cost is its median minus the previous
  // row's; the same rounds, alternated with the rest.
  std::vector<std::pair<std::string, Task>> parts;
  {
    SandboxPolicy p;
    p.level = pepita::task::SandboxLevel::Custom;
    p.user_ns = true;
    parts.emplace_back("+user ns", task_with(p));
    p.mount_ns = true;
    parts.emplace_back("+mount ns, minimal root", task_with(p));
    p.pid_ns = true;
    parts.emplace_back("+pid ns", task_with(p));
    p.ipc_uts_ns = true;
    parts.emplace_back("+ipc, uts ns", task_with(p));
    p.no_new_privs = p.seccomp = true;
    parts.emplace_back("+no_new_privs, seccomp", task_with(p));
    p.network = pepita::task::SandboxNetwork::None;
    parts.emplace_back("+net ns (loopback only)", task_with(p));
    p.disk = SandboxPolicy::strict().disk;
    parts.emplace_back("+work dir tmpfs (disk)", task_with(p));
    p.max_processes = SandboxPolicy::strict().max_processes;
    parts.emplace_back("+pids limit (= strict)", task_with(p));
  }
  const bool have_bwrap = ::access(kBwrap, X_OK) == 0 && spawn_and_wait(bwrap_args(false));

  struct Series {
    const char* name;
    std::function<bool()> one;
    std::vector<double> samples;      // wall
    std::vector<double> cpu_samples;  // CPU, ours and reaped children's
    int failures = 0;
  };
  std::vector<Series> series;
  series.push_back({"posix_spawn", [] { return spawn_and_wait({kTrue}); }, {}, {}, 0});
  series.push_back({"none", [&] { return seq.run(none); }, {}, {}, 0});
  series.push_back({"standard", [&] { return seq.run(standard); }, {}, {}, 0});
  series.push_back({"strict", [&] { return seq.run(strict); }, {}, {}, 0});
  for (const auto& [name, t] : parts) {
    const Task* task = &t;
    series.push_back({name.c_str(), [&seq, task] { return seq.run(*task); }, {}, {}, 0});
  }
  if (have_bwrap) {
    series.push_back(
        {"bwrap-standard", [] { return spawn_and_wait(bwrap_args(true)); }, {}, {}, 0});
    series.push_back({"bwrap-strict", [] { return spawn_and_wait(bwrap_args(false)); }, {}, {}, 0});
  }
  if (argc > 3) {
    const std::string only = argv[3];
    std::erase_if(series, [&](const Series& s) { return only != s.name; });
    if (series.empty()) {
      std::fprintf(stderr, "no contestant is named '%s'\n", only.c_str());
      return 2;
    }
  }
  // A warm-up batch each, so the first round does not pay for cold caches alone.
  for (auto& s : series) (void)per_task(std::min(batch, 5), s.one, s.failures);
  for (auto& s : series) s.failures = 0;

  std::vector<std::function<void()>> contestants;
  for (auto& s : series) {
    contestants.push_back([&s, batch] {
      const bench::Cost c = per_task(batch, s.one, s.failures);
      s.samples.push_back(c.wall);
      s.cpu_samples.push_back(c.cpu);
    });
  }
  bench::rotate_rounds(rounds, contestants);

  auto us = [](const std::vector<double>& v) {
    return bench::map(v, [](double s) { return s * 1e6; });
  };
  auto find = [&](const char* name) -> const Series* {
    for (const auto& s : series)
      if (std::string(s.name) == name) return &s;
    return nullptr;
  };
  const std::vector<double> nothing;
  // A contestant's samples on one clock, in us per task.
  auto on = [&](bench::Clock clock, const char* name) {
    const Series* s = find(name);
    if (!s) return nothing;
    return us(clock == bench::Clock::wall ? s->samples : s->cpu_samples);
  };

  bench::Table table("spawn-to-exit of /bin/true, one task at a time, wall time per task (" +
                     std::to_string(batch) + " tasks per round)");
  const std::string workload = "ProcessExecutor, sandbox ";
  struct Versus {
    const char* ours;
    const char* anchor;
    const char* anchor_label;
  };
  const Versus rows[] = {{"none", "posix_spawn", "posix_spawn+waitpid"},
                         {"standard", "posix_spawn", "posix_spawn+waitpid"},
                         {"strict", "posix_spawn", "posix_spawn+waitpid"},
                         {"standard", "bwrap-standard", "bwrap --unshare-all --share-net"},
                         {"strict", "bwrap-strict", "bwrap --unshare-all"}};
  // Wall, then CPU time per task: what the machine's load does not inflate (the kernel
  // workers' share of a namespace's teardown excepted).
  for (const bench::Clock clock : {bench::Clock::wall, bench::Clock::process_cpu}) {
    const bool wall = clock == bench::Clock::wall;
    for (const Versus& v : rows) {
      table.row(workload + v.ours, v.anchor_label, clock, "us/task", on(clock, v.ours),
                on(clock, v.anchor));
    }
    const double added = bench::median(on(clock, "strict")) - bench::median(on(clock, "none"));
    std::string goal = std::string("strict adds ").append(bench::num(added));
    if (wall) {
      goal.append(" us/task; goal < 1000 us: ").append(added < 1000.0 ? "met" : "MISSED");
    } else {
      goal.append(" us CPU/task");
    }
    table.row(workload + "strict", "ProcessExecutor, sandbox none", clock, "us/task",
              on(clock, "strict"), on(clock, "none"), bench::Kind::time, goal);
    if (wall && have_bwrap) {
      const bool faster =
          bench::median(on(clock, "strict")) < bench::median(on(clock, "bwrap-strict"));
      table.note(std::string("goal: strict faster than bwrap --unshare-all: ")
                     .append(faster ? "met" : "MISSED"));
    }
  }
  const char* previous = "none";
  for (const auto& [name, t] : parts) {
    for (const bench::Clock clock : {bench::Clock::wall, bench::Clock::process_cpu}) {
      const double cost =
          bench::median(on(clock, name.c_str())) - bench::median(on(clock, previous));
      table.row(workload + "parts, " + name, std::string("the row above (") + previous + ")", clock,
                "us/task", on(clock, name.c_str()), on(clock, previous), bench::Kind::time,
                std::string("this part adds ")
                    .append(bench::num(cost))
                    .append(clock == bench::Clock::wall ? " us/task" : " us CPU/task"));
    }
    previous = name.c_str();
  }
  table.note("cpu-proc here: this process and the children it reaped (getrusage SELF + CHILDREN)");
  if (!have_bwrap)
    table.note(std::string(kBwrap) +
               " is missing or cannot run here: no bwrap rows (apt install bubblewrap)");
  for (const auto& s : series) {
    if (s.failures > 0) {
      table.note(std::string(s.name) + ": " + std::to_string(s.failures) + " tasks did not exit 0" +
                 (seq.error().empty() ? "" : " (first: " + seq.error() + ")"));
    }
  }
  table.print();
  ex.shutdown();
  return 0;
}
