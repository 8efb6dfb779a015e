// Split virtqueue, device side: chain walks capped at the queue / indirect table size, every
// address range-checked, any violation breaks the queue (-> NEEDS_RESET), never the process.
#include "pepita/virtio/queue.hpp"

#include <string>

#include "detail/ring_access.hpp"
#include "pepita/core/format.hpp"

namespace pepita::virtio {
namespace v = abi::virtio;
namespace {

PhysAddr offset(PhysAddr base, uint64_t off) { return PhysAddr(base.raw() + off); }

}  // namespace

Result<Queue> Queue::activate(const QueueLayout& layout, const GuestMemory& ram,
                              QueueFeatures features, uint16_t next_avail, uint16_t max_size) {
  if (!abi::is_power_of_two(layout.size) || layout.size > max_size) {
    return fail(ErrorCode::InvalidArgument, "virtqueue size " + std::to_string(layout.size) +
                                                " is not a power of two in 1.." +
                                                std::to_string(max_size));
  }
  if (!abi::is_aligned(layout.desc.raw(), v::DESC_ALIGN) ||
      !abi::is_aligned(layout.avail.raw(), v::AVAIL_ALIGN) ||
      !abi::is_aligned(layout.used.raw(), v::USED_ALIGN)) {
    return fail(ErrorCode::InvalidArgument,
                "virtqueue parts misaligned (descriptor table 16, avail 2, used 4 bytes)");
  }
  // The whole of each part must be RAM; the per-access checks then cannot fail unless the memory
  // table changes under a running queue (which the transports prevent).
  PEPITA_TRY(ram.span(layout.desc, v::desc_table_bytes(layout.size)));
  PEPITA_TRY(ram.span(layout.avail, v::avail_ring_bytes(layout.size)));
  PEPITA_TRY(ram.span(layout.used, v::used_ring_bytes(layout.size)));
  // The used ring is the one part the device writes: over the driver's parts, each used entry
  // would rewrite descriptors or the avail index, and a device that serves until the avail ring
  // is empty would never stop (a fuzzer found exactly that hang).
  auto overlaps = [](PhysAddr a, uint64_t a_len, PhysAddr b, uint64_t b_len) {
    return a.raw() < b.raw() + b_len && b.raw() < a.raw() + a_len;
  };
  const uint64_t used_len = v::used_ring_bytes(layout.size);
  if (overlaps(layout.used, used_len, layout.avail, v::avail_ring_bytes(layout.size)) ||
      overlaps(layout.used, used_len, layout.desc, v::desc_table_bytes(layout.size))) {
    return fail(ErrorCode::InvalidArgument,
                "virtqueue used ring overlaps the descriptor table or the avail ring; the driver "
                "must give the ring the device writes memory of its own");
  }
  Queue q;
  q.layout_ = layout;
  q.features_ = features;
  q.ram_ = &ram;
  q.next_avail_ = next_avail;
  // The used index continues where the driver sees it (a queue re-activated after
  // GET_VRING_BASE resumes with both indices equal to the saved base).
  auto used_idx = PEPITA_TRY(ram.span(offset(layout.used, 2), 2));
  q.next_used_ = detail::read_once_u16(used_idx);
  return q;
}

std::unexpected<Error> Queue::malformed(const std::string& what) {
  broken_ = true;
  return fail(ErrorCode::Protocol,
              "virtqueue malformed by the driver: " + what + "; the device needs a reset");
}

Result<uint16_t> Queue::load_avail_idx() const {
  auto idx = PEPITA_TRY(ram_->span(offset(layout_.avail, 2), 2));
  // Acquire: the driver wrote the ring entries and descriptors before it published this index.
  return detail::load_acquire_u16(idx);
}

Result<uint16_t> Queue::pending_count() {
  if (broken_) return fail(ErrorCode::Protocol, "virtqueue is broken; the device needs a reset");
  const uint16_t avail_idx = PEPITA_TRY(load_avail_idx());
  const auto pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending > layout_.size)
    return malformed("avail index " + std::to_string(avail_idx) + " is " + std::to_string(pending) +
                     " entries ahead of " + std::to_string(next_avail_) +
                     ", more than the queue size " + std::to_string(layout_.size));
  return static_cast<uint16_t>(pending + (resubmit_.size() - resubmit_next_));
}

