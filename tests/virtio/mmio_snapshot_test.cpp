// MmioTransport::save / load, what a micro-VM snapshot keeps of a virtio-mmio device: registers,
// features and queue positions carried into a fresh transport over a copy of the RAM; the
// console's held receive buffers; refusal of a device with a request in flight or one that needs a
// reset; refusal to load into a device of another kind or shape.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "driver_ring.hpp"
#include "mmio_driver.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/console.hpp"
#include "pepita/virtio/mmio.hpp"
#include "pepita/virtio/rng.hpp"

namespace pepita::virtio {
namespace {
using testing::DriverRing;
using testing::MmioDriver;
namespace m = abi::virtio_mmio;
namespace v = abi::virtio;

// transmitq of the console tests, in the same RAM as DriverRing's receiveq.
constexpr uint64_t kTxDesc = 0x2000, kTxAvail = 0x42000, kTxUsed = 0x52000;
const QueueLayout kTx{8, PhysAddr(kTxDesc), PhysAddr(kTxAvail), PhysAddr(kTxUsed)};

// Copies every byte of `from`'s RAM into `to`'s (what a copy-on-write restore sees).
void copy_ram(const DriverRing& from, DriverRing& to) {
  auto src = from.mem.span(PhysAddr(0), DriverRing::kMemSize);
  auto dst = to.mem.span(PhysAddr(0), DriverRing::kMemSize);
  ASSERT_TRUE(src && dst);
  std::memcpy(dst->data(), src->data(), src->size());
}

void transmit(DriverRing& ring, uint16_t desc, uint16_t avail_idx, const std::string& msg) {
  const uint64_t buf = ring.alloc(static_cast<uint32_t>(msg.size()));
  ring.fill(buf, msg.data(), msg.size());
  ring.set_desc(kTxDesc, desc, buf, static_cast<uint32_t>(msg.size()), 0);
  ASSERT_TRUE(ring.mem.write(PhysAddr(kTxAvail + 4 + 2ull * (avail_idx % 8)), desc));
  ASSERT_TRUE(ring.mem.write(PhysAddr(kTxAvail + 2), static_cast<uint16_t>(avail_idx + 1)));
}

std::unique_ptr<blk::BlkDevice> blk_device(uint64_t bytes) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = bytes});
  EXPECT_TRUE(disk) << disk.error().to_string();
  auto dev = blk::BlkDevice::create(std::move(*disk), {});
  EXPECT_TRUE(dev) << dev.error().to_string();
  return std::move(*dev);
}

TEST(MmioSnapshot, ConsoleQueuesAndHeldReceiveBufferCarryIntoAFreshTransport) {
  DriverRing ring(8);
  auto con = console::ConsoleDevice::create();
  MmioTransport t(std::move(con), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.negotiate(v::feature_bit(v::F_VERSION_1)));
  d.queue(console::kReceiveq, ring.layout);
  d.queue(console::kTransmitq, kTx);
  d.driver_ok();
  // One message out (transmitq at index 1), one receive buffer posted and held (no input yet).
  transmit(ring, 0, 0, "before\n");
  d.w(m::QUEUE_NOTIFY, console::kTransmitq);
  const uint64_t rx_buf = ring.alloc(16);
  ring.desc(0, rx_buf, 16, v::DESC_F_WRITE);
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, console::kReceiveq);
  ASSERT_EQ(ring.used_idx(), 0) << "no input: the buffer is held";

  auto state = t.save();
  ASSERT_TRUE(state) << state.error().to_string();
  EXPECT_EQ(state->device_id, v::ID_CONSOLE);
  ASSERT_EQ(state->queues.size(), 2u);
  EXPECT_TRUE(state->queues[0].ready);
  EXPECT_EQ(state->queues[0].next_avail, 1);
  EXPECT_EQ(state->queues[1].next_avail, 1);
  EXPECT_EQ(state->queues[1].next_used, 1);

  // Two restores, each over its own copy of the RAM, with their own console.
  for (const std::string input : {"first", "second"}) {
    SCOPED_TRACE(input);
    DriverRing copy(8);
    copy_ram(ring, copy);
    auto con2 = console::ConsoleDevice::create();
    auto* c2 = con2.get();
    MmioTransport t2(std::move(con2), copy.mem);
    auto loaded = t2.load(*state);
    ASSERT_TRUE(loaded) << loaded.error().to_string();
    MmioDriver d2{t2};
    EXPECT_NE(d2.r(m::STATUS) & v::STATUS_DRIVER_OK, 0u);
    d2.w(m::QUEUE_SEL, console::kTransmitq);
    EXPECT_EQ(d2.r(m::QUEUE_READY), 1u);
    EXPECT_EQ(c2->waiting_buffers(), 1u) << "the held receive buffer came with the state";
    // The held buffer takes this restore's input at the next kick.
    c2->feed(std::as_bytes(std::span(input.data(), input.size())));
    d2.w(m::QUEUE_NOTIFY, console::kReceiveq);
    ASSERT_EQ(copy.used_idx(), 1);
    EXPECT_EQ(copy.used(0).len, input.size());
    auto got = copy.bytes(rx_buf, input.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.data()), got.size()), input);
    // transmitq resumes at avail index 1: only the new message is output, not "before" again.
    transmit(copy, 1, 1, input + "\n");
    d2.w(m::QUEUE_NOTIFY, console::kTransmitq);
    EXPECT_EQ(c2->take_output(), input + "\n");
    EXPECT_EQ(t2.stats().bad_accesses, 0u) << t2.last_error();
  }
  EXPECT_EQ(ring.used_idx(), 0) << "the restores wrote their own RAM only";
}

