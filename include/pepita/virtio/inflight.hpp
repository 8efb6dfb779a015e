#pragma once
// Inflight I/O tracking for a split virtqueue (QEMU docs/interop/vhost-user.rst, "Inflight I/O
// tracking", VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD): one queue's slice of the shared region that
// records which chain heads a device popped and has not yet returned, so a restarted backend can
// resubmit them in the order it first popped them, even when completions were out of order.
//
//   auto iq = PEPITA_TRY(InflightQueue::open(region.subspan(i * bytes, bytes), queue_size));
//   auto heads = PEPITA_TRY(iq.recover(ring_used_idx));   // after a restart: resubmit these
//   iq.popped(head);                       // when a chain is popped
//   iq.before_used(head); /* used idx++ */ iq.after_used(head, used_idx);   // when it is used

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::virtio {

/// DescStateSplit: the state of one descriptor-table entry (meaningful for chain heads).
struct InflightDesc {
  uint8_t inflight;  // 1 while the head is popped and not yet in the used ring
  uint8_t padding[5];
  uint16_t next;     // the list of the last used batch, from InflightHeader::last_batch_head
  uint64_t counter;  // pop order: resubmission goes by increasing counter
};
static_assert(sizeof(InflightDesc) == 16);

/// QueueRegionSplit's fixed part; desc_num InflightDesc entries follow it.
struct InflightHeader {
  uint64_t features;         // 0
  uint16_t version;          // kInflightVersion; 0 = never initialised (a fresh region)
  uint16_t desc_num;         // = the queue size
  uint16_t last_batch_head;  // head of the last used batch's list
  uint16_t used_idx;         // the used ring's idx once the last batch is fully recorded
};
static_assert(sizeof(InflightHeader) == 16);

inline constexpr uint16_t kInflightVersion = 1;

/// Bytes of one queue's slice for a queue of `queue_size` entries: the descriptor states plus a
/// 16-bit field, rounded up to 64 bytes (libvhost-user's vu_inflight_queue_size, so a region a
/// frontend got from another backend has the same layout). The header fits in the rounding for
/// every power-of-two queue size.
constexpr uint64_t inflight_queue_bytes(uint16_t queue_size) {
  return (sizeof(InflightDesc) * uint64_t{queue_size} + sizeof(uint16_t) + 63) / 64 * 64;
}

/// A view of one queue's slice; the memory (a MAP_SHARED mapping of the frontend's memfd) is
/// borrowed and must outlive the view. Every value read from it is checked: the frontend, or a
/// backend that crashed mid-write, may have left anything there. Each store is ordered (release)
/// so that a backend killed between any two of them leaves a state recover() can repair.
class InflightQueue {
 public:
  InflightQueue() = default;

  /// Checks `slice` (at least inflight_queue_bytes(queue_size) bytes, 8-byte aligned) and its
  /// header: version 0 (fresh) is initialised to version 1 with desc_num = queue_size; version 1
  /// must have desc_num == queue_size. InvalidArgument names the mismatch (a region made for
  /// another queue size, a version we do not speak, a slice too small).
  static Result<InflightQueue> open(std::span<std::byte> slice, uint16_t queue_size);

  /// The reconnect procedure: when the region's used_idx differs from the ring's `ring_used_idx`,
  /// the last batch (ring_used_idx - used_idx entries from last_batch_head) reached the used ring
  /// and is cleared; then returns every head still in flight, by increasing counter, and
  /// continues the counter after the largest. InvalidArgument when the region is inconsistent (a
  /// batch longer than the queue, a list index out of range, an inflight byte other than 0/1).
  /// A region that open() found fresh returns no heads.
  Result<std::vector<uint16_t>> recover(uint16_t ring_used_idx);

  /// Heads marked in flight now.
  uint16_t inflight_count() const noexcept;

  /// Marks `head` popped: counter = the next counter value, then inflight = 1.
  void popped(uint16_t head) noexcept;
  /// Before the used ring's idx moves past `head`'s element: links it into the last batch.
  void before_used(uint16_t head) noexcept;
  /// After the used ring's idx became `used_idx`: clears `head` and records the index.
  void after_used(uint16_t head, uint16_t used_idx) noexcept;

  bool valid() const noexcept { return header_ != nullptr; }
  bool was_fresh() const noexcept { return fresh_; }
  uint16_t size() const noexcept { return size_; }

 private:
  InflightHeader* header_ = nullptr;  // k-less: frontend memory, accessed only via atomic_ref
  InflightDesc* desc_ = nullptr;
  uint16_t size_ = 0;
  uint64_t counter_ = 0;  // the next counter value to hand out
  bool fresh_ = false;
};

}  // namespace pepita::virtio