Result<uint16_t> Queue::track_inflight(InflightQueue region, bool recover,
                                       std::vector<uint16_t> carried) {
  if (!region.valid() || region.size() != layout_.size) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("inflight region for queue size {}, the vring has {}; the frontend "
                            "must size the region (GET_INFLIGHT_FD) with the vring's size",
                            region.size(), layout_.size));
  }
  std::vector<uint16_t> heads = std::move(carried);
  uint16_t next_avail = next_avail_;
  if (recover && !region.was_fresh()) {
    heads = PEPITA_TRY(region.recover(next_used_));
    // Every head the previous backend popped is either in the used ring or still in flight.
    const uint16_t avail_idx = PEPITA_TRY(load_avail_idx());
    const auto outstanding = static_cast<uint16_t>(avail_idx - next_used_);
    if (outstanding > layout_.size || heads.size() > outstanding) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("inflight region marks {} heads in flight but the driver has {} "
                              "outstanding (avail {}, used {}); the region does not belong to "
                              "this ring",
                              heads.size(), outstanding, avail_idx, next_used_));
    }
    next_avail = static_cast<uint16_t>(next_used_ + heads.size());
  }
  for (uint16_t h : heads) {
    if (h >= layout_.size) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("resubmitted head {} >= queue size {}", h, layout_.size));
    }
  }
  inflight_ = region;
  resubmit_ = std::move(heads);
  resubmit_next_ = 0;
  next_avail_ = next_avail;
  return static_cast<uint16_t>(resubmit_.size());
}

std::vector<uint16_t> Queue::take_unresubmitted() {
  std::vector<uint16_t> rest(resubmit_.begin() + static_cast<std::ptrdiff_t>(resubmit_next_),
                             resubmit_.end());
  resubmit_.clear();
  resubmit_next_ = 0;
  return rest;
}

Result<bool> Queue::pop(Chain& out) {
  if (broken_) return fail(ErrorCode::Protocol, "virtqueue is broken; the device needs a reset");
  auto r = pop_unchecked(out);
  if (!r) broken_ = true;
  return r;
}

Result<bool> Queue::pop_unchecked(Chain& out) {
  if (resubmit_next_ < resubmit_.size()) {
    // A head the previous backend popped and never returned: it keeps its mark and counter.
    PEPITA_TRY_VOID(walk(resubmit_[resubmit_next_], out));
    ++resubmit_next_;
    return true;
  }
  const uint16_t avail_idx = PEPITA_TRY(load_avail_idx());
  const uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending == 0) return false;
  if (pending > layout_.size) {
    return malformed("avail index " + std::to_string(avail_idx) + " is " + std::to_string(pending) +
                     " entries ahead of " + std::to_string(next_avail_) +
                     ", more than the queue size " + std::to_string(layout_.size));
  }
  const uint64_t slot = next_avail_ & (layout_.size - 1);
  const uint16_t head = PEPITA_TRY(ram_->read<uint16_t>(offset(layout_.avail, 4 + 2 * slot)));
  if (auto w = walk(head, out); !w) {
    broken_ = true;
    return std::unexpected(std::move(w).error());
  }
  if (inflight_.valid()) inflight_.popped(head);
  ++next_avail_;
  return true;
}

