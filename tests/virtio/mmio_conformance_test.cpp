// virtio-mmio register rules from virtio 1.2 section 4.2.2/4.2.3, checked on the device side:
// identity registers, feature negotiation (VERSION_1 required, FEATURES_OK refused otherwise),
// the status state machine, queue registers locked while ready, notify only after DRIVER_OK, and
// access widths (32-bit aligned control registers; bad accesses ignored, never fatal).
#include <gtest/gtest.h>

#include "driver_ring.hpp"
#include "mmio_driver.hpp"
#include "pepita/virtio/mmio.hpp"
#include "pepita/virtio/rng.hpp"

namespace pepita::virtio {
namespace {
using testing::DriverRing;
using testing::kAckDriver;
using testing::MmioDriver;
namespace m = abi::virtio_mmio;
namespace v = abi::virtio;

TEST(MmioTransport, IdentityRegisters) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  EXPECT_EQ(d.r(m::MAGIC_VALUE), m::MAGIC);
  EXPECT_EQ(d.r(m::VERSION), 2u);
  EXPECT_EQ(d.r(m::DEVICE_ID), v::ID_RNG);
  EXPECT_EQ(d.r(m::VENDOR_ID), MmioTransport::kVendorId);
  EXPECT_EQ(d.device_features(), t.device().features());
  d.w(m::DEVICE_FEATURES_SEL, 7);
  EXPECT_EQ(d.r(m::DEVICE_FEATURES), 0u) << "feature words past 63 are zero";
  d.w(m::QUEUE_SEL, 0);
  EXPECT_EQ(d.r(m::QUEUE_NUM_MAX), 256u);
  d.w(m::QUEUE_SEL, 1);
  EXPECT_EQ(d.r(m::QUEUE_NUM_MAX), 0u) << "rng has one queue";
  EXPECT_EQ(d.r(m::QUEUE_READY), 0u);
  d.w(m::SHM_SEL, 0);
  EXPECT_EQ(d.r(m::SHM_LEN_LOW), 0xffffffffu) << "no shared memory region: length -1";
  EXPECT_EQ(d.r(m::SHM_BASE_LOW), 0xffffffffu) << "no shared memory region: base -1";
  EXPECT_EQ(d.r(m::SHM_BASE_HIGH), 0xffffffffu);
  EXPECT_EQ(d.r(m::STATUS), 0u);
  EXPECT_EQ(t.stats().bad_accesses, 0u);
}

TEST(MmioTransport, FeatureNegotiationRequiresVersion1) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  const uint64_t offered = d.device_features();
  // Feature words past 63: zero is accepted silently, a set bit is a bad access.
  d.w(m::DRIVER_FEATURES_SEL, 2);
  d.w(m::DRIVER_FEATURES, 0);
  EXPECT_EQ(t.stats().bad_accesses, 0u) << t.last_error();
  d.w(m::DRIVER_FEATURES, 1);
  EXPECT_EQ(t.stats().bad_accesses, 1u);
  EXPECT_NE(t.last_error().find("beyond 63"), std::string::npos) << t.last_error();
  EXPECT_EQ(t.driver_features(), 0u);
  EXPECT_FALSE(d.negotiate(offered & ~v::feature_bit(v::F_VERSION_1)));
  EXPECT_NE(t.last_error().find("VERSION_1"), std::string::npos) << t.last_error();
  EXPECT_FALSE(d.negotiate(offered | v::feature_bit(v::F_RING_PACKED))) << "not offered";
  EXPECT_NE(t.last_error().find("not offered"), std::string::npos) << t.last_error();
  ASSERT_TRUE(d.negotiate(v::feature_bit(v::F_VERSION_1)));
  EXPECT_EQ(t.driver_features(), v::feature_bit(v::F_VERSION_1));
  // Features are frozen once FEATURES_OK is set.
  const auto bad = t.stats().bad_accesses;
  d.w(m::DRIVER_FEATURES_SEL, 0);
  d.w(m::DRIVER_FEATURES, 0xffffffff);
  EXPECT_EQ(t.driver_features(), v::feature_bit(v::F_VERSION_1));
  EXPECT_EQ(t.stats().bad_accesses, bad + 1);
}

