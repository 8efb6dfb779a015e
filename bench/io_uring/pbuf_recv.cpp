// Multishot recv into a provided-buffer ring (pepita::io_uring::BufferRing) against the plain
// recv(2) loop (the anchor), in one process: the same byte stream (a writer thread sending 64 KiB
// chunks) over an AF_UNIX socketpair and over TCP loopback, the same 32 KiB receive buffers (16
// of them in the ring), every received chunk touched the same way. Ours runs twice, on a plain
// ring and on a SINGLE_ISSUER + DEFER_TASKRUN ring (RingOptions::single_thread), so the table
// says whether DEFER_TASKRUN changes the figure. Rounds rotate the contestants; MB/s (10^6 bytes
// per wall second), median [min-max] over rounds.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/io_uring/buf_ring.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pio = pepita::io_uring;
namespace pb = pepita::bench;
using pepita::UniqueFd;

namespace {

constexpr std::size_t kStream = 256u << 20;  // bytes per run
constexpr std::size_t kChunk = 64u << 10;    // writer's send size
constexpr std::uint32_t kBuf = 32u << 10;    // receive buffer, both contestants
constexpr std::uint32_t kBufs = 16;          // buffers in the provided ring
constexpr double kGoal = 1.0;                // ours / anchor MB/s at least this

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_io_uring_pbuf_recv: %s\n", what.c_str());
  std::exit(1);
}

struct Pair {
  UniqueFd rx, tx;
};

Pair make_pair(bool tcp) {
  if (!tcp) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
  }
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr (both casts).
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::listen(l.get(), 1) != 0)
    die("tcp listener");
  UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("tcp connect");
  UniqueFd s(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!s) die("tcp accept");
  return {std::move(s), std::move(c)};
}

// The same per-chunk work for every contestant: read one word per 4 KiB (the data is used).
inline std::uint64_t touch(const std::byte* p, std::size_t n) {
  std::uint64_t x = 0;
  for (std::size_t i = 0; i < n; i += 4096) x += static_cast<std::uint64_t>(p[i]);
  return x;
}

std::atomic<std::uint64_t> g_sink{0};

// One run: a writer thread streams kStream bytes into tx while `receive(rx)` reads them all;
// returns MB/s over the receiver's wall time (from the writer's start to the last byte).
template <typename Receive>
double run(bool tcp, Receive&& receive) {
  Pair p = make_pair(tcp);
  std::vector<std::byte> chunk(kChunk, std::byte{0x5a});
  const double t0 = pb::wall_s();
  std::thread writer([&] {
    std::size_t sent = 0;
    while (sent < kStream) {
      const ssize_t r =
          ::send(p.tx.get(), chunk.data(), std::min(kChunk, kStream - sent), MSG_NOSIGNAL);
      if (r <= 0) die("send");
      sent += static_cast<std::size_t>(r);
    }
    ::shutdown(p.tx.get(), SHUT_WR);
  });
  const std::size_t got = receive(p.rx.get());
  const double secs = pb::wall_s() - t0;
  writer.join();
  if (got != kStream) die("short stream");
  return static_cast<double>(kStream) / 1e6 / secs;
}

std::size_t recv_loop(int fd) {
  std::vector<std::byte> buf(kBuf);
  std::size_t total = 0;
  std::uint64_t x = 0;
  for (;;) {
    const ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("recv");
    if (r == 0) break;
    x += touch(buf.data(), static_cast<std::size_t>(r));
    total += static_cast<std::size_t>(r);
  }
  g_sink += x;
  return total;
}

