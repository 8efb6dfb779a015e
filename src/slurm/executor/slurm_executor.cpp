// SlurmExecutor: a RemoteExecutor whose workers dial in, plus a monitor thread that keeps the
// right number of worker jobs in Slurm (submit while tasks wait, release when idle, notice jobs
// Slurm ended) and cancels them all at shutdown.
#include "pepita/slurm/slurm_executor.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "pepita/core/format.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/remote_executor.hpp"

namespace pepita::slurm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

std::string host_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "localhost";
  return host;
}

// Single-quoted for the job's shell script.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Result<std::string> make_private_dir(std::string requested, bool& owned) {
  std::error_code ec;
  owned = requested.empty();
  if (owned) {
    const char* home = std::getenv("HOME");
    const fs::path base = fs::path(home && *home ? home : "/tmp") / ".pepita" / "slurm";
    fs::create_directories(base, ec);
    if (ec) return fail_errno(ec.value(), "create " + base.string());
    std::string tmpl = (base / "run-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return fail_errno(errno, "mkdtemp " + tmpl);
    return tmpl;
  }
  fs::create_directories(requested, ec);
  if (ec) return fail_errno(ec.value(), "create " + requested);
  return requested;
}

}  // namespace

struct SlurmExecutor::Impl {
  Impl(SlurmOptions o, SlurmCommands c)
      : opts(std::move(o)), commands(std::make_shared<SlurmCommands>(std::move(c))) {}

  SlurmOptions opts;
  // Shared with abandon()'s scancel thread, which may outlive this executor (a hung scancel).
  std::shared_ptr<const SlurmCommands> commands;
  std::shared_ptr<transport::RemoteExecutor> remote;
  std::string work_dir;
  bool owns_work_dir = false;
  std::string key_path;
  std::string connect_to;  // what workers dial

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<JobId, WorkerJob> live;
  std::vector<JobId> all;
  std::set<JobId> released;       // cancelled by us: their end is not news
  std::uint32_t failed_jobs = 0;  // ended on their own before their worker connected
  bool stopping = false;          // shutdown() began: the monitor exits, nothing is submitted
  // Every job id submitted, for abandon(): `mu` may be held across a slow sbatch, this never is.
  std::mutex ids_mu;
  std::vector<JobId> ids_for_abandon;
  std::thread monitor;
  std::string last_error;  // logged once until it changes

  void log(const std::string& line) const {
    if (opts.log) {
      opts.log(line);
    } else {
      std::fprintf(stderr, "pepita slurm: %s\n", line.c_str());
    }
  }

  void log_error_once(const std::string& line) {
    if (line == last_error) return;
    last_error = line;
    log(line);
  }

  std::vector<std::string> sbatch_args() const {
    std::vector<std::string> a{"--job-name=" + opts.job_name, "--nodes=1", "--ntasks=1",
                               "--cpus-per-task=" + std::to_string(opts.cpus_per_worker),
                               "--output=" + work_dir + "/worker-%j.log"};
    if (!opts.partition.empty()) a.push_back("--partition=" + opts.partition);
    if (!opts.time_limit.empty()) a.push_back("--time=" + opts.time_limit);
    if (!opts.account.empty()) a.push_back("--account=" + opts.account);
    if (opts.gpus > 0) a.push_back("--gpus=" + std::to_string(opts.gpus));
    if (opts.memory > 0) {
      constexpr std::uint64_t kMiB = 1u << 20;
      a.push_back("--mem=" + std::to_string((opts.memory + kMiB - 1) / kMiB) + "M");
    }
    a.insert(a.end(), opts.extra_sbatch_args.begin(), opts.extra_sbatch_args.end());
    // exec: the worker is the job's main process, so scancel's SIGTERM reaches it and drains.
    // --sandbox none: this driver made the worker and its one-time key, so the worker's floor
    // is not needed against it; each task carries the sandbox its job file (or `pepita run
    // --sandbox`) gave it, and runs in that (issue 23).
    a.push_back("--wrap=exec " + shell_quote(opts.worker_binary) + " worker --connect " +
                shell_quote(connect_to) + " --key " + shell_quote(key_path) + " --slots " +
                std::to_string(opts.cpus_per_worker) + " --name slurm-${SLURM_JOB_ID} --give-up " +
                std::to_string(opts.worker_give_up.count()) + " --sandbox none" +
                (opts.tls ? " --tls" : ""));
    return a;
  }

