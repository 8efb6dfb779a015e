// bench/transport: remote no-op task round trip and throughput over loopback TCP.
//  1. Latency: one driver thread runs a no-op function task ("noop") on one worker, one at a
//     time, through the full stack (PSK-authenticated session, CRC32C + HMAC-SHA256 per frame,
//     a worker slot, taken and given back on the worker's session thread (see 3.), exactly-once
//     bookkeeping): p50 and p99 of the round trip.
//     Anchor: a raw ZeroMQ REQ/REP round trip over tcp://127.0.0.1 carrying the same bytes
//     (one Submit frame out, one Result frame back) — the messaging floor, no auth, no tasks.
//     The same round trip with both ends under TLS 1.3 (ConnectionOptions::tls), against the
//     plain one as anchor: what encryption costs per task.
//  2. Throughput with 1, 2, 3 workers (2 slots each): N no-op tasks submitted at once,
//     tasks/s until the last completes. Anchor: the same number of REQ/REP pairs (one per
//     worker slot), each a closed loop, moving the same bytes.
//  3. The same round trip for a function the worker hands to its CpuExecutor ("sleep_ms" with
//     input "0", returns at once): the no-op built-in is answered on the worker's session
//     thread (issue 27, as a REP server answers in its loop), so this row keeps the cost of the
//     slot hand-off to a scheduler thread and back in view. Shown against ZeroMQ, no goal.
// Every contestant (ours plain, ours TLS, ours via the executor, ZeroMQ; each throughput width)
// runs once per round, the order rotating each round. One table, wall clock: median [min-max]
// over rounds of each round's p50/p99 or rate; ratio ours/anchor (time per op). The goals
// (issue 27) are judged on the medians and printed under the table.
// Usage: bench_transport_roundtrip [ROUND_TRIPS=3000] [TASKS=20000] [ROUNDS=5]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/core/format.hpp"
#include "pepita/transport/frame.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/session.hpp"
#include "pepita/transport/worker.hpp"

#if __has_include(<zmq.h>)
#include <zmq.h>
#define HAVE_ZMQ 1
#else
#define HAVE_ZMQ 0
#endif

namespace {

using namespace pepita;
using namespace pepita::transport;
using Clock = std::chrono::steady_clock;
namespace pb = pepita::bench;

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

RemoteTask noop_task(std::uint64_t id) {
  RemoteTask t{.id = id};
  t.spec.kind = TaskKind::Function;
  t.spec.path = "noop";
  return t;
}

// A function that returns at once but runs on the worker's CpuExecutor (not inline).
RemoteTask executor_task(std::uint64_t id) {
  RemoteTask t = noop_task(id);
  t.spec.path = "sleep_ms";
  t.spec.stdin_data = "0";
  return t;
}

// Sizes of the sealed frames one no-op round trip moves (for the ZeroMQ anchor).
std::pair<std::size_t, std::size_t> frame_sizes() {
  SubmitMsg s = noop_task(1).spec;
  ResultMsg r{.attempt = 1};
  return {kHeaderSize + encode(s).size() + kMacSize, kHeaderSize + encode(r).size() + kMacSize};
}

struct Latency {
  double p50 = 0, p99 = 0;
};

Latency ours_latency(RemoteDispatcher& d, int n, std::uint64_t& next_id,
                     RemoteTask (*make)(std::uint64_t) = noop_task) {
  std::vector<double> lat;
  lat.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    auto out = d.run(make(next_id++));
    if (!out || out->result.status != TaskStatus::Succeeded) {
      std::fprintf(stderr, "task failed\n");
      std::exit(1);
    }
    lat.push_back(us_since(t0));
  }
  return {pb::percentile(lat, 0.5), pb::percentile(lat, 0.99)};
}

double ours_throughput(RemoteDispatcher& d, int n, std::uint64_t& next_id) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    if (!d.submit(noop_task(next_id++), [](RemoteOutcome) {})) std::exit(1);
  }
  d.wait_idle();
  return n / (us_since(t0) / 1e6);
}

