// `pepita run JOB.toml`: loads and checks a job file, runs its tasks on the local pool with a live
// progress line (TTY) or log lines (not a TTY), then prints a summary table — or, with --json,
// one JSON object — and exits 0 when every task succeeded, 1 when one did not, 2 for a bad job
// file or usage, 128 + the signal when interrupted (130 SIGINT, 143 SIGTERM); see the --help
// footer for how a run stops. The journal in the state directory makes --resume skip
// tasks that already succeeded, also after a crash or Ctrl-C.
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "backends.hpp"
#include "command.hpp"
#include "dashboard_run.hpp"
#include "pepita/core/cgroup.hpp"
#include "pepita/core/format.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/executor/zero.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/slurm/slurm_executor.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "run_resources.hpp"
#include "stop_signals.hpp"

namespace pepita::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using pool::ExecutionResult;
using pool::Status;
using pool::Task;

struct RunOptions {
  std::string job;
  bool resume = false;
  bool json = false;
  bool quiet = false;
  bool check = false;
  bool no_journal = false;
  std::string state_dir;
  std::size_t jobs = 0;
  std::vector<std::string> workers;  // host:port of remote workers for backend = "remote" tasks
  std::string key_file;
  bool tls = false;          // --tls: remote connections inside TLS 1.3 (workers need --tls too)
  bool slurm = false;        // backend = "remote" tasks run on workers submitted as Slurm jobs
  double stop_timeout = -1;  // seconds from the first signal to a forced exit; <0: default
  slurm::SlurmOptions slurm_options;
  std::vector<std::string> slurm_flags;  // the --slurm sizing flags given (--nodes, ...)
  std::string resources;                 // --resources: overrides of the detected inventory
  std::string sandbox = "none";  // --sandbox: the sandbox of tasks that name none (issue 23)
  std::string journal_key;       // --journal-key: MAC the journal (issue 24)
  // Issue 25: --dashboard [ADDR], --dashboard-token, --dashboard-control, --report FILE.
  bool dashboard = false;
  dashboard::RunDashboardOptions watch;
  // issue 24: the result cache
  bool no_cache = false;     // --no-cache: run every task
  std::string cache_dir;     // --cache-dir: default <state_dir>/cache
  bool explain = false;      // --explain: one line per task saying why it ran or was cached
  bool zero_worker = false;  // --zero-worker: every task on the "zero" backend (issue 27)
};

/// This machine's inventory for the job's resource requests: detected, then --resources
/// applied. A detection failure matters only when a task asks for something (then it is the
/// run's error); nullopt means "place nothing": no task has a request and none was overridden.
Result<std::optional<task::Inventory>> local_inventory(const RunOptions& o, const pool::Job& job) {
  const bool asked = std::any_of(job.tasks.begin(), job.tasks.end(),
                                 [](const Task& t) { return !t.resources().empty(); });
  if (!asked && o.resources.empty()) return std::optional<task::Inventory>();
  auto host = task::Inventory::detect();
  if (!host) {
    return fail(host.error().code(),
                pepita::fmt("cannot detect this machine's CPUs, memory and GPUs for the tasks' "
                            "resource requests: {}",
                            host.error().message()));
  }
  if (!o.resources.empty()) {
    if (auto ok = host->apply_overrides(o.resources); !ok) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("--resources '{}': {}", o.resources, ok.error().message()));
    }
  }
  return std::optional<task::Inventory>(std::move(*host));
}

/// Ends what runs killed with SIGKILL left in their cgroups (pepita::reap_stale_cgroups; the
/// process executor does it too, silently) and says so on one line: "ended the tasks a killed
/// run left (pid 1234) and removed its cgroups". Quiet where cgroups are unusable.
void reap_killed_runs() {
  auto removed = reap_stale_cgroups();
  if (!removed || removed->empty()) return;
  std::vector<std::string> pids;  // from the names pepita-<pid>-<starttime>, once per run
  for (const auto& dir : *removed) {
    const std::string name = fs::path(dir).filename().string();
    const auto dash = name.find('-', 7);
    if (!name.starts_with("pepita-") || dash == std::string::npos) continue;
    std::string pid = name.substr(7, dash - 7);
    if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(std::move(pid));
  }
  std::string list;
  for (const auto& pid : pids) list.append(list.empty() ? "" : ", ").append(pid);
  const std::string line =
      pids.size() == 1
          ? pepita::fmt("ended the tasks a killed run (pid {}) left and removed its cgroups", list)
          : pepita::fmt("ended the tasks killed runs (pids {}) left and removed their cgroups",
                        list);
  std::fprintf(stderr, "pepita run: %s\n", line.c_str());
}