Result<void> Queue::walk(uint16_t head, Chain& out) const {
  auto bad = [](const std::string& what) {
    return fail(ErrorCode::Protocol,
                "virtqueue malformed by the driver: " + what + "; the device needs a reset");
  };
  out.head = head;
  out.segments.clear();
  out.readable_bytes = 0;
  out.writable_bytes = 0;
  if (head >= layout_.size) {
    return bad("chain head " + std::to_string(head) + " >= queue size " +
               std::to_string(layout_.size));
  }
  PhysAddr table = layout_.desc;
  uint32_t table_len = layout_.size;
  uint32_t idx = head;
  uint32_t visited = 0;
  bool indirect = false;
  bool seen_writable = false;
  for (;;) {
    // A chain visits each descriptor of its table at most once; more means a loop.
    if (++visited > table_len) {
      return bad("descriptor chain longer than its table (" + std::to_string(table_len) +
                 " entries): a loop");
    }
    const auto d = PEPITA_TRY(ram_->read<v::Desc>(offset(table, 16ull * idx)));
    if ((d.flags & v::DESC_F_INDIRECT) != 0) {
      if (!features_.indirect)
        return bad("INDIRECT descriptor without VIRTIO_RING_F_INDIRECT_DESC");
      if (indirect) return bad("indirect descriptor inside an indirect table");
      if ((d.flags & v::DESC_F_NEXT) != 0) return bad("descriptor has both INDIRECT and NEXT");
      if (d.len == 0 || d.len % sizeof(v::Desc) != 0 ||
          d.len / sizeof(v::Desc) > v::MAX_QUEUE_SIZE) {
        return bad("indirect table of " + std::to_string(d.len) +
                   " bytes (must be a non-zero multiple of 16, at most 32768 entries)");
      }
      if (auto s = ram_->span(PhysAddr(d.addr), d.len); !s) return bad(s.error().message());
      table = PhysAddr(d.addr);
      table_len = d.len / sizeof(v::Desc);
      idx = 0;
      visited = 0;
      indirect = true;
      continue;
    }
    const bool writable = (d.flags & v::DESC_F_WRITE) != 0;
    if (!writable && seen_writable) return bad("device-readable descriptor after a writable one");
    seen_writable = seen_writable || writable;
    if (auto s = ram_->span(PhysAddr(d.addr), d.len); !s) return bad(s.error().message());
    // Totals: at most 32768 * 32768 descriptors of < 4 GiB each, so no uint64 overflow.
    (writable ? out.writable_bytes : out.readable_bytes) += d.len;
    out.segments.push_back(Segment{PhysAddr(d.addr), d.len, writable});
    if ((d.flags & v::DESC_F_NEXT) == 0) return {};
    idx = d.next;
    if (idx >= table_len) {
      return bad("next index " + std::to_string(idx) + " >= table size " +
                 std::to_string(table_len));
    }
  }
}

Result<void> Queue::add_used(uint16_t head, uint32_t written) {
  if (broken_) return fail(ErrorCode::Protocol, "virtqueue is broken; the device needs a reset");
  const uint64_t slot = next_used_ & (layout_.size - 1);
  PEPITA_TRY_VOID(ram_->write(offset(layout_.used, 4 + 8 * slot), v::UsedElem{head, written}));
  auto idx = PEPITA_TRY(ram_->span(offset(layout_.used, 2), 2));
  // Inflight tracking, a batch of one: link the head into the last batch, publish, then clear
  // it and record the index. Killed before the publish, the head is still in flight; after it,
  // the region's used index lags the ring's and recovery clears the batch.
  if (inflight_.valid()) inflight_.before_used(head);
  ++next_used_;
  // Release: the driver reads the element (and the data we wrote) after it sees this index.
  detail::store_release_u16(idx, next_used_);
  if (inflight_.valid()) inflight_.after_used(head, next_used_);
  return {};
}

Result<bool> Queue::should_notify() {
  // Our used-index store must be visible before we read the driver's suppression field, or we
  // may skip an interrupt the driver is about to wait for.
  detail::full_fence();
  if (!features_.event_idx) {
    const auto flags = PEPITA_TRY(ram_->read<uint16_t>(layout_.avail));
    return (flags & v::AVAIL_F_NO_INTERRUPT) == 0;
  }
  auto ev = PEPITA_TRY(ram_->span(offset(layout_.avail, 4 + 2ull * layout_.size), 2));
  const uint16_t used_event = detail::read_once_u16(ev);
  const uint16_t old = signalled_used_;
  const bool valid = signalled_valid_;
  signalled_used_ = next_used_;
  signalled_valid_ = true;
  return !valid || v::need_event(used_event, next_used_, old);
}

Result<bool> Queue::enable_kicks() {
  if (features_.event_idx) {
    auto ev = PEPITA_TRY(ram_->span(offset(layout_.used, 4 + 8ull * layout_.size), 2));
    // The driver kicks when its avail index passes this value.
    detail::store_release_u16(ev, next_avail_);
  }
  // Our avail_event store before our re-read of avail idx (the driver fences between its idx
  // store and its avail_event load): one of us sees the other's write, no lost kick.
  detail::full_fence();
  const uint16_t avail_idx = PEPITA_TRY(load_avail_idx());
  return avail_idx != next_avail_ || resubmit_next_ < resubmit_.size();
}

}  // namespace pepita::virtio
