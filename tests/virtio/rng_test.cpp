// virtio-rng over a crafted ring: writable buffers filled, used length reported, bad rings reset.
#include "pepita/virtio/rng.hpp"

#include <gtest/gtest.h>

#include "driver_ring.hpp"

namespace pepita::virtio::rng {
namespace {
using testing::DriverRing;
namespace v = abi::virtio;

TEST(RngDevice, FillsWritableBuffers) {
  auto dev = RngDevice::create();
  ASSERT_TRUE(dev->activate(dev->features()));
  EXPECT_FALSE(dev->activate(v::feature_bit(v::F_RING_EVENT_IDX)).has_value()) << "no VERSION_1";
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t a = d.alloc(64), b = d.alloc(4096);
  d.desc(0, a, 64, v::DESC_F_WRITE | v::DESC_F_NEXT, 1);
  d.desc(1, b, 4096, v::DESC_F_WRITE);
  d.publish(0);
  EXPECT_TRUE(dev->process(0, q).value());
  EXPECT_EQ(d.used_idx(), 1);
  EXPECT_EQ(d.used(0).len, 4160u);
  auto bytes = d.bytes(b, 4096);
  size_t zeros = 0;
  for (auto x : bytes) zeros += x == std::byte{0};
  EXPECT_LT(zeros, 64u) << "4 KiB of random bytes has few zero bytes";
  EXPECT_EQ(dev->bytes_served(), 4160u);
}

TEST(RngDevice, MalformedRingNeedsReset) {
  auto dev = RngDevice::create();
  ASSERT_TRUE(dev->activate(dev->features()));
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(8), 8, v::DESC_F_WRITE | v::DESC_F_NEXT, 0);  // self loop
  d.publish(0);
  EXPECT_FALSE(dev->process(0, q).has_value());
  EXPECT_EQ(dev->status_bits(), v::STATUS_NEEDS_RESET);
  EXPECT_FALSE(dev->process(1, q).has_value()) << "one queue only";
}

}  // namespace
}  // namespace pepita::virtio::rng
