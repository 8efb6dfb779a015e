#pragma once
// The interface every pepita virtio device implements, whatever its transport (vhost-user,
// virtio-mmio): feature bits, queue count, config space, activate/reset, and serving one queue.
// A device never knows its transport; the transport owns the Queue objects and the interrupts.
//
//   auto dev = PEPITA_TRY(blk::BlkDevice::create(std::move(disk), {.num_queues = 2}));
//   PEPITA_TRY_VOID(dev->activate(acked_features));
//   bool notify = PEPITA_TRY(dev->process(0, queue));   // after a kick on queue 0
//   if (notify) write(call_fd, 1);

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio {

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  /// Device ID (abi::virtio::ID_*).
  virtual uint32_t device_id() const noexcept = 0;
  /// Every feature bit the device offers, transport bits (VERSION_1, INDIRECT_DESC, EVENT_IDX)
  /// included.
  virtual uint64_t features() const noexcept = 0;
  virtual uint16_t num_queues() const noexcept = 0;
  virtual uint16_t max_queue_size() const noexcept = 0;
  /// The device's config space as the driver reads it (little-endian).
  virtual std::span<const std::byte> config() const noexcept = 0;

  /// Starts the device with the feature bits the driver acknowledged (a subset of features()).
  /// InvalidArgument when `acked` holds a bit that was not offered or lacks VERSION_1.
  virtual Result<void> activate(uint64_t acked) = 0;
  /// Back to the state before activate; NEEDS_RESET is cleared.
  virtual void reset() noexcept = 0;

  /// Serves every chain available on queue `index` (kicked by the driver). Returns true when the
  /// driver should get an interrupt. On a Protocol error the queue is broken and the device
  /// status has NEEDS_RESET; the transport stops the queue and reports it.
  virtual Result<bool> process(uint16_t index, Queue& queue) = 0;

  /// Device state a snapshot carries beyond the transport's registers and queues (virtio-mmio
  /// MmioTransport::save, vmm::Snapshot): opaque bytes that load_state of the same device type
  /// reads back. Called between kicks, on a device with nothing in flight. Busy, saying what to
  /// close, when the device holds something a snapshot cannot carry (vsock's host connections).
  /// The default is a device with no state of its own (virtio-blk serves each kick to the end).
  virtual Result<std::vector<std::byte>> save_state() const { return std::vector<std::byte>{}; }
  /// Loads save_state()'s bytes into a device just activated with the saved features.
  /// InvalidArgument for bytes it did not write.
  virtual Result<void> load_state(std::span<const std::byte> state) {
    if (!state.empty())
      return fail(ErrorCode::InvalidArgument,
                  "virtio snapshot: device state for a device that keeps none; the snapshot was "
                  "taken from another kind of device");
    return {};
  }

  /// STATUS_NEEDS_RESET once a queue broke, else 0.
  uint8_t status_bits() const noexcept {
    return needs_reset_ ? abi::virtio::STATUS_NEEDS_RESET : 0;
  }

 protected:
  void set_needs_reset() noexcept { needs_reset_ = true; }
  void clear_needs_reset() noexcept { needs_reset_ = false; }

 private:
  std::atomic<bool> needs_reset_{false};  // set by any queue thread
};

}  // namespace pepita::virtio
