// virtio-vsock through the device on the host: a host process's Unix socket (Firecracker's
// CONNECT protocol) on one side, a test-played guest driver (tests/virtio/vsock_guest.hpp: 4 KiB
// receive buffers as Linux posts them, RW packets up to 64 KiB, CREDIT_UPDATE after half its
// buffer was consumed) on the other, one thread driving both as a polling guest's vCPU would.
// No KVM here, so the guest's side of a real VM (exits per kick) is not in these figures.
//
// Anchor: a host Unix socketpair moving the same bytes in the same chunks on one thread, i.e.
// what a direct host-to-host socket costs. Rounds alternated; wall and thread CPU time; median
// [min-max].
// Goals (set before measuring): stream throughput >= 0.5x the socketpair (the device adds one
// socket hop and a copy through guest RAM per byte); round trip <= 3x the socketpair; judged on
// wall and on thread CPU time (the machine is shared: wall includes time others took).
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "../../tests/virtio/vsock_guest.hpp"
#include "bench_util.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"

namespace {
using namespace pepita;
using namespace pepita::virtio;
using namespace pepita::virtio::vsock;
namespace pb = pepita::bench;

constexpr uint64_t kCid = 3;
constexpr size_t kStreamBytes = 64ull << 20;
constexpr size_t kChunk = 64 * 1024;
constexpr int kRoundTrips = 20000;
constexpr size_t kPing = 64;
constexpr int kReps = 5;

std::string g_dir;
double g_cpu = 0;  // thread CPU seconds of the last measured run

// Starts a measurement: wall seconds now; g_cpu gets the CPU start.
double start() {
  g_cpu = pb::thread_cpu_s();
  return pb::wall_s();
}
// Ends it: wall seconds since t0; g_cpu becomes the CPU seconds taken.
double stop(double t0) {
  g_cpu = pb::thread_cpu_s() - g_cpu;
  return pb::wall_s() - t0;
}

struct Session {
  std::unique_ptr<VsockDevice> dev;
  std::unique_ptr<testing::GuestDriver> guest;
  UniqueFd host;
  uint32_t hport = 0;
  uint32_t reported = 0;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "vsock bench: %s\n", what);
  std::exit(1);
}

Session connect_session() {
  static int n = 0;
  Session s;
  const std::string path = pepita::fmt("{}/v{}", g_dir, ++n);
  auto d = VsockDevice::create({.uds_path = path, .guest_cid = kCid});
  if (!d || !(*d)->activate((*d)->features())) die("device");
  s.dev = std::move(*d);
  s.guest = std::make_unique<testing::GuestDriver>(*s.dev, kCid);
  s.guest->buf_alloc = 256 * 1024;
  s.host.reset(sys::unix_connect(path));
  if (!s.host || sys::send_all(s.host.get(), "CONNECT 80\n", 11) != 11) die("connect");
  for (int i = 0; i < 1000 && s.hport == 0; ++i) {
    if (!s.guest->poll()) die("poll");
    for (auto& p : s.guest->inbox)
      if (p.hdr.op == OP_REQUEST) s.hport = p.hdr.src_port;
    s.guest->inbox.clear();
  }
  if (s.hport == 0 || !s.guest->send(80, s.hport, OP_RESPONSE)) die("no REQUEST");
  char ok[32];
  const long got = sys::recv(s.host.get(), ok, sizeof ok);  // "OK <port>\n", written already
  if (got <= 0) die("no OK");
  if (sys::set_nonblocking(s.host.get()) != 0) die("nonblocking");
  return s;
}

// Guest consumes what arrived; returns bytes of RW data.
size_t guest_take(Session& s, std::string* into = nullptr) {
  size_t n = 0;
  for (auto& p : s.guest->inbox) {
    if (p.hdr.op != OP_RW) continue;
    n += p.data.size();
    if (into != nullptr) *into += p.data;
  }
  s.guest->inbox.clear();
  if (s.guest->fwd_cnt - s.reported >= s.guest->buf_alloc / 2) {
    (void)s.guest->send(80, s.hport, OP_CREDIT_UPDATE);
    s.reported = s.guest->fwd_cnt;
  }
  return n;
}

double host_to_guest(const std::string& data) {
  Session s = connect_session();
  const double t0 = start();
  size_t sent = 0, got = 0;
  while (got < data.size()) {
    if (sent < data.size()) {
      const long n =
          sys::send(s.host.get(), data.data() + sent, std::min(kChunk, data.size() - sent));
      if (n > 0) sent += static_cast<size_t>(n);
    }
    if (!s.guest->poll()) die("poll");
    got += guest_take(s);
  }
  return stop(t0);
}

