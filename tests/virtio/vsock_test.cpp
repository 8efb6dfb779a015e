// virtio-vsock, host side proven without KVM: a test-played guest driver (vsock_guest.hpp) on
// one side, real Unix sockets (Firecracker's CONNECT protocol and PATH_<port> listeners) on the
// other. Data both ways beyond one credit window, refusals, shutdowns, malformed packets and a
// host that stops reading.
#include "pepita/virtio/vsock.hpp"

#include <gtest/gtest.h>
#include <linux/virtio_vsock.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "common/temp_dir.hpp"
#include "mmio_driver.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"
#include "vsock_guest.hpp"

namespace pepita::virtio::vsock {
namespace {
using testing::GuestDriver;
using testing::RxPacket;
namespace v = abi::virtio;

// The wire header and constants against Linux's UAPI (spec 5.10.6).
static_assert(sizeof(Header) == sizeof(virtio_vsock_hdr));
static_assert(offsetof(Header, src_port) == offsetof(virtio_vsock_hdr, src_port));
static_assert(offsetof(Header, len) == offsetof(virtio_vsock_hdr, len));
static_assert(offsetof(Header, op) == offsetof(virtio_vsock_hdr, op));
static_assert(offsetof(Header, buf_alloc) == offsetof(virtio_vsock_hdr, buf_alloc));
static_assert(offsetof(Header, fwd_cnt) == offsetof(virtio_vsock_hdr, fwd_cnt));
static_assert(OP_REQUEST == VIRTIO_VSOCK_OP_REQUEST && OP_RST == VIRTIO_VSOCK_OP_RST);
static_assert(OP_RW == VIRTIO_VSOCK_OP_RW && OP_CREDIT_REQUEST == VIRTIO_VSOCK_OP_CREDIT_REQUEST);
static_assert(SHUTDOWN_RCV == VIRTIO_VSOCK_SHUTDOWN_RCV &&
              SHUTDOWN_SEND == VIRTIO_VSOCK_SHUTDOWN_SEND);
static_assert(TYPE_STREAM == VIRTIO_VSOCK_TYPE_STREAM);
static_assert(sizeof(Config) == sizeof(virtio_vsock_config));

constexpr uint64_t kCid = 7;

// A private directory for the test's sockets, removed with everything in it at exit.
std::string socket_dir() {
  static const pepita::test::TempDir dir("vsock");
  EXPECT_FALSE(dir.path().empty()) << "mkdtemp in the temp directory failed";
  return dir.path().empty() ? "/tmp" : dir.path();
}

std::string fresh_path(const char* name) {
  static int n = 0;
  return pepita::fmt("{}/{}{}", socket_dir(), name, ++n);
}

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

// Reads what is there now on a non-blocking socket; false at EOF.
bool drain(int fd, std::string& into) {
  char buf[65536];
  for (;;) {
    const long n = sys::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      into.append(buf, static_cast<size_t>(n));
      continue;
    }
    return n != 0;
  }
}

// Waits up to 2 s for a readable socket, then reads a line.
std::string read_line(int fd) {
  std::string line;
  char c = 0;
  while (line.size() < 64) {
    pollfd p{fd, POLLIN, 0};
    if (sys::poll(&p, 1, 2000) <= 0) break;
    if (sys::recv(fd, &c, 1) != 1) break;
    if (c == '\n') return line;
    line += c;
  }
  return pepita::fmt("(no line: {})", line);
}

struct Fixture {
  std::string path = fresh_path("v");
  std::unique_ptr<VsockDevice> dev;
  std::unique_ptr<GuestDriver> guest;

  explicit Fixture(uint32_t buf_alloc = 32 * 1024, bool split_rx = false,
                   uint32_t max_connections = VsockOptions{}.max_connections) {
    auto d = VsockDevice::create({.uds_path = path,
                                  .guest_cid = kCid,
                                  .buf_alloc = buf_alloc,
                                  .max_connections = max_connections});
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error().to_string());
    dev = std::move(d).value();
    EXPECT_TRUE(dev->activate(dev->features()));
    guest = std::make_unique<GuestDriver>(*dev, kCid, split_rx);
  }

  // Polls the guest until a packet with `op` arrives (up to ~2 s); the others stay in the inbox.
  std::optional<RxPacket> expect(uint16_t op, uint32_t gport = 0) {
    for (int i = 0; i < 2000; ++i) {
      EXPECT_TRUE(guest->poll());
      for (auto it = guest->inbox.begin(); it != guest->inbox.end(); ++it) {
        if (it->hdr.op == op && (gport == 0 || it->hdr.dst_port == gport)) {
          RxPacket p = *it;
          guest->inbox.erase(it);
          return p;
        }
      }
      ::usleep(1000);
    }
    return std::nullopt;
  }

  // The host connects to PATH, asks for guest port `gport`; the guest accepts. Returns the host's
  // socket and sets `hport` to the host-side port the device chose.
  UniqueFd host_connect(uint32_t gport, uint32_t& hport) {
    UniqueFd s(sys::unix_connect(path));
    EXPECT_TRUE(s.valid());
    handshake(s.get(), pepita::fmt("CONNECT {}\n", gport), gport, hport);
    return s;
  }

  // Sends `line` (a CONNECT naming gport) on the host socket s and completes the handshake: the
  // guest's REQUEST from the host, its RESPONSE, the host's "OK <port>". hport: the host's port.
  void handshake(int s, std::string_view line, uint32_t gport, uint32_t& hport) {
    EXPECT_EQ(sys::send_all(s, line.data(), line.size()), static_cast<int64_t>(line.size()));
    auto r = expect(OP_REQUEST, gport);
    EXPECT_TRUE(r.has_value()) << "the guest got no REQUEST for " << line;
    if (!r) return;
    EXPECT_EQ(r->hdr.src_cid, kHostCid);
    EXPECT_EQ(r->hdr.dst_cid, kCid);
    EXPECT_EQ(r->hdr.type, TYPE_STREAM);
    hport = r->hdr.src_port;
    EXPECT_TRUE(guest->send(gport, hport, OP_RESPONSE));
    EXPECT_EQ(read_line(s), pepita::fmt("OK {}", hport));
  }

  // Polls the guest until the device closes the host socket `fd` (up to ~2 s): true when it did
  // so without writing a byte to it (no OK line).
  bool closed_without_reply(int fd) {
    std::string got;
    for (int i = 0; i < 2000; ++i) {
      EXPECT_TRUE(guest->poll());
      if (!drain(fd, got)) return got.empty();
      ::usleep(1000);
    }
    return false;
  }
};