/// The Remote executor for `--worker` or `--slurm` (created by the pool builder, so its errors
/// are build()'s), or nullptr when neither was asked for.
Result<executor::ExecutorFactory> remote_executor(const RunOptions& o,
                                                  const std::string& state_dir) {
  if (o.slurm) {
    slurm::SlurmOptions options = o.slurm_options;
    options.tls = o.tls;
    // A run killed with SIGKILL cannot scancel its worker jobs: the next run in this state
    // directory (--resume) does.
    options.job_ids_file = state_dir + "/slurm-jobs";
    return slurm::workers(std::move(options));
  }
  if (o.workers.empty()) return nullptr;
  if (o.key_file.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "--worker needs --key FILE (the pre-shared key the workers use, mode 0600)");
  }
  auto key = PEPITA_TRY(transport::Key::from_file(o.key_file));
  transport::RemoteExecutorOptions options;
  options.remote.workers = o.workers;
  options.remote.key = std::move(key);
  options.remote.connection.tls = o.tls;
  // Named workers that stay unreachable (wrong address, key or --tls) fail the run, not hang it.
  options.remote.give_up_without_workers = std::chrono::seconds(30);
  options.ship_binaries = true;
  return transport::remote_workers(std::move(options));
}

/// What `pepita run` builds the backend `name` with: the "slurm" backend (tasks with backend =
/// "slurm") gets the --slurm sizing flags, --tls and the run's state directory (its job ids
/// file, so a run killed with SIGKILL has its worker jobs cancelled by the next); the others
/// their defaults.
Result<executor::BackendOptions> backend_options(const task::Backend& name, const RunOptions& o,
                                                 const std::string& state_dir) {
  executor::BackendOptions options;
  if (name != slurm::slurm_backend()) return options;
  const slurm::SlurmOptions& so = o.slurm_options;
  options.set("nodes", std::to_string(so.nodes));
  options.set("cpus_per_worker", std::to_string(so.cpus_per_worker));
  options.set("gpus", std::to_string(so.gpus));
  if (!so.partition.empty()) options.set("partition", so.partition);
  if (!so.time_limit.empty()) options.set("time_limit", so.time_limit);
  if (!so.account.empty()) options.set("account", so.account);
  if (!so.driver_address.empty()) options.set("driver_address", so.driver_address);
  std::string sbatch_args;
  for (const auto& arg : so.extra_sbatch_args) {
    if (arg.find(',') != std::string::npos) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("--sbatch-arg '{}': tasks with backend = \"slurm\" take sbatch "
                              "arguments without commas (use backend = \"remote\" with --slurm)",
                              arg));
    }
    if (!sbatch_args.empty()) sbatch_args += ',';
    sbatch_args += arg;
  }
  if (!sbatch_args.empty()) options.set("sbatch_args", sbatch_args);
  options.set("tls", o.tls ? "true" : "false");
  options.set("state_dir", state_dir);
  return options;
}

std::string self_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  return fs::path(std::string(buf, static_cast<std::size_t>(n))).parent_path().string();
}

// <tmp>/pepita-<uid>/<stem>-<hash of the job's absolute path>: stable across runs of the same
// job file (so --resume finds its journal), distinct between job files.
std::string default_state_dir(const std::string& job) {
  const char* tmp = std::getenv("TMPDIR");
  std::error_code ec;
  const std::string abs = fs::weakly_canonical(fs::absolute(job), ec).string();
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : abs) h = (h ^ c) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return (fs::path(tmp && *tmp ? tmp : "/tmp") / ("pepita-" + std::to_string(::getuid())) /
          (fs::path(abs).parent_path().filename().string() + "-" + fs::path(job).stem().string() +
           "-" + std::string(hex, 8)))
      .string();
}

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  const double s = std::chrono::duration<double>(d).count();
  std::snprintf(buf, sizeof buf, s < 10 ? "%.2fs" : "%.1fs", s);
  return buf;
}

const char* status_label(Status s) {
  switch (s) {
    case Status::Succeeded: return "ok";
    case Status::Failed: return "FAILED";
    case Status::Signaled: return "SIGNALED";
    case Status::TimedOut: return "TIMEOUT";
    case Status::LaunchFailed: return "NO-LAUNCH";
    case Status::Cancelled: return "CANCELLED";
    case Status::Skipped: return "SKIPPED";
    case Status::Rejected: return "REJECTED";
    case Status::OutOfMemory: return "OOM";
    case Status::Sandboxed: return "SANDBOX";
  }
  return "?";
}

// Progress shown while the job runs: a redrawn line on a TTY, one line per event otherwise.
class Progress {
 public:
  Progress(std::size_t total, bool tty, bool quiet) : total_(total), tty_(tty), quiet_(quiet) {
    if (tty_ && !quiet_) drawer_ = std::thread([this] { draw_loop(); });
  }
  ~Progress() { stop(); }