  // Caller holds mu.
  Result<JobId> submit_locked() {
    auto id = commands->submit(sbatch_args());
    if (!id) return id;
    live[*id] = WorkerJob{.id = *id, .state = "SUBMITTED", .reason = {}, .connected = false};
    all.push_back(*id);
    {
      std::lock_guard ids_lock(ids_mu);
      ids_for_abandon.push_back(*id);
    }
    if (!opts.job_ids_file.empty()) {
      // Before anything can go wrong with the job: a SIGKILL from now on leaves its id behind.
      std::ofstream(opts.job_ids_file, std::ios::app) << *id << "\n" << std::flush;
    }
    log("submitted worker job " + std::to_string(*id));
    return id;
  }

  std::uint32_t max_failed_jobs() const {
    return opts.max_failed_jobs ? opts.max_failed_jobs : opts.nodes + 3;
  }
  bool gave_up() const { return failed_jobs >= max_failed_jobs(); }

  // Refreshes job states from squeue; forgets jobs that ended.
  void refresh() {
    std::vector<JobId> ids;
    {
      std::lock_guard lock(mu);
      for (const auto& [id, job] : live) ids.push_back(id);
    }
    if (ids.empty()) return;
    auto states = commands->states(ids);
    std::set<std::string> connected, ever_connected;  // dialed-in workers stay listed when gone
    for (const auto& w : remote->dispatcher().workers()) {
      ever_connected.insert(w.name);
      if (w.state == transport::WorkerState::Alive) connected.insert(w.name);
    }
    std::lock_guard lock(mu);
    if (!states) {
      log_error_once("cannot read job states: " + states.error().message());
      return;
    }
    for (JobId id : ids) {
      auto it = live.find(id);
      if (it == live.end()) continue;
      auto st = states->find(id);
      const bool gone = st == states->end() || is_finished(st->second.state);
      if (gone) {
        if (!released.contains(id) && !ever_connected.contains("slurm-" + std::to_string(id))) {
          ++failed_jobs;
        }
        if (!released.contains(id)) {
          log("worker job " + std::to_string(id) + " ended (" +
              (st == states->end() ? std::string("no longer in squeue")
                                   : st->second.state + ", " + st->second.reason) +
              "); its tasks go to other workers");
        }
        live.erase(it);
        continue;
      }
      it->second.state = st->second.state;
      it->second.reason = st->second.reason;
      it->second.connected = connected.contains("slurm-" + std::to_string(id));
    }
  }

  // Grows toward demand, shrinks after idle_release; returns jobs to cancel.
  std::vector<JobId> rebalance(Clock::time_point& busy_at) {
    const std::size_t backlog = remote->dispatcher().backlog();
    const auto now = Clock::now();
    if (backlog > 0) busy_at = now;
    std::vector<JobId> surplus;
    std::lock_guard lock(mu);
    if (stopping) return surplus;
    if (backlog > 0) {
      const std::size_t per = opts.cpus_per_worker;
      const std::size_t want = std::clamp<std::size_t>(
          (backlog + per - 1) / per, std::max<std::size_t>(opts.min_nodes, 1), opts.nodes);
      while (live.size() < want && !gave_up()) {
        if (auto id = submit_locked(); !id) {
          log_error_once(id.error().message());
          break;
        }
      }
      if (gave_up()) {
        log_error_once(std::to_string(failed_jobs) +
                       " worker jobs ended before their worker connected; submitting no more "
                       "(max_failed_jobs). Their logs are kept in " +
                       work_dir);
      }
    } else if (now - busy_at >= opts.idle_release && live.size() > opts.min_nodes) {
      // Release pending jobs first, then those whose worker never connected.
      std::vector<const WorkerJob*> order;
      for (const auto& [id, job] : live) order.push_back(&job);
      std::stable_sort(order.begin(), order.end(), [](const WorkerJob* a, const WorkerJob* b) {
        return (a->state == "RUNNING" && a->connected) < (b->state == "RUNNING" && b->connected);
      });
      for (std::size_t i = 0; i < live.size() - opts.min_nodes; ++i) {
        surplus.push_back(order[i]->id);
      }
      for (JobId id : surplus) {
        released.insert(id);
        live.erase(id);
      }
      log("idle for " + std::to_string(opts.idle_release.count()) + " ms: releasing " +
          std::to_string(surplus.size()) + " worker job(s)");
    }
    return surplus;
  }