// Moves `to_guest` host->guest and `to_host` guest->host over one connection at the same time,
// the guest keeping to the device's credit and the host writing non-blocking. Returns what each
// side received.
struct Transfer {
  std::string at_guest, at_host;
  bool guest_stalled = false;  // the guest ran out of credit at least once
};
Transfer transfer(Fixture& f, int host, uint32_t gport, uint32_t hport, const std::string& to_guest,
                  const std::string& to_host) {
  Transfer t;
  size_t host_sent = 0, guest_sent = 0;
  uint32_t reported_fwd = f.guest->fwd_cnt;
  for (int i = 0; i < 200000; ++i) {
    if (host_sent < to_guest.size()) {
      const long n = sys::send(host, to_guest.data() + host_sent,
                               std::min<size_t>(16384, to_guest.size() - host_sent), MSG_DONTWAIT);
      if (n > 0) host_sent += static_cast<size_t>(n);
    }
    drain(host, t.at_host);
    if (!f.guest->poll()) break;
    while (!f.guest->inbox.empty()) {
      RxPacket p = std::move(f.guest->inbox.front());
      f.guest->inbox.pop_front();
      if (p.hdr.op == OP_RW) t.at_guest += p.data;
    }
    // Our application consumed it all: tell the device once half our buffer was freed.
    if (f.guest->fwd_cnt - reported_fwd >= f.guest->buf_alloc / 2) {
      EXPECT_TRUE(f.guest->send(gport, hport, OP_CREDIT_UPDATE));
      reported_fwd = f.guest->fwd_cnt;
    }
    if (guest_sent < to_host.size()) {
      const uint32_t n = std::min<uint32_t>(
          {f.guest->peer_free(), 4096u, static_cast<uint32_t>(to_host.size() - guest_sent)});
      if (n == 0) {
        t.guest_stalled = true;
      } else {
        EXPECT_TRUE(f.guest->send(gport, hport, OP_RW, to_host.substr(guest_sent, n)));
        guest_sent += n;
      }
    }
    if (t.at_guest.size() == to_guest.size() && t.at_host.size() == to_host.size()) break;
  }
  if (f.guest->fwd_cnt != reported_fwd) (void)f.guest->send(gport, hport, OP_CREDIT_UPDATE);
  return t;
}

// ---- pure parts --------------------------------------------------------------------------

Header good_header(uint16_t op = OP_RW, uint32_t len = 0) {
  return Header{.src_cid = kCid,
                .dst_cid = kHostCid,
                .src_port = 1000,
                .dst_port = 2000,
                .len = len,
                .type = TYPE_STREAM,
                .op = op,
                .flags = 0,
                .buf_alloc = 4096,
                .fwd_cnt = 0};
}

// A chain of one readable descriptor holding `h` and `payload_bytes` bytes after it.
Result<Packet> parse_one(const Header& h, uint32_t payload_bytes, bool split = false) {
  auto mem = memory::GuestMemory::anonymous(PhysAddr(0), 1 << 20).value();
  std::memcpy(mem.span(PhysAddr(0x1000), sizeof h).value().data(), &h, sizeof h);
  Chain c;
  const uint32_t total = static_cast<uint32_t>(sizeof h) + payload_bytes;
  if (split) {
    c.segments = {{PhysAddr(0x1000), 20, false}, {PhysAddr(0x1014), total - 20, false}};
  } else {
    c.segments = {{PhysAddr(0x1000), total, false}};
  }
  c.segments.push_back({PhysAddr(0x8000), 64, true});  // writable tail: never payload
  c.readable_bytes = total;
  c.writable_bytes = 64;
  return Packet::parse(c, mem, kCid);
}

TEST(VsockPacket, ParsesAHeaderSplitOverDescriptorsAndItsPayload) {
  auto p = parse_one(good_header(OP_RW, 100), 100, /*split=*/true);
  ASSERT_TRUE(p.has_value()) << p.error().to_string();
  EXPECT_EQ(p->hdr.src_port, 1000u);
  EXPECT_EQ(p->hdr.dst_port, 2000u);
  ASSERT_EQ(p->payload.size(), 1u);
  EXPECT_EQ(p->payload[0].gpa.raw(), 0x1000u + sizeof(Header));
  EXPECT_EQ(p->payload[0].len, 100u);
}

TEST(VsockPacket, RefusesEachMalformedHeaderWithTheFieldNamed) {
  struct Bad {
    const char* what;
    Header h;
    uint32_t payload;
  };
  auto with = [](auto f) {
    Header h = good_header();
    f(h);
    return h;
  };
  const Bad cases[] = {
      {"unknown op", with([](Header& h) { h.op = 9; }), 0},
      {"unknown op", with([](Header& h) { h.op = OP_INVALID; }), 0},
      {"socket type", with([](Header& h) { h.type = TYPE_SEQPACKET; }), 0},
      {"src_cid", with([](Header& h) { h.src_cid = 99; }), 0},
      {"dst_cid", with([](Header& h) { h.dst_cid = kCid; }), 0},
      {"beyond the 12 readable", with([](Header& h) { h.len = 13; }), 12},
      {"maximum", with([](Header& h) { h.len = kMaxPayload + 1; }), kMaxPayload + 1},
      {"carries a", with([](Header& h) {
         h.op = OP_REQUEST;
         h.len = 4;
       }),
       4},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto p = parse_one(c.h, c.payload);
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code(), ErrorCode::Protocol);
    EXPECT_NE(p.error().message().find(c.what), std::string::npos) << p.error().message();
  }
  // Shorter than a header: nothing to parse, and no header reported.
  auto mem = memory::GuestMemory::anonymous(PhysAddr(0), 1 << 20).value();
  Chain c;
  c.segments = {{PhysAddr(0x1000), 43, false}};
  c.readable_bytes = 43;
  std::optional<Header> hdr = good_header();
  EXPECT_FALSE(Packet::parse(c, mem, kCid, &hdr).has_value());
  EXPECT_FALSE(hdr.has_value());
}

TEST(VsockCredit, PeerFreeNeverGoesNegativeAndWraps) {
  Credit c{.buf_alloc = 100, .peer_buf_alloc = 1000};
  EXPECT_EQ(c.peer_free(), 1000u);
  c.tx_cnt = 600;
  c.peer_fwd_cnt = 100;
  EXPECT_EQ(c.peer_free(), 500u);
  c.peer_buf_alloc = 200;  // the peer shrank its buffer below what is in flight
  EXPECT_EQ(c.peer_free(), 0u);
  c.tx_cnt = 0xfffffff0u + 40;  // counters are free-running (wrap at 2^32)
  c.peer_fwd_cnt = 0xfffffff0u;
  c.peer_buf_alloc = 100;
  EXPECT_EQ(c.peer_free(), 60u);
  EXPECT_TRUE(c.accepts(100));
  c.rx_cnt = 30;
  EXPECT_FALSE(c.accepts(71));
  EXPECT_TRUE(c.accepts(70));
  EXPECT_FALSE(c.update_due()) << "nothing consumed yet";
  c.fwd_cnt = 30;  // consumed, but the peer still believes 70 of 100 bytes free: no hurry
  EXPECT_FALSE(c.update_due());
  c.rx_cnt = 80;  // the peer believes 20 free: it may stall soon, and we have room to report
  EXPECT_TRUE(c.update_due());
  c.last_fwd_sent = 30;  // reported
  EXPECT_FALSE(c.update_due());
}