  void on_event(const pool::Event& e) {
    std::lock_guard lock(mu_);
    switch (e.kind) {
      case pool::Event::Kind::Started: running_.insert(e.id); break;
      case pool::Event::Kind::Retrying:
        running_.erase(e.id);
        if (!quiet_) {
          line("retry   " + e.name + " (attempt " + std::to_string(e.attempt) + " " +
               (e.result ? std::string(to_string(e.result->status)) + ": " + e.result->error
                         : std::string()) +
               "; next in " + seconds(e.retry_delay) + ")");
        }
        break;
      case pool::Event::Kind::Finished: {
        const ExecutionResult& r = *e.result;
        running_.erase(e.id);
        ++done_;
        if (!r.ok()) ++failed_;
        if (r.from_journal) ++replayed_;
        if (!quiet_ && (!tty_ || !r.ok())) {
          char head[32];
          std::snprintf(head, sizeof head, "[%*zu/%zu] ", digits(), done_, total_);
          std::string text = std::string(head) + status_label(r.status) + "  " + r.name + "  " +
                             (r.from_journal ? "(from journal)"
                              : r.from_cache ? "(cached)"
                                             : seconds(r.wall));
          if (!r.ok() && !r.error.empty()) text += "  " + r.error;
          line(text);
        }
        break;
      }
    }
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_all();
    if (drawer_.joinable()) drawer_.join();
    if (tty_ && !quiet_) {
      std::lock_guard lock(mu_);
      render();
      std::fputs("\n", stderr);
    }
  }

 private:
  int digits() const { return static_cast<int>(std::to_string(total_).size()); }

  // Under mu_. On a TTY, clear the progress line first and redraw it after.
  void line(const std::string& text) {
    if (tty_) std::fputs("\r\x1b[K", stderr);
    std::fprintf(stderr, "%s\n", text.c_str());
    if (tty_) render();
  }

  void render() {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const std::size_t ran = done_ - replayed_;
    const double rate = elapsed > 0 ? static_cast<double>(ran) / elapsed : 0;
    constexpr int kWidth = 28;
    const int filled = total_ ? static_cast<int>(kWidth * done_ / total_) : kWidth;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(kWidth, '.');
    char eta[32] = "--";
    if (rate > 0 && done_ < total_) {
      std::snprintf(eta, sizeof eta, "%.0fs", static_cast<double>(total_ - done_) / rate);
    } else if (done_ == total_) {
      std::snprintf(eta, sizeof eta, "0s");
    }
    std::fprintf(stderr, "\r\x1b[K[%s] %zu/%zu done  %zu failed  %zu running  %.1f/s  ETA %s",
                 bar.c_str(), done_, total_, failed_, running_.size(), rate, eta);
    std::fflush(stderr);
  }

  void draw_loop() {
    std::unique_lock lock(mu_);
    while (!stopped_) {
      render();
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::thread drawer_;
  const std::size_t total_;
  const bool tty_;
  const bool quiet_;
  bool stopped_ = false;
  std::size_t done_ = 0, failed_ = 0, replayed_ = 0;
  std::unordered_set<pool::TaskId> running_;
  const Clock::time_point start_ = Clock::now();
};

// Takes SIGINT, SIGTERM and SIGHUP (blocked in every thread) on its own thread. The first asks
// the run to stop — `stop` runs on a helper thread, so a cancellation that blocks cannot stall
// the watcher — and starts the stop deadline. A second signal, or the deadline passing before
// finish(), calls `force`, which reports, cleans up what it can and exits the process.
class SignalWatcher {
 public:
  struct Hooks {
    std::function<void()> stop;                                  // first signal
    std::function<void(int sig, const std::string& why)> force;  // must not return
  };

  // Blocks the signals now: create it before any thread, so every thread inherits the mask
  // (a thread that has them unblocked would drop a signal a non-interactive shell ignores).
  SignalWatcher() = default;
  ~SignalWatcher() { finish(); }

  void watch(std::chrono::nanoseconds deadline, Hooks hooks) {
    hooks_ = std::move(hooks);
    deadline_ = deadline;
    thread_ = std::thread([this] { loop(); });
  }

  // The run is over (its pool shut down): no more stopping or forcing. Later signals stay
  // pending until the process exits a moment later. Call before the pool is destroyed.
  void finish() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    if (thread_.joinable()) thread_.join();
    if (stopper_.joinable()) stopper_.join();
  }

  bool interrupted() const { return first_.load() != 0; }
  /// The first signal's number, 0 when none came.
  int signal() const { return first_.load(); }

 private:
  void loop() {
    using namespace std::chrono;
    Clock::time_point give_up = Clock::time_point::max();
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (done_) return;
      }
      const auto left = give_up - Clock::now();
      const auto tick =
          left < milliseconds(100) ? duration_cast<milliseconds>(left) + 1ms : milliseconds(100);
      const int sig = signals_.wait_for(std::max(tick, milliseconds(1)));
      if (sig != 0 && first_.load() == 0) {
        first_ = sig;
        give_up = Clock::now() + deadline_;
        std::fprintf(stderr,
                     "pepita run: %s: stopping every task (%s again to exit at once; giving up "
                     "after %s)\n",
                     sigabbrev(sig).c_str(), sig == SIGINT ? "Ctrl-C" : "a signal",
                     seconds(deadline_).c_str());
        stopper_ = std::thread(hooks_.stop);
      } else if (sig != 0) {
        force("second signal (" + sigabbrev(sig) + ")");
      } else if (Clock::now() >= give_up) {
        force("the stop deadline of " + seconds(deadline_) + " passed");
      }
    }
  }

  void force(const std::string& why) {
    std::lock_guard lock(mu_);  // finish() waits: the pool stays alive until we exit
    if (done_) return;
    hooks_.force(first_.load(), why);
  }

  static std::string sigabbrev(int sig) {
    const char* a = ::sigabbrev_np(sig);
    return a ? std::string("SIG") + a : "signal " + std::to_string(sig);
  }

  StopSignals signals_;  // first member: blocks the signals before anything else exists
  Hooks hooks_;
  std::chrono::nanoseconds deadline_{0};
  std::mutex mu_;
  bool done_ = false;
  std::atomic<int> first_{0};
  std::thread thread_;
  std::thread stopper_;
};