  void monitor_loop() {
    auto busy_at = Clock::now();
    for (;;) {
      refresh();
      if (auto surplus = rebalance(busy_at); !surplus.empty()) {
        if (auto r = commands->cancel(surplus); !r) log_error_once(r.error().message());
      }
      std::unique_lock lock(mu);
      cv.wait_for(lock, opts.poll_interval, [&] { return stopping; });
      if (stopping) return;
    }
  }
};

SlurmExecutor::SlurmExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::shared_ptr<SlurmExecutor>> SlurmExecutor::create(SlurmOptions options) {
  if (options.nodes == 0 || options.cpus_per_worker == 0) {
    return fail(ErrorCode::InvalidArgument,
                "Slurm workers need nodes >= 1 and cpus_per_worker >= 1");
  }
  options.min_nodes = std::min(options.min_nodes, options.nodes);
  auto commands = PEPITA_TRY(SlurmCommands::locate(options.slurm_bin_dir));
  if (options.worker_binary.empty()) options.worker_binary = self_exe();
  if (::access(options.worker_binary.c_str(), X_OK) != 0) {
    return fail(ErrorCode::NotFound, "worker binary '" + options.worker_binary +
                                         "' is not executable; set worker_binary to a pepita "
                                         "binary that the compute nodes can run");
  }
  if (options.driver_address.empty()) options.driver_address = host_name();

  if (!options.job_ids_file.empty()) {
    // Worker jobs of a driver that was killed before it could cancel them.
    std::vector<JobId> stale;
    std::ifstream in(options.job_ids_file);
    for (JobId id = 0; in >> id;) stale.push_back(id);
    if (!stale.empty()) {
      if (auto r = commands.cancel(stale); !r && options.log) {
        options.log("cannot cancel the worker jobs a previous run left: " + r.error().message());
      }
    }
    std::ofstream(options.job_ids_file, std::ios::trunc);
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(commands));
  Impl& s = *impl;
  s.work_dir = PEPITA_TRY(make_private_dir(s.opts.work_dir, s.owns_work_dir));
  const transport::Key key = PEPITA_TRY(transport::Key::generate());
  s.key_path = s.work_dir + "/key";
  PEPITA_TRY_VOID(transport::Key::write_file(s.key_path, key));

  transport::RemoteExecutorOptions ro;
  ro.remote.listen = s.opts.listen;
  ro.remote.key = key;
  ro.remote.name = "pepita-slurm-driver";
  ro.remote.connection.tls = s.opts.tls;
  ro.remote.heartbeat_interval = s.opts.heartbeat_interval;
  ro.remote.suspect_after = s.opts.dead_after / 2;
  ro.remote.dead_after = s.opts.dead_after;
  ro.remote.max_attempts = 10;
  ro.remote.log = s.opts.log;
  ro.slots = std::size_t{s.opts.nodes} * s.opts.cpus_per_worker * 2;
  ro.backend = s.opts.backend;
  auto remote = transport::RemoteExecutor::create(std::move(ro));
  if (!remote) {
    std::error_code ec;
    fs::remove(s.key_path, ec);
    if (s.owns_work_dir) fs::remove_all(s.work_dir, ec);
    return std::unexpected(std::move(remote.error()));
  }
  s.remote = std::move(*remote);
  s.connect_to =
      s.opts.driver_address + ":" + std::to_string(s.remote->dispatcher().listen_endpoint()->port);

  auto self = std::make_shared<SlurmExecutor>(std::move(impl));
  // The first jobs are submitted here, so a refused submission is create()'s error.
  auto initial = [&s]() -> Result<void> {
    std::lock_guard lock(s.mu);
    for (std::uint32_t i = 0; i < s.opts.nodes; ++i) PEPITA_TRY(s.submit_locked());
    return {};
  }();
  if (!initial) {
    self->shutdown();  // cancels what was submitted, removes the key
    return std::unexpected(std::move(initial.error()));
  }
  s.monitor = std::thread([&s] { s.monitor_loop(); });
  return self;
}

SlurmExecutor::~SlurmExecutor() { shutdown(); }

executor::Backend SlurmExecutor::backend() const noexcept { return impl_->opts.backend; }

