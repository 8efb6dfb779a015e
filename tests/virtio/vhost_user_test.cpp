// The vhost-user backend against a scripted frontend over a socketpair: the negotiation QEMU's
// vhost-user-blk does, a memory table passed as a memfd, a vring started by its kick fd, a write
// and a read served through it, GET_VRING_BASE, and protocol violations that end the connection.
#include "pepita/virtio/vhost_user.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <string>
#include <thread>

#include "common/temp_dir.hpp"
#include "driver_ring.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/inflight.hpp"
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
// Runs a backend on a fresh socket and connects one frontend after another to it, each handed to
// its function and closed before the next; then stops the backend, whose run() must succeed.
void serve_frontends_in_turn(std::initializer_list<std::function<void(Frontend&)>> frontends) {
  const pepita::test::TempDir dir("vhost");
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/blk.sock";
  auto device = make_blk();
  auto backend = Backend::listen(path, *device);
  ASSERT_TRUE(backend) << backend.error().to_string();
  Result<void> ran;
  std::thread server([&] { ran = (*backend)->run(); });
  for (const auto& use : frontends) {
    UniqueFd fd(sys::unix_connect(path));
    EXPECT_TRUE(fd.valid());  // no ASSERT until the server thread is joined
    Frontend fe(fd.get());
    use(fe);
  }
  (*backend)->stop();
  server.join();
  EXPECT_TRUE(ran) << ran.error().to_string();
}

TEST(VhostUser, RunServesTheNextFrontendAfterOneBreaksTheProtocol) {
  serve_frontends_in_turn(
      {[](Frontend& fe) {
         fe.send(SET_VRING_NUM, uint32_t{0});  // short payload: a protocol error
         EXPECT_TRUE(fe.closed_by_peer());
       },
       [](Frontend& fe) {
         fe.send(GET_QUEUE_NUM, nullptr, 0);
         EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u) << "the next frontend is served";
       }});
}

TEST(VhostUser, ListenRefusesABadPath) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value();
  auto dev = blk::BlkDevice::create(std::move(disk), {}).value();
  EXPECT_FALSE(Backend::listen("/nonexistent-dir/x.sock", *dev).has_value());
  EXPECT_FALSE(Backend::listen(std::string(200, 'x'), *dev).has_value());
}

// REPLY_ACK negotiated alone: every message sent with NEED_REPLY is answered 0 or 1.
void ack_replies(Frontend& fe) {
  fe.send(SET_PROTOCOL_FEATURES, uint64_t{1} << protocol::REPLY_ACK);
}
// Sends `payload` with NEED_REPLY and returns the REPLY_ACK status (0 success, 1 failure).
template <typename T>
uint64_t send_acked(Frontend& fe, uint32_t request, const T& payload, int pass_fd = -1) {
  fe.send(request, payload, pass_fd, kNeedReply);
  return fe.recv_u64(request);
}
// A GET_VRING_BASE of vring `index`: the state it replies with.
VringState get_vring_base(Frontend& fe, uint32_t index) {
  fe.send(GET_VRING_BASE, VringState{index, 0});
  const auto p = fe.recv_reply(GET_VRING_BASE);
  VringState vs{~0u, ~0u};
  EXPECT_EQ(p.size(), sizeof vs);
  if (p.size() == sizeof vs) std::memcpy(&vs, p.data(), sizeof vs);
  return vs;
}

TEST(VhostUser, OffersExactlyTheProtocolFeaturesItImplements) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(GET_PROTOCOL_FEATURES, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_PROTOCOL_FEATURES),
            (1ull << protocol::MQ) | (1ull << protocol::REPLY_ACK) | (1ull << protocol::CONFIG) |
                (1ull << protocol::INFLIGHT_SHMFD) | (1ull << protocol::STATUS));
  fe.send(GET_FEATURES, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_FEATURES), h.device->features() | v::feature_bit(F_PROTOCOL_FEATURES));
}

