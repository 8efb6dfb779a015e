#pragma once
// A small freestanding virtio-mmio driver for pepita micro-VM guests (virtio 1.2 sections 2.7
// and 4.2.3): probe magic/version/device ID, negotiate VERSION_1, split queues in guest heap,
// submit chains and poll the used ring. The guest has no kernel and takes no interrupts; the VMM
// serves a queue inside the QueueNotify exit, so one poll after kick() sees what the device did.
//
//   pepita::guest::virtio::Device con;
//   if (!con.probe(3) || !con.init(0) || !con.setup_queue(1, 16) || !con.driver_ok()) exit(1);
//   Buf b{msg, len, false};
//   con.queue(1).transfer(&b, 1);          // one VM exit for the notify
//   Every register access is a VM exit (~25 us here): touch registers only to set up and kick.

#include <stddef.h>
#include <stdint.h>

namespace pepita::guest::virtio {

/// One buffer of a chain: `device_writes` for buffers the device fills (VIRTQ_DESC_F_WRITE).
struct Buf {
  void* addr;
  uint32_t len;
  bool device_writes;
};

/// The driver half of one split virtqueue, rings allocated from the guest heap.
class Queue {
 public:
  /// Lays out the rings (size a power of two, <= 256). False when the heap is exhausted.
  bool init(uint16_t size);
  /// Chains `n` buffers into free descriptors and makes the chain available; returns the head or
  /// -1 when fewer than n descriptors are free.
  int submit(const Buf* bufs, uint32_t n);
  /// Pops one used element: true with its head and written length.
  bool poll(uint16_t* head, uint32_t* len);
  /// submit + kick + poll for that chain: the used length, or -1 when the device did not complete
  /// it (it needs a reset, or holds the buffer waiting for input).
  int64_t transfer(const Buf* bufs, uint32_t n);

  uint16_t size() const { return size_; }
  uint64_t desc_gpa() const { return reinterpret_cast<uint64_t>(desc_); }
  uint64_t avail_gpa() const { return reinterpret_cast<uint64_t>(avail_); }
  uint64_t used_gpa() const { return reinterpret_cast<uint64_t>(used_); }

 private:
  friend class Device;
  struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
  };
  void free_chain(uint16_t head);

  class Device* dev_ = nullptr;
  uint16_t index_ = 0;
  uint16_t size_ = 0;
  Desc* desc_ = nullptr;
  volatile uint16_t* avail_ = nullptr;  // flags, idx, ring[size], used_event
  volatile uint16_t* used_ = nullptr;   // flags, idx, then {u32 id, u32 len}[size], avail_event
  uint16_t free_head_ = 0;
  uint16_t num_free_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
};

/// One virtio-mmio device of the VM (BootInfo.virtio_mmio_devices of them).
class Device {
 public:
  static constexpr uint32_t kMaxQueues = 3;  // vsock: rx, tx, event

  /// Finds the first device with `device_id` (magic "virt", version 2); false when none.
  bool probe(uint32_t device_id);
  /// Uses device slot `slot` whatever it is; false when the slot does not exist.
  bool attach(uint32_t slot);
  /// Reset, ACKNOWLEDGE, DRIVER, accept VERSION_1 plus `wanted` & offered, FEATURES_OK, and check
  /// the device kept FEATURES_OK.
  bool init(uint64_t wanted);
  /// Sets up queue `index` with `size` entries (clamped to QueueNumMax) and marks it ready.
  bool setup_queue(uint32_t index, uint16_t size);
  /// Sets DRIVER_OK; false when the device refused or needs a reset.
  bool driver_ok();
  Queue& queue(uint32_t index) { return queues_[index]; }

  uint32_t read32(uint32_t offset) const;
  void write32(uint32_t offset, uint32_t value) const;
  uint8_t config8(uint32_t offset) const;
  uint32_t config32(uint32_t offset) const;
  uint8_t status() const;
  uint64_t base() const { return base_; }

 private:
  uint64_t base_ = 0;
  Queue queues_[kMaxQueues];
};

/// How many virtio-mmio devices the VMM gave this VM.
uint32_t device_count();

/// One virtio-blk request on queue 0 of `blk` (header, `len` bytes of data, status), waited for:
/// the device's status byte (abi::virtio_blk::S_OK, S_IOERR, S_UNSUPP), or -1 when the queue
/// refused the chain. `type` T_IN fills `data`, T_OUT sends it.
int blk_request(Device& blk, uint32_t type, uint64_t sector, void* data, uint32_t len);
/// Sends `len` bytes on a virtio-console's transmitq (queue 1) and waits for the device; false
/// when the queue refused them.
bool console_write(Device& con, const void* data, uint32_t len);
/// console_write of a NUL-terminated string.
bool console_print(Device& con, const char* s);

}  // namespace pepita::guest::virtio
