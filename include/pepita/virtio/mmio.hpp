#pragma once
// The device side of the virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2): the register
// file a driver reads and writes at a device's MMIO base, over any VirtioDevice. Owns the queues
// and the status state machine (feature negotiation, FEATURES_OK check, DEVICE_NEEDS_RESET, reset).
// Every guest access is checked; a bad offset or width is ignored and counted, never fatal.
//
//   auto dev = PEPITA_TRY(blk::BlkDevice::create(std::move(disk), {}));
//   MmioTransport mmio(std::move(dev), ram);          // ram: the guest's GuestMemory
//   uint64_t v = mmio.read(run->mmio.phys_addr - base, run->mmio.len);   // on a KVM MMIO exit
//   mmio.write(offset, len, value);                   // QueueNotify serves the queue right here
//   if (mmio.status() & abi::virtio::STATUS_NEEDS_RESET) report(mmio.last_error());

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/device.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio {

/// How a transport tells the driver that a used ring or the config changed. A device never sees
/// it. In pepita's kernel-less micro-VMs there is no interrupt controller and the guest polls, so
/// the transport works without one (nullptr).
class Interrupt {
 public:
  virtual ~Interrupt() = default;
  /// `status` is the new InterruptStatus (abi::virtio_mmio::INT_VRING | INT_CONFIG bits).
  virtual void raise(uint32_t status) noexcept = 0;
};

/// One queue of a virtio-mmio transport as the driver set it up, and where the device is in its
/// rings (part of MmioState).
struct MmioQueueState {
  uint16_t num = 0;  // QueueNum
  uint64_t desc = 0, avail = 0, used = 0;
  bool ready = false;       // QueueReady
  uint16_t next_avail = 0;  // ready queues: the avail index the device reads next
  uint16_t next_used = 0;   // ready queues: the used index the device writes next
};

/// The whole state of a quiescent virtio-mmio device, what a micro-VM snapshot keeps of it
/// (MmioTransport::save / load): the registers the driver wrote, the negotiated features, every
/// queue, the device's config space as the driver saw it (its shape: a restored device must
/// present the same) and the device's own state (VirtioDevice::save_state). The rings and buffers
/// themselves are in guest RAM, which the snapshot carries separately.
struct MmioState {
  uint32_t device_id = 0;
  std::vector<std::byte> config;
  uint8_t status = 0;  // the driver's status bits (never NEEDS_RESET: such a device is not saved)
  uint64_t driver_features = 0;
  uint32_t device_features_sel = 0, driver_features_sel = 0, queue_sel = 0, shm_sel = 0;
  uint32_t interrupt_status = 0;
  uint32_t config_generation = 0;
  std::vector<MmioQueueState> queues;
  std::vector<std::byte> device_state;
};

/// The register file of one virtio-mmio device (REGION_SIZE bytes: control registers, then the
/// device's config space at CONFIG). Not thread-safe: one vCPU thread drives it, and a queue is
/// served synchronously inside the QueueNotify write, so when that write returns the used ring
/// already holds every chain the device could complete.
class MmioTransport {
 public:
  /// VendorID reported to the driver ("pepi").
  static constexpr uint32_t kVendorId = 0x69706570;

  /// `ram` is borrowed (it must outlive the transport); `irq` may be null (polling driver).
  MmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& ram,
                Interrupt* irq = nullptr);

  /// A driver read of `width` bytes (1, 2, 4 or 8) at `offset` from the base. Control registers
  /// take only aligned 32-bit reads, config space aligned 1/2/4-byte reads (spec 4.2.2.2); any
  /// other access, a write-only register or an offset past the config reads 0 and is counted.
  uint64_t read(uint64_t offset, unsigned width) noexcept;
  /// A driver write. Invalid accesses (bad width, read-only register, writes the spec forbids in
  /// the current state) are ignored and counted. A QueueNotify serves the queue; if the device or
  /// the queue finds the ring malformed the device enters DEVICE_NEEDS_RESET (see last_error()).
  void write(uint64_t offset, unsigned width, uint64_t value) noexcept;

  /// The device's state for a snapshot, taken between exits. Busy when the device is not
  /// quiescent: a ready queue whose avail ring holds chains the device has not taken (the driver
  /// published a request and has not notified: it would be in flight across the snapshot), or
  /// the device holds what a snapshot cannot carry (save_state); Protocol when it needs a reset.
  Result<MmioState> save() const;
  /// Loads `state` into this transport, which must be fresh (no driver access yet) and whose RAM
  /// holds the snapshot's rings: registers, features (the device is activated with them), every
  /// ready queue resuming at its saved indices, the device's own state. InvalidArgument, naming
  /// what differs, when `state` comes from another kind of device or one of another shape
  /// (config space, e.g. a virtio-blk disk of another size; queue count); the transport is then
  /// reset, as a driver would find it.
  Result<void> load(const MmioState& state);

  /// Device status as the driver reads it (driver bits | NEEDS_RESET).
  uint8_t status() const noexcept;
  /// The feature bits the driver acknowledged (valid once FEATURES_OK is set).
  uint64_t driver_features() const noexcept { return driver_features_; }
  VirtioDevice& device() noexcept { return *device_; }
  const VirtioDevice& device() const noexcept { return *device_; }

  struct Stats {
    uint64_t reads = 0;
    uint64_t writes = 0;
    uint64_t bad_accesses = 0;  // ignored reads/writes (offset, width, state)
    uint64_t notifies = 0;      // QueueNotify writes that served a queue
    uint64_t resets = 0;        // Status = 0 writes
  };
  const Stats& stats() const noexcept { return stats_; }
  /// Why the last access was refused or the device needs a reset ("" when nothing went wrong).
  const std::string& last_error() const noexcept { return last_error_; }

 private:
  struct QueueState {
    uint16_t num = 0;
    uint64_t desc = 0, avail = 0, used = 0;
    std::optional<Queue> queue;  // set while QueueReady = 1
  };

  uint32_t read_register(uint32_t offset);
  void write_register(uint32_t offset, uint32_t value);
  void write_status(uint32_t value);
  void set_queue_ready(uint32_t value);
  void notify(uint32_t index);
  void reset() noexcept;
  void refuse(std::string why);
  void needs_reset(std::string why);
  QueueState* selected() noexcept;

  std::unique_ptr<VirtioDevice> device_;
  const GuestMemory* ram_;
  Interrupt* irq_;
  std::vector<QueueState> queues_;
  uint64_t driver_features_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t shm_sel_ = 0;
  uint32_t interrupt_status_ = 0;
  uint32_t config_generation_ = 0;
  uint8_t status_ = 0;
  bool transport_broken_ = false;  // NEEDS_RESET raised by the transport itself
  Stats stats_;
  std::string last_error_;
};

}  // namespace pepita::virtio
