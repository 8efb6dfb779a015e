// bench/transport: how a connection thread should wait for a frame — poll(2) then read(2), as
// transport::Connection does, or one io_uring_enter that submits the reply and the next recv
// and waits for it (pepita::io_uring::EventLoop), as issue 27 proposes for the transport.
// Two threads ping-pong a 168-byte request and a 150-byte reply (the sealed Submit and Result
// frames of a no-op task) over loopback TCP with TCP_NODELAY; no crypto, no tasks, so only the
// wait-and-read path differs. Ours: io_uring (send + recv queued, one run_once per message on
// each side); anchor: poll + read + send. Rounds alternated, wall clock, p50 and p99 of the
// round trip. Goal (issue 27): the transport moves onto io_uring if it is faster here.
// Usage: bench_transport_poll_vs_uring [ROUND_TRIPS=20000] [ROUNDS=5]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/io_uring/event_loop.hpp"
#include "pepita/io_uring/prep.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace pb = pepita::bench;
namespace uring = pepita::io_uring;
using pepita::UniqueFd;

constexpr std::size_t kReq = 168, kRep = 150;

// A connected loopback TCP pair (client, server), both with TCP_NODELAY.
std::pair<UniqueFd, UniqueFd> tcp_pair() {
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  // SAFETY: sockaddr_in is the address type of an AF_INET socket; len is its size.
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  if (::bind(l.get(), sa, len) != 0 || ::listen(l.get(), 1) != 0 ||
      ::getsockname(l.get(), sa, &len) != 0) {
    std::perror("listen");
    std::exit(1);
  }
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(c.get(), sa, len) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  UniqueFd s(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  const int one = 1;
  for (int fd : {c.get(), s.get()}) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {std::move(c), std::move(s)};
}

// Waits with poll, then reads until `want` bytes arrived (Connection's read_frame shape).
void poll_read(int fd, char* buf, std::size_t want) {
  std::size_t got = 0;
  while (got < want) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, -1);
    const long n = ::read(fd, buf + got, want - got);
    if (n <= 0) std::exit(1);
    got += static_cast<std::size_t>(n);
  }
}

std::vector<double> run_poll(int n) {
  auto [c, s] = tcp_pair();
  std::thread server([fd = s.get(), n] {
    char in[kReq], out[kRep] = {};
    for (int i = 0; i < n; ++i) {
      poll_read(fd, in, kReq);
      (void)::send(fd, out, kRep, MSG_NOSIGNAL);
    }
  });
  std::vector<double> lat;
  char in[kRep], out[kReq] = {};
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    (void)::send(c.get(), out, kReq, MSG_NOSIGNAL);
    poll_read(c.get(), in, kRep);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  server.join();
  return lat;
}

// One side on its own EventLoop: queue the send and the recv, one run_once (one io_uring_enter
// submits both and waits) until the whole message arrived.
struct UringSide {
  std::unique_ptr<uring::EventLoop> loop = uring::EventLoop::create({.entries = 8}).value();
  int fd;
  std::size_t got = 0;
  bool failed = false;

  void exchange(const char* out, std::size_t out_len, char* in, std::size_t in_len) {
    if (out_len > 0) {
      (void)loop->submit(
          [&](pepita::abi::Sqe& q) { uring::prep_send(q, fd, out, out_len, MSG_NOSIGNAL); },
          [](int, std::uint32_t) {});
    }
    got = 0;
    while (got < in_len && !failed) {
      (void)loop->submit(
          [&](pepita::abi::Sqe& q) { uring::prep_recv(q, fd, in + got, in_len - got, 0); },
          [this](int res, std::uint32_t) {
            if (res <= 0)
              failed = true;
            else
              got += static_cast<std::size_t>(res);
          });
      const std::size_t before = got;
      while (got == before && !failed) {
        if (!loop->run_once()) std::exit(1);
      }
    }
    if (failed) std::exit(1);
  }
};

std::vector<double> run_uring(int n) {
  auto [c, s] = tcp_pair();
  std::thread server([fd = s.get(), n] {
    UringSide side{.fd = fd};
    char in[kReq], out[kRep] = {};
    side.exchange(nullptr, 0, in, kReq);
    for (int i = 1; i < n; ++i) side.exchange(out, kRep, in, kReq);
    (void)::send(fd, out, kRep, MSG_NOSIGNAL);
  });
  UringSide side{.fd = c.get()};
  std::vector<double> lat;
  char in[kRep], out[kReq] = {};
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    side.exchange(out, kReq, in, kRep);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  server.join();
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(100, std::atoi(argv[1])) : 20000;
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : pb::rounds(5);
  if (!uring::EventLoop::create({.entries = 8})) {
    std::printf("io_uring is not available here (kernel or seccomp): nothing to compare\n");
    return 0;
  }
  std::vector<double> u50, u99, p50, p99;
  pb::rotate_rounds(rounds, {[&] {
                               const auto l = run_uring(n);
                               u50.push_back(pb::percentile(l, 0.5));
                               u99.push_back(pb::percentile(l, 0.99));
                             },
                             [&] {
                               const auto l = run_poll(n);
                               p50.push_back(pb::percentile(l, 0.5));
                               p99.push_back(pb::percentile(l, 0.99));
                             }});
  pb::print_load();
  char title[160];
  std::snprintf(title, sizeof title,
                "bench/transport poll vs io_uring: %d round trips of %zu B / %zu B over loopback "
                "TCP per round, 2 threads",
                n, kReq, kRep);
  pb::Table table(title);
  table.row("round trip p50, io_uring send+recv", "poll+read+send", pb::Clock::wall, "us", u50,
            p50);
  table.row("round trip p99, io_uring send+recv", "poll+read+send", pb::Clock::wall, "us", u99,
            p99);
  // Judged on the spread, not on the medians alone: on a loaded machine a few percent either way
  // is noise. A side is faster only when its slowest round beat the other's fastest.
  const auto u = pb::spread(u50), p = pb::spread(p50);
  const char* verdict = u.max < p.min   ? "io_uring faster"
                        : p.max < u.min ? "poll faster"
                                        : "no clear difference (the rounds' ranges overlap)";
  char line[240];
  std::snprintf(line, sizeof line,
                "goal (issue 27): the transport moves to io_uring if it is faster here; p50 "
                "io_uring/poll %.2f: %s",
                u.median / p.median, verdict);
  table.note(line);
  table.print();
  return 0;
}