TEST(VsockDevice, AdvertisesCidAndQueuesAndRefusesBadOptions) {
  auto d = VsockDevice::create({.guest_cid = 42});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ((*d)->device_id(), v::ID_VSOCK);
  EXPECT_EQ((*d)->num_queues(), 3);
  Config cfg{};
  ASSERT_EQ((*d)->config().size(), sizeof cfg);
  std::memcpy(&cfg, (*d)->config().data(), sizeof cfg);
  EXPECT_EQ(cfg.guest_cid, 42u);
  EXPECT_FALSE((*d)->activate(v::feature_bit(F_STREAM))) << "no VERSION_1";
  EXPECT_FALSE((*d)->activate((*d)->features() | v::feature_bit(F_SEQPACKET))) << "not offered";
  EXPECT_FALSE(VsockDevice::create({.guest_cid = 2}).has_value()) << "the host's cid";
  EXPECT_FALSE(VsockDevice::create({.guest_cid = 0xffffffff}).has_value()) << "reserved";
  EXPECT_FALSE(VsockDevice::create({.guest_cid = 3, .buf_alloc = 0}).has_value());
  for (uint64_t edge : {uint64_t{3}, uint64_t{0xfffffffe}}) {
    auto ok = VsockDevice::create({.guest_cid = edge});
    ASSERT_TRUE(ok.has_value()) << edge << ": " << ok.error().to_string();
  }
  auto host_cid = VsockDevice::create({.guest_cid = 2});
  ASSERT_FALSE(host_cid.has_value());
  EXPECT_EQ(host_cid.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(host_cid.error().message().find("cid 2 is reserved; use 3..4294967294"),
            std::string::npos)
      << host_cid.error().message();
  auto no_conns = VsockDevice::create({.guest_cid = 3, .max_connections = 0});
  ASSERT_FALSE(no_conns.has_value());
  EXPECT_EQ(no_conns.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(no_conns.error().message().find("max_connections must be at least 1"),
            std::string::npos);
  auto too_long = VsockDevice::create({.uds_path = std::string("/tmp/").append(200, 'x')});
  ASSERT_FALSE(too_long.has_value());
  EXPECT_NE(too_long.error().message().find("listen on"), std::string::npos);
}

// ---- through the device ------------------------------------------------------------------

TEST(VsockDevice, HostConnectsGuestAcceptsDataBothWaysBeyondOneCreditWindow) {
  Fixture f(32 * 1024);
  f.guest->buf_alloc = 16 * 1024;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(1234, hport);
  ASSERT_TRUE(host.valid());
  EXPECT_GE(hport, 1u << 30);
  EXPECT_EQ(f.dev->connection_count(), 1u);
  const std::string down = pattern(1 << 20, 1), up = pattern((1 << 20) + 777, 2);
  Transfer t = transfer(f, host.get(), 1234, hport, down, up);
  EXPECT_EQ(t.at_guest.size(), down.size());
  EXPECT_TRUE(t.at_guest == down) << "host->guest bytes differ";
  EXPECT_EQ(t.at_host.size(), up.size());
  EXPECT_TRUE(t.at_host == up) << "guest->host bytes differ";
  const auto s = f.dev->stats();
  EXPECT_GT(s.credit_updates, 0u) << "the device reported its consumption";
  EXPECT_EQ(s.bytes_to_guest, down.size());
  EXPECT_EQ(s.bytes_to_host, up.size());
  EXPECT_EQ(s.malformed, 0u) << f.dev->last_error();
  EXPECT_EQ(s.resets_sent, 0u);
}

TEST(VsockDevice, DeviceNeverExceedsTheGuestsCredit) {
  Fixture f;
  f.guest->buf_alloc = 8 * 1024;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(77, hport);
  const std::string data = pattern(100 * 1024, 3);
  ASSERT_EQ(sys::send_all(host.get(), data.data(), data.size()), static_cast<int64_t>(data.size()));
  // The guest consumes but never says so: the device must stop at 8 KiB.
  std::string got;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(f.guest->poll());
    for (auto& p : f.guest->inbox)
      if (p.hdr.op == OP_RW) got += p.data;
    f.guest->inbox.clear();
  }
  EXPECT_EQ(got.size(), 8u * 1024) << "exactly the advertised window, no more";
  // A credit update opens the window again.
  ASSERT_TRUE(f.guest->send(77, hport, OP_CREDIT_UPDATE));
  ASSERT_TRUE(f.guest->poll());
  for (auto& p : f.guest->inbox)
    if (p.hdr.op == OP_RW) got += p.data;
  EXPECT_EQ(got.size(), 16u * 1024);
  EXPECT_TRUE(got == data.substr(0, got.size()));
}

TEST(VsockDevice, BusyConnectionsShareTheReceiveBuffersRoundRobin) {
  Fixture f;
  uint32_t ha = 0, hb = 0;
  UniqueFd a = f.host_connect(100, ha);
  UniqueFd b = f.host_connect(200, hb);
  const std::string data = pattern(32 * 1024, 7);
  ASSERT_EQ(sys::send_all(a.get(), data.data(), data.size()), static_cast<int64_t>(data.size()));
  ASSERT_EQ(sys::send_all(b.get(), data.data(), data.size()), static_cast<int64_t>(data.size()));
  ASSERT_TRUE(f.guest->poll());
  std::vector<uint32_t> order;
  for (const auto& p : f.guest->inbox)
    if (p.hdr.op == OP_RW) order.push_back(p.hdr.dst_port);
  ASSERT_GE(order.size(), 4u);
  for (size_t i = 1; i < 4; ++i)
    EXPECT_NE(order[i], order[i - 1]) << "packet " << i << ": one stream took turns twice";
}

TEST(VsockDevice, GuestConnectsToThePortListenerAndExchangesData) {
  Fixture f;
  UniqueFd listener(sys::unix_listen(f.path + "_5000", 4));
  ASSERT_TRUE(listener.valid());
  ASSERT_TRUE(f.guest->send(3333, 5000, OP_REQUEST));
  auto resp = f.expect(OP_RESPONSE, 3333);
  ASSERT_TRUE(resp.has_value());
  EXPECT_EQ(resp->hdr.src_port, 5000u);
  EXPECT_EQ(resp->hdr.buf_alloc, 32u * 1024);
  UniqueFd peer(sys::accept(listener.get()));
  ASSERT_TRUE(peer.valid());
  const std::string down = pattern(200 * 1024, 4), up = pattern(300 * 1024, 5);
  Transfer t = transfer(f, peer.get(), 3333, 5000, down, up);
  EXPECT_TRUE(t.at_guest == down);
  EXPECT_TRUE(t.at_host == up);
  // 300 KiB through a 32 KiB window: the guest went on only because the device reported what the
  // host consumed.
  EXPECT_GE(f.guest->peer_fwd_cnt, up.size() - 32 * 1024);
  EXPECT_GT(f.dev->stats().credit_updates, 0u);
}

TEST(VsockDevice, RefusedPortsGetRst) {
  Fixture f;
  ASSERT_TRUE(f.guest->send(4444, 6000, OP_REQUEST));  // nobody listens on PATH_6000
  auto rst = f.expect(OP_RST, 4444);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->hdr.src_port, 6000u);
  EXPECT_EQ(f.dev->connection_count(), 0u);
  // The host asks for a port the guest refuses: the host socket is closed.
  UniqueFd host(sys::unix_connect(f.path));
  ASSERT_TRUE(host.valid());
  ASSERT_EQ(sys::send_all(host.get(), "CONNECT 9\n", 10), 10);
  auto req = f.expect(OP_REQUEST, 9);
  ASSERT_TRUE(req.has_value());
  ASSERT_TRUE(f.guest->send(9, req->hdr.src_port, OP_RST));
  ASSERT_TRUE(f.guest->poll());
  pollfd p{host.get(), POLLIN, 0};
  ASSERT_EQ(sys::poll(&p, 1, 2000), 1);
  char c = 0;
  EXPECT_EQ(sys::recv(host.get(), &c, 1), 0) << "EOF, no OK line";
  EXPECT_EQ(f.dev->connection_count(), 0u);
  // A malformed CONNECT line is closed without reaching the guest.
  UniqueFd bad(sys::unix_connect(f.path));
  ASSERT_EQ(sys::send_all(bad.get(), "CONNECT x\n", 10), 10);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(f.guest->poll());
  EXPECT_TRUE(f.guest->inbox.empty());
  ASSERT_EQ(sys::poll(&p, 1, 0), 1);
}

