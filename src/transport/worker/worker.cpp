// Worker daemon: acceptor thread, one thread per client connection (handshake, frames,
// heartbeats, failure detection), `slots` runner threads shared by all clients; processes are
// spawned and reaped by the executor module's ProcessExecutor.
#include "pepita/transport/worker.hpp"

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <future>
#include <list>
#include <thread>

#include "pepita/executor/process.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/result_codec.hpp"
#include "transport/detail/sys.hpp"

namespace pepita::transport {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

void signal_fd(int fd) {
  const std::uint64_t one = 1;
  (void)sys::write(fd, &one, sizeof one);
}
void clear_fd(int fd) {
  std::uint64_t v;
  (void)sys::read(fd, &v, sizeof v);
}

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

bool safe_file_name(std::string_view n) {
  return !n.empty() && n.size() < 256 && n != "." && n != ".." &&
         n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

struct Client;

struct Job {
  std::shared_ptr<Client> client;
  std::uint64_t id = 0;
  SubmitMsg msg;
  std::atomic<bool> cancel{false};
  std::stop_source stop;  // for function tasks
};

struct Client {
  std::unique_ptr<Connection> conn;
  std::string peer;
  UniqueFd wake;  // eventfd: a runner finished a job, or the worker is stopping
  std::atomic<bool> open{true};
  std::atomic<bool> finished{false};
  std::mutex jobs_mu;
  std::map<std::uint64_t, std::shared_ptr<Job>> jobs;  // submitted and not yet reported
  std::thread thread;
  std::uint64_t serial = 0;
};

}  // namespace

struct Worker::Impl {
  WorkerOptions opts;
  std::optional<Listener> listener;
  Endpoint bound;  // set once in start(); the listener itself is closed on stop
  std::string cache_dir;
  std::map<std::string, WorkerFunction> functions;
  // Spawns, watches (pidfd + epoll), times out and reaps process tasks; runner threads block
  // on its completions, so `slots` bounds the processes running at once.
  std::unique_ptr<executor::ProcessExecutor> processes;
  UniqueFd stop_efd;
  std::atomic<bool> stopping{false};
  std::atomic<bool> kill_running{false};

  std::mutex mu;  // guards queue, clients, runners_exit
  std::condition_variable queue_cv;
  std::deque<std::shared_ptr<Job>> queue;
  std::list<std::shared_ptr<Client>> clients;
  bool runners_exit = false;
  std::uint32_t running = 0;

  std::vector<std::thread> runners;
  std::thread acceptor;
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  std::once_flag joined;

  std::atomic<std::uint64_t> accepted{0}, rejected{0}, tasks_run{0}, returned{0}, blobs{0};
  std::uint64_t next_serial = 0;

  void log(const std::string& line) {
    if (opts.log) {
      opts.log(line);
    } else {
      std::fprintf(stderr, "pepita worker: %s\n", line.c_str());
    }
  }

  // ---- acceptor -------------------------------------------------------------------------
  void accept_loop() {
    while (!stopping.load()) {
      pollfd pfds[2] = {{listener->fd(), POLLIN, 0}, {stop_efd.get(), POLLIN, 0}};
      (void)sys::poll(pfds, 2, 1000);
      clear_fd(stop_efd.get());  // level-triggered: an unread eventfd would make this spin
      reap_clients(false);
      if (stopping.load()) break;
      if ((pfds[0].revents & POLLIN) == 0) continue;
      std::string peer;
      auto fd = listener->accept(peer);
      if (!fd) continue;
      std::lock_guard lock(mu);
      if (clients.size() >= opts.max_clients) {
        log("refusing " + peer + ": already serving " + std::to_string(clients.size()) +
            " clients");
        rejected.fetch_add(1);
        continue;
      }
      start_client_locked(std::move(peer), std::move(*fd));
    }
    listener.reset();  // stop accepting: new connects are refused from here on
    shutdown_sequence();
  }

  // Caller holds mu.
  void start_client_locked(std::string peer, UniqueFd fd) {
    auto c = std::make_shared<Client>();
    c->peer = std::move(peer);
    c->wake.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    c->serial = ++next_serial;
    clients.push_back(c);
    c->thread = std::thread([this, c, f = std::move(fd)]() mutable { serve(c, std::move(f)); });
  }

