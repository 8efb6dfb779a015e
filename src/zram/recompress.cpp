// ZramStore recompression, after the kernel's CONFIG_ZRAM_MULTI_COMP (zram_drv.c
// recompress_store / zram_recompress): pages written with the primary codec are re-encoded with the
// secondary one, idle pages (the `idle` attribute) or all, above a size threshold; a page that
// would not shrink is kept and marked so it is not tried again. Unlike the kernel, which holds the
// slot lock across the encode, the encode runs unlocked (see kSlotPending in detail/slot.hpp), so a
// reader or writer of the page waits at most for one decode.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "detail/codec.hpp"
#include "detail/slot.hpp"
#include "detail/store_probe.hpp"
#include "detail/zs_pool.hpp"
#include "pepita/core/format.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {

using detail::ObjRef;
using detail::Slot;
using detail::ZsPool;

uint64_t ZramStore::mark_idle() noexcept {
  uint64_t marked = 0;
  for (uint64_t i = 0; i < num_pages_; ++i) {
    lock(i);
    Slot& slot = slots_[i];
    if (slot.kind != PageInfo::Kind::Empty) {
      slot.flags |= detail::kSlotIdle;
      ++marked;
    }
    unlock(i);
  }
  return marked;
}

void ZramStore::recompress_page(uint64_t index, const RecompressOptions& options, bool age,
                                RecompressResult& result) noexcept {
  alignas(64) std::byte page[kPageSize];
  lock(index);
  Slot& slot = slots_[index];
  if (slot.kind == PageInfo::Kind::Empty || slot.kind == PageInfo::Kind::Same) {
    unlock(index);
    return;
  }
  ++result.examined;
  const bool idle = (slot.flags & detail::kSlotIdle) != 0;
  const bool candidate = (slot.flags & (detail::kSlotSecondary | detail::kSlotNoShrink)) == 0 &&
                         slot.size >= options.threshold;
  if (!candidate || (options.pages == RecompressOptions::Pages::Idle && !idle)) {
    // The background's lap marks what it passes; a page still marked on the next lap is idle.
    if (age) slot.flags |= detail::kSlotIdle;
    unlock(index);
    ++result.skipped;
    return;
  }
  const PageInfo::Kind old_kind = slot.kind;
  const uint32_t old_size = slot.size;
  if (load_locked(index, page) != 0) {  // corrupt: leave it for the reader to report
    unlock(index);
    ++result.skipped;
    return;
  }
  slot.flags |= detail::kSlotPending;
  unlock(index);

  // The slow part, unlocked. A result that would not take a smaller slab slot saves nothing.
  thread_local std::byte scratch[detail::kCompressScratch];
  const RecompressConfig& r = config_.recompress;
  const detail::CodecParams params{r.algorithm, r.zstd_level, r.lz4_acceleration};
  const uint32_t limit = std::min(old_size, huge_threshold());
  const int encoded = detail::compress_page(params, page, scratch, limit - 1);
  const uint32_t old_slot =
      old_kind == PageInfo::Kind::Huge ? kPageSize : pool_->class_size(old_size);
  const bool shrinks = encoded > 0 && pool_->class_size(static_cast<uint32_t>(encoded)) < old_slot;
  ObjRef ref;
  if (shrinks &&
      pool_->alloc(static_cast<uint32_t>(encoded), static_cast<uint32_t>(index), ref) == 0) {
    std::memcpy(ZsPool::address(ref), scratch, static_cast<size_t>(encoded));
  }
  if (detail::recompress_midpoint != nullptr)
    detail::recompress_midpoint(detail::recompress_midpoint_context, index);

  lock(index);
  if ((slot.flags & detail::kSlotPending) == 0) {
    // Rewritten or discarded meanwhile: the new content stays, this encoding is stale.
    unlock(index);
    if (ref.valid()) pool_->free(ref);
    ++result.raced;
    return;
  }
  slot.flags &= static_cast<uint8_t>(~detail::kSlotPending);
  if (!ref.valid()) {
    if (!shrinks && encoded >= 0) {
      slot.flags |= detail::kSlotNoShrink;  // as the kernel's ZRAM_INCOMPRESSIBLE
      unlock(index);
      recomp_not_shrunk_.fetch_add(1, std::memory_order_relaxed);
      ++result.not_shrunk;
    } else {
      unlock(index);  // codec error or no memory (mem_limit): kept, may be tried again
      ++result.skipped;
    }
    return;
  }
  // Same bytes as encoded (the pending mark survived), maybe moved by compaction: free them where
  // the slot points now.
  pool_->free({slot.zspage, slot.obj});
  slot.kind = PageInfo::Kind::Compressed;
  slot.size = static_cast<uint16_t>(encoded);
  slot.zspage = ref.zspage;
  slot.obj = static_cast<uint16_t>(ref.obj);
  slot.flags |= detail::kSlotSecondary;
  unlock(index);
  if (old_kind == PageInfo::Kind::Huge) huge_pages_.fetch_sub(1, std::memory_order_relaxed);
  const uint64_t saved = old_size - static_cast<uint32_t>(encoded);
  compr_data_size_.fetch_sub(saved, std::memory_order_relaxed);
  recomp_pages_.fetch_add(1, std::memory_order_relaxed);
  pages_recompressed_.fetch_add(1, std::memory_order_relaxed);
  recomp_bytes_saved_.fetch_add(saved, std::memory_order_relaxed);
  ++result.recompressed;
  result.bytes_saved += saved;
}

Result<RecompressResult> ZramStore::recompress(const RecompressOptions& options) {
  using pepita::fmt;
  if (!config_.recompress.enabled)
    return fail(ErrorCode::InvalidArgument,
                "zram recompress: the store has no secondary codec; create it with "
                "recompress.enabled = true (e.g. primary lz4, recompress zstd)");
  if (options.threshold > kPageSize)
    return fail(ErrorCode::InvalidArgument,
                fmt("zram recompress threshold {} is over a page; use 0..4096 stored bytes",
                    options.threshold));
  const uint64_t end =
      options.max_pages == 0 ? num_pages_ : std::min(num_pages_, options.max_pages);
  RecompressResult result;
  const std::lock_guard guard(recomp_mutex_);
  for (uint64_t i = 0; i < end; ++i) recompress_page(i, options, false, result);
  return result;
}

void ZramStore::background_loop(std::stop_token stop) noexcept {
  const RecompressConfig& r = config_.recompress;
  const RecompressOptions options{.pages = r.background_idle_only ? RecompressOptions::Pages::Idle
                                                                  : RecompressOptions::Pages::All};
  std::unique_lock guard(recomp_mutex_);
  while (!stop.stop_requested()) {
    RecompressResult pass;
    for (uint32_t n = 0; n < r.batch_pages && !stop.stop_requested(); ++n) {
      recompress_page(recomp_cursor_, options, r.background_idle_only, pass);
      recomp_cursor_ = recomp_cursor_ + 1 == num_pages_ ? 0 : recomp_cursor_ + 1;
    }
    // interval_ms 0 runs passes back to back while they find work, and naps 1 ms when one found
    // none, rather than spinning over a store with nothing left to do.
    const uint32_t pause = r.interval_ms == 0 && pass.recompressed == 0 ? 1 : r.interval_ms;
    if (pause == 0) {  // no sleep: still let recompress() and reset() take the mutex
      guard.unlock();
      std::this_thread::yield();
      guard.lock();
      continue;
    }
    // Sleeping releases recomp_mutex_; a stop request wakes it at once.
    recomp_wake_.wait_for(guard, stop, std::chrono::milliseconds(pause), [] { return false; });
  }
}

}  // namespace pepita::zram
