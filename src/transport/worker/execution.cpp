// Worker daemon, execution: a job leaves the queue when a slot is free and is handed to an
// executor asynchronously — processes to executor::ProcessExecutor (spawn, pidfd watch, timeout,
// reap with rusage on its reactor thread), functions to executor::CpuExecutor — with its stop
// token, so a Cancel frame or a kill stops it. No thread waits on a running attempt: the
// executor's completion hands the result to the client's session thread (results.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "pepita/executor/serve.hpp"
#include "worker/worker_impl.hpp"

namespace pepita::transport {

namespace fs = std::filesystem;

namespace worker {

std::map<std::string, WorkerFunction> builtin_functions() {
  std::map<std::string, WorkerFunction> f;
  f["noop"] = [](std::string_view, std::stop_token) -> Result<std::string> {
    return std::string();
  };
  f["echo"] = [](std::string_view in, std::stop_token) -> Result<std::string> {
    return std::string(in);
  };
  f["sleep_ms"] = [](std::string_view in, std::stop_token stop) -> Result<std::string> {
    int ms = 0;
    for (char c : in) {
      if (c < '0' || c > '9') return fail(ErrorCode::InvalidArgument, "sleep_ms wants digits");
      ms = std::min(ms * 10 + (c - '0'), 3'600'000);
    }
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < until) {
      if (stop.stop_requested()) return fail(ErrorCode::Cancelled, "sleep_ms cancelled");
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(5)));
    }
    return std::string();
  };
  return f;
}

namespace {

bool safe_file_name(std::string_view n) {
  return !n.empty() && n.size() < 256 && n != "." && n != ".." &&
         n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

ResultMsg spawn_error(std::string why) {
  return ResultMsg{.status = TaskStatus::SpawnError, .exit_code = -1, .error = std::move(why)};
}

}  // namespace
}  // namespace worker

void Worker::Impl::pump() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu);
      if (queue.empty() || running >= opts.slots) return;
      job = std::move(queue.front());
      queue.pop_front();
      ++running;
      job->holds_slot = true;
    }
    launch(job);
  }
}

void Worker::Impl::launch(const std::shared_ptr<Job>& job) {
  if (!job->client->open.load() || job->cancel.load()) {
    // Cancelled while it waited for a slot. The driver leased it and waits for a Result for
    // every lease, so say so: finishing it silently left the driver's task running forever,
    // and `pepita run` hung in wait_all() after Ctrl-C (issue 19).
    report(*job, ResultMsg{.attempt = job->msg.attempt,
                           .status = TaskStatus::Cancelled,
                           .exit_code = -1,
                           .error = "cancelled before it started"});
    return;
  }
  if (opts.zero_worker) {
    // Issue 27: nothing runs. The slot is given back before the report, so report() does not
    // pump(): the caller's pump loop takes the next job without recursing once per task.
    {
      std::lock_guard lock(mu);
      --running;
    }
    job->holds_slot = false;
    tasks_run.fetch_add(1);
    const StartedMsg started{job->msg.attempt};
    report(*job, ResultMsg{.attempt = job->msg.attempt, .status = TaskStatus::Succeeded}, &started);
    return;
  }
  if (job->msg.kind == TaskKind::Function) {
    if (auto it = functions.find(job->msg.path);
        it != functions.end() && inline_functions.contains(it->first)) {
      run_inline(job, it->second);
      return;
    }
  }
  (void)job->client->conn->send(MessageType::Started, job->id,
                                encode(StartedMsg{job->msg.attempt}));
  std::optional<ResultMsg> failed =
      job->msg.kind == TaskKind::Function ? launch_function(job) : launch_process(job);
  if (failed) {  // never started: no completion will come
    if (!job->scratch.empty()) {
      std::error_code ec;
      fs::remove_all(job->scratch, ec);
    }
    failed->attempt = job->msg.attempt;
    tasks_run.fetch_add(1);
    report(*job, *failed);
  }
}

