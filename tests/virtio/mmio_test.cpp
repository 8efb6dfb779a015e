// virtio-mmio transport unit tests: queues served over crafted rings, NEEDS_RESET on malformed
// queues, config space, blk and console behind the transport, and random register traffic that
// must never take the host down. The spec's register rules are in mmio_conformance_test.cpp.
#include "pepita/virtio/mmio.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>

#include "driver_ring.hpp"
#include "mmio_driver.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/console.hpp"
#include "pepita/virtio/rng.hpp"

namespace pepita::virtio {
namespace {
using testing::DriverRing;
namespace m = abi::virtio_mmio;
namespace v = abi::virtio;
namespace vb = abi::virtio_blk;
using testing::kAckDriver;
using testing::MmioDriver;

struct CountingIrq final : Interrupt {
  void raise(uint32_t status) noexcept override {
    ++count;
    last = status;
  }
  int count = 0;
  uint32_t last = 0;
};

TEST(MmioTransport, NotifyServesQueueAndRaisesInterrupt) {
  DriverRing ring(8);
  CountingIrq irq;
  MmioTransport t(rng::RngDevice::create(), ring.mem, &irq);
  MmioDriver d{t};
  // No EVENT_IDX: the driver wants an interrupt after every batch.
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  const uint64_t buf = ring.alloc(32);
  ring.desc(0, buf, 32, v::DESC_F_WRITE);
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, 0);
  EXPECT_EQ(ring.used_idx(), 1) << "served synchronously inside the notify write";
  EXPECT_EQ(ring.used(0).len, 32u);
  EXPECT_EQ(d.r(m::INTERRUPT_STATUS), m::INT_VRING);
  EXPECT_EQ(irq.count, 1);
  d.w(m::INTERRUPT_ACK, m::INT_VRING);
  EXPECT_EQ(d.r(m::INTERRUPT_STATUS), 0u);
  EXPECT_EQ(t.stats().notifies, 1u);
  d.w(m::QUEUE_NOTIFY, 3);  // no such queue: ignored
  EXPECT_EQ(t.stats().notifies, 1u);
  EXPECT_EQ(d.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u);
}

TEST(MmioTransport, MalformedQueueLayoutNeedsReset) {
  struct Case {
    const char* what;
    QueueLayout layout;
  };
  const Case cases[] = {
      {"size not a power of two", {6, PhysAddr(0), PhysAddr(0x40000), PhysAddr(0x50000)}},
      {"size zero", {0, PhysAddr(0), PhysAddr(0x40000), PhysAddr(0x50000)}},
      {"size above QueueNumMax", {512, PhysAddr(0), PhysAddr(0x40000), PhysAddr(0x50000)}},
      {"descriptor table misaligned", {8, PhysAddr(8), PhysAddr(0x40000), PhysAddr(0x50000)}},
      {"used ring misaligned", {8, PhysAddr(0), PhysAddr(0x40000), PhysAddr(0x50002)}},
      {"ring outside RAM", {8, PhysAddr(0), PhysAddr(0x40000), PhysAddr(~0xfffull)}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    DriverRing ring(8);
    MmioTransport t(rng::RngDevice::create(), ring.mem);
    MmioDriver d{t};
    ASSERT_TRUE(d.negotiate(t.device().features()));
    d.queue(0, c.layout);
    EXPECT_EQ(d.r(m::QUEUE_READY), 0u);
    EXPECT_NE(d.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u) << t.last_error();
    EXPECT_NE(d.r(m::INTERRUPT_STATUS) & m::INT_CONFIG, 0u) << "config change notification";
    // A reset brings the device back.
    ASSERT_TRUE(d.bring_up(ring, t.device().features()));
    EXPECT_EQ(d.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u);
  }
}

TEST(MmioTransport, MalformedChainNeedsResetThenRecovers) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, t.device().features()));
  ring.desc(0, ring.alloc(8), 8, v::DESC_F_WRITE | v::DESC_F_NEXT, 0);  // loops on itself
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, 0);
  EXPECT_NE(d.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u);
  EXPECT_NE(t.last_error().find("broke"), std::string::npos) << t.last_error();
  const auto served = t.stats().notifies;
  d.w(m::QUEUE_NOTIFY, 0);
  EXPECT_EQ(t.stats().notifies, served) << "a device needing reset serves nothing";

  DriverRing fresh(8);
  MmioTransport t2(rng::RngDevice::create(), fresh.mem);
  MmioDriver d2{t2};
  ASSERT_TRUE(d2.bring_up(fresh, t2.device().features()));
  fresh.desc(0, fresh.alloc(16), 16, v::DESC_F_WRITE);
  fresh.publish(0);
  d2.w(m::QUEUE_NOTIFY, 0);
  EXPECT_EQ(fresh.used_idx(), 1);

  // The broken one, reset and set up again over a clean ring, serves again.
  DriverRing again(8);
  MmioTransport t3(rng::RngDevice::create(), again.mem);
  MmioDriver d3{t3};
  ASSERT_TRUE(d3.bring_up(again, t3.device().features()));
  again.set_avail_idx(100);  // more than the ring size ahead
  d3.w(m::QUEUE_NOTIFY, 0);
  EXPECT_NE(d3.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u);
  again.set_avail_idx(0);
  ASSERT_TRUE(d3.bring_up(again, t3.device().features()));
  again.desc(0, again.alloc(16), 16, v::DESC_F_WRITE);
  again.publish(0);
  d3.w(m::QUEUE_NOTIFY, 0);
  EXPECT_EQ(again.used_idx(), 1);
  EXPECT_EQ(d3.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u);
}