std::size_t SlurmExecutor::slots() const noexcept { return impl_->remote->slots(); }

Result<void> SlurmExecutor::can_ever_fit(const task::ResourceRequest& request) const {
  bool registered = false;
  for (const auto& w : impl_->remote->dispatcher().workers()) registered |= w.connects > 0;
  if (registered || request.empty()) return impl_->remote->can_ever_fit(request);
  // No worker job has connected yet: judge by what each job asks Slurm for (sbatch may still
  // grant less; the workers' own inventories decide once they connect).
  const SlurmOptions& o = impl_->opts;
  const task::ResourceRequest first = request.at_attempt(1);
  if (first.cpus > o.cpus_per_worker) {
    return fail(ErrorCode::Unsupported,
                pepita::fmt("needs {} CPUs; each Slurm worker job has {} (cpus_per_worker)",
                            first.cpus, o.cpus_per_worker));
  }
  if (o.memory > 0 && first.memory > o.memory) {
    return fail(ErrorCode::Unsupported,
                pepita::fmt("needs {} memory; each Slurm worker job has {} (memory)",
                            task::format_bytes(first.memory), task::format_bytes(o.memory)));
  }
  const double gpus =
      first.gpu_ids.empty() ? first.gpus : static_cast<double>(first.gpu_ids.size());
  if (o.gpus > 0 && gpus > o.gpus) {
    return fail(ErrorCode::Unsupported,
                pepita::fmt("needs {} GPUs; each Slurm worker job has {} (gpus)", gpus, o.gpus));
  }
  return {};
}

Result<void> SlurmExecutor::start(const task::Task& task, std::stop_token stop,
                                  executor::Completion done) {
  PEPITA_TRY_VOID(impl_->remote->start(task, std::move(stop), std::move(done)));
  impl_->cv.notify_all();  // a longer queue may want more jobs now
  return {};
}

