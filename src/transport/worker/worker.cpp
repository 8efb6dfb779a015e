// Worker daemon, listener side: the acceptor (or the dial-out loop in --connect mode) starts one
// session thread per client (session.cpp); shutdown returns queued tasks and waits for the
// clients; the public Worker API. Execution is in execution.cpp, results in results.cpp.
#include "pepita/transport/worker.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/fault/retry.hpp"
#include "worker/worker_impl.hpp"

namespace pepita::transport {
namespace worker {

void signal_fd(int fd) { (void)sys::eventfd_signal(fd); }
void clear_fd(int fd) { (void)sys::eventfd_drain(fd); }
std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

}  // namespace worker

using worker::clear_fd;
using worker::Clock;
using worker::signal_fd;

void Worker::Impl::log(const std::string& line) {
  if (opts.log) {
    opts.log(line);
  } else {
    std::fprintf(stderr, "pepita worker: %s\n", line.c_str());
  }
}

void Worker::Impl::accept_loop() {
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
      log("refusing " + peer + ": already serving " + std::to_string(clients.size()) + " clients");
      rejected.fetch_add(1);
      continue;
    }
    start_client_locked(std::move(peer), std::move(*fd));
  }
  listener.reset();  // stop accepting: new connects are refused from here on
  shutdown_sequence();
}

// Caller holds mu.
void Worker::Impl::start_client_locked(std::string peer, UniqueFd fd) {
  auto c = std::make_shared<Client>();
  c->peer = std::move(peer);
  c->wake.reset(sys::eventfd(0, EFD_NONBLOCK));
  c->serial = ++next_serial;
  clients.push_back(c);
  c->thread = std::thread([this, c, f = std::move(fd)]() mutable { serve(c, std::move(f)); });
}

// ---- dial-out mode ----------------------------------------------------------------------
// One connection at a time to the driver; re-dialed with backoff when it ends, given up
// (worker stops) once the driver has been unreachable for give_up_after.
void Worker::Impl::dial_loop() {
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
        connected ? 1000 : static_cast<int>(std::clamp<std::int64_t>(until_dial.count(), 1, 1000));
    pollfd pfd{stop_efd.get(), POLLIN, 0};
    (void)sys::poll(&pfd, 1, wait_ms);
    clear_fd(stop_efd.get());
  }
  shutdown_sequence();
}

void Worker::Impl::reap_clients(bool all) {
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

void Worker::Impl::shutdown_sequence() {
  // Queued tasks go back to their drivers right away; running ones finish (or are killed).
  std::deque<std::shared_ptr<Job>> unstarted;
  {
    std::lock_guard lock(mu);
    unstarted.swap(queue);
    queue_closed = true;
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
  processes->shutdown();
  std::lock_guard cl(cpu_mu);
  if (cpu) cpu->shutdown();
  if (served) served->shutdown();
  std::lock_guard lock(done_mu);
  done = true;
  done_cv.notify_all();
}

void Worker::Impl::cancel_all() {
  std::lock_guard lock(mu);
  for (auto& c : clients) {
    std::lock_guard jl(c->jobs_mu);
    for (auto& [id, j] : c->jobs) {
      j->cancel.store(true);
      j->stop.request_stop();
    }
  }
}

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
  if (!options.inventory) {
    auto detected = task::Inventory::detect();
    if (!detected) {
      return fail(detected.error().code(),
                  "cannot detect this host's resources (" + detected.error().message() +
                      "); give them explicitly (pepita worker --resources, --cpus, --memory)");
    }
    options.inventory = std::move(*detected);
  }
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
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = std::string(tmp && *tmp ? tmp : "/tmp") + "/pepita-worker-" +
                             std::to_string(::getuid()) + "-";
    if (!dials && ep.port != 0) {
      // Kept: a worker started again on this port finds its staged inputs.
      options.cache_dir = base + std::to_string(bound.port);
    } else {
      // A dialing worker (several may share a host, a driver and a process) or one on a port
      // the kernel chose: no later worker could find this cache, so it is this one's own.
      std::string made = base + "XXXXXX";
      if (::mkdtemp(made.data()) == nullptr) {
        return fail_errno(errno, "create cache directory " + made +
                                     " (set TMPDIR to a writable directory, or give --cache-dir)");
      }
      impl->owned_cache_dir.adopt(made);
      options.cache_dir = std::move(made);
    }
  }
  if (const long rc = sys::ret(::mkdir(options.cache_dir.c_str(), 0700)); rc < 0 && rc != -EEXIST) {
    return fail_errno(static_cast<int>(rc), "create cache directory " + options.cache_dir);
  }
  struct stat st {};
  if (::stat(options.cache_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_uid != ::getuid() || (st.st_mode & 022) != 0) {
    return fail(ErrorCode::PermissionDenied,
                "cache directory " + options.cache_dir +
                    " must be a directory owned by this user and not writable by others");
  }
  impl->cache_dir = options.cache_dir;
  impl->store =
      PEPITA_TRY(worker::BlobStore::open(options.cache_dir + "/blobs", options.cache_size));
  impl->bound = bound;
  impl->functions = worker::builtin_functions();
  for (auto& [k, v] : options.functions) impl->functions[k] = v;
  for (const char* name : {"noop", "echo"}) {
    if (!options.functions.contains(name)) impl->inline_functions.insert(name);
  }
  impl->processes = PEPITA_TRY(executor::ProcessExecutor::create(
      {.slots = options.slots, .kill_grace = std::chrono::milliseconds(500)}));
  impl->stop_efd = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
  impl->opts = std::move(options);
  Impl* raw = impl.get();
  if (dials) {
    raw->acceptor = std::thread([raw] { raw->dial_loop(); });
    raw->log("dialing driver " + bound.to_string() + " with " + std::to_string(raw->opts.slots) +
             " slots, cache " + raw->cache_dir + "; offers " + raw->opts.inventory->to_string() +
             "; sandbox floor " + std::string(task::to_string(raw->opts.sandbox.level)));
  } else {
    raw->acceptor = std::thread([raw] { raw->accept_loop(); });
    raw->log("listening on " + bound.to_string() + " with " + std::to_string(raw->opts.slots) +
             " slots, cache " + raw->cache_dir + "; offers " + raw->opts.inventory->to_string() +
             "; sandbox floor " + std::string(task::to_string(raw->opts.sandbox.level)));
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
  return {impl_->accepted.load(),      impl_->rejected.load(),  impl_->tasks_run.load(),
          impl_->returned.load(),      impl_->blobs.load(),     impl_->blobs_fetched.load(),
          impl_->bytes_fetched.load(), impl_->store->evicted(), impl_->output_bytes.load()};
}

}  // namespace pepita::transport
