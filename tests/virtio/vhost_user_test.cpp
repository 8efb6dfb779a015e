// The vhost-user backend against a scripted frontend over a socketpair: the negotiation QEMU's
// vhost-user-blk does, a memory table passed as a memfd, a vring started by its kick fd, a write
// and a read served through it, GET_VRING_BASE, and protocol violations that end the connection.
#include "pepita/virtio/vhost_user.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cstring>
#include <numeric>
#include <string>
#include <thread>

#include "common/temp_dir.hpp"
#include "driver_ring.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/virtio/blk.hpp"
#include "vhost_frontend.hpp"

namespace pepita::virtio::vhost_user {
namespace {
using vhost_user::testing::Frontend;
using vhost_user::testing::kUvaBase;
using vhost_user::testing::ServedBackend;
using vhost_user::testing::SharedRing;
using virtio::testing::DriverRing;
namespace v = abi::virtio;
namespace vb = abi::virtio_blk;

// A blk device on a 2-queue MemDisk, served on its own thread.
std::unique_ptr<blk::BlkDevice> make_blk() {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 8 << 20, .queues = 2}).value();
  return blk::BlkDevice::create(std::move(disk), {.num_queues = 2}).value();
}
struct Harness {
  std::unique_ptr<blk::BlkDevice> device = make_blk();
  ServedBackend link{*device};
};

