// PagePool: a PROT_NONE reservation committed chunk by chunk, exact-length free lists, and an
// allocated/run-head bitmap that makes every free checkable.
#include "pepita/memory/page_allocator.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <new>

#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/memory.hpp"

namespace pepita::memory {
namespace {
constexpr uint64_t kMaxReservePages = uint64_t{1} << 32;  // 16 TiB of address space
}  // namespace

int Protection::to_prot() const noexcept {
  return (is_readable() ? PROT_READ : 0) | (is_writable() ? PROT_WRITE : 0) |
         (is_executable() ? PROT_EXEC : 0);
}

PagePool::PagePool(PagePoolConfig config) : config_(config) {}

PagePool::~PagePool() {
  // munmap of the reservation drops every page and lock; nothing is handed back one by one.
}

Result<Pfn> PagePool::alloc_pages(uint32_t order, AllocFlags flags) {
  if (order >= 32 || (uint64_t{1} << order) > config_.max_run_pages)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePool::alloc_pages: order {} is above this pool's largest run of {} "
                    "pages; use an order up to {}",
                    order, config_.max_run_pages, std::bit_width(config_.max_run_pages) - 1));
  return alloc_run(uint32_t{1} << order, flags);
}

Result<void> PagePool::free_pages(Pfn pfn, uint32_t order) {
  if (order >= 32)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePool::free_pages: order {} is invalid", order));
  return free_run(pfn, uint32_t{1} << order);
}

std::size_t PagePool::free_count() const {
  std::lock_guard guard(lock_);
  return static_cast<std::size_t>(config_.reserve_pages - in_use_);
}

uint64_t PagePool::in_use_pages() const {
  std::lock_guard guard(lock_);
  return in_use_;
}

uint64_t PagePool::cached_pages() const {
  std::lock_guard guard(lock_);
  return resident_cached_;
}

Result<Pfn> PagePool::alloc_run(uint32_t pages, AllocFlags flags) {
  if (pages == 0 || pages > config_.max_run_pages)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePool::alloc_run: {} pages; ask for 1..{}", pages, config_.max_run_pages));
  if ((flags.bits & ~AllocFlags::kKnownBits) != 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePool: unknown AllocFlags bits {}; use NONE, WAIT, ZERO, DMA, HIGHMEM",
                    flags.bits & ~AllocFlags::kKnownBits));
  std::unique_lock guard(lock_);
  auto index = take_run(pages, flags);
  if (!index && index.error().code() == ErrorCode::ResourceExhausted && flags.can_wait()) {
    const auto deadline = std::chrono::steady_clock::now() + config_.wait_limit;
    while (!index && index.error().code() == ErrorCode::ResourceExhausted) {
      if (freed_.wait_until(guard, deadline) == std::cv_status::timeout) {
        index = take_run(pages, flags);
        if (!index && index.error().code() == ErrorCode::ResourceExhausted)
          return fail(ErrorCode::TimedOut,
                      fmt("PagePool: no {} free pages within {} ms of waiting (AllocFlags::WAIT); "
                          "free pages or raise PagePoolConfig::reserve_pages",
                          pages, config_.wait_limit.count()));
        break;
      }
      index = take_run(pages, flags);
    }
  }
  if (!index) return std::unexpected(index.error());
  return Pfn(config_.first_pfn + *index);
}

