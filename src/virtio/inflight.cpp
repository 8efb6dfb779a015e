// Inflight region of one split virtqueue (vhost-user.rst "Inflight I/O tracking"): the spec's
// store sequence on pop and on use, and its reconnect procedure, over memory the frontend shares.
// Every field is accessed through std::atomic_ref: another process maps the same pages, and the
// order of our stores is what makes a kill between two of them recoverable.
#include "pepita/virtio/inflight.hpp"

#include <algorithm>
#include <atomic>
#include <utility>

#include "pepita/core/format.hpp"

namespace pepita::virtio {
namespace {

template <typename T>
T load(T& field) {
  return std::atomic_ref<T>(field).load(std::memory_order_acquire);
}
template <typename T>
void store(T& field, T value) {
  // Release: every earlier store of this sequence (and the used-ring writes before it) is in
  // memory before this one, whenever the backend is killed.
  std::atomic_ref<T>(field).store(value, std::memory_order_release);
}

}  // namespace

Result<InflightQueue> InflightQueue::open(std::span<std::byte> slice, uint16_t queue_size) {
  if (queue_size == 0) {
    return fail(ErrorCode::InvalidArgument, "inflight region for a queue of size 0");
  }
  const uint64_t need = inflight_queue_bytes(queue_size);
  if (slice.size() < need) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("inflight region slice of {} bytes, a queue of {} entries needs {}; "
                            "the frontend must pass the region GET_INFLIGHT_FD returned",
                            slice.size(), queue_size, need));
  }
  if (reinterpret_cast<uintptr_t>(slice.data()) % alignof(InflightDesc) != 0) {
    return fail(ErrorCode::InvalidArgument, "inflight region slice is not 8-byte aligned");
  }
  InflightQueue q;
  // SAFETY: the slice is at least header + queue_size entries long and 8-byte aligned (checked
  // above); both types are trivially copyable and every access goes through atomic_ref.
  q.header_ = reinterpret_cast<InflightHeader*>(slice.data());
  q.desc_ = reinterpret_cast<InflightDesc*>(slice.data() + sizeof(InflightHeader));
  q.size_ = queue_size;
  const uint16_t version = load(q.header_->version);
  if (version == 0) {
    // A fresh region (the frontend zeroed it, or we did in GET_INFLIGHT_FD): nothing in flight.
    store(q.header_->desc_num, queue_size);
    store(q.header_->version, kInflightVersion);
    q.fresh_ = true;
    return q;
  }
  if (version != kInflightVersion) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("inflight region version {}, this backend speaks version {}; give it "
                            "a fresh region (GET_INFLIGHT_FD)",
                            version, kInflightVersion));
  }
  const uint16_t desc_num = load(q.header_->desc_num);
  if (desc_num != queue_size) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("inflight region was made for queue size {}, the vring has {}; the "
                            "queue size must not change across a reconnect",
                            desc_num, queue_size));
  }
  // Later pops continue after every counter in flight (also when no recovery runs).
  for (uint16_t i = 0; i < queue_size; ++i) {
    if (load(q.desc_[i].inflight) != 0) {
      q.counter_ = std::max(q.counter_, load(q.desc_[i].counter) + 1);
    }
  }
  return q;
}

Result<std::vector<uint16_t>> InflightQueue::recover(uint16_t ring_used_idx) {
  if (!valid()) return fail(ErrorCode::InvalidArgument, "inflight queue not opened");
  if (fresh_) return std::vector<uint16_t>{};
  const uint16_t recorded = load(header_->used_idx);
  if (recorded != ring_used_idx) {
    // Killed after the used idx moved but before the batch was cleared: those heads were used.
    const auto batch = static_cast<uint16_t>(ring_used_idx - recorded);
    if (batch > size_) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("inflight region records used index {}, the ring is at {}: a batch "
                              "longer than the queue ({}); the region does not belong to this ring",
                              recorded, ring_used_idx, size_));
    }
    uint16_t head = load(header_->last_batch_head);
    for (uint16_t n = 0; n < batch; ++n) {
      if (head >= size_) {
        return fail(ErrorCode::InvalidArgument,
                    pepita::fmt("inflight region's last batch lists head {} of a {}-entry queue",
                                head, size_));
      }
      store(desc_[head].inflight, uint8_t{0});
      head = load(desc_[head].next);
    }
    store(header_->used_idx, ring_used_idx);
  }
  std::vector<std::pair<uint64_t, uint16_t>> found;
  for (uint16_t i = 0; i < size_; ++i) {
    const uint8_t flag = load(desc_[i].inflight);
    if (flag > 1) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("inflight region marks head {} with {}, not 0 or 1", i,
                              static_cast<unsigned>(flag)));
    }
    if (flag == 1) found.emplace_back(load(desc_[i].counter), i);
  }
  std::sort(found.begin(), found.end());  // by counter; a tie (corrupt region) by head
  std::vector<uint16_t> heads;
  heads.reserve(found.size());
  for (const auto& [counter, head] : found) {
    heads.push_back(head);
    counter_ = std::max(counter_, counter + 1);
  }
  return heads;
}

uint16_t InflightQueue::inflight_count() const noexcept {
  uint16_t n = 0;
  for (uint16_t i = 0; i < size_; ++i) n += load(desc_[i].inflight) != 0 ? 1 : 0;
  return n;
}

void InflightQueue::popped(uint16_t head) noexcept {
  if (head >= size_) return;  // Queue::walk refused such a head already
  store(desc_[head].counter, counter_++);
  store(desc_[head].inflight, uint8_t{1});
}

void InflightQueue::before_used(uint16_t head) noexcept {
  if (head >= size_) return;
  store(desc_[head].next, load(header_->last_batch_head));
  store(header_->last_batch_head, head);
}

void InflightQueue::after_used(uint16_t head, uint16_t used_idx) noexcept {
  if (head < size_) store(desc_[head].inflight, uint8_t{0});
  store(header_->used_idx, used_idx);
}

}  // namespace pepita::virtio