TEST(VhostUser, NegotiatesMapsMemoryAndServesAVring) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(GET_FEATURES, nullptr, 0);
  const uint64_t features = fe.recv_u64(GET_FEATURES);
  EXPECT_NE(features & v::feature_bit(F_PROTOCOL_FEATURES), 0u);
  EXPECT_NE(features & v::feature_bit(v::F_VERSION_1), 0u);
  EXPECT_NE(features & v::feature_bit(vb::F_MQ), 0u);
  fe.send(GET_PROTOCOL_FEATURES, nullptr, 0);
  const uint64_t proto = fe.recv_u64(GET_PROTOCOL_FEATURES);
  EXPECT_NE(proto & (1ull << protocol::CONFIG), 0u);
  fe.send(SET_PROTOCOL_FEATURES, proto);
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u);
  struct {
    ConfigHeader h;
    uint8_t data[60];
  } cfg{{0, 60, 0}, {}};
  fe.send(GET_CONFIG, cfg);
  auto cfg_reply = fe.recv_reply(GET_CONFIG);
  ASSERT_EQ(cfg_reply.size(), sizeof cfg);
  uint64_t capacity = 0;
  std::memcpy(&capacity, cfg_reply.data() + sizeof(ConfigHeader), 8);
  EXPECT_EQ(capacity, (8u << 20) / 512);

  const uint64_t acked = v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_EVENT_IDX) |
                         v::feature_bit(v::F_RING_INDIRECT_DESC) |
                         v::feature_bit(F_PROTOCOL_FEATURES) | v::feature_bit(vb::F_FLUSH);
  fe.send(SET_FEATURES, acked, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_FEATURES), 0u) << "REPLY_ACK success";

  // Guest RAM: a memfd the "frontend" maps itself and passes to the backend.
  UniqueFd memfd(::memfd_create("vhost-test-ram", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(::ftruncate(memfd.get(), DriverRing::kMemSize), 0);
  memory::GuestMemory mine;
  ASSERT_TRUE(mine.add_fd_region(UniqueFd(::dup(memfd.get())),
                                 {.gpa = 0, .size = DriverRing::kMemSize, .uva = kUvaBase}));
  Memory mem{};
  mem.nregions = 1;
  mem.regions[0] = {0, DriverRing::kMemSize, kUvaBase, 0};
  fe.send(SET_MEM_TABLE, &mem, 8 + 32, memfd.get(), kNeedReply);  // as QEMU: used regions only
  EXPECT_EQ(fe.recv_u64(SET_MEM_TABLE), 0u);

  DriverRing d(16, &mine);
  fe.send(SET_VRING_NUM, VringState{1, 16});
  fe.send(SET_VRING_BASE, VringState{1, 0});
  fe.send(SET_VRING_ADDR,
          VringAddr{1, 0, kUvaBase + DriverRing::kDesc, kUvaBase + DriverRing::kUsed,
                    kUvaBase + DriverRing::kAvail, 0});
  UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd call(::eventfd(0, EFD_CLOEXEC));
  fe.send(SET_VRING_CALL, uint64_t{1}, call.get());
  fe.send(SET_VRING_KICK, uint64_t{1}, kick.get());
  fe.send(SET_VRING_ENABLE, VringState{1, 1});

  // A 4 KiB write then a read-back through queue 1.
  std::vector<uint8_t> pattern(4096);
  std::iota(pattern.begin(), pattern.end(), 7);
  auto request = [&](uint32_t type, uint16_t first, uint64_t buf) {
    const uint64_t hdr = d.alloc(16);
    vb::RequestHeader rh{type, 0, 64};
    d.fill(hdr, &rh, sizeof rh);
    const uint64_t status = d.alloc(1);
    d.desc(first, hdr, 16, v::DESC_F_NEXT, first + 1);
    d.desc(first + 1, buf, 4096,
           static_cast<uint16_t>(v::DESC_F_NEXT | (type == vb::T_IN ? v::DESC_F_WRITE : 0)),
           first + 2);
    d.desc(first + 2, status, 1, v::DESC_F_WRITE);
    d.set_used_event(d.used_idx());  // as Linux: interrupt me for the next completion
    d.publish(first);
    uint64_t one = 1;
    EXPECT_EQ(::write(kick.get(), &one, 8), 8);
    pollfd p{call.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 10000), 1) << "no interrupt within 10 s";
    uint64_t got = 0;
    if (p.revents != 0) {
      EXPECT_EQ(::read(call.get(), &got, 8), 8);
    }
    return status;
  };
  const uint64_t wbuf = d.alloc(4096);
  d.fill(wbuf, pattern.data(), 4096);
  const uint64_t ws = request(vb::T_OUT, 0, wbuf);
  EXPECT_EQ(static_cast<uint8_t>(d.bytes(ws, 1)[0]), vb::S_OK);
  const uint64_t rbuf = d.alloc(4096);
  const uint64_t rs = request(vb::T_IN, 3, rbuf);
  EXPECT_EQ(static_cast<uint8_t>(d.bytes(rs, 1)[0]), vb::S_OK);
  EXPECT_EQ(std::memcmp(d.bytes(rbuf, 4096).data(), pattern.data(), 4096), 0);
  EXPECT_EQ(d.used_idx(), 2);

  fe.send(GET_VRING_BASE, VringState{1, 0});
  auto base = fe.recv_reply(GET_VRING_BASE);
  ASSERT_EQ(base.size(), sizeof(VringState));
  VringState vs;
  std::memcpy(&vs, base.data(), sizeof vs);
  EXPECT_EQ(vs.index, 1u);
  EXPECT_EQ(vs.num, 2u);
  EXPECT_EQ(h.device->stats(1).requests, 2u);
}

// Negotiates VHOST_USER_PROTOCOL_F_STATUS and the features QEMU's vhost-user-blk acks.
void negotiate_with_status(Frontend& fe) {
  fe.send(GET_PROTOCOL_FEATURES, nullptr, 0);
  const uint64_t proto = fe.recv_u64(GET_PROTOCOL_FEATURES);
  ASSERT_NE(proto & (1ull << protocol::STATUS), 0u) << "STATUS protocol feature offered";
  fe.send(SET_PROTOCOL_FEATURES, proto);
  const uint64_t acked = v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_EVENT_IDX) |
                         v::feature_bit(v::F_RING_INDIRECT_DESC) |
                         v::feature_bit(F_PROTOCOL_FEATURES) | v::feature_bit(vb::F_FLUSH);
  fe.send(SET_FEATURES, acked, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_FEATURES), 0u);
}

