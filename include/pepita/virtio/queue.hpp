#pragma once
// The device side of a split virtqueue (virtio 1.2 section 2.7): pops descriptor chains the
// driver made available, publishes used elements and decides when the driver wants an interrupt
// (VIRTIO_RING_F_EVENT_IDX). Every guest-controlled value is checked; a malformed ring breaks the
// queue (the device then reports NEEDS_RESET) instead of the process. After Firecracker's queue.rs.
//
//   auto q = PEPITA_TRY(Queue::activate(layout, ram, {.event_idx = true, .indirect = true}));
//   Chain chain;
//   while (PEPITA_TRY(q.pop(chain))) { ...; PEPITA_TRY_VOID(q.add_used(chain.head, written)); }
//   if (PEPITA_TRY(q.should_notify())) interrupt.notify(queue_index);

#include <cstdint>
#include <string>
#include <vector>

#include "pepita/abi/virtio.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/inflight.hpp"

namespace pepita::virtio {

using abi::PhysAddr;
/// Guest RAM as devices see it: every ring and buffer access goes through its range checks.
using memory::GuestMemory;

/// Where the driver put the three parts of a queue, in guest-physical addresses.
struct QueueLayout {
  uint16_t size = 0;  // entries: a power of two, 1..32768
  PhysAddr desc{};    // descriptor table, 16-byte aligned
  PhysAddr avail{};   // available ring, 2-byte aligned
  PhysAddr used{};    // used ring, 4-byte aligned
};

/// Negotiated ring features.
struct QueueFeatures {
  bool event_idx = false;  // VIRTIO_RING_F_EVENT_IDX
  bool indirect = false;   // VIRTIO_RING_F_INDIRECT_DESC
};

/// One buffer of a chain. The range was checked to lie in guest RAM when the chain was popped.
struct Segment {
  PhysAddr gpa{};
  uint32_t len = 0;
  bool writable = false;  // VIRTQ_DESC_F_WRITE: the device writes, the driver reads
};

/// A popped descriptor chain: readable segments first, then writable ones (the walk enforces it).
struct Chain {
  uint16_t head = 0;
  std::vector<Segment> segments;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

class Queue {
 public:
  Queue() = default;

  /// Validates the layout (size a power of two no larger than max_size; alignments 16/2/4; each
  /// part inside `ram`) and returns a queue that starts at avail index `next_avail`. `ram` is
  /// borrowed and must outlive the queue. InvalidArgument names the bad field.
  static Result<Queue> activate(const QueueLayout& layout, const GuestMemory& ram,
                                QueueFeatures features, uint16_t next_avail = 0,
                                uint16_t max_size = abi::virtio::MAX_QUEUE_SIZE);

  /// Pops the next available chain into `out` (its vector is reused): true when one was popped,
  /// false when the ring is empty. Protocol error when the driver broke the ring (avail index
  /// more than `size` ahead, head or next index out of range, a chain longer than the queue or
  /// the indirect table (a loop), indirect inside indirect, INDIRECT with NEXT, an indirect table
  /// not a multiple of 16 bytes, a readable descriptor after a writable one, a buffer outside
  /// RAM, indirect without the feature). The queue is then broken: every later call fails too.
  Result<bool> pop(Chain& out);

  /// Returns chain `head` to the driver, telling it `written` bytes were written into the chain.
  /// Chains may be returned in any order (a device may hold one while later ones complete).
  Result<void> add_used(uint16_t head, uint32_t written);

  /// vhost-user INFLIGHT_SHMFD: from now on every pop marks its head in `region` and every
  /// add_used clears it, in the store order of QEMU's "Inflight I/O tracking", so a backend killed
  /// at any instant leaves a region the next one can recover. Call right after activate, before
  /// the first pop. With `recover` (the first start after a reconnect) the region's reconnect
  /// procedure runs against the used ring: pop() then hands out every head still in flight, by
  /// the order it was first popped, before any new avail entry, and the avail index continues at
  /// used idx + that count (what the previous backend had taken). Without it, `carried` (heads a
  /// previous Queue had yet to hand out, see take_unresubmitted) are handed out first. Returns
  /// the number of heads to resubmit. InvalidArgument when the region was made for another queue
  /// size or marks more heads in flight than the driver has outstanding; the queue is unchanged.
  Result<uint16_t> track_inflight(InflightQueue region, bool recover,
                                  std::vector<uint16_t> carried = {});
  /// Heads still to be resubmitted that pop() has not handed out yet (they move to the next
  /// Queue of this vring when the ring restarts).
  std::vector<uint16_t> take_unresubmitted();

  /// After a batch of add_used: true when the driver wants an interrupt (the used index passed
  /// its used_event with EVENT_IDX, or AVAIL_F_NO_INTERRUPT is clear without it).
  Result<bool> should_notify();

  /// Before sleeping on the kick fd: tells the driver which avail index to kick at (avail_event)
  /// and returns true when more chains arrived meanwhile (do not sleep then).
  Result<bool> enable_kicks();

  /// Chains the driver has published and pop() has not taken yet (the crate's pending_count),
  /// read from the avail ring now. Protocol error, breaking the queue as pop() would, when the
  /// driver's avail index is more than `size` ahead.
  Result<uint16_t> pending_count();

  bool broken() const noexcept { return broken_; }
  uint16_t size() const noexcept { return layout_.size; }
  /// The avail index the next pop reads: what GET_VRING_BASE reports.
  uint16_t next_avail() const noexcept { return next_avail_; }
  uint16_t next_used() const noexcept { return next_used_; }
  /// The guest RAM this queue reads (what devices parse requests against).
  const GuestMemory& ram() const noexcept { return *ram_; }

 private:
  Result<bool> pop_unchecked(Chain& out);
  Result<void> walk(uint16_t head, Chain& out) const;
  Result<uint16_t> load_avail_idx() const;
  std::unexpected<Error> malformed(const std::string& what);

  QueueLayout layout_{};
  QueueFeatures features_{};
  const GuestMemory* ram_ = nullptr;
  InflightQueue inflight_;          // valid() only with vhost-user INFLIGHT_SHMFD
  std::vector<uint16_t> resubmit_;  // heads pop() hands out before new avail entries
  size_t resubmit_next_ = 0;
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;
  bool broken_ = false;
};

}  // namespace pepita::virtio