std::size_t multishot(pio::Ring& ring, pio::BufferRing& bufs, int fd) {
  std::size_t total = 0;
  std::uint64_t x = 0;
  auto arm = [&] {
    pepita::abi::Sqe* sqe = ring.get_sqe();
    pio::prep_recv_multishot(*sqe, fd, 0, bufs.group());
    sqe->user_data = 1;
  };
  arm();
  bool eof = false;
  while (!eof) {
    if (!ring.submit_and_wait(1)) die("submit_and_wait");
    bool rearm = false;
    ring.for_each_cqe([&](const pepita::abi::Cqe& c) {
      if (c.res > 0) {
        const std::uint16_t bid = pio::BufferRing::buffer_id(c);
        x += touch(bufs.buffer(bid).data(), static_cast<std::size_t>(c.res));
        total += static_cast<std::size_t>(c.res);
        bufs.add(bid);
      }
      if ((c.flags & pepita::abi::cqe_flags::MORE) != 0) return;
      if (c.res == 0) {
        eof = true;
      } else if (c.res > 0 || c.res == -ENOBUFS) {
        rearm = true;
      } else {
        die("multishot recv: " + std::to_string(c.res));
      }
    });
    bufs.publish();  // one tail store per batch of CQEs
    if (rearm && !eof) arm();
  }
  g_sink += x;
  return total;
}

struct Ours {
  pio::Ring ring;
  pio::BufferRing bufs;
};

Ours make_ours(bool defer) {
  auto ring = pio::Ring::create(defer ? pio::RingOptions::single_thread(64)
                                      : pio::RingOptions{.entries = 64});
  if (!ring) die(ring.error().to_string());
  auto bufs = pio::BufferRing::create(*ring, {.group = 1, .entries = kBufs, .buf_size = kBuf});
  if (!bufs) die(bufs.error().to_string());
  return Ours{std::move(*ring), std::move(*bufs)};
}

}  // namespace

int main() {
  pb::print_load();
  const int rounds = pb::rounds(7);
  pb::Table table(
      "multishot recv into a provided-buffer ring vs recv(2), 256 MiB stream per run, 64 KiB "
      "sends, 32 KiB buffers (16 in the ring)");
  bool met = true;
  std::vector<std::string> verdicts;
  for (const bool tcp : {false, true}) {
    const char* transport = tcp ? "tcp loopback" : "unix socketpair";
    std::vector<double> plain, defer, anchor;
    // One ring per contestant, made once and reused across rounds (as a server would).
    Ours o_plain = make_ours(false);
    Ours o_defer = make_ours(true);
    pb::rotate_rounds(rounds, {
                                  [&] {
                                    plain.push_back(run(tcp, [&](int fd) {
                                      return multishot(o_plain.ring, o_plain.bufs, fd);
                                    }));
                                  },
                                  [&] {
                                    defer.push_back(run(tcp, [&](int fd) {
                                      return multishot(o_defer.ring, o_defer.bufs, fd);
                                    }));
                                  },
                                  [&] { anchor.push_back(run(tcp, recv_loop)); },
                              });
    const double ratio_plain = pb::median(plain) / pb::median(anchor);
    const double ratio_defer = pb::median(defer) / pb::median(anchor);
    table.row(std::string(transport).append(", multishot recv, plain ring"), "recv(2) loop",
              pb::Clock::wall, "MB/s", plain, anchor, pb::Kind::rate);
    table.row(std::string(transport).append(", multishot recv, DEFER_TASKRUN"), "recv(2) loop",
              pb::Clock::wall, "MB/s", defer, anchor, pb::Kind::rate,
              "defer/plain " + pb::num(pb::median(defer) / pb::median(plain)));
    const bool ok = ratio_plain >= kGoal || ratio_defer >= kGoal;
    met = met && ok;
    verdicts.push_back(std::string(transport)
                           .append(": best ours/anchor MB/s ")
                           .append(pb::num(std::max(ratio_plain, ratio_defer)))
                           .append(ok ? " (met)" : " (MISSED)"));
  }
  table.note(
      "goal: multishot recv into provided buffers moves a stream at least as fast as the "
      "recv(2) loop (ours/anchor MB/s >= 1.00, wall time) on each transport");
  for (const auto& v : verdicts) table.note(v);
  table.note(met ? "goal met" : "goal MISSED on at least one transport");
  table.print();
  std::printf("(sink %llu)\n", static_cast<unsigned long long>(g_sink.load() & 1));
  return 0;
}
