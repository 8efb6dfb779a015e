#pragma once
// virtio-rng (virtio 1.2 section 5.4): one request queue; each chain's device-writable buffers are
// filled from the host kernel's CSPRNG (getrandom), as QEMU's rng-random backend does.
//
//   auto rng = RngDevice::create();
//   PEPITA_TRY_VOID(rng->activate(acked));
//   bool notify = PEPITA_TRY(rng->process(0, queue));

#include <memory>

#include "pepita/virtio/device.hpp"

namespace pepita::virtio::rng {

class RngDevice final : public VirtioDevice {
 public:
  /// At most this many bytes are produced per chain (a guest asking for more gets a short fill,
  /// which the spec allows: the used length says how much).
  static constexpr uint32_t kMaxBytesPerChain = 64 << 10;

  static std::unique_ptr<RngDevice> create() { return std::make_unique<RngDevice>(); }

  uint32_t device_id() const noexcept override { return abi::virtio::ID_RNG; }
  uint64_t features() const noexcept override;
  uint16_t num_queues() const noexcept override { return 1; }
  uint16_t max_queue_size() const noexcept override { return 256; }
  std::span<const std::byte> config() const noexcept override { return {}; }
  Result<void> activate(uint64_t acked) override;
  void reset() noexcept override { clear_needs_reset(); }
  Result<bool> process(uint16_t index, Queue& queue) override;

  uint64_t bytes_served() const noexcept { return bytes_; }

 private:
  Chain chain_;
  uint64_t bytes_ = 0;
};

}  // namespace pepita::virtio::rng