TEST(VsockDevice, ShutdownBothWaysEndsInRstAndEof) {
  Fixture f;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(80, hport);
  // Host finishes sending first: the guest gets its data, then SHUTDOWN(SEND).
  ASSERT_EQ(sys::send_all(host.get(), "bye", 3), 3);
  ASSERT_EQ(::shutdown(host.get(), SHUT_WR), 0);
  auto sd = f.expect(OP_SHUTDOWN, 80);
  ASSERT_TRUE(sd.has_value());
  EXPECT_EQ(sd->hdr.flags, SHUTDOWN_SEND);
  ASSERT_FALSE(f.guest->inbox.empty());
  EXPECT_EQ(f.guest->inbox.front().data, "bye") << "data before the shutdown";
  // The guest still sends, then shuts down its side: the host reads the data, then EOF.
  ASSERT_TRUE(f.guest->send(80, hport, OP_RW, "last words"));
  ASSERT_TRUE(f.guest->send(80, hport, OP_SHUTDOWN, {}, SHUTDOWN_SEND));
  auto rst = f.expect(OP_RST, 80);
  ASSERT_TRUE(rst.has_value()) << "both sides shut: the device closes with RST";
  std::string got;
  pollfd p{host.get(), POLLIN, 0};
  while (sys::poll(&p, 1, 2000) == 1 && drain(host.get(), got)) {
  }
  EXPECT_EQ(got, "last words");
  EXPECT_EQ(f.dev->connection_count(), 0u);

  // The other order: the guest closes (RCV|SEND), the host sees EOF and the guest gets RST.
  UniqueFd host2 = f.host_connect(81, hport);
  ASSERT_TRUE(f.guest->send(81, hport, OP_SHUTDOWN, {}, SHUTDOWN_SEND | SHUTDOWN_RCV));
  ASSERT_TRUE(f.expect(OP_RST, 81).has_value());
  char c = 0;
  pollfd p2{host2.get(), POLLIN, 0};
  ASSERT_EQ(sys::poll(&p2, 1, 2000), 1);
  EXPECT_EQ(sys::recv(host2.get(), &c, 1), 0);
}

TEST(VsockDevice, MalformedPacketsResetTheirConnectionAndTheOthersKeepWorking) {
  Fixture f;
  uint32_t keep_port = 0;
  UniqueFd keep = f.host_connect(10, keep_port);
  struct Bad {
    const char* what;
    std::function<void(Header&)> edit;
    std::string payload;
  };
  const Bad cases[] = {
      {"bad op", [](Header& h) { h.op = 42; }, ""},
      {"bad type", [](Header& h) { h.type = 7; }, ""},
      {"unknown src cid", [](Header& h) { h.src_cid = 1234; }, ""},
      {"dst cid not the host", [](Header& h) { h.dst_cid = 9; }, ""},
      {"len beyond the chain", [](Header& h) { h.len = 5000; }, "short"},
      {"credit overrun", [](Header& h) { h.len = 40000; }, std::string(40000, 'x')},
  };
  uint32_t gport = 20;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    uint32_t hport = 0;
    UniqueFd victim = f.host_connect(++gport, hport);
    Header h{.src_cid = kCid,
             .dst_cid = kHostCid,
             .src_port = gport,
             .dst_port = hport,
             .len = static_cast<uint32_t>(c.payload.size()),
             .type = TYPE_STREAM,
             .op = OP_RW,
             .flags = 0,
             .buf_alloc = f.guest->buf_alloc,
             .fwd_cnt = f.guest->fwd_cnt};
    c.edit(h);
    const auto before = f.dev->stats().malformed;
    ASSERT_TRUE(f.guest->send_raw(h, c.payload)) << "the device keeps serving the queue";
    EXPECT_EQ(f.dev->stats().malformed, before + 1);
    auto rst = f.expect(OP_RST, gport);
    ASSERT_TRUE(rst.has_value());
    EXPECT_EQ(rst->hdr.src_port, hport);
    // The victim's host socket is closed.
    char ch = 0;
    pollfd p{victim.get(), POLLIN, 0};
    ASSERT_EQ(sys::poll(&p, 1, 2000), 1);
    EXPECT_LE(sys::recv(victim.get(), &ch, 1), 0);
    EXPECT_EQ(f.dev->status_bits(), 0) << "a bad packet is not a broken ring";
  }
  // A chain too short for a header is dropped (nothing to reset).
  Header h{};
  ASSERT_TRUE(f.guest->send_raw(h, "", false));
  // The connection that behaved still carries data both ways.
  EXPECT_EQ(f.dev->connection_count(), 1u);
  Transfer t = transfer(f, keep.get(), 10, keep_port, "still here", "and here");
  EXPECT_EQ(t.at_guest, "still here");
  EXPECT_EQ(t.at_host, "and here");
}

TEST(VsockDevice, HostThatStopsReadingStallsTheGuestAtTheCreditLimitAndLosesNothing) {
  Fixture f(16 * 1024);
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(90, hport);
  ASSERT_EQ(sys::set_option(host.get(), SOL_SOCKET, SO_RCVBUF, 4096), 0);
  // The guest writes as fast as its credit allows while the host reads nothing.
  const std::string data = pattern(2 << 20, 6);
  size_t sent = 0;
  int stalled_polls = 0;
  for (int i = 0; i < 100000 && stalled_polls < 50 && sent < data.size(); ++i) {
    ASSERT_TRUE(f.guest->poll());
    f.guest->inbox.clear();
    const uint32_t n = std::min<uint32_t>(f.guest->peer_free(), 4096);
    if (n == 0) {
      ++stalled_polls;
      continue;
    }
    stalled_polls = 0;
    ASSERT_TRUE(f.guest->send(90, hport, OP_RW, data.substr(sent, n)));
    sent += n;
  }
  ASSERT_LT(sent, data.size()) << "the guest never stalled: the host socket swallowed 2 MiB";
  EXPECT_EQ(f.guest->peer_free(), 0u) << "stalled exactly at the device's credit";
  EXPECT_EQ(f.dev->stats().malformed, 0u) << f.dev->last_error();
  // The host reads again: the device flushes, reports its credit, and the guest finishes.
  std::string got;
  size_t rounds = 0;
  while (got.size() < data.size() && ++rounds < 200000) {
    drain(host.get(), got);
    ASSERT_TRUE(f.guest->poll());
    f.guest->inbox.clear();
    const uint32_t n = std::min<uint32_t>(
        {f.guest->peer_free(), 4096u, static_cast<uint32_t>(data.size() - sent)});
    if (n > 0) {
      ASSERT_TRUE(f.guest->send(90, hport, OP_RW, data.substr(sent, n)));
      sent += n;
    }
  }
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data) << "nothing lost or reordered";
}