#if HAVE_ZMQ
struct ZmqServer {
  ZmqServer(void* ctx, std::size_t reply_size) {
    sock = zmq_socket(ctx, ZMQ_REP);
    zmq_bind(sock, "tcp://127.0.0.1:*");
    char ep[256];
    std::size_t len = sizeof ep;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len);
    endpoint = ep;
    thread = std::thread([this, reply_size] {
      std::vector<char> buf(1 << 16), reply(reply_size, 'r');
      for (;;) {
        const int n = zmq_recv(sock, buf.data(), buf.size(), 0);
        if (n < 0 || (n == 4 && std::string_view(buf.data(), 4) == "STOP")) break;
        zmq_send(sock, reply.data(), reply.size(), 0);
      }
      zmq_send(sock, "", 0, 0);
    });
  }
  ~ZmqServer() {
    thread.join();
    zmq_close(sock);
  }
  void* sock;
  std::string endpoint;
  std::thread thread;
};

void* zmq_client(void* ctx, const std::string& ep) {
  void* s = zmq_socket(ctx, ZMQ_REQ);
  zmq_connect(s, ep.c_str());
  return s;
}
void zmq_stop(void* client) {
  zmq_send(client, "STOP", 4, 0);
  char b[8];
  zmq_recv(client, b, sizeof b, 0);
  int zero = 0;
  zmq_setsockopt(client, ZMQ_LINGER, &zero, sizeof zero);
  zmq_close(client);
}

Latency zmq_latency(void* ctx, int n, std::size_t req, std::size_t rep) {
  ZmqServer server(ctx, rep);
  void* c = zmq_client(ctx, server.endpoint);
  std::vector<char> out(req, 'q'), in(rep + 16);
  std::vector<double> lat;
  for (int i = 0; i < n + 100; ++i) {
    const auto t0 = Clock::now();
    zmq_send(c, out.data(), out.size(), 0);
    zmq_recv(c, in.data(), in.size(), 0);
    if (i >= 100) lat.push_back(us_since(t0));  // skip connection warm-up
  }
  zmq_stop(c);
  return {pb::percentile(lat, 0.5), pb::percentile(lat, 0.99)};
}