TEST(VhostUser, MalformedRingSignalsErrFdAndReportsNeedsReset) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  negotiate_with_status(fe);
  const uint64_t running =
      v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER | v::STATUS_FEATURES_OK | v::STATUS_DRIVER_OK;
  fe.send(SET_STATUS, running, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_STATUS), 0u);
  fe.send(GET_STATUS, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_STATUS), running);

  SharedRing sr(fe, 0, 16, /*with_err_fd=*/true);
  DriverRing& d = *sr.ring;
  // A descriptor loop (0 -> 1 -> 0): the walk is capped at the queue size and the ring breaks.
  d.desc(0, d.alloc(16), 16, v::DESC_F_NEXT, 1);
  d.desc(1, d.alloc(16), 16, v::DESC_F_NEXT, 0);
  d.publish(0);
  sr.notify();
  ASSERT_TRUE(SharedRing::wait_signal(sr.err, 10000)) << "error eventfd not signalled in 10 s";
  EXPECT_EQ(d.used_idx(), 0) << "nothing of a malformed chain completes";
  fe.send(GET_STATUS, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_STATUS), running | v::STATUS_NEEDS_RESET);
  EXPECT_NE(h.device->status_bits() & v::STATUS_NEEDS_RESET, 0);

  // The frontend resets the device (status 0): NEEDS_RESET clears and the connection lives on.
  fe.send(SET_STATUS, uint64_t{0}, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_STATUS), 0u);
  fe.send(GET_STATUS, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_STATUS), 0u);
  EXPECT_EQ(h.device->status_bits(), 0);

  // A status wider than a byte is a protocol violation.
  fe.send(SET_STATUS, uint64_t{0x100});
  EXPECT_TRUE(fe.closed_by_peer());
}

TEST(VhostUser, RingRestartsAtTheUsedIndexLikeAReconnect) {
  // What QEMU does when a backend died: a new backend gets SET_VRING_BASE = the ring's used
  // index (the old one's GET_VRING_BASE is gone), and must serve what was left in flight.
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  negotiate_with_status(fe);
  auto memfd = UniqueFd(::memfd_create("vhost-test-ram", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(memfd.get(), DriverRing::kMemSize), 0);
  memory::GuestMemory mine;
  ASSERT_TRUE(mine.add_fd_region(UniqueFd(::dup(memfd.get())),
                                 {.gpa = 0, .size = DriverRing::kMemSize, .uva = kUvaBase}));
  DriverRing d(16, &mine);
  // Two writes were served by "the old backend" (used index 2), a third was popped but never
  // completed: avail index 3, used index 2.
  std::vector<uint8_t> pattern(4096, 0x5a);
  const uint64_t buf = d.alloc(4096);
  d.fill(buf, pattern.data(), 4096);
  for (uint16_t i = 0; i < 3; ++i) {
    const uint64_t hdr = d.alloc(16);
    vb::RequestHeader rh{vb::T_OUT, 0, 8ull * i};
    d.fill(hdr, &rh, sizeof rh);
    d.desc(3 * i, hdr, 16, v::DESC_F_NEXT, static_cast<uint16_t>(3 * i + 1));
    d.desc(3 * i + 1, buf, 4096, v::DESC_F_NEXT, static_cast<uint16_t>(3 * i + 2));
    d.desc(3 * i + 2, d.alloc(1), 1, v::DESC_F_WRITE);
    d.publish(static_cast<uint16_t>(3 * i));
  }
  ASSERT_TRUE(mine.write(PhysAddr(DriverRing::kUsed + 2), uint16_t{2}));
  d.set_used_event(2);

  Memory mem{};
  mem.nregions = 1;
  mem.regions[0] = {0, DriverRing::kMemSize, kUvaBase, 0};
  fe.send(SET_MEM_TABLE, &mem, 8 + 32, memfd.get(), kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_MEM_TABLE), 0u);
  fe.send(SET_VRING_NUM, VringState{0, 16});
  fe.send(SET_VRING_BASE, VringState{0, 2});
  fe.send(SET_VRING_ADDR,
          VringAddr{0, 0, kUvaBase + DriverRing::kDesc, kUvaBase + DriverRing::kUsed,
                    kUvaBase + DriverRing::kAvail, 0});
  UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd call(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  fe.send(SET_VRING_CALL, uint64_t{0}, call.get());
  fe.send(SET_VRING_KICK, uint64_t{0}, kick.get());  // no kick needed: the ring is served on start
  ASSERT_TRUE(SharedRing::wait_signal(call, 10000)) << "the left-over request was not served";
  EXPECT_EQ(d.used_idx(), 3);
  EXPECT_EQ(d.used(2).id, 6u) << "exactly the request in flight was replayed";
  EXPECT_EQ(h.device->stats(0).requests, 1u);
  fe.send(GET_VRING_BASE, VringState{0, 0});
  auto base = fe.recv_reply(GET_VRING_BASE);
  ASSERT_EQ(base.size(), sizeof(VringState));
  VringState vs;
  std::memcpy(&vs, base.data(), sizeof vs);
  EXPECT_EQ(vs.num, 3u);
}

TEST(VhostUser, ProtocolViolationsEndTheConnection) {
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    fe.send(SET_VRING_NUM, VringState{7, 16});  // no such queue
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    fe.send(SET_VRING_NUM, uint32_t{0});  // short payload
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    Memory mem{};
    mem.nregions = 1;
    mem.regions[0] = {0, 4096, kUvaBase, 0};
    fe.send(SET_MEM_TABLE, mem);  // region without its fd
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    Header bogus{GET_FEATURES, kVersion, 1u << 20};  // oversized payload
    ASSERT_EQ(::send(h.link.frontend_fd.get(), &bogus, sizeof bogus, MSG_NOSIGNAL), 12);
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    fe.send(SET_VRING_KICK, uint64_t{0});  // an fd announced (no NOFD bit) but none attached
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    const ConfigHeader ch{0, 1u << 20, 0};  // more config space than any device has
    fe.send(GET_CONFIG, ch);
    EXPECT_TRUE(fe.closed_by_peer());
  }
  for (uint32_t request : {GET_INFLIGHT_FD, SET_INFLIGHT_FD}) {
    SCOPED_TRACE(request);
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    fe.send(request, uint32_t{0});  // shorter than the inflight description
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    // A header announcing 8 bytes, then the frontend closes its sending side.
    Header cut{SET_FEATURES, kVersion, 8};
    ASSERT_EQ(::send(h.link.frontend_fd.get(), &cut, sizeof cut, MSG_NOSIGNAL), 12);
    ASSERT_EQ(::shutdown(h.link.frontend_fd.get(), SHUT_WR), 0);
    EXPECT_TRUE(fe.closed_by_peer());
  }
}