TEST(VsockDevice, SnapshotStateCarriesHeldBuffersAndIsRefusedWhileConnectionsAreOpen) {
  Fixture f;
  ASSERT_TRUE(f.guest->poll());  // the device takes the posted receive buffers and holds them
  auto idle = f.dev->save_state();
  ASSERT_TRUE(idle) << idle.error().to_string();
  EXPECT_FALSE(idle->empty());
  // A fresh device (its own listener) loads it and saves the same state back.
  auto other = VsockDevice::create({.uds_path = fresh_path("snap"), .guest_cid = kCid});
  ASSERT_TRUE(other) << other.error().to_string();
  ASSERT_TRUE((*other)->activate((*other)->features()));
  auto loaded = (*other)->load_state(*idle);
  ASSERT_TRUE(loaded) << loaded.error().to_string();
  auto again = (*other)->save_state();
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(*again, *idle);
  const std::vector<std::byte> junk(5, std::byte{1});
  auto bad = (*other)->load_state(junk);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  // Host sockets cannot be carried into another VM: refused while a connection is open.
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(7, hport);
  ASSERT_EQ(f.dev->connection_count(), 1u);
  auto busy = f.dev->save_state();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), ErrorCode::Busy);
  EXPECT_NE(busy.error().message().find("1 open connection"), std::string::npos)
      << busy.error().message();
}

TEST(VsockDevice, ResetClosesConnectionsAndBrokenRingsNeedReset) {
  Fixture f;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(5, hport);
  EXPECT_EQ(f.dev->connection_count(), 1u);
  f.dev->reset();
  EXPECT_EQ(f.dev->connection_count(), 0u);
  char c = 0;
  pollfd p{host.get(), POLLIN, 0};
  ASSERT_EQ(sys::poll(&p, 1, 2000), 1);
  EXPECT_EQ(sys::recv(host.get(), &c, 1), 0);
  // A ring with an avail index far ahead is a protocol error: NEEDS_RESET.
  ASSERT_TRUE(f.guest->mem().write(PhysAddr(0x10000 + 0x1000 + 2), uint16_t{500}));
  EXPECT_FALSE(f.dev->process(kTxq, f.guest->queue(kTxq)).has_value());
  EXPECT_EQ(f.dev->status_bits(), v::STATUS_NEEDS_RESET);
  EXPECT_FALSE(f.dev->process(3, f.guest->queue(kTxq)).has_value()) << "three queues only";
}

// A host connection that never names a port is closed without reaching the guest: closed before
// a request, a full 32-byte line without a newline, a line that is not CONNECT.
TEST(VsockDevice, HostHandshakesWithoutAConnectLineAreClosedAndNeverReachTheGuest) {
  Fixture f;
  {
    UniqueFd gone(sys::unix_connect(f.path));
    ASSERT_TRUE(gone.valid());
  }
  UniqueFd endless(sys::unix_connect(f.path));
  const std::string no_newline(32, 'C');
  ASSERT_EQ(sys::send_all(endless.get(), no_newline.data(), no_newline.size()), 32);
  UniqueFd other(sys::unix_connect(f.path));
  ASSERT_EQ(sys::send_all(other.get(), "HELLO 5\n", 8), 8);
  for (int fd : {endless.get(), other.get()}) {
    EXPECT_TRUE(f.closed_without_reply(fd)) << "the device kept a connection that named no port";
  }
  EXPECT_TRUE(f.guest->inbox.empty()) << "no REQUEST for a connection that named no port";
  EXPECT_EQ(f.dev->connection_count(), 0u);
  // The listener still serves a well-formed request.
  uint32_t hport = 0;
  UniqueFd good = f.host_connect(12, hport);
  EXPECT_EQ(f.dev->connection_count(), 1u);
}

// The CONNECT line may end in CRLF; its port is a whole decimal number that fits 32 bits, nothing
// before or after it.
TEST(VsockDevice, HostHandshakeTakesACrlfLineAndRefusesPortsThatAreNotWholeNumbers) {
  Fixture f;
  for (const char* line :
       {"CONNECT \n", "CONNECT 5x\n", "CONNECT 4294967296\n", "CONNECT 7\r\r\n"}) {
    SCOPED_TRACE(line);
    UniqueFd bad(sys::unix_connect(f.path));
    ASSERT_TRUE(bad.valid());
    const std::string_view text(line);
    ASSERT_EQ(sys::send_all(bad.get(), text.data(), text.size()),
              static_cast<int64_t>(text.size()));
    EXPECT_TRUE(f.closed_without_reply(bad.get()));
    EXPECT_TRUE(f.guest->inbox.empty()) << "no REQUEST for a port that is not a number";
  }
  UniqueFd crlf(sys::unix_connect(f.path));
  uint32_t hport = 0;
  f.handshake(crlf.get(), "CONNECT 21\r\n", 21, hport);  // CRLF ends the line too
  EXPECT_EQ(f.dev->connection_count(), 1u);
}

// Host connections count against max_connections from their accept, handshakes included: one
// beyond it is closed at once, and a handshake already waiting still completes.
TEST(VsockDevice, HostConnectionsBeyondMaxConnectionsAreClosedAtAccept) {
  Fixture f(32 * 1024, false, 2);
  UniqueFd waiting(sys::unix_connect(f.path));  // accepted, names its port later
  ASSERT_TRUE(waiting.valid());
  uint32_t hport = 0;
  UniqueFd open = f.host_connect(1, hport);  // one handshaking + one open: the limit
  ASSERT_EQ(f.dev->connection_count(), 1u);
  UniqueFd beyond(sys::unix_connect(f.path));
  ASSERT_TRUE(beyond.valid());
  EXPECT_TRUE(f.closed_without_reply(beyond.get())) << "a third connection with max_connections 2";
  f.handshake(waiting.get(), "CONNECT 2\n", 2, hport);  // the waiting handshake was kept
  EXPECT_EQ(f.dev->connection_count(), 2u);
}

// Host-side ports start at 2^30 (Firecracker's range), skip ports the guest's own connections
// use, and wrap from 2^32 - 1 back to 2^30.
TEST(VsockDevice, HostPortsSkipThoseInUseAndWrapToTwoToTheThirty) {
  Fixture f;
  ASSERT_TRUE(f.guest->poll());
  auto state = f.dev->save_state();
  ASSERT_TRUE(state) << state.error().to_string();
  const uint32_t last = 0xffffffff;
  std::memcpy(state->data(), &last, sizeof last);  // next_host_port_ leads the state
  ASSERT_TRUE(f.dev->load_state(*state));
  uint32_t hport = 0;
  UniqueFd a = f.host_connect(1, hport);
  EXPECT_EQ(hport, last);
  UniqueFd b = f.host_connect(2, hport);
  EXPECT_EQ(hport, 1u << 30) << "wrapped past 2^32 - 1";
  // The guest connects to host port 2^30 + 1 itself: the next host connection skips it.
  const uint32_t taken = (1u << 30) + 1;
  UniqueFd port_listener(sys::unix_listen(pepita::fmt("{}_{}", f.path, taken), 8));
  ASSERT_TRUE(port_listener.valid());
  ASSERT_TRUE(f.guest->send(3, taken, OP_REQUEST));
  ASSERT_TRUE(f.expect(OP_RESPONSE, 3).has_value());
  UniqueFd c = f.host_connect(4, hport);
  EXPECT_EQ(hport, taken + 1);
  EXPECT_EQ(f.dev->connection_count(), 4u);
}