TEST(MmioTransport, ConfigSpaceReads) {
  DriverRing ring(8);
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(disk) << disk.error().to_string();
  auto dev = blk::BlkDevice::create(std::move(*disk), {});
  ASSERT_TRUE(dev) << dev.error().to_string();
  MmioTransport t(std::move(*dev), ring.mem);
  EXPECT_EQ(t.read(m::DEVICE_ID, 4), v::ID_BLOCK);
  // capacity is a 64-bit field read as two aligned 32-bit halves.
  EXPECT_EQ(t.read(m::CONFIG, 4), 2048u);
  EXPECT_EQ(t.read(m::CONFIG + 4, 4), 0u);
  EXPECT_EQ(t.read(m::CONFIG, 1), 0u) << "low byte of 2048";
  EXPECT_EQ(t.read(m::CONFIG + 1, 1), 8u);
  EXPECT_EQ(t.read(m::CONFIG, 2), 2048u);
  EXPECT_EQ(t.stats().bad_accesses, 0u);
  EXPECT_EQ(t.read(m::CONFIG + 1, 2), 0u) << "unaligned";
  EXPECT_EQ(t.read(m::CONFIG + t.device().config().size(), 1), 0u) << "past the config";
  EXPECT_EQ(t.stats().bad_accesses, 2u);
  EXPECT_EQ(t.read(m::CONFIG_GENERATION, 4), 0u);
}

TEST(MmioTransport, BlockWriteAndReadThroughRegisters) {
  DriverRing ring(16);
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(disk);
  auto dev = blk::BlkDevice::create(std::move(*disk), {});
  ASSERT_TRUE(dev);
  auto* blk = dev->get();
  MmioTransport t(std::move(*dev), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.bring_up(ring, v::feature_bit(v::F_VERSION_1)));
  // OUT sector 3: header, 512 data bytes, status.
  const uint64_t hdr = ring.alloc(16), data = ring.alloc(512), status = ring.alloc(1);
  const vb::RequestHeader h{vb::T_OUT, 0, 3};
  ring.fill(hdr, &h, sizeof h);
  std::vector<std::byte> payload(512);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte(i * 7 + 1);
  ring.fill(data, payload.data(), payload.size());
  ring.desc(0, hdr, 16, v::DESC_F_NEXT, 1);
  ring.desc(1, data, 512, v::DESC_F_NEXT, 2);
  ring.desc(2, status, 1, v::DESC_F_WRITE);
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, 0);
  ASSERT_EQ(ring.used_idx(), 1);
  EXPECT_EQ(ring.bytes(status, 1)[0], std::byte{vb::S_OK});
  // The bytes are on the disk.
  blk_mq::TagSet tags(blk->disk().info().tag_set);
  std::vector<std::byte> back(512);
  ASSERT_TRUE(blk_mq::execute(blk->disk(), tags, 0, blk_mq::Op::Read, 3, back));
  EXPECT_EQ(back, payload);
}