Result<uint64_t> PagePool::take_run(uint32_t pages, AllocFlags flags) {
  if (config_.reserve_pages == 0 || config_.chunk_pages == 0 || config_.max_run_pages == 0 ||
      config_.reserve_pages > kMaxReservePages)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePoolConfig: reserve_pages (1..{}), chunk_pages and max_run_pages must be "
                    "non-zero",
                    kMaxReservePages));
  if (free_.empty()) free_.resize(size_t{config_.max_run_pages} + 1);
  uint64_t index = 0;
  bool resident = false;  // reused pages that may hold old data
  auto& list = free_[pages];
  if (!list.empty()) {
    const FreeRun run = list.back();
    list.pop_back();
    free_listed_ -= pages;
    if (run.resident) resident_cached_ -= pages;
    index = run.index;
    resident = run.resident;
  } else if (config_.reserve_pages - frontier_ < pages) {
    // The frontier is used up: split the shortest longer free run, so that every freed page can
    // be handed out again (the remainder goes back on its own list).
    uint32_t longer = pages + 1;
    while (longer <= config_.max_run_pages && free_[longer].empty()) ++longer;
    if (longer > config_.max_run_pages)
      return fail(ErrorCode::ResourceExhausted,
                  fmt("PagePool: all {} reserved pages are handed out or fragmented ({} in use); "
                      "free pages or raise PagePoolConfig::reserve_pages",
                      config_.reserve_pages, in_use_));
    const FreeRun run = free_[longer].back();
    free_[longer - pages].push_back({run.index + pages, run.resident});  // may throw: nothing moved
    free_[longer].pop_back();
    free_listed_ -= pages;
    if (run.resident) resident_cached_ -= pages;
    index = run.index;
    resident = run.resident;
  } else {
    if (frontier_ + pages > committed_) PEPITA_TRY_VOID(grow(frontier_ + pages));
    index = frontier_;
    frontier_ += pages;
  }
  std::byte* bytes = base_ + (index << PAGE_SHIFT);
  const size_t len = size_t{pages} << PAGE_SHIFT;
  if (flags.needs_dma()) {
    if (const int rc = sys::mlock(bytes, len); rc < 0) {
      free_[pages].push_back({index, resident});  // back where it came from
      free_listed_ += pages;
      if (resident) resident_cached_ += pages;
      if (rc == -ENOMEM || rc == -EPERM)
        return fail(ErrorCode::ResourceExhausted,
                    fmt("PagePool: cannot lock {} pages for AllocFlags::DMA: over RLIMIT_MEMLOCK; "
                        "raise it (`ulimit -l`, LimitMEMLOCK=, /etc/security/limits.conf) or "
                        "allocate without DMA",
                        pages),
                    -rc);
      return fail_errno(rc, "PagePool: mlock");
    }
    locked_[index] = 1;
  }
  if (flags.should_zero() && resident) std::memset(bytes, 0, len);
  mark(index, pages, true);
  in_use_ += pages;
  return index;
}

Result<void> PagePool::grow(uint64_t at_least) {
  if (!reservation_.valid()) {
    // SAFETY: a fresh PROT_NONE reservation; pages become usable only once grow() commits them.
    reservation_ = PEPITA_TRY(Mapping::map(config_.reserve_pages << PAGE_SHIFT, PROT_NONE,
                                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
                                           "PagePool reservation"));
    base_ = reservation_.bytes();
  }
  uint64_t target = std::max<uint64_t>(at_least, committed_ + config_.chunk_pages);
  target = std::min(target, config_.reserve_pages);
  std::byte* from = base_ + (committed_ << PAGE_SHIFT);
  const size_t len = static_cast<size_t>(target - committed_) << PAGE_SHIFT;
  try {
    used_.resize((target + 63) / 64);
    head_.resize((target + 63) / 64);
    locked_.resize(target);
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::ResourceExhausted, "PagePool: out of memory for the page bitmaps");
  }
  if (const int rc = sys::mprotect(from, len, PROT_READ | PROT_WRITE); rc < 0)
    return fail_errno(rc, "PagePool: mprotect (commit) of a new chunk");
  // Best effort: without THP the pool still works, with one fault per page.
  (void)sys::madvise(from, len, MADV_HUGEPAGE);
  committed_ = target;
  return {};
}

void PagePool::mark(uint64_t index, uint32_t pages, bool allocated) noexcept {
  for (uint64_t i = index; i < index + pages; ++i) {
    const uint64_t bit = uint64_t{1} << (i % 64);
    used_[i / 64] = allocated ? (used_[i / 64] | bit) : (used_[i / 64] & ~bit);
    if (i == index) head_[i / 64] = allocated ? (head_[i / 64] | bit) : (head_[i / 64] & ~bit);
  }
}

