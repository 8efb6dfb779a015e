#pragma once
// Test-side virtio-mmio driver: the register sequence Linux's virtio_mmio.c uses (reset,
// ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue setup, DRIVER_OK) against an MmioTransport.
#include <cstdint>

#include "driver_ring.hpp"
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/virtio/mmio.hpp"

namespace pepita::virtio::testing {

namespace m = abi::virtio_mmio;

inline constexpr uint32_t kAckDriver = v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER;

// The driver's side of the register protocol (what Linux's virtio_mmio.c does).
struct MmioDriver {
  MmioTransport& t;
  uint32_t r(uint32_t off) { return static_cast<uint32_t>(t.read(off, 4)); }
  void w(uint32_t off, uint32_t val) { t.write(off, 4, val); }

  uint64_t device_features() {
    w(m::DEVICE_FEATURES_SEL, 0);
    uint64_t f = r(m::DEVICE_FEATURES);
    w(m::DEVICE_FEATURES_SEL, 1);
    return f | uint64_t{r(m::DEVICE_FEATURES)} << 32;
  }
  // Reset, ACKNOWLEDGE, DRIVER, write features, FEATURES_OK; true when the device kept it.
  bool negotiate(uint64_t features) {
    w(m::STATUS, 0);
    w(m::STATUS, v::STATUS_ACKNOWLEDGE);
    w(m::STATUS, kAckDriver);
    w(m::DRIVER_FEATURES_SEL, 0);
    w(m::DRIVER_FEATURES, static_cast<uint32_t>(features));
    w(m::DRIVER_FEATURES_SEL, 1);
    w(m::DRIVER_FEATURES, static_cast<uint32_t>(features >> 32));
    w(m::STATUS, kAckDriver | v::STATUS_FEATURES_OK);
    return (r(m::STATUS) & v::STATUS_FEATURES_OK) != 0;
  }
  void queue(uint32_t index, const QueueLayout& l) {
    w(m::QUEUE_SEL, index);
    w(m::QUEUE_NUM, l.size);
    w(m::QUEUE_DESC_LOW, static_cast<uint32_t>(l.desc.raw()));
    w(m::QUEUE_DESC_HIGH, static_cast<uint32_t>(l.desc.raw() >> 32));
    w(m::QUEUE_AVAIL_LOW, static_cast<uint32_t>(l.avail.raw()));
    w(m::QUEUE_AVAIL_HIGH, static_cast<uint32_t>(l.avail.raw() >> 32));
    w(m::QUEUE_USED_LOW, static_cast<uint32_t>(l.used.raw()));
    w(m::QUEUE_USED_HIGH, static_cast<uint32_t>(l.used.raw() >> 32));
    w(m::QUEUE_READY, 1);
  }
  void driver_ok() { w(m::STATUS, kAckDriver | v::STATUS_FEATURES_OK | v::STATUS_DRIVER_OK); }
  // Full bring-up of queue 0 over `ring`; true when the device accepted everything.
  bool bring_up(DriverRing& ring, uint64_t features) {
    if (!negotiate(features)) return false;
    queue(0, ring.layout);
    driver_ok();
    return r(m::QUEUE_READY) == 1 && (r(m::STATUS) & v::STATUS_DRIVER_OK) != 0;
  }
};

}  // namespace pepita::virtio::testing