// NEED_REPLY is answered only once REPLY_ACK is negotiated: 0 for a request served, 1 for one that
// failed without breaking the protocol (an unknown request), and the connection serves on.
TEST(VhostUser, ReplyAckAnswersOnlyWhenNegotiatedWithOneForAFailedRequest) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(SET_OWNER, nullptr, 0, -1, kNeedReply);  // not negotiated yet: no reply
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  ASSERT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u) << "the next reply is GET_QUEUE_NUM's";
  ack_replies(fe);
  fe.send(SET_OWNER, nullptr, 0);  // no NEED_REPLY: no reply
  fe.send(SET_OWNER, nullptr, 0, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_OWNER), 0u);
  fe.send(999, nullptr, 0, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(999), 1u) << "an unsupported request fails";
  // A request whose own reply is its answer gets no second one.
  fe.send(GET_QUEUE_NUM, nullptr, 0, -1, kNeedReply);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u);
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u);
}

// SET_VRING_NUM takes a power of two up to the device's maximum, on a queue the device has;
// anything else ends the connection.
TEST(VhostUser, VringSizeIsAPowerOfTwoUpToTheDeviceMaximumOnAnExistingQueue) {
  {
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    ack_replies(fe);
    EXPECT_EQ(send_acked(fe, SET_VRING_NUM, VringState{1, h.device->max_queue_size()}), 0u);
    EXPECT_EQ(send_acked(fe, SET_VRING_NUM, VringState{0, 1}), 0u);
  }
  for (const VringState bad :
       {VringState{0, 2u * 256}, VringState{0, 24}, VringState{0, 0}, VringState{2, 16}}) {
    SCOPED_TRACE(std::to_string(bad.index) + ":" + std::to_string(bad.num));
    Harness h;
    Frontend fe(h.link.frontend_fd.get());
    fe.send(SET_VRING_NUM, bad);
    EXPECT_TRUE(fe.closed_by_peer());
  }
}

// The base a stopped vring was given is what GET_VRING_BASE reports, per vring (0 untouched).
TEST(VhostUser, GetVringBaseReportsTheBaseSetOnAStoppedVring) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(SET_VRING_BASE, VringState{1, 517});
  const VringState one = get_vring_base(fe, 1);
  EXPECT_EQ(one.index, 1u);
  EXPECT_EQ(one.num, 517u);
  const VringState zero = get_vring_base(fe, 0);
  EXPECT_EQ(zero.index, 0u);
  EXPECT_EQ(zero.num, 0u);
}

// GET_CONFIG echoes its header and returns the config bytes from `offset`; bytes past the end of
// the device's config space (or a whole read past it) are zero. 256 bytes is the largest read.
TEST(VhostUser, GetConfigReadsFromItsOffsetAndZeroFillsPastTheConfigSpace) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  const auto cfg = h.device->config();
  ASSERT_GT(cfg.size(), 8u);
  auto get_config = [&](uint32_t offset, uint32_t size) {
    std::vector<std::byte> msg(sizeof(ConfigHeader) + size);
    const ConfigHeader ch{offset, size, 0};
    std::memcpy(msg.data(), &ch, sizeof ch);
    fe.send(GET_CONFIG, static_cast<const void*>(msg.data()), static_cast<uint32_t>(msg.size()));
    const auto reply = fe.recv_reply(GET_CONFIG);
    EXPECT_EQ(reply.size(), msg.size());
    ConfigHeader echoed{};
    if (reply.size() >= sizeof echoed) std::memcpy(&echoed, reply.data(), sizeof echoed);
    EXPECT_EQ(echoed.offset, offset);
    EXPECT_EQ(echoed.size, size);
    std::vector<std::byte> data(size);
    if (reply.size() == msg.size()) {
      std::memcpy(data.data(), reply.data() + sizeof(ConfigHeader), size);
    }
    return data;
  };
  const uint32_t n = static_cast<uint32_t>(cfg.size());
  EXPECT_EQ(get_config(4, 8), std::vector<std::byte>(cfg.begin() + 4, cfg.begin() + 12));
  std::vector<std::byte> tail(cfg.end() - 4, cfg.end());
  tail.resize(8);
  EXPECT_EQ(get_config(n - 4, 8), tail) << "4 config bytes, then zeros";
  EXPECT_EQ(get_config(n, 4), std::vector<std::byte>(4)) << "a read just past the config space";
  std::vector<std::byte> whole(cfg.begin(), cfg.end());
  whole.resize(kMaxConfigSize);
  EXPECT_EQ(get_config(0, kMaxConfigSize), whole);
}

// SET_STATUS takes any byte, 0xff included, and GET_STATUS returns it.
TEST(VhostUser, SetStatusTakesEveryByteValue) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(SET_STATUS, uint64_t{0xff});
  fe.send(GET_STATUS, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_STATUS), 0xffu);
}