// Packets that do not fit their connection's state reset it (RST to the guest, the host socket
// closed) and say why in last_error(); other connections are untouched.
TEST(VsockDevice, PacketsOutOfStateResetTheirConnectionAndSayWhy) {
  Fixture f;
  uint32_t keep_port = 0;
  UniqueFd keep = f.host_connect(10, keep_port);
  struct Case {
    const char* what;
    std::function<void(uint32_t gport, uint32_t hport)> send;
    const char* why;
  };
  const Case cases[] = {
      {"a second REQUEST",
       [&](uint32_t g, uint32_t h) { EXPECT_TRUE(f.guest->send(g, h, OP_REQUEST)); },
       "already connected"},
      {"a RESPONSE once established",
       [&](uint32_t g, uint32_t h) { EXPECT_TRUE(f.guest->send(g, h, OP_RESPONSE)); },
       "RESPONSE on a connection that is not connecting"},
      {"RW after the guest shut its sending side",
       [&](uint32_t g, uint32_t h) {
         EXPECT_TRUE(f.guest->send(g, h, OP_SHUTDOWN, {}, SHUTDOWN_SEND));
         EXPECT_TRUE(f.guest->send(g, h, OP_RW, "late"));
       },
       "shut down for sending"},
  };
  uint32_t gport = 30;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    uint32_t hport = 0;
    UniqueFd victim = f.host_connect(++gport, hport);
    const auto before = f.dev->stats();
    c.send(gport, hport);
    EXPECT_EQ(f.dev->stats().malformed, before.malformed + 1);
    EXPECT_NE(f.dev->last_error().find(c.why), std::string::npos) << f.dev->last_error();
    auto rst = f.expect(OP_RST, gport);
    ASSERT_TRUE(rst.has_value());
    EXPECT_EQ(rst->hdr.src_port, hport);
    char ch = 0;
    pollfd p{victim.get(), POLLIN, 0};
    ASSERT_EQ(sys::poll(&p, 1, 2000), 1);
    EXPECT_EQ(sys::recv(victim.get(), &ch, 1), 0) << "the victim's host socket is closed";
    EXPECT_EQ(f.dev->connection_count(), 1u);
    EXPECT_EQ(f.dev->status_bits(), 0) << "a packet out of state is not a broken ring";
  }
  Transfer t = transfer(f, keep.get(), 10, keep_port, "still here", "and here");
  EXPECT_EQ(t.at_guest, "still here");
  EXPECT_EQ(t.at_host, "and here");
}

// Guest connections beyond max_connections, or to a device without a host path, are refused
// with RST; the connection already open keeps working.
TEST(VsockDevice, GuestRequestsBeyondMaxConnectionsOrWithoutAHostPathGetRst) {
  const std::string path = fresh_path("max");
  UniqueFd port_listener(sys::unix_listen(path + "_6000", 8));
  ASSERT_TRUE(port_listener.valid());
  auto dev = VsockDevice::create({.uds_path = path, .guest_cid = kCid, .max_connections = 1});
  ASSERT_TRUE(dev.has_value()) << dev.error().to_string();
  ASSERT_TRUE((*dev)->activate((*dev)->features()));
  GuestDriver guest(**dev, kCid);
  auto next = [&](uint16_t op, uint32_t gport) -> std::optional<RxPacket> {
    for (int i = 0; i < 2000; ++i) {
      EXPECT_TRUE(guest.poll());
      for (auto it = guest.inbox.begin(); it != guest.inbox.end(); ++it) {
        if (it->hdr.op == op && it->hdr.dst_port == gport) {
          RxPacket p = *it;
          guest.inbox.erase(it);
          return p;
        }
      }
      ::usleep(1000);
    }
    return std::nullopt;
  };
  ASSERT_TRUE(guest.send(1, 6000, OP_REQUEST));
  ASSERT_TRUE(next(OP_RESPONSE, 1).has_value()) << "the first connection is accepted";
  ASSERT_TRUE(guest.send(2, 6000, OP_REQUEST));
  ASSERT_TRUE(next(OP_RST, 2).has_value()) << "a second one is beyond max_connections";
  EXPECT_EQ((*dev)->connection_count(), 1u);
  EXPECT_EQ((*dev)->stats().malformed, 0u) << "a refusal, not a malformed packet";

  auto pathless = VsockDevice::create({.guest_cid = kCid});
  ASSERT_TRUE(pathless.has_value()) << pathless.error().to_string();
  ASSERT_TRUE((*pathless)->activate((*pathless)->features()));
  GuestDriver alone(**pathless, kCid);
  ASSERT_TRUE(alone.send(3, 6000, OP_REQUEST));
  ASSERT_TRUE(alone.poll());
  ASSERT_EQ(alone.inbox.size(), 1u);
  EXPECT_EQ(alone.inbox.front().hdr.op, OP_RST);
  EXPECT_EQ(alone.inbox.front().hdr.dst_port, 3u);
  EXPECT_EQ((*pathless)->connection_count(), 0u);
}

// A host socket that goes away is a reset the guest hears about (RST), however the device finds
// out: closed with data it never read (recv fails), shut for reading while the guest writes (the
// direct send fails), closed while the guest's data waits in the device (the flush fails).
TEST(VsockDevice, HostThatClosesWithUnreadDataResetsTheGuestsConnection) {
  Fixture f;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(40, hport);
  ASSERT_TRUE(f.guest->send(40, hport, OP_RW, "never read"));
  host.reset();
  auto rst = f.expect(OP_RST, 40);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->hdr.src_port, hport);
  EXPECT_EQ(f.dev->connection_count(), 0u);
  EXPECT_EQ(f.dev->stats().malformed, 0u) << "the guest did nothing wrong";
}

TEST(VsockDevice, GuestDataForAHostThatShutItsReadingSideGetsRst) {
  Fixture f;
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(41, hport);
  ASSERT_EQ(::shutdown(host.get(), SHUT_RD), 0);
  const auto resets = f.dev->stats().resets_sent;
  ASSERT_TRUE(f.guest->send(41, hport, OP_RW, "nobody reads this"));
  EXPECT_EQ(f.dev->stats().resets_sent, resets + 1);
  EXPECT_EQ(f.dev->connection_count(), 0u);
  auto rst = f.expect(OP_RST, 41);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(f.dev->stats().bytes_to_host, 0u);
  EXPECT_EQ(f.dev->stats().malformed, 0u);
}