  // ---- dial-out mode ----------------------------------------------------------------------
  // One connection at a time to the driver; re-dialed with backoff when it ends, given up
  // (worker stops) once the driver has been unreachable for give_up_after.
  void dial_loop() {
    const Endpoint driver = bound;
    // Exponential backoff with full jitter: workers of one Slurm job that lost their driver
    // together do not redial it in step.
    fault::RetryPolicy policy;
    policy.base_delay(std::chrono::milliseconds(100)).max_delay(std::chrono::seconds(5));
    constexpr std::uint32_t kMaxRetry = 64;  // the ceiling is long at max_delay by then
    std::uint32_t failures = 0;
    const auto next_backoff = [&] {
      failures = std::min(failures + 1, kMaxRetry);
      return policy.backoff(failures);
    };
    auto next_dial = Clock::now();
    auto reachable_at = Clock::now();
    bool was_connected = false;
    std::uint64_t accepted_before = 0;
    bool logged_down = false;
    while (!stopping.load()) {
      reap_clients(false);
      bool connected = false;
      {
        std::lock_guard lock(mu);
        connected = !clients.empty();
      }
      const auto now = Clock::now();
      if (connected) {
        reachable_at = now;
      } else if (was_connected) {
        // A session that authenticated resets the backoff; one that failed the handshake
        // (wrong key) must not turn into a tight reconnect loop.
        if (accepted.load() > accepted_before) failures = 0;
        next_dial = now + next_backoff();
      } else if (now - reachable_at > opts.give_up_after) {
        log("driver " + driver.to_string() + " unreachable for " +
            std::to_string(opts.give_up_after.count()) + " ms; stopping");
        stopping.store(true);
        break;
      } else if (now >= next_dial) {
        auto fd = dial(driver, opts.connection.connect_timeout);
        if (fd) {
          logged_down = false;
          accepted_before = accepted.load();
          std::lock_guard lock(mu);
          start_client_locked(driver.to_string(), std::move(*fd));
          connected = true;
        } else {
          if (!logged_down) log("driver unreachable, retrying: " + fd.error().to_string());
          logged_down = true;
          next_dial = Clock::now() + next_backoff();
        }
      }
      was_connected = connected;
      const auto until_dial =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_dial - Clock::now());
      const int wait_ms =
          connected ? 1000
                    : static_cast<int>(std::clamp<std::int64_t>(until_dial.count(), 1, 1000));
      pollfd pfd{stop_efd.get(), POLLIN, 0};
      (void)sys::poll(&pfd, 1, wait_ms);
      clear_fd(stop_efd.get());
    }
    shutdown_sequence();
  }