TEST(MmioTransport, StatusStateMachine) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  d.w(m::STATUS, kAckDriver | v::STATUS_DRIVER_OK);
  EXPECT_EQ(d.r(m::STATUS), kAckDriver) << "DRIVER_OK before FEATURES_OK is refused";
  EXPECT_EQ(t.last_error(), "DRIVER_OK set before FEATURES_OK was accepted");
  EXPECT_EQ(t.stats().bad_accesses, 1u) << "the refusal counts as a bad access";
  ASSERT_TRUE(d.negotiate(t.device().features()));
  d.w(m::STATUS, v::STATUS_ACKNOWLEDGE);
  EXPECT_EQ(d.r(m::STATUS), kAckDriver | v::STATUS_FEATURES_OK) << "bits clear only by reset";
  d.w(m::STATUS, kAckDriver | v::STATUS_FEATURES_OK | v::STATUS_NEEDS_RESET);
  EXPECT_EQ(d.r(m::STATUS) & v::STATUS_NEEDS_RESET, 0u) << "NEEDS_RESET is the device's bit";
  d.queue(0, ring.layout);
  d.driver_ok();
  EXPECT_EQ(d.r(m::STATUS), kAckDriver | v::STATUS_FEATURES_OK | v::STATUS_DRIVER_OK);
  d.w(m::STATUS, 0);
  EXPECT_EQ(d.r(m::STATUS), 0u);
  d.w(m::QUEUE_SEL, 0);
  EXPECT_EQ(d.r(m::QUEUE_READY), 0u) << "reset stops the queues";
  EXPECT_EQ(t.driver_features(), 0u);
  EXPECT_EQ(t.stats().resets, 2u);  // negotiate() resets once, then the explicit write
}

TEST(MmioTransport, QueueAddressesReadBackAndLockWhileReady) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.negotiate(t.device().features()));
  d.queue(0, ring.layout);
  EXPECT_EQ(d.r(m::QUEUE_AVAIL_LOW), DriverRing::kAvail);
  EXPECT_EQ(d.r(m::QUEUE_USED_LOW), DriverRing::kUsed);
  EXPECT_EQ(d.r(m::QUEUE_DESC_HIGH), 0u);
  d.w(m::QUEUE_USED_LOW, 0x1234);
  EXPECT_EQ(d.r(m::QUEUE_USED_LOW), DriverRing::kUsed) << "ignored while the queue is ready";
  d.w(m::QUEUE_READY, 0);
  EXPECT_EQ(d.r(m::QUEUE_READY), 0u);
  d.w(m::QUEUE_USED_LOW, 0x1234);
  EXPECT_EQ(d.r(m::QUEUE_USED_LOW), 0x1234u);
}

TEST(MmioTransport, NotifyBeforeDriverOkIsIgnored) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  ASSERT_TRUE(d.negotiate(t.device().features()));
  d.queue(0, ring.layout);
  ring.desc(0, ring.alloc(8), 8, v::DESC_F_WRITE);
  ring.publish(0);
  d.w(m::QUEUE_NOTIFY, 0);
  EXPECT_EQ(ring.used_idx(), 0);
  EXPECT_NE(t.last_error().find("DRIVER_OK"), std::string::npos);
}

TEST(MmioTransport, BadOffsetsAndWidthsAreIgnored) {
  DriverRing ring(8);
  MmioTransport t(rng::RngDevice::create(), ring.mem);
  MmioDriver d{t};
  EXPECT_EQ(t.read(m::MAGIC_VALUE, 2), 0u) << "16-bit control read";
  EXPECT_EQ(t.read(m::MAGIC_VALUE, 8), 0u);
  EXPECT_EQ(t.read(m::MAGIC_VALUE + 1, 4), 0u) << "unaligned";
  EXPECT_EQ(t.read(m::QUEUE_NOTIFY, 4), 0u) << "write-only";
  EXPECT_EQ(t.read(0x0f0, 4), 0u) << "reserved";
  EXPECT_EQ(t.read(m::CONFIG, 4), 0u) << "rng has no config";
  EXPECT_EQ(t.read(0xffff'ffff'ffff'fff0ull, 4), 0u);
  t.write(m::MAGIC_VALUE, 4, 0);
  t.write(m::STATUS, 1, v::STATUS_ACKNOWLEDGE);
  t.write(m::STATUS, 4, 0x1ff);
  t.write(m::CONFIG + 4, 4, 7);
  EXPECT_EQ(t.stats().bad_accesses, 11u);
  EXPECT_EQ(d.r(m::STATUS), 0u);
  EXPECT_EQ(d.r(m::MAGIC_VALUE), m::MAGIC);
}

}  // namespace
}  // namespace pepita::virtio