// Exit status of a run ended by `sig`: 128 + its number, as a shell reports a process killed by
// it (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
int interrupted_status(int sig) { return 128 + sig; }

nlohmann::json result_json(const ExecutionResult& r, const Requested& requested,
                           std::string_view sandbox) {
  return {{"name", r.name},
          {"status", to_string(r.status)},
          {"sandbox", sandbox},  // the level it ran in; a "sandbox" status has its reason in error
          {"attempts", r.attempts},
          {"exit_code", r.exit_code},
          {"signal", r.signal},
          {"wall_s", std::chrono::duration<double>(r.wall).count()},
          {"cpu_s", std::chrono::duration<double>(r.cpu).count()},
          {"max_rss_kb", r.max_rss_kb},
          {"from_journal", r.from_journal},
          {"from_cache", r.from_cache},
          {"cache_reason", r.cache_reason},
          {"stdout", r.stdout_data},
          {"stderr", r.stderr_data},
          {"stdout_bytes", r.stdout_bytes},
          {"error", r.error},
          {"requested", requested_json(requested)},
          {"given", given_json(r)},
          {"used", used_json(r)}};
}

void print_summary(const std::vector<ExecutionResult>& results) {
  std::size_t width = 4;
  for (const auto& r : results) width = std::max(width, r.name.size());
  width = std::min<std::size_t>(width, 40);
  const bool all = results.size() <= 60;
  std::printf("%-*s  %-9s  %8s  %8s  %s\n", static_cast<int>(width), "task", "status", "attempts",
              "wall", "exit");
  std::size_t hidden = 0;
  for (const auto& r : results) {
    if (!all && r.ok()) {
      ++hidden;
      continue;
    }
    std::string exit = r.signal ? "sig " + std::to_string(r.signal)
                                : (r.exit_code >= 0 ? std::to_string(r.exit_code) : "-");
    std::printf("%-*s  %-9s  %8u  %8s  %s%s\n", static_cast<int>(width), r.name.c_str(),
                status_label(r.status), r.attempts,
                r.from_journal ? "journal"
                : r.from_cache ? "cached"
                               : seconds(r.wall).c_str(),
                exit.c_str(), r.ok() || r.error.empty() ? "" : ("  " + r.error).c_str());
  }
  if (hidden) std::printf("... and %zu more tasks that succeeded\n", hidden);
}

// --explain: why each task ran or was reused (issue 24), one line per task.
void print_explain(const std::vector<ExecutionResult>& results) {
  std::size_t width = 4;
  for (const auto& r : results) width = std::max(width, r.name.size());
  width = std::min<std::size_t>(width, 40);
  std::printf("\n%-*s  %s\n", static_cast<int>(width), "task", "why");
  for (const auto& r : results) {
    const std::string why = r.from_journal                ? "from journal (--resume)"
                            : !r.cache_reason.empty()     ? r.cache_reason
                            : r.status == Status::Skipped ? "skipped: " + r.error
                                                          : "ran: no result cache (--no-cache)";
    std::printf("%-*s  %s\n", static_cast<int>(width), r.name.c_str(), why.c_str());
  }
}