// run() on an adopted connection serves that one frontend and returns what ended it.
TEST(VhostUser, RunOnAnAdoptedConnectionReturnsTheProtocolErrorThatEndedIt) {
  auto device = make_blk();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd frontend_fd(sv[0]);
  auto backend = Backend::adopt(UniqueFd(sv[1]), *device).value();
  Frontend fe(frontend_fd.get());
  fe.send(SET_VRING_NUM, VringState{0, 3});
  const Result<void> ran = backend->run();
  ASSERT_FALSE(ran);
  EXPECT_EQ(ran.error().code(), ErrorCode::Protocol);
  EXPECT_NE(ran.error().message().find("vring size 3 is not a power of two up to 256"),
            std::string::npos)
      << ran.error().message();
}

// A path held by a regular file is not replaced, and a live server's socket is not taken over:
// each refusal says which and what to do.
TEST(VhostUser, ListenRefusesAFileAndALiveServersSocketNamingEach) {
  const pepita::test::TempDir dir("vhost");
  ASSERT_FALSE(dir.path().empty());
  auto device = make_blk();
  const std::string file = dir.path() + "/file";
  UniqueFd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  auto on_file = Backend::listen(file, *device);
  ASSERT_FALSE(on_file);
  EXPECT_EQ(on_file.error().code(), ErrorCode::AlreadyExists);
  EXPECT_NE(on_file.error().message().find(file + " exists and is not a socket"), std::string::npos)
      << on_file.error().message();

  const std::string path = dir.path() + "/blk.sock";
  auto first = Backend::listen(path, *device);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ((*first)->path(), path);
  auto second = Backend::listen(path, *device);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::Busy);
  EXPECT_NE(second.error().message().find(path + ": another server is accepting on it"),
            std::string::npos)
      << second.error().message();
  first->reset();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the socket file goes with its backend";
}

// Each frontend starts from a fresh state: what the one before negotiated (REPLY_ACK, a status)
// is gone when it disconnects.
TEST(VhostUser, TheNextFrontendStartsWithoutThePreviousOnesNegotiation) {
  serve_frontends_in_turn(
      {[](Frontend& fe) {
         ack_replies(fe);
         EXPECT_EQ(send_acked(fe, SET_STATUS, uint64_t{v::STATUS_ACKNOWLEDGE}), 0u);
       },
       [](Frontend& fe) {
         fe.send(SET_OWNER, nullptr, 0, -1, kNeedReply);  // REPLY_ACK not negotiated here
         fe.send(GET_STATUS, nullptr, 0);
         EXPECT_EQ(fe.recv_u64(GET_STATUS), 0u);
       }});
}

// SET_MEM_TABLE needs at least one region, each with its fd.
TEST(VhostUser, AMemoryTableWithoutRegionsEndsTheConnection) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  Memory mem{};
  fe.send(SET_MEM_TABLE, static_cast<const void*>(&mem), uint32_t{8});
  EXPECT_TRUE(fe.closed_by_peer());
}

// SET_MEM_TABLE of one region, `bytes` of `memfd` at guest address 0 and kUvaBase: its REPLY_ACK.
uint64_t send_mem_table(Frontend& fe, int memfd, uint64_t bytes = DriverRing::kMemSize) {
  Memory mem{};
  mem.nregions = 1;
  mem.regions[0] = {0, bytes, kUvaBase, 0};
  fe.send(SET_MEM_TABLE, &mem, 8 + 32, memfd, kNeedReply);
  return fe.recv_u64(SET_MEM_TABLE);
}

// Posts a one-request chain (a header of an unknown type and its status byte; the device answers
// UNSUPP) on head 0 and waits for it in the used ring.
bool serves_a_request(SharedRing& sr) {
  DriverRing& d = *sr.ring;
  const uint64_t hdr = d.alloc(16);
  const vb::RequestHeader rh{0x77, 0, 0};
  d.fill(hdr, &rh, sizeof rh);
  const uint64_t status = d.alloc(1);
  d.desc(0, hdr, 16, v::DESC_F_NEXT, 1);
  d.desc(1, status, 1, v::DESC_F_WRITE);
  const uint16_t before = d.used_idx();
  d.publish(0);
  sr.notify();
  if (!SharedRing::wait_signal(sr.call, 10000)) return false;
  return d.used_idx() == before + 1 && static_cast<uint8_t>(d.bytes(status, 1)[0]) == vb::S_UNSUPP;
}