void SlurmExecutor::shutdown() {
  Impl& s = *impl_;
  std::vector<JobId> ids;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) return;
    s.stopping = true;
    for (const auto& [id, job] : s.live) ids.push_back(id);
  }
  s.cv.notify_all();
  if (s.monitor.joinable()) s.monitor.join();
  if (!ids.empty()) {
    if (auto r = s.commands->cancel(ids); !r)
      s.log("cannot cancel worker jobs: " + r.error().message());
  }
  s.remote->shutdown();
  // Report jobs that outlive the driver: a user must not be left paying for them unknowingly.
  const auto until = Clock::now() + std::chrono::seconds(10);
  std::vector<JobId> left = ids;
  while (!left.empty() && Clock::now() < until) {
    auto states = s.commands->states(left);
    if (!states) break;
    std::erase_if(left, [&](JobId id) {
      auto it = states->find(id);
      return it == states->end() || is_finished(it->second.state);
    });
    if (!left.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (JobId id : left) {
    s.log("worker job " + std::to_string(id) + " has not ended yet after scancel; check squeue");
  }
  std::error_code ec;
  fs::remove(s.key_path, ec);  // one-time key: useless to anyone after this run
  std::lock_guard lock(s.mu);
  if (s.owns_work_dir && s.failed_jobs == 0) fs::remove_all(s.work_dir, ec);
  s.live.clear();
}

void SlurmExecutor::abandon() noexcept {
  Impl& s = *impl_;
  std::vector<JobId> ids;
  {
    std::lock_guard lock(s.ids_mu);
    ids = s.ids_for_abandon;
  }
  std::error_code ec;
  fs::remove(s.key_path, ec);
  if (ids.empty()) return;
  // scancel of an already ended job is a silent no-op, so cancel them all. Bounded: a hung
  // slurmctld must not keep a driver that was told twice to stop.
  try {
    // The thread owns all it uses: when scancel hangs past the wait below, the executor may be
    // destroyed (the process exits) while it still runs.
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread([commands = s.commands, ids, done] {
      (void)commands->cancel(ids);
      done->store(true);
    }).detach();
    const auto until = Clock::now() + std::chrono::seconds(3);
    while (!done->load() && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!done->load()) {
      s.log("scancel did not return within 3 s; check squeue for worker jobs of this run");
    }
  } catch (...) {
    // No thread for scancel: nothing more can be done on the way out.
  }
}

std::vector<WorkerJob> SlurmExecutor::jobs() const {
  std::lock_guard lock(impl_->mu);
  std::vector<WorkerJob> out;
  for (const auto& [id, job] : impl_->live) out.push_back(job);
  return out;
}

std::vector<JobId> SlurmExecutor::submitted() const {
  std::lock_guard lock(impl_->mu);
  return impl_->all;
}

executor::ExecutorFactory workers(SlurmOptions options) {
  return [options = std::move(options)]() -> Result<std::shared_ptr<executor::Executor>> {
    return PEPITA_TRY(SlurmExecutor::create(options));
  };
}

executor::Backend slurm_backend() {
  static const executor::Backend name = executor::Backend::named("slurm").value();
  return name;
}

namespace {

Result<SlurmOptions> slurm_options(const executor::BackendOptions& o) {
  using std::chrono::duration_cast;
  PEPITA_TRY_VOID(o.expect_only(
      {"nodes",         "min_nodes",  "partition",       "time_limit",     "cpus_per_worker",
       "gpus",          "account",    "sbatch_args",     "driver_address", "job_name",
       "worker_binary", "listen",     "work_dir",        "slurm_bin_dir",  "tls",
       "idle_release",  "dead_after", "max_failed_jobs", "state_dir",      "memory"}));
  SlurmOptions s;
  s.backend = slurm_backend();
  auto u32 = [&o](std::string_view key, std::uint32_t fallback, std::uint32_t min,
                  std::uint32_t max) -> Result<std::uint32_t> {
    return static_cast<std::uint32_t>(PEPITA_TRY(o.uint_or(key, fallback, min, max)));
  };
  s.nodes = PEPITA_TRY(u32("nodes", s.nodes, 1, 100000));
  s.min_nodes = PEPITA_TRY(u32("min_nodes", s.min_nodes, 0, 100000));
  s.cpus_per_worker = PEPITA_TRY(u32("cpus_per_worker", s.cpus_per_worker, 1, 4096));
  s.gpus = PEPITA_TRY(u32("gpus", s.gpus, 0, 4096));
  s.max_failed_jobs = PEPITA_TRY(u32("max_failed_jobs", s.max_failed_jobs, 0, 1000000));
  if (auto mem = o.get("memory"); mem && !mem->empty()) {
    auto bytes = task::parse_bytes(*mem);
    if (!bytes) {
      return fail(ErrorCode::InvalidArgument, "slurm: setting memory: " + bytes.error().message());
    }
    s.memory = *bytes;
  }
  s.partition = o.string_or("partition", s.partition);
  s.time_limit = o.string_or("time_limit", s.time_limit);
  s.account = o.string_or("account", s.account);
  s.extra_sbatch_args = o.list("sbatch_args");
  s.driver_address = o.string_or("driver_address", s.driver_address);
  s.job_name = o.string_or("job_name", s.job_name);
  s.worker_binary = o.string_or("worker_binary", s.worker_binary);
  s.listen = o.string_or("listen", s.listen);
  s.work_dir = o.string_or("work_dir", s.work_dir);
  s.slurm_bin_dir = o.string_or("slurm_bin_dir", s.slurm_bin_dir);
  s.tls = PEPITA_TRY(o.bool_or("tls", s.tls));
  s.idle_release = duration_cast<std::chrono::milliseconds>(
      PEPITA_TRY(o.duration_or("idle_release", s.idle_release)));
  s.dead_after = duration_cast<std::chrono::milliseconds>(
      PEPITA_TRY(o.duration_or("dead_after", s.dead_after)));
  // Not slurm-jobs, which `pepita run --slurm` keeps in the same state directory: each
  // executor scancels the ids left in its own file when it starts.
  if (auto dir = o.get("state_dir"); dir && !dir->empty())
    s.job_ids_file = (fs::path(*dir) / "slurm-backend-jobs").string();
  return s;
}

}  // namespace

Result<void> register_slurm(executor::Registry& registry) {
  return registry.add(
      slurm_backend(),
      [](const executor::BackendOptions& o) -> Result<std::shared_ptr<executor::Executor>> {
        auto options = PEPITA_TRY(slurm_options(o));
        return PEPITA_TRY(SlurmExecutor::create(std::move(options)));
      },
      "pepita workers submitted as Slurm jobs");
}

}  // namespace pepita::slurm