// SET_CONFIG is accepted and ignored (no writable config is offered): the connection serves on.
TEST(VhostUser, SetConfigIsIgnoredAndTheConnectionServesOn) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  struct {
    ConfigHeader ch{0, 1, 0};
    uint8_t wce = 1;
  } set;
  fe.send(SET_CONFIG, set);
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u);
}

// run() serves frontends one after another: one that breaks the protocol is dropped (logged) and
// the next is served; stop() ends the loop without an error.
TEST(VhostUser, RunServesTheNextFrontendAfterOneBreaksTheProtocol) {
  const pepita::test::TempDir dir("vhost");
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/blk.sock";
  auto device = make_blk();
  auto backend = Backend::listen(path, *device);
  ASSERT_TRUE(backend) << backend.error().to_string();
  Result<void> ran;
  std::thread server([&] { ran = (*backend)->run(); });
  {
    UniqueFd first(sys::unix_connect(path));
    EXPECT_TRUE(first.valid());  // no ASSERT until the server thread is joined
    Frontend fe(first.get());
    fe.send(SET_VRING_NUM, uint32_t{0});  // short payload: a protocol error
    EXPECT_TRUE(fe.closed_by_peer());
  }
  {
    UniqueFd second(sys::unix_connect(path));
    EXPECT_TRUE(second.valid());
    Frontend fe(second.get());
    fe.send(GET_QUEUE_NUM, nullptr, 0);
    EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u) << "the next frontend is served";
  }
  (*backend)->stop();
  server.join();
  EXPECT_TRUE(ran) << ran.error().to_string();
}

TEST(VhostUser, ListenRefusesABadPath) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value();
  auto dev = blk::BlkDevice::create(std::move(disk), {}).value();
  EXPECT_FALSE(Backend::listen("/nonexistent-dir/x.sock", *dev).has_value());
  EXPECT_FALSE(Backend::listen(std::string(200, 'x'), *dev).has_value());
}

}  // namespace
}  // namespace pepita::virtio::vhost_user