// A new memory table while a vring runs: the ring stops, maps the new table and serves on.
TEST(VhostUser, ARunningVringServesOnAfterANewMemoryTable) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  SharedRing sr(fe, 0, 16);
  ASSERT_TRUE(serves_a_request(sr));
  EXPECT_EQ(send_mem_table(fe, sr.memfd.get()), 0u);
  EXPECT_TRUE(serves_a_request(sr)) << "the vring did not restart on the new table";
  EXPECT_EQ(get_vring_base(fe, 0).num, 2u);
}

// The avail ring (with used_event) and the used ring (with avail_event) must lie in guest RAM:
// each may end on RAM's last byte, not one past it. Returns the REPLY_ACK of the starting KICK.
uint64_t start_with(Frontend& fe, SharedRing& sr, uint64_t avail, uint64_t used) {
  fe.send(GET_VRING_BASE, VringState{0, 0});  // stop it
  (void)fe.recv_reply(GET_VRING_BASE);
  fe.send(SET_VRING_ADDR, VringAddr{0, 0, kUvaBase + DriverRing::kDesc, used, avail, 0});
  return send_acked(fe, SET_VRING_KICK, uint64_t{0}, sr.kick.get());
}

TEST(VhostUser, VringRingsMayEndOnTheLastByteOfGuestRam) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  fe.send(SET_FEATURES, v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_EVENT_IDX));
  constexpr uint16_t n = 16;
  SharedRing sr(fe, 0, n);
  const uint64_t end = kUvaBase + DriverRing::kMemSize;
  const uint64_t used = kUvaBase + DriverRing::kUsed;
  const uint64_t avail = kUvaBase + DriverRing::kAvail;
  EXPECT_EQ(start_with(fe, sr, end - (6 + 2 * n), used), 0u);
  EXPECT_EQ(start_with(fe, sr, end - (6 + 2 * n) + 2, used), 1u);
  // The used ring is 4-aligned: 6 + 8n bytes end 2 bytes short of RAM's end.
  EXPECT_EQ(start_with(fe, sr, avail, end - (6 + 8 * n) - 2), 0u);
  EXPECT_EQ(start_with(fe, sr, avail, end - (6 + 8 * n) + 2), 1u);
  // RAM of a size that is no multiple of 4: the used ring may end exactly on its last byte.
  EXPECT_EQ(send_mem_table(fe, sr.memfd.get(), DriverRing::kMemSize - 2), 0u);
  EXPECT_EQ(start_with(fe, sr, avail, end - 2 - (6 + 8 * n)), 0u);
}

// A running vring given new addresses or a new call eventfd restarts and serves on, signalling
// the new call fd.
TEST(VhostUser, ARunningVringServesOnAfterNewAddressesAndANewCallFd) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  SharedRing sr(fe, 0, 16);
  ASSERT_TRUE(serves_a_request(sr));
  // Acked, so that the next kick comes after the change.
  EXPECT_EQ(send_acked(fe, SET_VRING_ADDR,
                       VringAddr{0, 0, kUvaBase + DriverRing::kDesc, kUvaBase + DriverRing::kUsed,
                                 kUvaBase + DriverRing::kAvail, 0}),
            0u);
  EXPECT_TRUE(serves_a_request(sr)) << "not restarted after SET_VRING_ADDR";
  sr.call.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  EXPECT_EQ(send_acked(fe, SET_VRING_CALL, uint64_t{0}, sr.call.get()), 0u);
  EXPECT_TRUE(serves_a_request(sr))
      << "not restarted (or the old call fd kept) after SET_VRING_CALL";
}

// VHOST_USER_VRING_NOFD_MASK: a call without an fd is taken (no interrupts), a kick without one
// (a polling ring) is refused without ending the connection.
TEST(VhostUser, ACallWithoutAnFdIsTakenAndAKickWithoutOneIsRefused) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  EXPECT_EQ(send_acked(fe, SET_VRING_CALL, uint64_t{1} | kVringNoFd), 0u);
  EXPECT_EQ(send_acked(fe, SET_VRING_KICK, uint64_t{1} | kVringNoFd), 1u);
  fe.send(GET_QUEUE_NUM, nullptr, 0);
  EXPECT_EQ(fe.recv_u64(GET_QUEUE_NUM), 2u);
}