TEST(MmioTransport, ConsoleThroughRegisters) {
  DriverRing rx(8);
  auto con = console::ConsoleDevice::create();
  auto* c = con.get();
  MmioTransport t(std::move(con), rx.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.negotiate(v::feature_bit(v::F_VERSION_1)));
  d.queue(console::kReceiveq, rx.layout);
  // transmitq in the same RAM, 8 KiB further up.
  const QueueLayout tx{8, PhysAddr(0x2000), PhysAddr(0x42000), PhysAddr(0x52000)};
  d.queue(console::kTransmitq, tx);
  d.driver_ok();
  const char msg[] = "hello over virtio-mmio\n";
  const uint64_t buf = rx.alloc(sizeof msg);
  rx.fill(buf, msg, sizeof msg - 1);
  rx.set_desc(0x2000, 0, buf, sizeof msg - 1, 0);
  ASSERT_TRUE(rx.mem.write(PhysAddr(0x42000 + 4), uint16_t{0}));
  ASSERT_TRUE(rx.mem.write(PhysAddr(0x42000 + 2), uint16_t{1}));
  d.w(m::QUEUE_NOTIFY, console::kTransmitq);
  EXPECT_EQ(c->output(), msg);
  EXPECT_EQ(rx.mem.read<uint16_t>(PhysAddr(0x52000 + 2)).value(), 1);
}

// Any sequence of register accesses, however hostile, leaves the host alive and the device
// recoverable by a reset followed by a proper bring-up.
RC_GTEST_PROP(MmioTransport, RandomRegisterTrafficIsSurvivable, ()) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  const auto ops = *rc::gen::container<std::vector<std::tuple<uint16_t, uint8_t, uint32_t, bool>>>(
      rc::gen::tuple(
          rc::gen::inRange<uint16_t>(0, 0x140), rc::gen::element<uint8_t>(1, 2, 4, 8),
          rc::gen::oneOf(rc::gen::inRange<uint32_t>(0, 16), rc::gen::arbitrary<uint32_t>(),
                         rc::gen::element<uint32_t>(0x40000, 0x50000, 0x100000)),
          rc::gen::arbitrary<bool>()));
  // Random ring contents too, so notifies walk garbage.
  const auto junk = *rc::gen::container<std::vector<uint8_t>>(128, rc::gen::arbitrary<uint8_t>());
  ring.fill(DriverRing::kDesc, junk.data(), junk.size());
  for (const auto& [off, width, value, is_write] : ops) {
    if (is_write)
      t.write(off, width, value);
    else
      (void)t.read(off, width);
  }
  ring.set_avail_idx(0);
  std::vector<uint8_t> zeros(4096);
  ring.fill(DriverRing::kUsed, zeros.data(), zeros.size());
  RC_ASSERT(d.bring_up(ring, t.device().features()));
  ring.desc(0, ring.alloc(16), 16, v::DESC_F_WRITE);
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, 0);
  RC_ASSERT(ring.used_idx() == 1);
  RC_ASSERT((d.r(m::STATUS) & v::STATUS_NEEDS_RESET) == 0);
}

}  // namespace
}  // namespace pepita::virtio