TEST(MmioSnapshot, RequestMadeAvailableWithoutNotifyIsRefusedAsInFlight) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  ring.desc(0, ring.alloc(16), 16, v::DESC_F_WRITE);
  ring.publish(0);
  auto busy = t.save();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code(), ErrorCode::Busy);
  EXPECT_NE(busy.error().message().find("without a notify"), std::string::npos)
      << busy.error().message();
  d.w(m::QUEUE_NOTIFY, 0);  // served: quiescent again
  auto ok = t.save();
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->queues[0].next_avail, 1);
}

TEST(MmioSnapshot, DeviceThatNeedsAResetIsNotSaved) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  ring.set_avail_idx(100);  // more than the queue size ahead: the queue breaks
  d.w(m::QUEUE_NOTIFY, 0);
  ASSERT_NE(t.status() & v::STATUS_NEEDS_RESET, 0);
  auto r = t.save();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
}

TEST(MmioSnapshot, LoadIntoAnotherKindOrShapeOfDeviceIsRefused) {
  DriverRing ring(8);
  MmioTransport t(blk_device(1 << 20), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  auto state = t.save();
  ASSERT_TRUE(state) << state.error().to_string();

  MmioTransport bigger(blk_device(2 << 20), ring.mem);
  auto r = bigger.load(*state);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("disk size"), std::string::npos) << r.error().message();
  EXPECT_EQ(bigger.status(), 0) << "left as a driver finds a fresh device";

  MmioTransport console(console::ConsoleDevice::create(), ring.mem);
  auto other = console.load(*state);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::InvalidArgument);

  MmioTransport same(blk_device(1 << 20), ring.mem);
  auto ok = same.load(*state);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(same.status(), state->status);
}

// A state that does not fit the device or its RAM is refused with the queue or field named, and
// the transport is left as a driver finds a fresh device: features the device does not offer, a
// queue size it cannot have, a used index that is not the one in guest RAM.
TEST(MmioSnapshot, StateThatDoesNotFitTheDeviceOrItsRamIsRefused) {
  DriverRing ring(8);
  MmioTransport t(blk_device(1 << 20), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  auto state = t.save();
  ASSERT_TRUE(state) << state.error().to_string();
  ASSERT_EQ(state->queues.size(), 1u);
  ASSERT_TRUE(state->queues[0].ready);
  struct Case {
    const char* what;
    void (*edit)(MmioState&);
    const char* message;
  };
  const Case cases[] = {
      {"a feature not offered",
       [](MmioState& s) { s.driver_features |= v::feature_bit(v::F_RING_PACKED); },
       "snapshot features"},
      {"a queue size that is not a power of two", [](MmioState& s) { s.queues[0].num = 3; },
       "queue 0 from the snapshot"},
      {"a used index guest RAM does not hold", [](MmioState& s) { s.queues[0].next_used = 5; },
       "guest RAM's used index 0 is not the snapshot's 5"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    MmioState edited = *state;
    c.edit(edited);
    MmioTransport fresh(blk_device(1 << 20), ring.mem);
    auto r = fresh.load(edited);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().message();
    EXPECT_EQ(fresh.status(), 0) << "left as a driver finds a fresh device";
    MmioDriver fd{fresh};
    fd.w(m::QUEUE_SEL, 0);
    EXPECT_EQ(fd.r(m::QUEUE_READY), 0u);
  }
}

}  // namespace
}  // namespace pepita::virtio
