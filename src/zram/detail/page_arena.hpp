#pragma once
// PageArena: where ZsPool's zspages get their pages. The kernel's zsmalloc takes pages from the
// buddy allocator at no fault cost; in user space every fresh page costs a page fault, which
// dominated the write path. So pages come from a memory::PagePool: one reservation committed in
// chunks advised for transparent huge pages (one fault per 2 MiB), with freed zspage runs kept
// for reuse per run length, and past a cap handed back to the kernel at once (MADV_DONTNEED), so
// a discard returns memory instead of only lowering the counters. This adapter keeps ZsPool's
// pointer interface.

#include <cstddef>
#include <cstdint>

#include "pepita/memory/page_allocator.hpp"

namespace pepita::zram::detail {

class PageArena {
 public:
  static constexpr uint32_t kMaxRun = 8;  // pages; ZsPool's longest zspage

  PageArena();
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  /// A page-aligned run of `pages` (1..kMaxRun) pages, or nullptr when memory cannot be mapped.
  std::byte* alloc(uint32_t pages) noexcept;
  /// Returns a run from alloc() with the same `pages`.
  void free(std::byte* run, uint32_t pages) noexcept;

  /// Pages in freed runs still resident (kept for reuse), for tests and diagnostics.
  uint64_t cached_pages() const noexcept;

 private:
  memory::PagePool pool_;
};

}  // namespace pepita::zram::detail