std::optional<ResultMsg> Worker::Impl::launch_function(const std::shared_ptr<Job>& job) {
  const SubmitMsg& m = job->msg;
  auto it = functions.find(m.path);
  if (it == functions.end()) {
    ResultMsg r;
    r.status = TaskStatus::SpawnError;
    r.error = "worker has no function named '" + m.path + "'";
    return r;
  }
  auto t = task::Task::function([fn = it->second, input = m.stdin_data](std::stop_token stop) {
             return fn(input, std::move(stop));
           })
               .name("remote-" + std::to_string(job->id))
               // results.cpp cuts the output to the driver's output_cap (which may be 0)
               .output_cap(std::max<std::size_t>(1, static_cast<std::size_t>(m.output_cap)))
               .build();
  if (!t) return worker::spawn_error(t.error().to_string());
  executor::CpuExecutor* functions_exec = nullptr;
  {
    std::lock_guard lock(cpu_mu);
    if (!cpu) {
      auto made = executor::CpuExecutor::create({.workers = opts.slots});
      if (!made) return worker::spawn_error(made.error().to_string());
      cpu = std::move(*made);
    }
    functions_exec = cpu.get();
  }
  return start_reported(*functions_exec, *t, job, /*function=*/true);
}

// Starts `task` on `exec` and reports its result from the executor's thread. Such a result is
// never parked (that is for signalled processes: a function, or a served program in its own
// process group, gets no signal meant for the worker), as the old runner threads reported.
// Connection::send is thread-safe, and no wake-up of the session thread sits on each task's path.
std::optional<ResultMsg> Worker::Impl::start_reported(executor::Executor& exec,
                                                      const task::Task& task,
                                                      const std::shared_ptr<Job>& job,
                                                      bool function) {
  auto started =
      exec.start(task, job->stop.get_token(), [this, job, function](executor::ExecutionResult r) {
        Done d{job, std::move(r), function};
        const ResultMsg msg = to_message(d);
        report(*job, msg);
      });
  if (!started) return worker::spawn_error(started.error().to_string());
  return std::nullopt;
}

// Issue 27: a built-in that cannot block is answered where it was launched (the session thread
// for a Submit), as a ZeroMQ REP server answers in its own loop: no hand-off to a scheduler
// thread and back, and Started and Result leave in one write. Its result is built as
// CpuExecutor builds a function's (output cut to the cap by to_message, cpu 0).
void Worker::Impl::run_inline(const std::shared_ptr<Job>& job, const WorkerFunction& fn) {
  executor::ExecutionResult er;
  const auto t0 = worker::Clock::now();
  Result<std::string> out = fn(job->msg.stdin_data, job->stop.get_token());
  er.wall = worker::Clock::now() - t0;
  if (out) {
    er.status = executor::Status::Succeeded;
    er.stdout_bytes = out->size();
    er.stdout_data = std::move(*out);
  } else {
    er.status = executor::Status::Failed;
    er.exit_code = 1;
    er.error = out.error().to_string();
  }
  Done d{job, std::move(er), /*function=*/true};
  const ResultMsg r = to_message(d);
  // The slot is given back before the report, so report() does not pump(): the caller's pump
  // loop takes the next job without recursing once per task (as the zero worker does).
  {
    std::lock_guard lock(mu);
    --running;
  }
  job->holds_slot = false;
  const StartedMsg started{job->msg.attempt};
  report(*job, r, &started);
}

// Resolves a blob reference and stages the task's files into a scratch directory of its own.
// Returns the SpawnError to report when something is missing.
std::optional<ResultMsg> Worker::Impl::stage(Job& job, std::string& path, std::string& cwd) {
  const SubmitMsg& m = job.msg;
  if (path.starts_with("blob:")) {
    auto d = from_hex(path.substr(5));
    if (!d || d->size() != 32) {
      return worker::spawn_error("bad blob reference '" + path +
                                 "': expected blob:<the 64 hex digits of a SHA-256>");
    }
    Digest dg{};
    std::copy(d->begin(), d->end(), dg.begin());
    path = blob_path(dg);
    if (!fs::exists(path)) {
      return worker::spawn_error("blob " + to_hex(dg) +
                                 " is not on this worker: it was never uploaded, or its upload "
                                 "failed the SHA-256 check");
    }
  }
  const bool staged = !m.inputs.empty() || !m.outputs.empty();
  if (m.files.empty() && !staged) return std::nullopt;
  job.scratch = cache_dir + "/tasks/" + std::to_string(job.client->serial) + "-" +
                std::to_string(job.id) + "-" + std::to_string(m.attempt);
  std::error_code ec;
  fs::create_directories(job.scratch, ec);
  for (const auto& f : m.files) {
    const std::string src = blob_path(f.sha256);
    const std::string dst = job.scratch + "/" + f.name;
    if (!worker::safe_file_name(f.name) || !fs::exists(src)) {
      return worker::spawn_error("file '" + f.name + "': " +
                                 (worker::safe_file_name(f.name)
                                      ? "blob not uploaded to this worker"
                                      : "name must be a plain file name"));
    }
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    ::chmod(dst.c_str(), f.executable ? 0700 : 0600);
  }
  if (staged) {
    // Issue 24: declared files live in the task's own directory, where it then runs (the
    // driver's cwd names a directory of the driver's machine).
    if (ec) {
      return worker::spawn_error("cannot create the task's directory " + job.scratch + ": " +
                                 ec.message());
    }
    if (auto failed = materialise_inputs(job)) return failed;
    cwd = job.scratch;
  }
  if (cwd.empty()) cwd = job.scratch;
  return std::nullopt;
}

