#pragma once
// PageArena: where ZsPool's zspages get their pages. The kernel's zsmalloc takes pages from the
// buddy allocator at no fault cost; in user space every fresh page costs a page fault, which
// dominated the write path. So pages come from large anonymous mappings advised for transparent
// huge pages (one fault per 2 MiB), and freed zspage runs are kept for reuse, per run length.
// Past a cap, freed runs are handed back to the kernel at once (MADV_DONTNEED), so a discard
// returns memory instead of only lowering the counters.

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "pepita/core/mapping.hpp"

namespace pepita::zram::detail {

class PageArena {
 public:
  static constexpr uint32_t kMaxRun = 8;  // pages; ZsPool's longest zspage

  PageArena() = default;
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  /// A page-aligned run of `pages` (1..kMaxRun) pages, or nullptr when memory cannot be mapped.
  std::byte* alloc(uint32_t pages) noexcept;
  /// Returns a run from alloc() with the same `pages`.
  void free(std::byte* run, uint32_t pages) noexcept;

  /// Pages in freed runs still resident (kept for reuse), for tests and diagnostics.
  uint64_t cached_pages() const noexcept;

 private:
  struct FreeRun {
    std::byte* run;
    bool resident;
  };
  bool grow() noexcept;

  // Chunks double from 1 MiB to 32 MiB (virtual; backed as touched) so a small store stays small;
  // chunks of 4 MiB and up are advised for huge pages.
  static constexpr size_t kFirstChunkBytes = 1u << 20;
  static constexpr size_t kMaxChunkBytes = 32u << 20;
  static constexpr size_t kHugeAdviceBytes = 4u << 20;
  size_t next_chunk_bytes_ = kFirstChunkBytes;
  mutable std::mutex lock_;
  std::vector<Mapping> chunks_;
  std::byte* bump_ = nullptr;
  std::byte* bump_end_ = nullptr;
  std::vector<FreeRun> free_[kMaxRun + 1];
  uint64_t in_use_pages_ = 0;
  uint64_t resident_cached_ = 0;
};

}  // namespace pepita::zram::detail