int run_job(const RunOptions& o) {
  // Before anything that may start a thread (executors, the pool): all inherit the mask.
  SignalWatcher signals;
  pool::JobOptions jo;
  jo.pepita_dir = self_dir();
  jo.state_dir = o.state_dir.empty() ? default_state_dir(o.job) : o.state_dir;
  // The backends this binary links, plus "remote" when --worker or --slurm configured it.
  // microvm tasks run a static ELF guest in a KVM micro-VM; gpu tasks a compute kernel on the
  // best Vulkan device (lavapipe without a GPU, see pepita/gpu/gpu_executor.hpp).
  executor::Registry backends;
  if (auto linked = register_linked_backends(backends); !linked) {
    std::fprintf(stderr, "pepita run: %s\n", linked.error().message().c_str());
    return kExitFailure;
  }
  // A job file may name the built-in backends (one this binary lacks fails at submit, saying
  // so) and any other registered one.
  jo.backends.assign(task::kBuiltinBackends.begin(), task::kBuiltinBackends.end());
  for (const auto& name : backends.names()) {
    if (std::find(jo.backends.begin(), jo.backends.end(), name) == jo.backends.end())
      jo.backends.push_back(name);
  }
  // The sandbox of process tasks that name none; a task's own `sandbox` or [defaults] wins.
  auto sandbox = task::SandboxPolicy::parse(o.sandbox);
  if (!sandbox) {
    std::fprintf(stderr, "pepita run: --sandbox: %s\n", sandbox.error().message().c_str());
    return kExitUsage;
  }
  jo.default_sandbox = *sandbox;
  // Issue 27: HyperQueue's zero-worker mode — the file is checked as written, nothing runs.
  if (o.zero_worker) jo.force_backend = executor::zero_backend();
  auto job = pool::load_job(o.job, jo);
  if (!job) {
    std::fprintf(stderr, "pepita run: %s\n", job.error().message().c_str());
    return kExitUsage;
  }
  // The --slurm sizing flags size the worker jobs of --slurm and those of backend = "slurm".
  if (!o.slurm && !o.slurm_flags.empty() &&
      std::none_of(job->tasks.begin(), job->tasks.end(),
                   [](const auto& t) { return t.backend() == slurm::slurm_backend(); })) {
    std::fprintf(stderr,
                 "pepita run: %s needs --slurm (for backend = \"remote\" tasks) or a task with "
                 "backend = \"slurm\"\n",
                 o.slurm_flags.front().c_str());
    return kExitUsage;
  }
  // Resource requests no host here could ever meet fail now, at their file:line:column.
  auto inventory = local_inventory(o, *job);
  if (!inventory) {
    std::fprintf(stderr, "pepita run: %s\n", inventory.error().message().c_str());
    return inventory.error().code() == ErrorCode::InvalidArgument ? kExitUsage : kExitFailure;
  }
  if (*inventory) {
    if (auto fits = job->check_fit(**inventory); !fits) {
      std::fprintf(stderr, "pepita run: %s\n", fits.error().message().c_str());
      return kExitUsage;
    }
  }
  if (o.dashboard) {
    if (auto address = dashboard::parse_address(o.watch.address); !address) {
      std::fprintf(stderr, "pepita run: --dashboard: %s\n", address.error().message().c_str());
      return kExitUsage;
    }
  }
  // The executors' settings, before anything is created (command.hpp: usage errors first): a
  // refused one (--worker without --key, an --sbatch-arg with a comma for backend = "slurm")
  // leaves no state directory behind, and --check reports it too.
  auto remote = remote_executor(o, jo.state_dir);
  if (!remote) {
    std::fprintf(stderr, "pepita run: %s\n", remote.error().message().c_str());
    return remote.error().code() == ErrorCode::InvalidArgument ? kExitUsage : kExitFailure;
  }
  std::vector<task::Backend> configured;  // built even when no task needs them
  if (*remote) {
    backends.replace(
        task::Backend::Remote, [make = *remote](const executor::BackendOptions&) { return make(); },
        o.slurm ? "Slurm workers" : "remote workers");
    configured.push_back(task::Backend::Remote);
  }
  // Each backend a task needs (or the command line configured) joins the pool with these
  // options; the pool's own cpu and process executors are already there.
  std::vector<std::pair<task::Backend, executor::BackendOptions>> joining;
  for (const task::Backend& name : backends.names()) {
    if (name == task::Backend::Cpu || name == task::Backend::Process) continue;
    const bool needed = std::any_of(job->tasks.begin(), job->tasks.end(),
                                    [&](const auto& t) { return t.backend() == name; });
    const bool asked = std::find(configured.begin(), configured.end(), name) != configured.end();
    if (!needed && !asked) continue;
    if (!needed) {
      std::fprintf(
          stderr, "pepita run: warning: no task has backend = \"%s\": nothing runs on the %s\n",
          std::string(name.name()).c_str(), std::string(backends.description(name)).c_str());
    }
    auto options = backend_options(name, o, jo.state_dir);
    if (!options) {
      std::fprintf(stderr, "pepita run: %s\n", options.error().message().c_str());
      return kExitUsage;
    }
    joining.emplace_back(name, std::move(*options));
  }
  if (o.check) {
    std::printf("%s: ok, %zu tasks\n", o.job.c_str(), job->tasks.size());
    return kExitOk;
  }

  std::error_code ec;
  fs::create_directories(jo.state_dir, ec);
  if (ec) {
    std::fprintf(stderr, "pepita run: cannot create state directory %s: %s\n", jo.state_dir.c_str(),
                 ec.message().c_str());
    return kExitFailure;
  }

  // Before anything runs: a run killed with SIGKILL may have left tasks in its cgroups (they
  // die with it by PR_SET_PDEATHSIG, but a task that forked may have left children there).
  reap_killed_runs();

  // Declared before the pool: the pool's observer feeds its model until the pool is gone.
  dashboard::RunDashboard dash(o.watch, job->name);
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  // Created once the pool is built and the header line printed; events start with submit_all.
  std::optional<Progress> progress;
  auto builder = job->pool_builder();
  if (o.jobs) builder.process_slots(o.jobs);
  if (!o.no_journal && !job->journal.empty()) builder.journal(job->journal, o.resume);
  if (!o.journal_key.empty()) builder.journal_key(o.journal_key);
  builder.log_dir(jo.state_dir + "/logs");  // live logs: `pepita logs STATE_DIR TASK`
  // Events only where something shows them: progress lines (not --quiet) or the dashboard. A
  // pool without an observer makes no Started/Finished event per task (issue 27: each copied the
  // task's name and its whole result, and took the pool mutex once more per batch to deliver
  // them; the library Pool the CLI is measured against installs none). --quiet prints only
  // the summary, built from the results.
  if (!o.quiet || dash.enabled()) {
    builder.on_event([&progress, &dash](const pool::Event& e) {
      progress->on_event(e);
      if (dash.enabled()) dash.on_event(e);
    });
  }
  builder.cpu_workers(1);  // job files hold commands only
  // A zero-worker run has no results worth caching.
  if (!o.no_cache && !o.zero_worker) {
    // One invocation is one run: make's rule, a file is stat'ed once (cache.hpp, StatPolicy).
    builder.cache(o.cache_dir.empty() ? jo.state_dir + "/cache" : o.cache_dir,
                  pool::StatPolicy::OncePerRun);
  }
  if (*inventory) builder.resources(**inventory);  // detected, with --resources applied
  // Built by the pool builder, so a backend that cannot be built (no KVM, no Vulkan device)
  // fails build() only when a task needs it.
  for (auto& [name, options] : joining) {
    builder.executor(backends.factory(name, std::move(options)));
  }
  auto built = builder.build();
  if (!built) {
    std::fprintf(stderr, "pepita run: %s\n", built.error().message().c_str());
    return built.error().code() == ErrorCode::Corrupted ? kExitUsage : kExitFailure;
  }
  pool::Pool& p = *built;
  if (auto w = p.cache_warning()) {
    std::fprintf(stderr, "pepita run: warning: %s; running without the result cache\n",
                 w->message().c_str());
  }
  for (const auto& notice : p.cache_notices()) {
    std::fprintf(stderr, "pepita run: warning: %s\n", notice.c_str());
  }
  const bool cache_ok_at_start = !p.cache_warning();
  // Declared after the pool, so destroyed first: no stop or forced exit touches a dead pool.
  struct FinishSignals {
    SignalWatcher& w;
    ~FinishSignals() { w.finish(); }
  } finish_signals{signals};
  struct StopDashboard {  // after the pool: its server never calls into a destroyed pool
    dashboard::RunDashboard& d;
    ~StopDashboard() { d.stop(); }
  } stop_dashboard{dash};
  const auto stop_deadline =
      o.stop_timeout >= 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::duration<double>(o.stop_timeout))
                          : std::chrono::nanoseconds(std::chrono::seconds(5)) + job->kill_grace;
  signals.watch(stop_deadline,
                {.stop = [&p] { p.cancel_all(); },
                 .force =
                     [&p](int sig, const std::string& why) {
                       const auto left = p.unfinished(20);
                       const auto stats = p.stats();
                       const auto open = stats.submitted - stats.done;
                       std::string names;
                       for (const auto& n : left) names += (names.empty() ? "" : ", ") + n;
                       if (open > left.size()) names += ", ...";
                       std::fprintf(stderr,
                                    "pepita run: %s: exiting without waiting; %llu task(s) not "
                                    "confirmed stopped%s%s\n",
                                    why.c_str(), static_cast<unsigned long long>(open),
                                    names.empty() ? "" : ": ", names.c_str());
                       p.abandon();  // SIGKILL to task process groups, scancel, journal synced
                       std::fprintf(stderr,
                                    "pepita run: interrupted; rerun with --resume to continue\n");
                       std::fflush(stdout);
                       std::fflush(stderr);
                       std::_Exit(interrupted_status(sig));
                     }});
  if (!o.quiet && !o.json) {
    std::fprintf(
        stderr, "pepita run: %s, %zu tasks, state in %s%s\n", job->name.c_str(), job->tasks.size(),
        jo.state_dir.c_str(),
        o.resume
            ? (" (resuming, " + std::to_string(p.journal_recovered()) + " journal records)").c_str()
            : "");
  }
  if (dash.enabled()) {
    if (auto attached = dash.attach(p, job->tasks); !attached) {
      std::fprintf(stderr, "pepita run: --dashboard: %s\n", attached.error().message().c_str());
      return kExitFailure;
    }
  }
  progress.emplace(job->tasks.size(), tty, o.quiet);
  std::vector<bool> show = job->show_output;
  std::vector<Requested> requested;  // per task, in submission order like the results
  requested.reserve(job->tasks.size());
  std::vector<std::string_view> sandboxes;  // per task: the level it runs in (--json)
  sandboxes.reserve(job->tasks.size());
  for (const Task& t : job->tasks) {
    requested.push_back({t.resources(), t.retry_on()});
    sandboxes.push_back(task::to_string(t.sandbox().level));
  }
  const auto t0 = Clock::now();
  auto handles = p.submit_all(std::move(job->tasks));
  if (!handles) {
    progress->stop();
    std::fprintf(stderr, "pepita run: %s\n", handles.error().message().c_str());
    return kExitUsage;
  }
  // A signal taken before the tasks were submitted cancelled an empty pool: cancel them now.
  if (signals.interrupted()) p.cancel_all();
  auto results = p.wait_all();
  const auto wall = Clock::now() - t0;
  progress->stop();
  if (dash.enabled()) {  // the report, and the pages' last update
    if (auto finished = dash.finish(signals.interrupted()); !finished)
      std::fprintf(stderr, "pepita run: --report: %s\n", finished.error().message().c_str());
  }
  const auto stats = p.stats();
  const auto journal_error = p.journal_error();
  const auto cache_warning = cache_ok_at_start ? p.cache_warning() : std::nullopt;
  p.shutdown();
  signals.finish();  // the pool has stopped: a late signal has nothing left to stop

  bool ok = !signals.interrupted();
  for (const auto& r : results) ok = ok && r.ok();
  if (o.json) {
    nlohmann::json tasks = nlohmann::json::array();
    for (std::size_t i = 0; i < results.size(); ++i) {
      tasks.push_back(result_json(results[i], i < requested.size() ? requested[i] : Requested{},
                                  i < sandboxes.size() ? sandboxes[i] : std::string_view("none")));
    }
    nlohmann::json out = {{"job", job->name},
                          {"ok", ok},
                          {"interrupted", signals.interrupted()},
                          {"state_dir", jo.state_dir},
                          {"journal", o.no_journal ? "" : job->journal},
                          {"journal_error", journal_error ? journal_error->to_string() : ""},
                          {"wall_s", std::chrono::duration<double>(wall).count()},
                          {"stats",
                           {{"submitted", stats.submitted},
                            {"succeeded", stats.succeeded},
                            {"failed", stats.failed},
                            {"skipped", stats.skipped},
                            {"retries", stats.retries},
                            {"from_journal", stats.from_journal},
                            {"cached", stats.from_cache},
                            {"latency_p50_ms", stats.latency_p50_ms},
                            {"latency_p90_ms", stats.latency_p90_ms},
                            {"latency_p99_ms", stats.latency_p99_ms}}},
                          {"tasks", tasks}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (!o.quiet || !ok) {
      print_summary(results);
      print_resources(results, requested);
    }
    const double secs = std::chrono::duration<double>(wall).count();
    std::printf(
        "%zu tasks: %llu succeeded (%llu cached), %llu failed (%llu skipped), %llu retries, %llu "
        "from journal, in %.2fs (%.0f tasks/s)\n",
        results.size(), static_cast<unsigned long long>(stats.succeeded),
        static_cast<unsigned long long>(stats.from_cache),
        static_cast<unsigned long long>(stats.failed),
        static_cast<unsigned long long>(stats.skipped),
        static_cast<unsigned long long>(stats.retries),
        static_cast<unsigned long long>(stats.from_journal), secs,
        secs > 0 ? static_cast<double>(results.size()) / secs : 0.0);
    if (o.explain) print_explain(results);
    for (std::size_t i = 0; i < results.size() && i < show.size(); ++i) {
      if (show[i] && !results[i].stdout_data.empty()) {
        std::printf("\n--- %s output ---\n%s", results[i].name.c_str(),
                    results[i].stdout_data.c_str());
        if (results[i].stdout_data.back() != '\n') std::printf("\n");
      }
    }
  }
  if (journal_error) {
    std::fprintf(stderr, "pepita run: warning: journal: %s\n", journal_error->to_string().c_str());
  }
  if (cache_warning) {
    std::fprintf(stderr, "pepita run: warning: %s\n", cache_warning->message().c_str());
  }
  if (signals.interrupted()) {
    std::fprintf(stderr, "pepita run: interrupted; rerun with --resume to continue\n");
    return interrupted_status(signals.signal());
  }
  return ok ? kExitOk : kExitFailure;
}