// An inflight region covers the vrings it was made for: vring 1 of a 2-queue device cannot start
// on a region for one queue, and starts on its own slice of a region for two.
TEST(VhostUser, AVringStartsOnlyOnItsOwnSliceOfTheInflightRegion) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  fe.send(SET_PROTOCOL_FEATURES,
          uint64_t{(1ull << protocol::REPLY_ACK) | (1ull << protocol::INFLIGHT_SHMFD)});
  auto set_region = [&](uint16_t queues, UniqueFd& fd) {
    fe.send(GET_INFLIGHT_FD, Inflight{0, 0, queues, 16, 0});
    const auto p = fe.recv_reply_with_fd(GET_INFLIGHT_FD, fd);
    Inflight in{};
    EXPECT_EQ(p.size(), sizeof in);
    if (p.size() == sizeof in) std::memcpy(&in, p.data(), sizeof in);
    EXPECT_EQ(in.mmap_size, inflight_queue_bytes(16) * queues);
    return send_acked(fe, SET_INFLIGHT_FD, in, fd.get());
  };
  UniqueFd one;
  ASSERT_EQ(set_region(1, one), 0u);
  SharedRing sr(fe, 1, 16);
  EXPECT_EQ(send_acked(fe, SET_VRING_KICK, uint64_t{1}, sr.kick.get()), 1u)
      << "vring 1 started on a region for one queue";
  UniqueFd two;
  ASSERT_EQ(set_region(2, two), 0u);
  EXPECT_EQ(send_acked(fe, SET_VRING_KICK, uint64_t{1}, sr.kick.get()), 0u);
  ASSERT_TRUE(serves_a_request(sr));
  (void)get_vring_base(fe, 1);  // stops the worker: its region stores are done
  auto map = Mapping::map(2 * inflight_queue_bytes(16), PROT_READ, MAP_SHARED, two.get(), 0,
                          "test view of the inflight region");
  ASSERT_TRUE(map.has_value());
  const auto* second =
      reinterpret_cast<const InflightHeader*>(map->bytes() + inflight_queue_bytes(16));
  EXPECT_EQ(second->version, kInflightVersion) << "vring 1 uses the region's second slice";
  EXPECT_EQ(second->used_idx, 1);
  EXPECT_EQ(reinterpret_cast<const InflightHeader*>(map->bytes())->used_idx, 0)
      << "vring 0's slice untouched";
}

// A kick fd that comes before the ring's addresses starts nothing and fails nothing (as QEMU
// sends them, the addresses come first).
TEST(VhostUser, AKickBeforeTheRingsAddressesIsNoError) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  const UniqueFd memfd(::memfd_create("vhost-test-ram", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(memfd.get(), DriverRing::kMemSize), 0);
  EXPECT_EQ(send_mem_table(fe, memfd.get()), 0u);
  EXPECT_EQ(send_acked(fe, SET_VRING_NUM, VringState{0, 16}), 0u);
  const UniqueFd kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  EXPECT_EQ(send_acked(fe, SET_VRING_KICK, uint64_t{0}, kick.get()), 0u);
}

// SET_MEM_TABLE takes up to eight regions, each with its fd (here 4 KiB pages of one memfd).
TEST(VhostUser, AMemoryTableOfEightRegionsIsTaken) {
  Harness h;
  Frontend fe(h.link.frontend_fd.get());
  ack_replies(fe);
  const UniqueFd memfd(::memfd_create("vhost-test-ram", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(memfd.get(), 4096 * kMaxMemRegions), 0);
  Memory mem{};
  mem.nregions = kMaxMemRegions;
  std::vector<int> fds(kMaxMemRegions, memfd.get());
  for (uint32_t i = 0; i < kMaxMemRegions; ++i) {
    mem.regions[i] = {4096ull * i, 4096, kUvaBase + 4096ull * i, 4096ull * i};
  }
  fe.send_fds(SET_MEM_TABLE, &mem, sizeof mem, fds, kNeedReply);
  EXPECT_EQ(fe.recv_u64(SET_MEM_TABLE), 0u);
}

}  // namespace
}  // namespace pepita::virtio::vhost_user
