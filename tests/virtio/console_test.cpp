// virtio-console over crafted rings: transmit collects output, receive fills posted buffers from
// fed input in order, buffers wait for input, limits hold, broken rings reset.
#include "pepita/virtio/console.hpp"

#include <gtest/gtest.h>
#include <linux/virtio_console.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "driver_ring.hpp"

namespace pepita::virtio::console {
namespace {
using testing::DriverRing;
namespace v = abi::virtio;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string text(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Config layout and feature bits against the kernel's UAPI header (spec 5.3.3, 5.3.4).
static_assert(sizeof(Config) == sizeof(virtio_console_config));
static_assert(offsetof(Config, cols) == offsetof(virtio_console_config, cols));
static_assert(offsetof(Config, rows) == offsetof(virtio_console_config, rows));
static_assert(offsetof(Config, max_nr_ports) == offsetof(virtio_console_config, max_nr_ports));
static_assert(offsetof(Config, emerg_wr) == offsetof(virtio_console_config, emerg_wr));
static_assert(F_SIZE == VIRTIO_CONSOLE_F_SIZE);
static_assert(F_MULTIPORT == VIRTIO_CONSOLE_F_MULTIPORT);
static_assert(F_EMERG_WRITE == VIRTIO_CONSOLE_F_EMERG_WRITE);

TEST(ConsoleDevice, AdvertisesOnePortAndSize) {
  auto con = ConsoleDevice::create({.cols = 132, .rows = 43});
  EXPECT_EQ(con->device_id(), v::ID_CONSOLE);
  EXPECT_EQ(con->num_queues(), 2);
  EXPECT_TRUE(con->features() & v::feature_bit(F_SIZE));
  EXPECT_FALSE(con->features() & v::feature_bit(F_MULTIPORT));
  Config cfg{};
  ASSERT_EQ(con->config().size(), sizeof cfg);
  std::memcpy(&cfg, con->config().data(), sizeof cfg);
  EXPECT_EQ(cfg.cols, 132);
  EXPECT_EQ(cfg.rows, 43);
  EXPECT_TRUE(con->activate(con->features()));
  EXPECT_FALSE(con->activate(v::feature_bit(F_SIZE))) << "no VERSION_1";
  EXPECT_FALSE(con->activate(con->features() | v::feature_bit(F_MULTIPORT))) << "not offered";
}

TEST(ConsoleDevice, TransmitCollectsReadableBytesInOrder) {
  auto con = ConsoleDevice::create();
  ASSERT_TRUE(con->activate(con->features()));
  DriverRing d(8);
  Queue q = d.activate();
  const std::string a = "hello, ", b = "console", c = "!\n";
  const uint64_t pa = d.alloc(64), pb = d.alloc(64), pc = d.alloc(64);
  d.fill(pa, a.data(), a.size());
  d.fill(pb, b.data(), b.size());
  d.fill(pc, c.data(), c.size());
  d.desc(0, pa, static_cast<uint32_t>(a.size()), v::DESC_F_NEXT, 1);  // a two-part chain
  d.desc(1, pb, static_cast<uint32_t>(b.size()), 0);
  d.desc(2, pc, static_cast<uint32_t>(c.size()), 0);
  d.publish(0);
  d.publish(2);
  EXPECT_TRUE(con->process(kTransmitq, q).has_value());
  EXPECT_EQ(d.used_idx(), 2);
  EXPECT_EQ(d.used(0).len, 0u) << "the device wrote nothing into transmit buffers";
  EXPECT_EQ(con->take_output(), "hello, console!\n");
  EXPECT_EQ(con->output(), "");
}

TEST(ConsoleDevice, OutputLimitDropsAndCounts) {
  auto con = ConsoleDevice::create({.output_limit = 10});
  ASSERT_TRUE(con->activate(con->features()));
  DriverRing d(8);
  Queue q = d.activate();
  const std::string s = "0123456789abcdef";
  const uint64_t p = d.alloc(16);
  d.fill(p, s.data(), s.size());
  d.desc(0, p, 16, 0);
  d.publish(0);
  ASSERT_TRUE(con->process(kTransmitq, q));
  EXPECT_EQ(con->output(), "0123456789");
  EXPECT_EQ(con->dropped_output(), 6u);
  EXPECT_EQ(d.used_idx(), 1) << "the buffer is still returned";
}

TEST(ConsoleDevice, ReceiveFillsBuffersAcrossChains) {
  auto con = ConsoleDevice::create();
  ASSERT_TRUE(con->activate(con->features()));
  con->feed(bytes_of("abcdefghij"));
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t p0 = d.alloc(4), p1 = d.alloc(4), p2 = d.alloc(4), p3 = d.alloc(4);
  d.desc(0, p0, 4, v::DESC_F_WRITE | v::DESC_F_NEXT, 1);
  d.desc(1, p1, 4, v::DESC_F_WRITE);
  d.desc(2, p2, 4, v::DESC_F_WRITE);
  d.desc(3, p3, 4, v::DESC_F_WRITE);
  d.publish(0);
  d.publish(2);
  d.publish(3);
  ASSERT_TRUE(con->process(kReceiveq, q));
  ASSERT_EQ(d.used_idx(), 2) << "the third buffer waits: the input ran out";
  EXPECT_EQ(d.used(0).len, 8u);
  EXPECT_EQ(d.used(1).len, 2u);
  EXPECT_EQ(text(d.bytes(p0, 4)) + text(d.bytes(p1, 4)), "abcdefgh");
  EXPECT_EQ(text(d.bytes(p2, 2)), "ij");
  EXPECT_EQ(con->waiting_buffers(), 1u);
  EXPECT_EQ(con->pending_input(), 0u);
  // More input arrives; the next kick delivers it into the waiting buffer.
  con->feed(bytes_of("KL"));
  ASSERT_TRUE(con->process(kReceiveq, q));
  EXPECT_EQ(d.used_idx(), 3);
  EXPECT_EQ(d.used(2).id, 3u);
  EXPECT_EQ(text(d.bytes(p3, 2)), "KL");
  EXPECT_EQ(con->waiting_buffers(), 0u);
}

TEST(ConsoleDevice, ResetDropsWaitingBuffersKeepsInput) {
  auto con = ConsoleDevice::create();
  ASSERT_TRUE(con->activate(con->features()));
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(4), 4, v::DESC_F_WRITE);
  d.publish(0);
  ASSERT_TRUE(con->process(kReceiveq, q));
  EXPECT_EQ(con->waiting_buffers(), 1u);
  con->feed(bytes_of("x"));
  con->reset();
  EXPECT_EQ(con->waiting_buffers(), 0u);
  EXPECT_EQ(con->pending_input(), 1u);
}

// The snapshot carries pending input and the buffers waiting for it: a fresh console that loads
// it fills those buffers; a state cut short or of another device is refused and changes nothing.
TEST(ConsoleDevice, SnapshotCarriesInputAndWaitingBuffersAndRefusesMalformedState) {
  auto con = ConsoleDevice::create();
  ASSERT_TRUE(con->activate(con->features()));
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t buf = d.alloc(4);
  d.desc(0, buf, 4, v::DESC_F_WRITE);
  d.publish(0);
  ASSERT_TRUE(con->process(kReceiveq, q));
  ASSERT_EQ(con->waiting_buffers(), 1u);
  auto state = con->save_state();
  ASSERT_TRUE(state) << state.error().to_string();

  auto other = ConsoleDevice::create();
  ASSERT_TRUE(other->activate(other->features()));
  other->feed(bytes_of("zz"));
  for (size_t cut : {size_t{0}, size_t{3}, state->size() - 1}) {
    SCOPED_TRACE(cut);
    auto bad = other->load_state(std::span(*state).first(cut));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(bad.error().message().find("not saved by a console"), std::string::npos)
        << bad.error().message();
    EXPECT_EQ(other->pending_input(), 2u) << "a refused state changes nothing";
    EXPECT_EQ(other->waiting_buffers(), 0u);
  }
  ASSERT_TRUE(other->load_state(*state));
  EXPECT_EQ(other->waiting_buffers(), 1u);
  EXPECT_EQ(other->pending_input(), 0u) << "the snapshot's input replaces what was fed";
  other->feed(bytes_of("ok"));
  ASSERT_TRUE(other->process(kReceiveq, q));
  ASSERT_EQ(d.used_idx(), 1);
  EXPECT_EQ(d.used(0).id, 0u);
  EXPECT_EQ(text(d.bytes(buf, 2)), "ok");
}

TEST(ConsoleDevice, BrokenRingsNeedReset) {
  for (uint16_t queue : {kReceiveq, kTransmitq}) {
    SCOPED_TRACE(queue);
    auto con = ConsoleDevice::create();
    ASSERT_TRUE(con->activate(con->features()));
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(8), 8, v::DESC_F_NEXT, 1);
    d.desc(1, d.alloc(8), 8, v::DESC_F_NEXT, 0);  // 0 -> 1 -> 0
    d.publish(0);
    EXPECT_FALSE(con->process(queue, q).has_value());
    EXPECT_EQ(con->status_bits(), v::STATUS_NEEDS_RESET);
    con->reset();
    EXPECT_EQ(con->status_bits(), 0);
  }
  auto con = ConsoleDevice::create();
  DriverRing d(8);
  Queue q = d.activate();
  EXPECT_FALSE(con->process(2, q).has_value()) << "two queues only";
}

TEST(ConsoleDevice, ReceiveqRepostingHeadsIsAProtocolError) {
  auto con = ConsoleDevice::create();
  ASSERT_TRUE(con->activate(con->features()));
  DriverRing d(4);
  Queue q = d.activate();
  d.desc(0, d.alloc(4), 4, v::DESC_F_WRITE);
  // The same head posted over and over while the device still holds it.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 4; ++i) d.publish(0);
    auto r = con->process(kReceiveq, q);
    if (round == 0) {
      ASSERT_TRUE(r.has_value());
      EXPECT_EQ(con->waiting_buffers(), 4u);
    } else {
      EXPECT_FALSE(r.has_value());
      EXPECT_EQ(con->status_bits(), v::STATUS_NEEDS_RESET);
    }
  }
}

}  // namespace
}  // namespace pepita::virtio::console