void add_run(CLI::App& app, Dispatch& dispatch) {
  auto* sub = app.add_subcommand("run", "Run a job file (TOML) on the local pool");
  auto o = std::make_shared<RunOptions>();
  sub->add_option("job", o->job, "Job file (TOML), e.g. examples/wordcount/job.toml")->required();
  sub->add_flag("--resume", o->resume,
                "Reuse the journal: tasks that already succeeded are not run again");
  sub->add_flag("--json", o->json, "Print the result as one JSON object on stdout");
  sub->add_flag("-q,--quiet", o->quiet, "No progress or per-task lines");
  sub->add_flag("--check", o->check, "Only check the job file (syntax, deps, binaries)");
  sub->add_flag("--no-journal", o->no_journal, "Do not write a journal");
  sub->add_option("--journal-key", o->journal_key,
                  "MAC every journal record under this key file (mode 0600, >= 32 bytes); "
                  "check with `pepita journal verify STATE_DIR --key FILE`");
  sub->add_flag("--no-cache", o->no_cache,
                "Run every task: do not reuse or store results in the result cache");
  sub->add_option("--cache-dir", o->cache_dir,
                  "Directory of the result cache (default: <state-dir>/cache)");
  sub->add_flag("--explain", o->explain,
                "After the summary, say for each task why it ran or was cached");
  sub->add_option("--state-dir", o->state_dir,
                  "Directory for the journal and ${state_dir} (default: per job under $TMPDIR)");
  sub->add_option("-j,--jobs", o->jobs, "Processes at once (overrides [pool] process_slots)")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--worker", o->workers,
                  "Remote worker host:port for tasks with backend = \"remote\" (repeatable)");
  auto* key =
      sub->add_option("--key", o->key_file, "Pre-shared key file of the workers (mode 0600)");
  sub->add_flag("--tls", o->tls,
                "Encrypt remote connections with TLS 1.3 keyed by --key (workers "
                "must run with --tls too; with --slurm, the submitted ones do)");
  auto* slurm = sub->add_flag("--slurm", o->slurm,
                              "Run backend = \"remote\" tasks on pepita workers submitted as Slurm "
                              "jobs (sbatch), cancelled when the run ends (tasks with backend = "
                              "\"slurm\" always run so; the flags below size those too)");
  slurm->excludes(sub->get_option("--worker"))->excludes(key);
  slurm::SlurmOptions& so = o->slurm_options;
  // With --slurm, or for tasks with backend = "slurm" (checked once the job file is read).
  const std::vector<CLI::Option*> slurm_only = {
      sub->add_option("--nodes", so.nodes, "With --slurm: worker jobs at most (one node each)")
          ->check(CLI::Range(1, 100000)),
      sub->add_option("--partition", so.partition, "With --slurm: sbatch --partition"),
      sub->add_option("--time-limit", so.time_limit,
                      "With --slurm: sbatch --time of each worker job, e.g. 1:00:00"),
      sub->add_option("--cpus-per-worker", so.cpus_per_worker,
                      "With --slurm: CPUs (and task slots) per worker job")
          ->check(CLI::Range(1, 4096)),
      sub->add_option("--gpus", so.gpus, "With --slurm: GPUs per worker job"),
      sub->add_option("--account", so.account, "With --slurm: sbatch --account"),
      sub->add_option("--sbatch-arg", so.extra_sbatch_args,
                      "With --slurm: extra sbatch argument, e.g. --qos=low (repeatable)"),
      sub->add_option("--driver-address", so.driver_address,
                      "With --slurm: host name or address the workers dial (default: this host's "
                      "name)"),
  };
  sub->add_flag("--zero-worker", o->zero_worker,
                "Run nothing: every task completes at once, succeeded, on the \"zero\" backend "
                "(HyperQueue's zero-worker mode), so what is timed is pepita's own cost per "
                "task: job file, pool, placement, journal. No result cache. For a remote "
                "worker's cost, run `pepita worker --zero-worker` and backend = \"remote\" tasks")
      ->excludes(sub->get_option("--worker"))
      ->excludes(slurm);
  sub->add_option("--resources", o->resources,
                  "Override what pepita detected on this machine for the tasks' resource "
                  "requests, e.g. gpus=0,1,2,3 (ids), gpus=4, cpus=8 or cpus=0-3, memory=64G, "
                  "license=2 (a named count); comma-separated");
  sub->add_option("--sandbox", o->sandbox,
                  "The sandbox of process tasks whose job file names none (none, the default; "
                  "standard; strict); a task's own `sandbox` or [defaults] wins. See "
                  "docs/sandbox.md");
  sub->add_option("--stop-timeout", o->stop_timeout,
                  "Seconds from the first SIGINT/SIGTERM to a forced exit that lists the tasks "
                  "it could not confirm stopped (default: 5 + the job's kill_grace)")
      ->check(CLI::Range(0.0, 86400.0));
  auto* dash = sub->add_option("--dashboard", o->watch.address,
                               "Serve a live dashboard of the run (task table, timeline, "
                               "failures, /metrics) at ADDR, default 127.0.0.1:8265; see "
                               "README \"Watching a run\"")
                   ->expected(0, 1);
  sub->add_option("--dashboard-token", o->watch.token,
                  "Token every dashboard request must carry (generated and printed when the "
                  "address is not loopback or with --dashboard-control)")
      ->needs(dash);
  sub->add_flag("--dashboard-control", o->watch.control,
                "Let the dashboard cancel tasks (POST, token required)")
      ->needs(dash);
  sub->add_option("--report", o->watch.report,
                  "Write a self-contained HTML report of the run to this file when it ends");
  sub->footer(
      "Stopping: the first SIGINT (Ctrl-C), SIGTERM or SIGHUP cancels every task (SIGTERM to "
      "each task's process group, SIGKILL after kill_grace; remote tasks are cancelled on their "
      "workers; Slurm worker jobs are scancelled) and exits with 128 + the signal's number "
      "(130 for SIGINT, 143 for SIGTERM) once all have ended, or after --stop-timeout. A second "
      "signal exits at once, after SIGKILL to the task process groups, a last scancel of the "
      "worker jobs and a sync of the journal. Rerun with --resume to continue.");
  dispatch.on(sub, [o, slurm_only, dash] {
    o->dashboard = dash->count() > 0;
    o->watch.serve = o->dashboard;
    for (const CLI::Option* opt : slurm_only)
      if (opt->count() > 0) o->slurm_flags.push_back(opt->get_name());
    return run_job(*o);
  });
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(run, pepita::cli::add_run);