double zmq_throughput(void* ctx, int pairs, int n, std::size_t req, std::size_t rep) {
  std::vector<std::unique_ptr<ZmqServer>> servers;
  std::vector<void*> clients;
  for (int i = 0; i < pairs; ++i) {
    servers.push_back(std::make_unique<ZmqServer>(ctx, rep));
    clients.push_back(zmq_client(ctx, servers.back()->endpoint));
  }
  std::atomic<int> remaining{n};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < pairs; ++i) {
    threads.emplace_back([&, c = clients[i]] {
      std::vector<char> out(req, 'q'), in(rep + 16);
      while (remaining.fetch_sub(1) > 0) {
        zmq_send(c, out.data(), out.size(), 0);
        zmq_recv(c, in.data(), in.size(), 0);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double rate = n / (us_since(t0) / 1e6);
  for (void* c : clients) zmq_stop(c);
  return rate;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const int round_trips = argc > 1 ? std::atoi(argv[1]) : 3000;
  const int tasks = argc > 2 ? std::atoi(argv[2]) : 20000;
  const int reps = argc > 3 ? std::max(1, std::atoi(argv[3])) : pb::rounds(5);
  auto key = Key::generate().value();
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 3; ++i) {
    WorkerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = key;
    o.slots = 2;
    o.log = [](std::string_view) {};
    workers.push_back(Worker::start(std::move(o)).value());
  }
  {
    WorkerOptions o;  // workers[3]: the TLS one
    o.listen = "127.0.0.1:0";
    o.key = key;
    o.slots = 2;
    o.connection.tls = true;
    o.log = [](std::string_view) {};
    workers.push_back(Worker::start(std::move(o)).value());
  }
  auto make = [&](int n, bool tls = false) {
    RemoteOptions o;
    o.key = key;
    o.log = [](std::string_view) {};
    o.connection.tls = tls;
    if (tls) o.workers.push_back(workers[3]->endpoint().to_string());
    for (int i = 0; i < n && !tls; ++i) o.workers.push_back(workers[i]->endpoint().to_string());
    auto d = RemoteDispatcher::start(std::move(o)).value();
    // Warm up: every connection up and registered.
    std::uint64_t id = 1u << 30;
    for (int i = 0; i < 200; ++i) (void)d->run(noop_task(id++));
    while (true) {
      int alive = 0;
      for (auto& w : d->workers()) alive += w.state == WorkerState::Alive;
      if (alive == n) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return d;
  };
  const auto [req, rep] = frame_sizes();
  std::uint64_t next_id = 1;

  std::vector<double> o50, o99, z50, z99, t50, t99, e50, e99;
  std::vector<std::vector<double>> otp(3), ztp(3);
  // Every dispatcher up (and warm) before the first round.
  std::unique_ptr<RemoteDispatcher> plain[3] = {make(1), make(2), make(3)};
  auto tls = make(1, true);
  std::vector<std::function<void()>> contestants = {
      [&] {
        auto l = ours_latency(*plain[0], round_trips, next_id);
        o50.push_back(l.p50);
        o99.push_back(l.p99);
      },
      [&] {
        auto l = ours_latency(*tls, round_trips, next_id);
        t50.push_back(l.p50);
        t99.push_back(l.p99);
      },
      [&] {
        auto l = ours_latency(*plain[0], round_trips, next_id, executor_task);
        e50.push_back(l.p50);
        e99.push_back(l.p99);
      }};
  for (int n = 1; n <= 3; ++n)
    contestants.push_back(
        [&, n] { otp[n - 1].push_back(ours_throughput(*plain[n - 1], tasks, next_id)); });
#if HAVE_ZMQ
  void* ctx = zmq_ctx_new();
  contestants.push_back([&] {
    auto l = zmq_latency(ctx, round_trips, req, rep);
    z50.push_back(l.p50);
    z99.push_back(l.p99);
  });
  for (int n = 1; n <= 3; ++n)
    contestants.push_back(
        [&, n] { ztp[n - 1].push_back(zmq_throughput(ctx, 2 * n, tasks, req, rep)); });
#endif
  pb::rotate_rounds(reps, contestants);
#if HAVE_ZMQ
  zmq_ctx_term(ctx);
#endif

  pb::print_load();
  char title[200];
  std::snprintf(title, sizeof title,
                "bench/transport roundtrip: %d round trips per latency sample, %d tasks per "
                "throughput run, %u CPUs; frames %zu B out / %zu B back",
                round_trips, tasks, std::thread::hardware_concurrency(), req, rep);
  pb::Table table(title);
  const auto W = pb::Clock::wall;
  table.row("no-op round trip p50 (1 worker)", "ZMQ REQ/REP", W, "us", o50, z50);
  table.row("no-op round trip p99 (1 worker)", "ZMQ REQ/REP", W, "us", o99, z99);
  table.row("no-op round trip p50, TLS 1.3", "ours, plain", W, "us", t50, o50);
  table.row("no-op round trip p99, TLS 1.3", "ours, plain", W, "us", t99, o99);
  for (int n = 1; n <= 3; ++n) {
    char name[96], anchor[32];
    std::snprintf(name, sizeof name, "tasks/s, %d worker(s) x 2 slots", n);
    std::snprintf(anchor, sizeof anchor, "%d ZMQ REQ/REP pairs", 2 * n);
    table.row(name, anchor, W, "tasks/s", otp[n - 1], ztp[n - 1], pb::Kind::rate);
  }
  table.row("fn via CpuExecutor round trip p50", "ZMQ REQ/REP", W, "us", e50, z50);
  table.row("fn via CpuExecutor round trip p99", "ZMQ REQ/REP", W, "us", e99, z99);
#if !HAVE_ZMQ
  table.note("ZeroMQ headers not found: no anchor figures; install libzmq3-dev");
#endif
  // Issue 27's goals, on the medians (time ratios: ours/anchor; rates inverted to time per task).
  auto goal = [&](const std::string& name, const std::vector<double>& ours,
                  const std::vector<double>& anchor, double limit, bool rate) {
    char line[200];
    if (ours.empty() || anchor.empty()) {
      std::snprintf(line, sizeof line, "goal %s: time ours/anchor <= %.1f; not judged, no figures",
                    name.c_str(), limit);
    } else {
      const double o = pb::median(ours), a = pb::median(anchor);
      const double ratio = rate ? a / o : o / a;
      std::snprintf(line, sizeof line, "goal %s: time ours/anchor <= %.1f; measured %.2f: %s",
                    name.c_str(), limit, ratio, ratio <= limit ? "MET" : "MISSED");
    }
    table.note(line);
  };
  goal("round trip p50 vs ZeroMQ", o50, z50, 1.0, false);
  goal("round trip p99 vs ZeroMQ", o99, z99, 1.0, false);
  for (int n = 1; n <= 3; ++n) {
    goal(pepita::fmt("tasks/s at {} worker(s) vs ZeroMQ", n), otp[n - 1], ztp[n - 1], 1.0, true);
  }
  goal("TLS round trip p50 vs plain", t50, o50, 1.2, false);
  goal("TLS round trip p99 vs plain", t99, o99, 1.2, false);
  table.print();
  return 0;
}
