// `pepita worker`: runs the transport worker daemon (docs/protocol.md) until SIGTERM/SIGINT,
// then drains: running tasks finish and report, queued ones go back to their driver; a second
// signal kills running tasks. `pepita worker --gen-key FILE` writes a fresh 0600 key file.
#include "pepita/transport/worker.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"
#include "dashboard_server.hpp"
#include "pepita/core/size.hpp"
#include "pepita/slurm/grant.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"

namespace pepita::cli {
namespace {

struct WorkerCliOptions {
  std::string listen = "127.0.0.1:7070";
  std::string connect;
  double give_up_s = 60;
  std::string key_file;
  std::string gen_key;
  std::uint32_t slots = 0;
  std::string cache_dir;
  std::string cache_size = "10G";  // cap of the staged-input store (issue 24)
  std::string name;
  std::vector<std::string> labels;
  bool tls = false;
  std::vector<std::string> resources;  // "gpus=0,1", "license=2", ... (repeatable)
  std::string cpus;                    // "32" or a core list "0-3,8"
  std::string memory;                  // "64G"
  std::string sandbox = "standard";    // the floor for tasks from drivers (issue 23)
  std::string metrics;                 // --metrics ADDR: Prometheus /metrics (issue 25)
  std::string metrics_token;
  bool zero_worker = false;  // --zero-worker: report every task succeeded at once (issue 27)
};

constexpr const char* kCommand = "pepita worker";
constexpr const char* kUsage =
    "pepita worker --key FILE [--listen HOST:PORT | --connect HOST:PORT [--give-up S]] "
    "[--slots N] [--cache-dir DIR] [--cache-size SIZE] [--name NAME] [--label KEY=VALUE]... "
    "[--tls] [--zero-worker] "
    "[--resources NAME=VALUE,...]... [--cpus N|LIST] [--memory SIZE] "
    "[--sandbox none|standard|strict] [--metrics HOST:PORT [--metrics-token T]]  |  "
    "pepita worker --gen-key FILE";

int run_worker(const WorkerCliOptions& o) {
  using transport::Key;
  if (!o.gen_key.empty()) {
    auto key = Key::generate();
    auto written =
        key ? Key::write_file(o.gen_key, *key) : Result<void>(std::unexpected(key.error()));
    if (!written) {
      std::fprintf(stderr, "pepita worker: %s\n", written.error().to_string().c_str());
      return kExitFailure;
    }
    std::printf("wrote a new 256-bit key to %s (mode 0600); copy it to the driver host\n",
                o.gen_key.c_str());
    return kExitOk;
  }
  // Every argument is checked before the worker binds, dials or makes its cache directory, so a
  // usage error (exit 2) leaves nothing behind.
  if (o.key_file.empty())
    return usage_error(kCommand, kUsage,
                       "--key FILE is required: a worker runs arbitrary binaries for whoever "
                       "authenticates. Create one with `pepita worker --gen-key FILE`.");
  const std::string& address = o.connect.empty() ? o.listen : o.connect;
  auto endpoint = transport::parse_endpoint(address);
  if (!endpoint)
    return usage_error(kCommand, kUsage,
                       std::string(o.connect.empty() ? "--listen" : "--connect") + ": " +
                           endpoint.error().message());
  std::map<std::string, std::string> labels;
  for (const auto& l : o.labels) {
    const auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0)
      return usage_error(kCommand, kUsage, "--label '" + l + "' must be key=value");
    labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  // What this worker offers for resource requests: what it detects, narrowed or replaced by
  // --resources, --cpus and --memory (a fake GPU inventory for tests: --resources gpus=0,1).
  auto inventory = task::Inventory::detect();
  if (!inventory) {
    std::fprintf(stderr, "pepita worker: cannot detect this host's resources: %s\n",
                 inventory.error().to_string().c_str());
    return kExitFailure;
  }
  // Inside a Slurm job: what the job was granted, not the whole node.
  if (auto r = slurm::apply_grant(*inventory, [](const char* n) { return std::getenv(n); }); !r) {
    std::fprintf(stderr, "pepita worker: %s\n", r.error().to_string().c_str());
    return kExitFailure;
  }
  for (const auto& spec : o.resources) {
    if (auto r = inventory->apply_overrides(spec); !r)
      return usage_error(kCommand, kUsage, "--resources: " + r.error().message());
  }
  if (!o.cpus.empty()) {
    if (auto r = inventory->apply_overrides(std::string("cpus=").append(o.cpus)); !r)
      return usage_error(kCommand, kUsage, "--cpus: " + r.error().message());
  }
  if (!o.memory.empty()) {
    if (auto r = inventory->apply_overrides(std::string("memory=").append(o.memory)); !r)
      return usage_error(kCommand, kUsage, "--memory: " + r.error().message());
  }
  // The least sandbox a driver's binary runs in; none is the explicit opt-out.
  auto floor = task::SandboxPolicy::parse(o.sandbox);
  if (!floor) return usage_error(kCommand, kUsage, "--sandbox: " + floor.error().message());
  if (!o.metrics.empty()) {
    if (auto metrics_at = dashboard::parse_address(o.metrics); !metrics_at)
      return usage_error(kCommand, kUsage, "--metrics: " + metrics_at.error().message());
  }
  // A key file that cannot be used (missing, readable by others, malformed) is a bad --key.
  auto key = Key::from_file(o.key_file);
  if (!key) return usage_error(kCommand, kUsage, "--key: " + key.error().message());

  transport::WorkerOptions wo;
  wo.listen = o.listen;
  wo.connect_to = o.connect;
  wo.give_up_after = std::chrono::milliseconds(static_cast<std::int64_t>(o.give_up_s * 1000));
  wo.key = std::move(*key);
  // A key is mandatory, so listening beyond loopback is an explicit, authenticated choice.
  wo.allow_non_loopback = true;
  wo.slots = o.slots;
  wo.cache_dir = o.cache_dir;
  auto cap = parse_size(o.cache_size);
  if (!cap) return usage_error(kCommand, kUsage, "--cache-size: " + cap.error().message());
  wo.cache_size = *cap;
  wo.name = o.name;
  wo.connection.tls = o.tls;
  wo.labels = std::move(labels);
  wo.inventory = std::move(*inventory);
  wo.sandbox = *floor;
  wo.zero_worker = o.zero_worker;
  if (o.zero_worker) {
    std::fprintf(stderr,
                 "pepita worker: --zero-worker: every task is reported succeeded at once and "
                 "nothing runs (for measuring the protocol's cost per task)\n");
  }
  if (!floor->enabled()) {
    std::fprintf(stderr,
                 "pepita worker: warning: --sandbox none: drivers' binaries run as this user "
                 "(%d) and see its files and network unless a task asks for a sandbox itself; "
                 "leave --sandbox at standard unless every driver holding the key is trusted\n",
                 static_cast<int>(::getuid()));
  }
  if (!transport::is_loopback_host(endpoint->host) && !o.tls) {
    std::fprintf(stderr,
                 "pepita worker: note: %s %s; frames are authenticated and "
                 "tamper-proof but not encrypted — use --tls (on the driver too), a trusted "
                 "network or a tunnel\n",
                 o.connect.empty() ? "listening on" : "dialing", endpoint->to_string().c_str());
  }
  // Block the shutdown signals before any worker thread exists, so only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::uint64_t slots = wo.slots;
  auto worker = transport::Worker::start(std::move(wo));
  if (!worker) {
    std::fprintf(stderr, "pepita worker: %s\n", worker.error().to_string().c_str());
    return kExitFailure;
  }
  std::unique_ptr<dashboard::Server> metrics;  // stopped before the worker goes
  if (!o.metrics.empty()) {
    auto served = dashboard::Server::start(
        {.address = o.metrics, .token = o.metrics_token}, {.metrics = [&worker, slots] {
          const auto s = (*worker)->stats();
          return dashboard::worker_metrics({s.clients_accepted, s.clients_rejected, s.tasks_run,
                                            s.tasks_returned, s.blobs_stored, slots,
                                            s.bytes_fetched + s.output_bytes_sent});
        }});
    if (!served) {
      std::fprintf(stderr, "pepita worker: --metrics: %s\n", served.error().message().c_str());
      return kExitFailure;
    }
    metrics = std::move(*served);
    std::fprintf(stderr, "pepita worker: metrics at %smetrics\n", metrics->url().c_str());
    if (metrics->token_generated())
      std::fprintf(stderr,
                   "pepita worker: metrics token %s (generated; send it as "
                   "X-Pepita-Token or Authorization: Bearer)\n",
                   metrics->token().c_str());
  }
  std::fflush(stderr);
  // A dialing worker also ends on its own when its driver stays away: wake the sigwait then.
  std::atomic<bool> signalled{false};
  std::jthread self_stop([&worker, &signalled] {
    (*worker)->wait();
    if (!signalled.load()) ::kill(::getpid(), SIGTERM);
  });
  int sig = 0;
  sigwait(&set, &sig);
  signalled.store(true);
  (*worker)->stop(transport::Worker::StopMode::Drain);
  std::jthread second([&](std::stop_token stop) {
    const timespec tick{0, 200'000'000};
    while (!stop.stop_requested()) {
      if (sigtimedwait(&set, nullptr, &tick) > 0) {
        std::fprintf(stderr, "pepita worker: second signal: killing running tasks\n");
        (*worker)->stop(transport::Worker::StopMode::Kill);
      }
    }
  });
  (*worker)->wait();
  if (metrics) metrics->stop();
  second.request_stop();
  second.join();
  const auto s = (*worker)->stats();
  std::fprintf(stderr,
               "pepita worker: stopped after %llu tasks (%llu returned unstarted), %llu clients "
               "served, %llu rejected\n",
               static_cast<unsigned long long>(s.tasks_run),
               static_cast<unsigned long long>(s.tasks_returned),
               static_cast<unsigned long long>(s.clients_accepted),
               static_cast<unsigned long long>(s.clients_rejected));
  return kExitOk;
}

void add_worker(CLI::App& app, Dispatch& dispatch) {
  auto* sub =
      app.add_subcommand("worker", "Run a remote worker: executes tasks for authenticated drivers");
  auto o = std::make_shared<WorkerCliOptions>();
  sub->add_option("--listen", o->listen, "host:port to listen on (default 127.0.0.1:7070)");
  sub->add_option("--connect", o->connect,
                  "dial the driver at host:port instead of listening (cluster jobs, NAT)")
      ->excludes(sub->get_option("--listen"));
  sub->add_option("--give-up", o->give_up_s,
                  "with --connect: exit when the driver is unreachable this many seconds")
      ->check(CLI::Range(0.1, 1e6));
  sub->add_option("--key", o->key_file, "pre-shared key file (mode 0600)");
  sub->add_option("--slots", o->slots, "tasks run at once (default: one per CPU)")
      ->check(CLI::Range(0u, 4096u));
  sub->add_option("--cache-dir,--cache", o->cache_dir,
                  "blob cache and staged-input store directory (default: "
                  "$TMPDIR/pepita-worker-UID-PORT, kept, when listening on a port given; "
                  "otherwise a fresh one under $TMPDIR, removed when the worker ends)");
  sub->add_option("--cache-size", o->cache_size,
                  "cap of the staged-input store, least recently used blobs evicted past it "
                  "(default 10G; 0: no cap)");
  sub->add_option("--name", o->name, "name shown to drivers (default: host name)");
  sub->add_option("--label", o->labels, "key=value label announced to drivers (repeatable)");
  sub->add_flag("--zero-worker", o->zero_worker,
                "run nothing: report every task started, then succeeded, at once "
                "(HyperQueue's zero-worker mode, to measure the protocol's cost per task)");
  sub->add_flag("--tls", o->tls,
                "encrypt with TLS 1.3 keyed by --key (drivers must use --tls too)");
  sub->add_option("--resources", o->resources,
                  "what this worker offers, replacing what it detects: gpus=0,1 (ids) or gpus=2 "
                  "(a count), cpus=, memory=, any name=count (repeatable)");
  sub->add_option("--cpus", o->cpus, "CPUs offered: a count (32) or a core list (0-3,8)");
  sub->add_option("--memory", o->memory, "memory offered to tasks (64G, 512M)");
  sub->add_option("--sandbox", o->sandbox,
                  "the least sandbox a driver's task runs in: standard (default), strict, or "
                  "none (run drivers' binaries unconfined; printed as a warning)");
  sub->add_option("--metrics", o->metrics,
                  "serve Prometheus metrics at http://HOST:PORT/metrics (loopback unless a "
                  "token is given or generated)");
  sub->add_option("--metrics-token", o->metrics_token, "token every /metrics request must carry");
  sub->add_option("--gen-key", o->gen_key, "write a new random key file (0600) and exit");
  dispatch.on(
      sub, [o] { return run_worker(*o); }, kUsage);
}

}  // namespace

PEPITA_REGISTER_COMMAND(worker, add_worker);

}  // namespace pepita::cli