// Issue 23: a sandboxed task works in a scratch directory of its own (the executor binds it
// writable as the task's work dir). Under this worker's floor that is also where it runs: the
// driver's cwd names a path of the driver's machine, and binding it here would open a worker's
// directory of the driver's choosing. A worker running as root runs the task as the policy's
// unprivileged id, which cannot enter the cache (0700, ours): the directory, its staged files
// and a copy of a shipped binary are handed to that id, and the cache and tasks/ become 0711
// (enter, not list) on the way to it.
std::optional<ResultMsg> Worker::Impl::hand_to_sandbox_user(Job& job,
                                                            const task::SandboxPolicy& sandbox,
                                                            std::string& path, std::string& cwd) {
  if (!sandbox.enabled()) return std::nullopt;
  const SubmitMsg& m = job.msg;
  const std::string tasks = cache_dir + "/tasks";
  std::error_code ec;
  if (job.scratch.empty()) {
    job.scratch = tasks + "/" + std::to_string(job.client->serial) + "-" + std::to_string(job.id) +
                  "-" + std::to_string(m.attempt);
    fs::create_directories(job.scratch, ec);
    if (ec) {
      return worker::spawn_error("sandbox: cannot create the task's directory " + job.scratch +
                                 ": " + ec.message());
    }
  }
  if (opts.sandbox.enabled() || cwd.empty()) cwd = job.scratch;
  if (!sandbox.user_ns || ::geteuid() != 0) return std::nullopt;
  if (path.starts_with(cache_dir + "/") && path.find('/', cache_dir.size() + 1) == path.npos) {
    const std::string copy = job.scratch + "/.pepita-binary";
    fs::copy_file(path, copy, fs::copy_options::overwrite_existing, ec);
    if (ec) return worker::spawn_error("sandbox: cannot copy the task's binary: " + ec.message());
    ::chmod(copy.c_str(), 0700);
    path = copy;
  }
  const auto id = static_cast<uid_t>(sandbox.id);
  bool owned = ::chown(job.scratch.c_str(), id, id) == 0;
  for (const auto& e : fs::directory_iterator(job.scratch, ec)) {
    owned = owned && ::lchown(e.path().c_str(), id, id) == 0;
  }
  owned = owned && ::chmod(cache_dir.c_str(), 0711) == 0 && ::chmod(tasks.c_str(), 0711) == 0;
  if (ec || !owned) {
    return worker::spawn_error("sandbox: cannot hand the task's directory " + job.scratch +
                               " to uid " + std::to_string(sandbox.id));
  }
  return std::nullopt;
}

