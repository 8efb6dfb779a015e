// PageArena: THP-backed page runs with per-length free lists and a cap on cached memory.
#include "detail/page_arena.hpp"

#include <sys/mman.h>

#include <algorithm>

#include "detail/zs_pool.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::zram::detail {

bool PageArena::grow() noexcept {
  auto mapping =
      Mapping::map(next_chunk_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "zram page arena");
  if (!mapping) return false;
  // Best effort: without THP the arena still works, with one fault per page.
  // SAFETY: advice on a mapping we own, over its whole length.
  if (mapping->size() >= kHugeAdviceBytes)
    (void)sys::madvise(mapping->data(), mapping->size(), MADV_HUGEPAGE);
  next_chunk_bytes_ = std::min(next_chunk_bytes_ * 2, kMaxChunkBytes);
  // Leftover pages of the old chunk become short free runs rather than being lost.
  while (bump_ != nullptr && bump_ < bump_end_) {
    const auto left = static_cast<uint32_t>((bump_end_ - bump_) / kZsPageSize);
    const uint32_t take = std::min(left, kMaxRun);
    free_[take].push_back({bump_, false});
    bump_ += size_t{take} * kZsPageSize;
  }
  bump_ = mapping->bytes();
  bump_end_ = bump_ + mapping->size();
  try {
    chunks_.push_back(std::move(*mapping));
  } catch (const std::bad_alloc&) {
    bump_ = bump_end_ = nullptr;
    return false;
  }
  return true;
}

std::byte* PageArena::alloc(uint32_t pages) noexcept {
  std::lock_guard guard(lock_);
  std::byte* run = nullptr;
  if (!free_[pages].empty()) {
    const FreeRun reused = free_[pages].back();
    free_[pages].pop_back();
    if (reused.resident) resident_cached_ -= pages;
    run = reused.run;
  } else {
    const size_t bytes = size_t{pages} * kZsPageSize;
    if (bump_ == nullptr || static_cast<size_t>(bump_end_ - bump_) < bytes) {
      if (!grow()) return nullptr;
    }
    run = bump_;
    bump_ += bytes;
  }
  in_use_pages_ += pages;
  return run;
}

void PageArena::free(std::byte* run, uint32_t pages) noexcept {
  std::lock_guard guard(lock_);
  in_use_pages_ -= pages;
  // Keep up to a quarter of the live size (at least 8 MiB) resident for reuse; beyond that give
  // the pages back now.
  const uint64_t cap = std::max<uint64_t>(2048, in_use_pages_ / 4);
  bool resident = true;
  if (resident_cached_ + pages > cap) {
    // SAFETY: the run is ours and unused; its contents may be discarded.
    resident = sys::madvise(run, size_t{pages} * kZsPageSize, MADV_DONTNEED) != 0;
  }
  if (resident) resident_cached_ += pages;
  try {
    free_[pages].push_back({run, resident});
  } catch (const std::bad_alloc&) {
    // Losing track of one run leaks address space only; its pages were already released above
    // when over the cap, or stay mapped until the arena goes away.
  }
}

uint64_t PageArena::cached_pages() const noexcept {
  std::lock_guard guard(lock_);
  return resident_cached_;
}

}  // namespace pepita::zram::detail
