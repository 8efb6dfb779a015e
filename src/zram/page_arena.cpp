// PageArena: ZsPool's pointer interface over a memory::PagePool of runs up to kMaxRun pages.
#include "detail/page_arena.hpp"

namespace pepita::zram::detail {

PageArena::PageArena()
    : pool_(memory::PagePoolConfig{.chunk_pages = 1024, .max_run_pages = kMaxRun}) {}

std::byte* PageArena::alloc(uint32_t pages) noexcept {
  try {
    auto pfn = pool_.alloc_run(pages);
    return pfn ? pool_.data(*pfn) : nullptr;
  } catch (...) {
    return nullptr;  // an error message that could not be allocated: report "no memory"
  }
}

void PageArena::free(std::byte* run, uint32_t pages) noexcept {
  try {
    // ZsPool frees only what it allocated, with its length; a failure here is a ZsPool bug and
    // leaves the run allocated (leaked), never on a free list twice.
    (void)pool_.free_run(pool_.pfn_of(run), pages);
  } catch (...) {
  }
}

uint64_t PageArena::cached_pages() const noexcept { return pool_.cached_pages(); }

}  // namespace pepita::zram::detail