TEST(VsockDevice, HostThatClosesWhileGuestDataWaitsInTheDeviceResetsTheConnection) {
  Fixture f(16 * 1024);
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(42, hport);
  // The guest writes while the host reads nothing, until the device holds data of its own.
  const std::string chunk = pattern(4096, 9);
  int stalled_polls = 0;
  for (int i = 0; i < 100000 && stalled_polls < 50; ++i) {
    ASSERT_TRUE(f.guest->poll());
    f.guest->inbox.clear();
    if (f.guest->peer_free() < chunk.size()) {
      ++stalled_polls;
      continue;
    }
    stalled_polls = 0;
    ASSERT_TRUE(f.guest->send(42, hport, OP_RW, chunk));
  }
  ASSERT_GE(stalled_polls, 50) << "the host socket never filled";
  host.reset();
  auto rst = f.expect(OP_RST, 42);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(f.dev->connection_count(), 0u);
  EXPECT_EQ(f.dev->stats().malformed, 0u);
}

// Receive buffers posted as two descriptors (header, then payload): packets land across both,
// the data after the header in order, both ways beyond one credit window.
TEST(VsockDevice, ReceiveBuffersSplitAfterTheHeaderCarryDataInOrder) {
  Fixture f(32 * 1024, /*split_rx=*/true);
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(44, hport);
  const std::string down = pattern(100 * 1024, 11);
  Transfer t = transfer(f, host.get(), 44, hport, down, "up");
  EXPECT_TRUE(t.at_guest == down) << t.at_guest.size() << " of " << down.size() << " bytes";
  EXPECT_EQ(t.at_host, "up");
  EXPECT_EQ(f.dev->stats().malformed, 0u) << f.dev->last_error();
}

// A host that leaves between its CONNECT line and the guest's RESPONSE gets no connection: the
// OK line cannot be sent, so the guest is reset.
TEST(VsockDevice, HostThatLeavesBeforeTheGuestAcceptsIsResetAtTheResponse) {
  Fixture f;
  UniqueFd host(sys::unix_connect(f.path));
  ASSERT_TRUE(host.valid());
  ASSERT_EQ(sys::send_all(host.get(), "CONNECT 45\n", 11), 11);
  auto req = f.expect(OP_REQUEST, 45);
  ASSERT_TRUE(req.has_value());
  host.reset();
  ASSERT_TRUE(f.guest->send(45, req->hdr.src_port, OP_RESPONSE));
  auto rst = f.expect(OP_RST, 45);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->hdr.src_port, req->hdr.src_port);
  EXPECT_EQ(f.dev->connection_count(), 0u);
  EXPECT_EQ(f.dev->stats().malformed, 0u) << "the guest did nothing wrong";
}

// A transmit chain too short for a header is counted and dropped: no connection to reset.
TEST(VsockDevice, TransmitChainShorterThanAHeaderIsCountedAndDropped) {
  Fixture f;
  f.guest->desc(kTxq, 0, 0x500000, 10, 0);
  f.guest->publish(kTxq, 0);
  ASSERT_TRUE(f.dev->process(kTxq, f.guest->queue(kTxq)).has_value());
  EXPECT_EQ(f.dev->stats().malformed, 1u);
  EXPECT_FALSE(f.dev->last_error().empty());
  EXPECT_EQ(f.dev->stats().resets_sent, 0u);
  ASSERT_TRUE(f.guest->poll());
  EXPECT_TRUE(f.guest->inbox.empty()) << "no RST: there was no header to answer";
  EXPECT_EQ(f.dev->status_bits(), 0);
}

// A receive buffer of exactly one header is big enough for a control packet.
TEST(VsockDevice, ReceiveBufferOfExactlyAHeaderCarriesAControlPacket) {
  Fixture f;
  f.guest->desc(kRxq, 0, 0x100000, sizeof(Header), v::DESC_F_WRITE);
  ASSERT_TRUE(f.guest->send(4444, 6000, OP_REQUEST));  // refused: an RST waits for a buffer
  ASSERT_TRUE(f.guest->poll());
  ASSERT_EQ(f.guest->inbox.size(), 1u);
  EXPECT_EQ(f.guest->inbox.front().hdr.op, OP_RST) << "the RST went into the header-sized buffer";
  EXPECT_EQ(f.guest->inbox.front().hdr.dst_port, 4444u);
  EXPECT_EQ(f.dev->stats().packets_rx, 1u);
}

// A receive buffer too small for a header is given back empty; the next one carries the packet.
TEST(VsockDevice, ReceiveBufferTooSmallForAHeaderIsReturnedEmpty) {
  Fixture f;
  // Descriptor 0 shrinks to 16 bytes before the device first looks at the receive queue.
  f.guest->desc(kRxq, 0, 0x100000, 16, v::DESC_F_WRITE);
  ASSERT_TRUE(f.guest->poll());
  ASSERT_EQ(f.guest->inbox.size(), 1u) << "only the small buffer is used: nothing to send yet";
  EXPECT_EQ(f.guest->inbox.front().hdr.op, 0) << "nothing written into it";
  EXPECT_EQ(f.guest->inbox.front().data, "");
  EXPECT_EQ(f.dev->stats().packets_rx, 0u);
  f.guest->inbox.clear();
  uint32_t hport = 0;
  UniqueFd host = f.host_connect(43, hport);
  EXPECT_EQ(f.dev->connection_count(), 1u);
}

// A guest that posts more buffers than its ring holds (rx or event queue) broke the ring: the
// device says so and needs a reset.
TEST(VsockDevice, MoreBuffersPostedThanTheRingHoldsNeedsReset) {
  {
    Fixture f;
    ASSERT_TRUE(f.guest->poll());  // the device holds all 64 receive buffers
    f.guest->publish(kRxq, 0);     // the same buffer again: 65 posted
    auto r = f.dev->process(kRxq, f.guest->queue(kRxq));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
    EXPECT_NE(r.error().message().find("more buffers posted (65)"), std::string::npos)
        << r.error().message();
    EXPECT_EQ(f.dev->status_bits(), v::STATUS_NEEDS_RESET);
  }
  Fixture f;
  for (uint16_t d = 0; d < GuestDriver::kQueue; ++d) {
    f.guest->desc(kEventq, d, 0x600000 + 8ull * d, 8, v::DESC_F_WRITE);
    f.guest->publish(kEventq, d);
  }
  ASSERT_TRUE(f.dev->process(kEventq, f.guest->queue(kEventq)).has_value());
  EXPECT_EQ(f.dev->status_bits(), 0);
  f.guest->publish(kEventq, 0);
  auto r = f.dev->process(kEventq, f.guest->queue(kEventq));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  EXPECT_NE(r.error().message().find("eventq: more buffers posted"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(f.dev->status_bits(), v::STATUS_NEEDS_RESET);
}

// A host connection still naming its port holds a host socket too: no snapshot, and the error
// counts it apart from the open ones.
TEST(VsockDevice, SnapshotIsRefusedWhileAHostConnectionIsMidHandshake) {
  Fixture f;
  UniqueFd waiting(sys::unix_connect(f.path));
  ASSERT_TRUE(waiting.valid());
  ASSERT_TRUE(f.guest->poll());  // accepted: it waits for its CONNECT line
  auto busy = f.dev->save_state();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), ErrorCode::Busy);
  EXPECT_NE(busy.error().message().find("0 open connection(s) and 1 host connection(s)"),
            std::string::npos)
      << busy.error().message();
}