Result<void> PagePool::check_run(Pfn pfn, uint32_t pages, const char* what) const {
  if (pfn.raw() < config_.first_pfn || pfn.raw() - config_.first_pfn >= committed_)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: frame {} was not handed out by this pool (its frames are {}..{})", what,
                    pfn.raw(), config_.first_pfn, config_.first_pfn + committed_));
  const uint64_t index = pfn.raw() - config_.first_pfn;
  if (!test(head_, index))
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: frame {} is not the start of an allocated run (freed twice, or never "
                    "allocated)",
                    what, pfn.raw()));
  uint64_t length = 1;
  while (index + length < committed_ && test(used_, index + length) && !test(head_, index + length))
    ++length;
  if (length != pages)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: the run at frame {} is {} pages, not {}; pass the size it was "
                    "allocated with",
                    what, pfn.raw(), length, pages));
  return {};
}

Result<void> PagePool::free_run(Pfn pfn, uint32_t pages) {
  std::lock_guard guard(lock_);
  PEPITA_TRY_VOID(check_run(pfn, pages, "PagePool::free"));
  const uint64_t index = pfn.raw() - config_.first_pfn;
  std::byte* bytes = base_ + (index << PAGE_SHIFT);
  const size_t len = size_t{pages} << PAGE_SHIFT;
  if (pages > config_.max_run_pages)
    return fail(ErrorCode::Internal, "PagePool::free: run longer than max_run_pages");
  if (free_.empty()) free_.resize(size_t{config_.max_run_pages} + 1);
  try {
    free_[pages].reserve(free_[pages].size() + 1);
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::ResourceExhausted, "PagePool::free: out of memory for the free list");
  }
  // A run protect() changed gets read-write back, so whoever is handed it next can use it.
  if (const int rc = sys::mprotect(bytes, len, PROT_READ | PROT_WRITE); rc < 0)
    return fail_errno(rc, "PagePool::free: mprotect back to read-write");
  if (locked_[index] != 0) {
    (void)sys::munlock(bytes, len);
    locked_[index] = 0;
  }
  mark(index, pages, false);
  in_use_ -= pages;
  // Keep up to a quarter of the live size (at least cache_floor_pages) resident for reuse; give
  // the rest back to the kernel now (it faults back in as zeros).
  const uint64_t cap = std::max(config_.cache_floor_pages, in_use_ / 4);
  bool resident = true;
  if (resident_cached_ + pages > cap) {
    // SAFETY: the run is ours and no longer handed out; its contents may be discarded.
    resident = sys::madvise(bytes, len, MADV_DONTNEED) != 0;
  }
  if (resident) resident_cached_ += pages;
  free_[pages].push_back({index, resident});  // reserved above: cannot throw
  free_listed_ += pages;
  freed_.notify_all();
  return {};
}

Result<void> PagePool::protect(Pfn pfn, uint32_t pages, Protection protection) {
  if ((protection.bits & ~7u) != 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("PagePool::protect: unknown Protection bits {}; use NONE, READ, WRITE, EXEC",
                    protection.bits & ~7u));
  std::lock_guard guard(lock_);
  PEPITA_TRY_VOID(check_run(pfn, pages, "PagePool::protect"));
  std::byte* bytes = base_ + ((pfn.raw() - config_.first_pfn) << PAGE_SHIFT);
  if (const int rc = sys::mprotect(bytes, size_t{pages} << PAGE_SHIFT, protection.to_prot());
      rc < 0)
    return fail_errno(rc, "PagePool::protect: mprotect");
  return {};
}

Result<std::span<std::byte>> PagePool::span(Pfn pfn, uint32_t pages) const {
  std::lock_guard guard(lock_);
  PEPITA_TRY_VOID(check_run(pfn, pages, "PagePool::span"));
  return std::span<std::byte>(data(pfn), size_t{pages} << PAGE_SHIFT);
}

}  // namespace pepita::memory