  void reap_clients(bool all) {
    std::list<std::shared_ptr<Client>> gone;
    {
      std::lock_guard lock(mu);
      for (auto it = clients.begin(); it != clients.end();) {
        if (all || (*it)->finished.load()) {
          gone.push_back(*it);
          it = clients.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& c : gone) {
      if (c->thread.joinable()) c->thread.join();
    }
  }

  void shutdown_sequence() {
    // Queued tasks go back to their drivers right away; running ones finish (or are killed).
    std::deque<std::shared_ptr<Job>> unstarted;
    {
      std::lock_guard lock(mu);
      unstarted.swap(queue);
      for (auto& c : clients) signal_fd(c->wake.get());
    }
    for (auto& j : unstarted) {
      ResultMsg r{.attempt = j->msg.attempt,
                  .status = TaskStatus::Returned,
                  .error = "worker is shutting down; task returned unstarted"};
      report(*j, r);
      returned.fetch_add(1);
    }
    if (kill_running.load()) cancel_all();
    reap_clients(true);  // each client thread exits once its running jobs reported
    {
      std::lock_guard lock(mu);
      runners_exit = true;
    }
    queue_cv.notify_all();
    for (auto& t : runners) t.join();
    processes->shutdown();
    std::lock_guard lock(done_mu);
    done = true;
    done_cv.notify_all();
  }

  void cancel_all() {
    std::lock_guard lock(mu);
    for (auto& c : clients) {
      std::lock_guard jl(c->jobs_mu);
      for (auto& [id, j] : c->jobs) {
        j->cancel.store(true);
        j->stop.request_stop();
      }
    }
  }

  // ---- one client -----------------------------------------------------------------------
  void serve(const std::shared_ptr<Client>& c, UniqueFd fd) {
    auto conn = Connection::accept(std::move(fd), c->peer, *opts.key, opts.connection);
    if (!conn) {
      // Logged before it is counted: whoever sees the count can read the reason.
      log("rejected " + c->peer + ": " + conn.error().to_string());
      rejected.fetch_add(1);
      c->open.store(false);
      c->finished.store(true);
      return;
    }
    c->conn = std::move(*conn);
    accepted.fetch_add(1);
    log("client " + c->conn->remote_name() + " (" + c->peer + ") authenticated");
    std::string reason = run_client(c);
    log("closed " + c->conn->remote_name() + " (" + c->peer + "): " + reason);
    c->open.store(false);
    {
      // Tasks of a gone driver are pointless: it re-dispatches them elsewhere.
      std::lock_guard jl(c->jobs_mu);
      for (auto& [id, j] : c->jobs) {
        j->cancel.store(true);
        j->stop.request_stop();
      }
    }
    c->conn->shutdown();
    c->finished.store(true);
    signal_fd(stop_efd.get());  // let the acceptor reap us promptly
  }

  std::string run_client(const std::shared_ptr<Client>& cp) {
    Client& c = *cp;
    RegisterMsg reg{.slots = opts.slots,
                    .backends = {"process", "cpu"},
                    .labels = opts.labels,
                    .name = opts.name};
    if (auto r = c.conn->send(MessageType::Register, 0, encode(reg)); !r) {
      return r.error().to_string();
    }
    auto last_rx = Clock::now();
    auto last_hb = Clock::now();
    bool drain_sent = false;
    for (;;) {
      if (stopping.load() && !drain_sent) {
        if (auto r = c.conn->send(MessageType::Drain, 0, {}); !r) return r.error().to_string();
        drain_sent = true;
      }
      if (drain_sent) {
        std::lock_guard jl(c.jobs_mu);
        if (c.jobs.empty()) return "worker shutting down (drained)";
      }
      const auto wait = std::min(opts.heartbeat_interval, std::chrono::milliseconds(250));
      auto msg = c.conn->receive(wait, c.wake.get());
      clear_fd(c.wake.get());
      if (!msg) return msg.error().to_string();
      const auto now = Clock::now();
      if (*msg) {
        last_rx = now;
        if (auto h = handle(cp, **msg); !h) return h.error().to_string();
      }
      if (now - last_rx > opts.dead_after) {
        return "driver silent for " + std::to_string(opts.dead_after.count()) + " ms";
      }
      if (now - last_hb >= opts.heartbeat_interval) {
        last_hb = now;
        HeartbeatMsg hb{.sent_ns = static_cast<std::uint64_t>(now_ns())};
        {
          std::lock_guard lock(mu);
          hb.running = running;
          hb.free_slots = opts.slots > running ? opts.slots - running : 0;
        }
        if (auto r = c.conn->send(MessageType::Heartbeat, 0, encode(hb)); !r) {
          return r.error().to_string();
        }
      }
    }
  }

  Result<void> handle(const std::shared_ptr<Client>& cp, const Message& m) {
    Client& c = *cp;
    switch (m.header.type) {
      case MessageType::Heartbeat: return {};
      case MessageType::Submit: {
        auto msg = PEPITA_TRY(decode_submit(m.payload));
        if (stopping.load()) {
          ResultMsg r{.attempt = msg.attempt,
                      .status = TaskStatus::Returned,
                      .error = "worker is draining"};
          returned.fetch_add(1);
          return c.conn->send(MessageType::Result, m.header.request_id, encode(r));
        }
        auto job = std::make_shared<Job>();
        job->id = m.header.request_id;
        job->msg = std::move(msg);
        job->client = cp;
        {
          std::lock_guard jl(c.jobs_mu);
          if (c.jobs.contains(job->id)) {
            return fail(ErrorCode::Protocol,
                        "task " + std::to_string(job->id) + " submitted twice while running");
          }
          c.jobs[job->id] = job;
        }
        {
          std::lock_guard lock(mu);
          queue.push_back(std::move(job));
        }
        queue_cv.notify_one();
        return {};
      }
      case MessageType::Cancel: {
        std::lock_guard jl(c.jobs_mu);
        if (auto it = c.jobs.find(m.header.request_id); it != c.jobs.end()) {
          it->second->cancel.store(true);
          it->second->stop.request_stop();
        }
        return {};
      }
      case MessageType::Upload: {
        auto up = PEPITA_TRY(decode_upload(m.payload));
        HaveBlobMsg reply{.sha256 = up.sha256, .present = false};
        if (const Digest actual = sha256(as_bytes(up.data)); actual != up.sha256) {
          // Nothing is written: a blob is stored only under the hash of its own bytes.
          log("upload from " + c.peer + " does not match its SHA-256 (claims " + to_hex(up.sha256) +
              ", its " + std::to_string(up.data.size()) + " bytes hash to " + to_hex(actual) +
              "); dropped, nothing stored");
        } else if (auto s = store_blob(up); !s) {
          log("storing blob failed: " + s.error().to_string());
        } else {
          reply.present = true;
        }
        return c.conn->send(MessageType::HaveBlob, m.header.request_id, encode(reply));
      }
      case MessageType::HaveBlob: {
        auto q = PEPITA_TRY(decode_have_blob(m.payload));
        q.present = fs::exists(blob_path(q.sha256));
        return c.conn->send(MessageType::HaveBlob, m.header.request_id, encode(q));
      }
      case MessageType::Error: {
        auto e = decode_error(m.payload);
        return fail(ErrorCode::Disconnected,
                    "driver closed with: " + (e ? e->reason : std::string("(garbled reason)")));
      }
      default:
        return fail(ErrorCode::Protocol,
                    "unexpected " + std::string(to_string(m.header.type)) + " frame from a driver");
    }
  }

  // ---- blobs ----------------------------------------------------------------------------
  std::string blob_path(const Digest& d) const { return cache_dir + "/" + to_hex(d); }

  Result<void> store_blob(const UploadMsg& up) {
    const std::string final_path = blob_path(up.sha256);
    if (fs::exists(final_path)) return {};
    const std::string tmp = final_path + ".tmp." + std::to_string(::gettid());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700));
    if (!fd) return fail_errno(errno, "create " + tmp);
    std::size_t done_bytes = 0;
    while (done_bytes < up.data.size()) {
      const long n = sys::write(fd.get(), up.data.data() + done_bytes, up.data.size() - done_bytes);
      if (n == -EINTR) continue;
      if (n < 0) return fail_errno(static_cast<int>(-n), "write " + tmp);
      done_bytes += static_cast<std::size_t>(n);
    }
    fd.reset();
    // rename is atomic: a concurrent reader sees no blob or the whole verified blob.
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) return fail_errno(errno, "rename blob");
    blobs.fetch_add(1);
    return {};
  }

  // ---- runners --------------------------------------------------------------------------
  void runner_loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mu);
        queue_cv.wait(lock, [&] { return runners_exit || !queue.empty(); });
        if (queue.empty()) return;
        job = std::move(queue.front());
        queue.pop_front();
        ++running;
      }
      if (job->client->open.load() && !job->cancel.load()) {
        (void)job->client->conn->send(MessageType::Started, job->id,
                                      encode(StartedMsg{job->msg.attempt}));
        ResultMsg r = execute(*job);
        r.attempt = job->msg.attempt;
        tasks_run.fetch_add(1);
        report(*job, r);
      } else {
        // Cancelled while it waited here for a runner. The driver leased it and waits for a
        // Result for every lease, so say so: finishing it silently left the driver's task
        // running forever, and `pepita run` hung in wait_all() after Ctrl-C (issue 19).
        report(*job, ResultMsg{.attempt = job->msg.attempt,
                               .status = TaskStatus::Cancelled,
                               .exit_code = -1,
                               .error = "cancelled before it started"});
      }
      std::lock_guard lock(mu);
      --running;
    }
  }

  void report(Job& job, const ResultMsg& r) {
    if (job.client->open.load()) {
      (void)job.client->conn->send(MessageType::Result, job.id, encode(r));
    }
    finish(job);
  }

  void finish(Job& job) {
    {
      std::lock_guard jl(job.client->jobs_mu);
      job.client->jobs.erase(job.id);
    }
    signal_fd(job.client->wake.get());
  }

  // A task killed by a signal this worker did not send, while the worker is being stopped too:
  // a cluster manager tearing down the whole job (scancel, preemption, time limit) signals every
  // process at once. That is not the task's failure. The worker's own SIGTERM may land a moment
  // after the child's, so wait briefly for it.
  bool killed_with_the_worker(const executor::ExecutionResult& er) {
    if (er.status != executor::Status::Signaled) return false;
    if (er.signal != SIGTERM && er.signal != SIGKILL && er.signal != SIGINT &&
        er.signal != SIGHUP) {
      return false;
    }
    const auto until = Clock::now() + std::chrono::seconds(3);
    while (!stopping.load() && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return stopping.load();
  }

  ResultMsg run_process(Job& job, const std::string& path, const std::string& cwd) {
    const SubmitMsg& m = job.msg;
    auto b = task::Task::binary(path);
    b.args(m.args).stdin(m.stdin_data).name("remote-" + std::to_string(job.id));
    if (!m.inherit_env) b.clear_env();
    for (const auto& [k, v] : m.env) b.env(k, v);
    if (!cwd.empty()) b.cwd(cwd);
    if (m.timeout_ns > 0) b.timeout(std::chrono::nanoseconds(m.timeout_ns));
    if (m.output_cap > 0) b.output_cap(static_cast<std::size_t>(m.output_cap));
    auto t = b.build();
    if (!t) {
      return ResultMsg{
          .status = TaskStatus::SpawnError, .exit_code = -1, .error = t.error().to_string()};
    }
    std::promise<executor::ExecutionResult> promise;
    auto future = promise.get_future();
    auto started = processes->start(
        *t, job.stop.get_token(),
        [&promise](executor::ExecutionResult r) { promise.set_value(std::move(r)); });
    if (!started) {
      return ResultMsg{
          .status = TaskStatus::SpawnError, .exit_code = -1, .error = started.error().to_string()};
    }
    executor::ExecutionResult er = future.get();
    if (killed_with_the_worker(er)) {
      er.status = executor::Status::Cancelled;
      er.exit_code = -1;
      er.stdout_data.clear();
      er.stderr_data.clear();
      er.stdout_bytes = er.stderr_bytes = 0;
      er.error = "killed by signal " + std::to_string(er.signal) +
                 " while the worker itself was being stopped; the driver runs it elsewhere";
    }
    return to_result_msg(std::move(er), m.attempt);
  }

  ResultMsg execute(Job& job) {
    const SubmitMsg& m = job.msg;
    if (m.kind == TaskKind::Function) {
      ResultMsg r;
      auto it = functions.find(m.path);
      if (it == functions.end()) {
        r.status = TaskStatus::SpawnError;
        r.error = "worker has no function named '" + m.path + "'";
        return r;
      }
      const auto t0 = Clock::now();
      auto out = it->second(m.stdin_data, job.stop.get_token());
      r.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
      if (out) {
        r.stdout_data = std::move(*out);
        r.stdout_bytes = r.stdout_data.size();
        if (r.stdout_data.size() > m.output_cap) r.stdout_data.resize(m.output_cap);
      } else {
        r.status = job.cancel.load() ? TaskStatus::Cancelled : TaskStatus::Failed;
        r.exit_code = 1;
        r.error = out.error().to_string();
      }
      return r;
    }
    std::string path = m.path;
    if (path.starts_with("blob:")) {
      auto d = from_hex(path.substr(5));
      if (!d || d->size() != 32) {
        return ResultMsg{.status = TaskStatus::SpawnError,
                         .exit_code = -1,
                         .error = "bad blob reference '" + path +
                                  "': expected blob:<the 64 hex digits of a SHA-256>"};
      }
      Digest dg{};
      std::copy(d->begin(), d->end(), dg.begin());
      path = blob_path(dg);
      if (!fs::exists(path)) {
        return ResultMsg{.status = TaskStatus::SpawnError,
                         .exit_code = -1,
                         .error = "blob " + to_hex(dg) +
                                  " is not on this worker: it was never uploaded, or its upload "
                                  "failed the SHA-256 check"};
      }
    }
    std::string cwd = m.cwd;
    std::string scratch;
    if (!m.files.empty()) {
      scratch = cache_dir + "/tasks/" + std::to_string(job.client->serial) + "-" +
                std::to_string(job.id) + "-" + std::to_string(m.attempt);
      std::error_code ec;
      fs::create_directories(scratch, ec);
      for (const auto& f : m.files) {
        const std::string src = blob_path(f.sha256);
        const std::string dst = scratch + "/" + f.name;
        if (!safe_file_name(f.name) || !fs::exists(src)) {
          fs::remove_all(scratch, ec);
          return ResultMsg{.status = TaskStatus::SpawnError,
                           .exit_code = -1,
                           .error = "file '" + f.name + "': " +
                                    (safe_file_name(f.name) ? "blob not uploaded to this worker"
                                                            : "name must be a plain file name")};
        }
        fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
        ::chmod(dst.c_str(), f.executable ? 0700 : 0600);
      }
      if (cwd.empty()) cwd = scratch;
    }
    ResultMsg r = run_process(job, path, cwd);
    if (!scratch.empty()) {
      std::error_code ec;
      fs::remove_all(scratch, ec);
    }
    return r;
  }
};

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Worker::~Worker() {
  stop(StopMode::Kill);
  wait();
}