// A snapshot state as save_state() encodes it: `ctl` zeroed control headers, `rx` receive
// buffers without segments and `events` event buffers, then `extra` trailing bytes.
std::vector<std::byte> state_with(uint32_t ctl, uint32_t rx, uint32_t events, size_t extra = 0) {
  std::vector<std::byte> out;
  auto put = [&out](const auto& value, size_t times = 1) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    for (size_t i = 0; i < times; ++i) out.insert(out.end(), p, p + sizeof value);
  };
  put(uint32_t{1} << 30);  // next host port
  put(ctl);
  put(Header{}, ctl);
  put(rx);
  for (uint32_t i = 0; i < rx; ++i) {
    put(uint16_t{0});   // head
    put(uint64_t{64});  // capacity
    put(uint32_t{0});   // segments
  }
  put(events);
  put(uint16_t{0}, events);
  out.resize(out.size() + extra);
  return out;
}

// load_state() takes as many queued packets and buffers as the largest rings can hold and
// refuses one more, or a byte after the end.
TEST(VsockDevice, SnapshotStateLoadsUpToTheRingLimitsAndNoMore) {
  auto dev = VsockDevice::create({.guest_cid = kCid});
  ASSERT_TRUE(dev.has_value()) << dev.error().to_string();
  constexpr uint32_t kMax = v::MAX_QUEUE_SIZE;
  struct Case {
    uint32_t ctl, rx, events;
    size_t extra;
    bool ok;
  };
  for (const Case& c :
       {Case{4 * kMax, 0, 0, 0, true}, Case{4 * kMax + 1, 0, 0, 0, false},
        Case{0, kMax, 0, 0, true}, Case{0, kMax + 1, 0, 0, false}, Case{0, 0, kMax, 0, true},
        Case{0, 0, kMax + 1, 0, false}, Case{1, 1, 1, 0, true}, Case{1, 1, 1, 1, false}}) {
    SCOPED_TRACE(pepita::fmt("ctl {} rx {} events {} extra {}", c.ctl, c.rx, c.events, c.extra));
    const auto state = state_with(c.ctl, c.rx, c.events, c.extra);
    auto r = (*dev)->load_state(state);
    EXPECT_EQ(r.has_value(), c.ok) << (r ? "" : r.error().message());
    if (!c.ok || !r) continue;
    auto again = (*dev)->save_state();
    ASSERT_TRUE(again) << again.error().to_string();
    EXPECT_TRUE(*again == state) << "saved back as loaded";
  }
}

// The snapshot carries control packets not yet delivered and the held event buffers; a state cut
// short anywhere is refused whole.
TEST(VsockDevice, SnapshotStateCarriesQueuedControlPacketsAndEventBuffers) {
  Fixture f;
  ASSERT_TRUE(f.guest->send(4444, 6000, OP_REQUEST));  // refused: an RST waits for a buffer
  for (uint16_t d = 0; d < 2; ++d) {
    f.guest->desc(kEventq, d, 0x600000 + 8ull * d, 8, v::DESC_F_WRITE);
    f.guest->publish(kEventq, d);
  }
  ASSERT_TRUE(f.dev->process(kEventq, f.guest->queue(kEventq)).has_value());
  auto state = f.dev->save_state();
  ASSERT_TRUE(state) << state.error().to_string();
  auto other = VsockDevice::create({.uds_path = fresh_path("snap"), .guest_cid = kCid});
  ASSERT_TRUE(other) << other.error().to_string();
  ASSERT_TRUE((*other)->activate((*other)->features()));
  auto loaded = (*other)->load_state(*state);
  ASSERT_TRUE(loaded) << loaded.error().to_string();
  auto again = (*other)->save_state();
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(*again, *state) << "the RST and both event buffers came across";
  // The loaded device delivers the RST it carried to the first receive buffer.
  GuestDriver guest(**other, kCid);
  ASSERT_TRUE(guest.poll());
  ASSERT_EQ(guest.inbox.size(), 1u);
  EXPECT_EQ(guest.inbox.front().hdr.op, OP_RST);
  EXPECT_EQ(guest.inbox.front().hdr.dst_port, 4444u);
  for (size_t cut : {size_t{10}, size_t{60}, state->size() - 1}) {
    SCOPED_TRACE(cut);
    auto bad = (*other)->load_state(std::span(*state).first(cut));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(bad.error().message().find("not saved by a vsock device"), std::string::npos);
  }
}

}  // namespace
}  // namespace pepita::virtio::vsock

namespace pepita::virtio::vsock {
namespace {

// The device behind the virtio-mmio transport, as the micro-VM's bus serves it: ID 19, guest_cid
// in config space, three queues, and a notify on rxq that brings the host's connection request.
TEST(VsockDevice, ServesThroughTheMmioTransport) {
  namespace m = abi::virtio_mmio;
  auto mem = memory::GuestMemory::anonymous(PhysAddr(0), 1 << 20).value();
  const std::string path = fresh_path("mmio");
  auto dev = VsockDevice::create({.uds_path = path, .guest_cid = 9});
  ASSERT_TRUE(dev.has_value()) << dev.error().to_string();
  MmioTransport t(std::move(*dev), mem);
  virtio::testing::MmioDriver d{t};
  EXPECT_EQ(d.r(m::DEVICE_ID), v::ID_VSOCK);
  EXPECT_EQ(t.read(m::CONFIG, 4), 9u) << "guest_cid, low half";
  EXPECT_EQ(t.read(m::CONFIG + 4, 4), 0u) << "guest_cid, high half";
  ASSERT_TRUE(d.negotiate(v::feature_bit(v::F_VERSION_1)));
  QueueLayout rings[3];
  for (uint16_t q = 0; q < 3; ++q) {
    const uint64_t base = 0x10000ull * (q + 1);
    rings[q] = {8, PhysAddr(base), PhysAddr(base + 0x1000), PhysAddr(base + 0x2000)};
    d.queue(q, rings[q]);
  }
  d.driver_ok();
  ASSERT_NE(t.status() & v::STATUS_DRIVER_OK, 0) << t.last_error();
  // One receive buffer on rxq.
  const uint64_t buf = 0x80000;
  ASSERT_TRUE(mem.write(rings[kRxq].desc, v::Desc{buf, 4096 + 44, v::DESC_F_WRITE, 0}));
  ASSERT_TRUE(mem.write(PhysAddr(rings[kRxq].avail.raw() + 4), uint16_t{0}));
  ASSERT_TRUE(mem.write(PhysAddr(rings[kRxq].avail.raw() + 2), uint16_t{1}));
  UniqueFd host(sys::unix_connect(path));
  ASSERT_TRUE(host.valid());
  ASSERT_EQ(sys::send_all(host.get(), "CONNECT 77\n", 11), 11);
  uint16_t used = 0;
  for (int i = 0; i < 1000 && used == 0; ++i) {
    d.w(m::QUEUE_NOTIFY, kRxq);  // the polling guest's receive kick
    used = mem.read<uint16_t>(PhysAddr(rings[kRxq].used.raw() + 2)).value();
    if (used == 0) ::usleep(1000);
  }
  ASSERT_EQ(used, 1);
  const auto h = mem.read<Header>(PhysAddr(buf)).value();
  EXPECT_EQ(h.op, OP_REQUEST);
  EXPECT_EQ(h.dst_port, 77u);
  EXPECT_EQ(h.dst_cid, 9u);
  EXPECT_EQ(t.status() & v::STATUS_NEEDS_RESET, 0);
}

}  // namespace
}  // namespace pepita::virtio::vsock