std::optional<ResultMsg> Worker::Impl::launch_process(const std::shared_ptr<Job>& job) {
  const SubmitMsg& m = job->msg;
  std::string path = m.path;
  std::string cwd = m.cwd;
  // Issue 23: the driver's binary runs in its own sandbox raised to this worker's floor. Binds
  // name paths of the driver's machine, which a driver must not open on this one.
  const task::SandboxPolicy& floor = opts.sandbox;
  if (floor.enabled() && (!m.sandbox.read_only.empty() || !m.sandbox.writable.empty())) {
    return ResultMsg{.status = TaskStatus::Sandboxed,
                     .exit_code = -1,
                     .error =
                         "sandbox: this worker binds no host paths into tasks from drivers "
                         "(read_only/writable name paths of the driver's machine): ship "
                         "inputs as files, or run the worker with --sandbox none"};
  }
  const task::SandboxPolicy sandbox = raise_to_floor(m.sandbox, floor);
  if (sandbox != m.sandbox) {
    bool first = false;
    {
      std::lock_guard lock(job->client->jobs_mu);
      first = !std::exchange(job->client->told_floor, true);
    }
    if (first) {
      log(std::string("tasks from ")
              .append(job->client->peer)
              .append(" asking for sandbox ")
              .append(task::to_string(m.sandbox.level))
              .append(" run in ")
              .append(task::to_string(sandbox.level))
              .append(" (this worker's floor is ")
              .append(task::to_string(floor.level))
              .append(")"));
    }
  }
  if (runs_on_server(m, sandbox)) return launch_served(job);
  if (auto missing = stage(*job, path, cwd)) return missing;
  if (auto failed = hand_to_sandbox_user(*job, sandbox, path, cwd)) return failed;
  auto b = task::Task::binary(path);
  b.args(m.args).stdin(m.stdin_data).name("remote-" + std::to_string(job->id));
  if (!m.inherit_env) b.clear_env();
  for (const auto& [k, v] : m.env) b.env(k, v);
  if (!cwd.empty()) b.cwd(cwd);
  if (m.timeout_ns > 0) b.timeout(std::chrono::nanoseconds(m.timeout_ns));
  if (m.output_cap > 0) b.output_cap(static_cast<std::size_t>(m.output_cap));
  if (sandbox.enabled()) b.sandbox(sandbox);
  auto built = b.build();
  if (!built) return worker::spawn_error(built.error().to_string());
  // The dispatcher chose what this attempt may use on this worker: the process executor
  // enforces it (cgroup limits, sched_setaffinity, CUDA_VISIBLE_DEVICES and friends).
  task::Task t = m.allocation ? built->with_allocation(*m.allocation) : std::move(*built);
  t = t.with_log_sink(worker::forward_logs(job->client, job->id));  // issue 24: live logs
  auto started =
      processes->start(t, job->stop.get_token(), [this, job](executor::ExecutionResult r) {
        post(Done{job, std::move(r), /*function=*/false});
      });
  if (!started) return worker::spawn_error(started.error().to_string());
  return std::nullopt;
}

bool runs_on_server(const SubmitMsg& m, const task::SandboxPolicy& effective) {
  if (m.kind != TaskKind::Process || effective.enabled()) return false;
  const auto marker = m.env.find(std::string(kServeEnv));
  if (marker == m.env.end() || marker->second != "1") return false;
  if (!m.path.starts_with('/') || !m.cwd.empty() || !m.files.empty() || !m.inputs.empty() ||
      !m.outputs.empty()) {
    return false;
  }
  if (const auto& a = m.allocation) {
    if (a->cpus > 0 || !a->cores.empty() || a->memory > 0 || !a->gpus.empty() ||
        !a->named.empty() || a->pids > 0) {
      return false;
    }
  }
  return true;
}

// Issue 26: the task's program (Python's function runner) as a persistent server on this slot.
// Its command and environment are built as the process path builds them (the worker's own
// environment when the task inherits it, the task's variables on top), so the same interpreter
// and package run it; prints come back as its stderr when it ends (not as live logs).
std::optional<ResultMsg> Worker::Impl::launch_served(const std::shared_ptr<Job>& job) {
  const SubmitMsg& m = job->msg;
  auto b = task::Task::binary(m.path);
  b.args(m.args).stdin(m.stdin_data).name("remote-" + std::to_string(job->id));
  if (!m.inherit_env) b.clear_env();
  for (const auto& [k, v] : m.env) b.env(k, v);
  if (m.timeout_ns > 0) b.timeout(std::chrono::nanoseconds(m.timeout_ns));
  if (m.output_cap > 0) b.output_cap(static_cast<std::size_t>(m.output_cap));
  auto built = b.build();
  if (!built) return worker::spawn_error(built.error().to_string());
  executor::Executor* exec = nullptr;
  {
    std::lock_guard lock(cpu_mu);
    if (!served) {
      executor::ServeOptions o;
      o.slots = opts.slots;
      o.backend = "serve";
      o.what = "persistent worker process";
      auto made = executor::make_serve_executor(std::move(o));
      if (!made) return worker::spawn_error(made.error().to_string());
      served = std::move(*made);
    }
    exec = served.get();
  }
  return start_reported(*exec, *built, job, /*function=*/false);
}

}  // namespace pepita::transport