Result<std::unique_ptr<Worker>> Worker::start(WorkerOptions options) {
  if (!options.key) {
    return fail(ErrorCode::InvalidArgument,
                "a worker runs arbitrary binaries for its clients, so it needs a key: pass "
                "--key FILE (create one with `pepita worker --gen-key FILE`)");
  }
  auto ep = PEPITA_TRY(parse_endpoint(options.listen));
  if (options.slots == 0) {
    options.slots = std::max(1u, std::thread::hardware_concurrency());
  }
  if (options.name.empty()) {
    char host[256] = "worker";
    ::gethostname(host, sizeof host - 1);
    options.name = host;
  }
  auto impl = std::make_unique<Impl>();
  const bool dials = !options.connect_to.empty();
  Endpoint bound;
  if (dials) {
    bound = PEPITA_TRY(parse_endpoint(options.connect_to));
  } else {
    impl->listener.emplace(PEPITA_TRY(Listener::bind(ep, options.allow_non_loopback)));
    bound = impl->listener->endpoint();
  }
  if (options.cache_dir.empty()) {
    // Dialing workers may share a host and a driver port (several Slurm jobs on one node).
    const char* tmp = std::getenv("TMPDIR");
    options.cache_dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/pepita-worker-" +
                        std::to_string(::getuid()) + "-" +
                        (dials ? "pid" + std::to_string(::getpid()) : std::to_string(bound.port));
  }
  if (::mkdir(options.cache_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail_errno(errno, "create cache directory " + options.cache_dir);
  }
  struct stat st {};
  if (::stat(options.cache_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_uid != ::getuid() || (st.st_mode & 022) != 0) {
    return fail(ErrorCode::PermissionDenied,
                "cache directory " + options.cache_dir +
                    " must be a directory owned by this user and not writable by others");
  }
  impl->cache_dir = options.cache_dir;
  impl->bound = bound;
  impl->functions = builtin_functions();
  for (auto& [k, v] : options.functions) impl->functions[k] = v;
  impl->processes = PEPITA_TRY(executor::ProcessExecutor::create(
      {.slots = options.slots, .kill_grace = std::chrono::milliseconds(500)}));
  impl->stop_efd.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->stop_efd) return fail_errno(errno, "eventfd");
  impl->opts = std::move(options);
  Impl* raw = impl.get();
  for (std::uint32_t i = 0; i < raw->opts.slots; ++i) {
    raw->runners.emplace_back([raw] { raw->runner_loop(); });
  }
  if (dials) {
    raw->acceptor = std::thread([raw] { raw->dial_loop(); });
    raw->log("dialing driver " + bound.to_string() + " with " + std::to_string(raw->opts.slots) +
             " slots, cache " + raw->cache_dir);
  } else {
    raw->acceptor = std::thread([raw] { raw->accept_loop(); });
    raw->log("listening on " + bound.to_string() + " with " + std::to_string(raw->opts.slots) +
             " slots, cache " + raw->cache_dir);
  }
  return std::make_unique<Worker>(std::move(impl));
}

Endpoint Worker::endpoint() const { return impl_->bound; }

void Worker::stop(StopMode mode) {
  if (mode == StopMode::Kill) impl_->kill_running.store(true);
  if (!impl_->stopping.exchange(true)) impl_->log("stopping: draining clients");
  signal_fd(impl_->stop_efd.get());
  if (mode == StopMode::Kill) impl_->cancel_all();
}

void Worker::wait() {
  {
    std::unique_lock lock(impl_->done_mu);
    impl_->done_cv.wait(lock, [&] { return impl_->done; });
  }
  std::call_once(impl_->joined, [&] { impl_->acceptor.join(); });
}

WorkerStats Worker::stats() const {
  return {impl_->accepted.load(), impl_->rejected.load(), impl_->tasks_run.load(),
          impl_->returned.load(), impl_->blobs.load()};
}

}  // namespace pepita::transport