double guest_to_host(const std::string& data) {
  Session s = connect_session();
  std::vector<char> buf(kChunk);
  const double t0 = start();
  size_t sent = 0, got = 0;
  while (got < data.size()) {
    const uint32_t n = std::min<uint32_t>({s.guest->peer_free(), static_cast<uint32_t>(kChunk),
                                           static_cast<uint32_t>(data.size() - sent)});
    if (n > 0) {
      if (!s.guest->send(80, s.hport, OP_RW, std::string_view(data).substr(sent, n))) die("send");
      sent += n;
    }
    for (;;) {
      const long r = sys::recv(s.host.get(), buf.data(), buf.size());
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    if (!s.guest->poll()) die("poll");  // credit updates from the device
    guest_take(s);
  }
  return stop(t0);
}

double round_trips() {
  Session s = connect_session();
  char ping[kPing] = {};
  char back[kPing];
  const double t0 = start();
  for (int i = 0; i < kRoundTrips; ++i) {
    if (sys::send(s.host.get(), ping, kPing) != static_cast<long>(kPing)) die("ping");
    std::string at_guest;
    while (at_guest.size() < kPing) {
      if (!s.guest->poll()) die("poll");
      guest_take(s, &at_guest);
    }
    if (!s.guest->send(80, s.hport, OP_RW, at_guest)) die("pong");
    size_t got = 0;
    while (got < kPing) {
      const long r = sys::recv(s.host.get(), back + got, kPing - got);
      if (r > 0) got += static_cast<size_t>(r);
    }
  }
  const double wall = stop(t0) / kRoundTrips;
  g_cpu /= kRoundTrips;
  return wall;
}

// The anchor: a Unix socketpair, one thread, same chunks.
double pair_stream(const std::string& data) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) die("pair");
  UniqueFd a(fds[0]), b(fds[1]);
  std::vector<char> buf(kChunk);
  const double t0 = start();
  size_t sent = 0, got = 0;
  while (got < data.size()) {
    if (sent < data.size()) {
      const long n = sys::send(a.get(), data.data() + sent, std::min(kChunk, data.size() - sent));
      if (n > 0) sent += static_cast<size_t>(n);
    }
    const long r = sys::recv(b.get(), buf.data(), buf.size());
    if (r > 0) got += static_cast<size_t>(r);
  }
  return stop(t0);
}

double pair_round_trips() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) die("pair");
  UniqueFd a(fds[0]), b(fds[1]);
  char ping[kPing] = {};
  char back[kPing];
  const double t0 = start();
  for (int i = 0; i < kRoundTrips; ++i) {
    if (sys::send(a.get(), ping, kPing) != static_cast<long>(kPing)) die("ping");
    if (sys::recv_full(b.get(), back, kPing) != static_cast<int64_t>(kPing)) die("recv");
    if (sys::send(b.get(), back, kPing) != static_cast<long>(kPing)) die("pong");
    if (sys::recv_full(a.get(), back, kPing) != static_cast<int64_t>(kPing)) die("recv");
  }
  const double wall = stop(t0) / kRoundTrips;
  g_cpu /= kRoundTrips;
  return wall;
}

}  // namespace

int main() {
  std::string tmpl = "/tmp/pepita-vsock-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp");
  g_dir = tmpl;
  std::string data(kStreamBytes, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + 7);

  pb::print_load();
  pb::Table table(
      "virtio-vsock through the device (host Unix socket <-> test-played guest driver, one "
      "thread) vs a host Unix socketpair");
  const int rounds = pb::rounds(kReps);
  const double mib = static_cast<double>(kStreamBytes) / (1 << 20);
  auto rate = [mib](double s) { return mib / s; };
  auto us = [](double s) { return s * 1e6; };
  struct Goal {
    std::string name;
    double ratio;  // measured time ratio ours/anchor (medians)
    double limit;
  };
  std::vector<Goal> goals;
  // One workload: wall and thread-CPU samples of ours and the anchor, rounds alternated.
  auto measure = [&](const char* name, const char* unit, double limit, bool is_rate, auto&& ours,
                     auto&& anchor) {
    std::vector<double> ow, oc, aw, ac;
    pb::rotate_rounds(rounds, {[&] {
                                 ow.push_back(ours());
                                 oc.push_back(g_cpu);
                               },
                               [&] {
                                 aw.push_back(anchor());
                                 ac.push_back(g_cpu);
                               }});
    for (const auto clock : {pb::Clock::wall, pb::Clock::thread_cpu}) {
      const auto& o = clock == pb::Clock::wall ? ow : oc;
      const auto& a = clock == pb::Clock::wall ? aw : ac;
      if (is_rate)
        table.row(name, "socketpair", clock, unit, pb::map(o, rate), pb::map(a, rate),
                  pb::Kind::rate);
      else
        table.row(name, "socketpair", clock, unit, pb::map(o, us), pb::map(a, us), pb::Kind::time);
      goals.push_back({std::string(name).append(" (").append(pb::clock_name(clock)).append(")"),
                       pb::median(o) / pb::median(a), limit});
    }
  };
  measure(
      "stream host->guest 64 MiB", "MiB/s", 2.0, true, [&] { return host_to_guest(data); },
      [&] { return pair_stream(data); });
  measure(
      "stream guest->host 64 MiB", "MiB/s", 2.0, true, [&] { return guest_to_host(data); },
      [&] { return pair_stream(data); });
  measure(
      "round trip 64 B host->guest->host", "us", 3.0, false, [&] { return round_trips(); },
      [&] { return pair_round_trips(); });

  table.note(
      "guest: 4 KiB receive buffers (Linux's), 256 KiB buf_alloc both ways; host chunks "
      "64 KiB; ours includes the test guest's own copies out of its receive buffers");
  for (const auto& g : goals) {
    char line[160];
    std::snprintf(line, sizeof line, "goal %s: time ours/anchor <= %.1f; measured %.2f: %s",
                  g.name.c_str(), g.limit, g.ratio, g.ratio <= g.limit ? "MET" : "MISSED");
    table.note(line);
  }
  table.print();
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
  return 0;
}
