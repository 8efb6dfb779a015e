// PagePool through the PageAllocator interface: orders, AllocFlags, Protection, the errors of a
// double free, a foreign frame and exhaustion, and properties of alloc/free sequences. zram's
// ZsPool is its production user (tests/zram/zs_pool_test.cpp).
#include "pepita/memory/page_allocator.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

namespace pepita::memory {
namespace {

static_assert(AllocFlags().bits == AllocFlags::NONE.bits);
static_assert(AllocFlags().with_wait().can_wait() && !AllocFlags().can_wait());
static_assert(AllocFlags().with_zero().should_zero() && AllocFlags().with_dma().needs_dma());
static_assert(!AllocFlags::HIGHMEM.can_wait() && !AllocFlags::HIGHMEM.needs_dma());
static_assert(Protection::READ_WRITE.is_readable() && Protection::READ_WRITE.is_writable() &&
              !Protection::READ_WRITE.is_executable());
static_assert(Protection::EXEC.is_executable() && !Protection::NONE.is_readable());

TEST(PagePool, AllocatesOrdersAsContiguousWritablePages) {
  PagePool pool({.reserve_pages = 256, .chunk_pages = 16});
  PageAllocator& alloc = pool;
  EXPECT_EQ(alloc.free_count(), 256u);
  auto a = alloc.alloc_pages(0, AllocFlags::NONE);
  auto b = alloc.alloc_pages(3, AllocFlags::ZERO);
  ASSERT_TRUE(a && b) << (a ? b.error().to_string() : a.error().to_string());
  EXPECT_FALSE(a->is_null());  // frame 0 stays null
  EXPECT_EQ(alloc.free_count(), 256u - 9);
  std::memset(pool.data(*b), 0xab, 8 * PAGE_SIZE);  // all 8 pages are ours
  EXPECT_EQ(pool.pfn_of(pool.data(*b) + 5 * PAGE_SIZE + 7), b->add(5));
  EXPECT_TRUE(pool.virt(*a).is_page_aligned());
  ASSERT_TRUE(alloc.free_pages(*b, 3));
  ASSERT_TRUE(alloc.free_pages(*a, 0));
  EXPECT_EQ(alloc.free_count(), 256u);
  EXPECT_EQ(pool.in_use_pages(), 0u);
}

TEST(PagePool, ZeroFlagClearsReusedPages) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16});
  auto a = pool.alloc_run(2);
  ASSERT_TRUE(a);
  std::memset(pool.data(*a), 0x5a, 2 * PAGE_SIZE);
  ASSERT_TRUE(pool.free_run(*a, 2));
  auto dirty = pool.alloc_run(2);  // the same run again, contents kept (no ZERO)
  ASSERT_TRUE(dirty);
  EXPECT_EQ(*dirty, *a);
  EXPECT_EQ(pool.data(*dirty)[10], std::byte{0x5a});
  ASSERT_TRUE(pool.free_run(*dirty, 2));
  auto zeroed = pool.alloc_run(2, AllocFlags::ZERO);
  ASSERT_TRUE(zeroed);
  EXPECT_EQ(*zeroed, *a);
  auto bytes = *pool.span(*zeroed, 2);
  EXPECT_TRUE(
      std::all_of(bytes.begin(), bytes.end(), [](std::byte x) { return x == std::byte{0}; }));
}

TEST(PagePool, DoubleFreeForeignFrameAndWrongOrderAreRefused) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16});
  auto a = pool.alloc_pages(1, {});
  auto b = pool.alloc_pages(0, {});
  ASSERT_TRUE(a && b);
  auto wrong = pool.free_pages(*a, 0);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(wrong.error().message().find("is 2 pages, not 1"), std::string::npos);
  auto middle = pool.free_pages(a->add(1), 0);  // inside a run, not its start
  ASSERT_FALSE(middle);
  EXPECT_NE(middle.error().message().find("not the start"), std::string::npos);
  auto foreign = pool.free_pages(Pfn(1'000'000), 0);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message().find("not handed out by this pool"), std::string::npos);
  EXPECT_FALSE(pool.free_pages(Pfn::null(), 0));
  ASSERT_TRUE(pool.free_pages(*a, 1));
  auto twice = pool.free_pages(*a, 1);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find("freed twice"), std::string::npos);
  EXPECT_EQ(pool.in_use_pages(), 1u);  // the refused frees changed nothing
  ASSERT_TRUE(pool.free_pages(*b, 0));
  auto order = pool.alloc_pages(40, {});
  ASSERT_FALSE(order);
  EXPECT_NE(order.error().message().find("order 40"), std::string::npos);
  EXPECT_FALSE(pool.alloc_run(0));
  auto flags = pool.alloc_run(1, AllocFlags(1u << 9));
  ASSERT_FALSE(flags);
  EXPECT_NE(flags.error().message().find("unknown AllocFlags"), std::string::npos);
  auto config = PagePool({.reserve_pages = 0}).alloc_run(1);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message().find("reserve_pages"), std::string::npos);
}

// An order whose run is longer than max_run_pages (but below 32) is refused by alloc_pages itself,
// naming the order and the largest order this pool serves.
TEST(PagePool, AllocPagesRefusesAnOrderAboveTheLargestRunNamingTheOrder) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16, .max_run_pages = 16});
  auto order = pool.alloc_pages(5, {});  // 32 pages > 16
  ASSERT_FALSE(order);
  EXPECT_EQ(order.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(order.error().message().find("order 5 is above this pool's largest run of 16 pages; "
                                         "use an order up to 4"),
            std::string::npos)
      << order.error().message();
  EXPECT_TRUE(pool.alloc_pages(4, {}));  // 16 pages: the largest run
}

// A frame the pool never handed out is refused with the range of frames the pool does own
// (first_pfn .. first_pfn + committed pages).
TEST(PagePool, ForeignFrameErrorNamesThePoolsFrameRange) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16});
  auto a = pool.alloc_run(1);
  ASSERT_TRUE(a);
  auto foreign = pool.free_run(Pfn(40), 1);  // reserved, but not committed yet
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message().find("frame 40 was not handed out by this pool (its frames "
                                           "are 1..17)"),
            std::string::npos)
      << foreign.error().message();
}

// Freed runs stay resident up to exactly max(cache_floor_pages, in-use / 4) pages: the run that
// reaches the cap is still cached, the next one goes back to the kernel.
TEST(PagePool, FreedRunsStayResidentUpToExactlyTheCacheCap) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16, .cache_floor_pages = 4});
  std::vector<Pfn> runs;
  for (int i = 0; i < 5; ++i) {
    auto r = pool.alloc_run(1);
    ASSERT_TRUE(r);
    runs.push_back(*r);
  }
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pool.free_run(runs[static_cast<size_t>(i)], 1));
  EXPECT_EQ(pool.cached_pages(), 4u);  // 3 + 1 is not above the cap of 4
  ASSERT_TRUE(pool.free_run(runs[4], 1));
  EXPECT_EQ(pool.cached_pages(), 4u);  // above the cap: released, not cached
  EXPECT_EQ(pool.in_use_pages(), 0u);
}

TEST(PagePool, ExhaustionIsResourceExhaustedAndWaitBlocksUntilAFree) {
  PagePool pool(
      {.reserve_pages = 8, .chunk_pages = 8, .wait_limit = std::chrono::milliseconds(2000)});
  auto all = pool.alloc_pages(3, {});
  ASSERT_TRUE(all);
  EXPECT_EQ(pool.free_count(), 0u);
  auto none = pool.alloc_pages(0, {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(none.error().message().find("reserve_pages"), std::string::npos);
  // WAIT: blocks until another thread frees, then succeeds.
  std::thread freer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(pool.free_pages(*all, 3));
  });
  auto waited = pool.alloc_pages(3, AllocFlags::WAIT);
  freer.join();
  ASSERT_TRUE(waited) << waited.error().to_string();
  EXPECT_EQ(*waited, *all);
  // ...and gives up with TimedOut when nothing is freed.
  PagePool tiny(
      {.reserve_pages = 1, .chunk_pages = 1, .wait_limit = std::chrono::milliseconds(20)});
  ASSERT_TRUE(tiny.alloc_run(1));
  auto timed_out = tiny.alloc_run(1, AllocFlags::WAIT);
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(timed_out.error().code(), ErrorCode::TimedOut);
}

// Runs a body in a child: true when it faulted (killed by a signal, or, under a sanitizer that
// catches SIGSEGV to report it, exited non-zero) instead of returning.
template <typename Body>
bool child_faults(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// Sanitizers replace mlock with a no-op that succeeds (their shadow memory cannot be locked).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMlockIsReal = false;
#else
constexpr bool kMlockIsReal = true;
#endif

TEST(PagePool, ProtectionAppliesToTheRunAndIsResetOnFree) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16});
  auto run = pool.alloc_run(2);
  ASSERT_TRUE(run);
  std::byte* bytes = pool.data(*run);
  bytes[0] = std::byte{1};
  EXPECT_FALSE(child_faults([&] { bytes[PAGE_SIZE] = std::byte{2}; }));  // writable: no fault
  ASSERT_TRUE(pool.protect(*run, 2, Protection::READ));
  EXPECT_EQ(bytes[0], std::byte{1});  // still readable
  EXPECT_TRUE(child_faults([&] { bytes[PAGE_SIZE] = std::byte{2}; }));
  ASSERT_TRUE(pool.protect(*run, 2, Protection::NONE));
  EXPECT_TRUE(child_faults([&] { [[maybe_unused]] volatile auto x = bytes[0]; }));
  EXPECT_FALSE(pool.protect(*run, 1, Protection::READ));  // not the whole run
  EXPECT_FALSE(pool.protect(*run, 2, Protection(1u << 5)));
  ASSERT_TRUE(pool.free_run(*run, 2));
  auto freed = pool.protect(*run, 2, Protection::READ_WRITE);
  ASSERT_FALSE(freed);
  EXPECT_EQ(freed.error().code(), ErrorCode::InvalidArgument);
  auto again = pool.alloc_run(2);  // the same run, writable again
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *run);
  pool.data(*again)[PAGE_SIZE] = std::byte{3};
  EXPECT_EQ(pool.data(*again)[PAGE_SIZE], std::byte{3});
}

TEST(PagePool, DmaFlagLocksThePagesUntilFreed) {
  PagePool pool({.reserve_pages = 64, .chunk_pages = 16});
  auto run = pool.alloc_pages(2, AllocFlags::DMA | AllocFlags::HIGHMEM);
  ASSERT_TRUE(run) << run.error().to_string();
  if (!kMlockIsReal) {
    ASSERT_TRUE(pool.free_pages(*run, 2));
    GTEST_SKIP() << "sanitizer build: mlock is a no-op, so residency cannot be checked";
  }
  unsigned char resident[4] = {};
  ASSERT_EQ(::mincore(pool.data(*run), 4 * PAGE_SIZE, resident), 0);
  EXPECT_TRUE(std::all_of(resident, resident + 4, [](unsigned char r) { return (r & 1) != 0; }));
  ASSERT_TRUE(pool.free_pages(*run, 2));
}

// Any sequence of allocations and frees: runs never overlap, the counters agree, every freed page
// can be handed out again, and after freeing everything the whole reservation is free.
RC_GTEST_PROP(PagePool, AllocFreeSequencesNeverOverlapAndReuseFreedPages, ()) {
  constexpr uint64_t kPages = 128;
  PagePool pool({.reserve_pages = kPages, .chunk_pages = 32, .max_run_pages = 8});
  std::map<uint64_t, uint32_t> live;  // first frame -> pages
  const auto steps = *rc::gen::container<std::vector<std::pair<bool, uint32_t>>>(
      rc::gen::pair(rc::gen::arbitrary<bool>(), rc::gen::inRange<uint32_t>(1, 9)));
  for (const auto& [allocate, n] : steps) {
    if (allocate || live.empty()) {
      auto pfn = pool.alloc_run(n, AllocFlags::ZERO);
      if (!pfn) {
        RC_ASSERT(pfn.error().code() == ErrorCode::ResourceExhausted);
        continue;
      }
      auto after = live.lower_bound(pfn->raw());
      if (after != live.end()) RC_ASSERT(pfn->raw() + n <= after->first);
      if (after != live.begin()) {
        auto before = std::prev(after);
        RC_ASSERT(before->first + before->second <= pfn->raw());
      }
      const auto bytes = *pool.span(*pfn, n);
      RC_ASSERT(
          std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; }));
      std::memset(bytes.data(), 0x77, bytes.size());
      live.emplace(pfn->raw(), n);
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(n % live.size()));
      RC_ASSERT(pool.free_run(Pfn(it->first), it->second).has_value());
      RC_ASSERT(!pool.free_run(Pfn(it->first), it->second).has_value());  // twice: refused
      live.erase(it);
    }
    uint64_t used = 0;
    for (const auto& [first, pages] : live) used += pages;
    RC_ASSERT(pool.in_use_pages() == used);
    RC_ASSERT(pool.free_count() == kPages - used);
  }
  for (const auto& [first, pages] : live) RC_ASSERT(pool.free_run(Pfn(first), pages).has_value());
  RC_ASSERT(pool.in_use_pages() == 0u);
  // Every freed page is reusable: single pages come from the free lists (longer runs split) and
  // the frontier until exactly the whole reservation is handed out, each page once.
  std::vector<uint64_t> singles;
  while (auto pfn = pool.alloc_run(1)) singles.push_back(pfn->raw());
  RC_ASSERT(singles.size() == kPages);
  std::sort(singles.begin(), singles.end());
  RC_ASSERT(std::adjacent_find(singles.begin(), singles.end()) == singles.end());
  RC_ASSERT(singles.front() == pool.config().first_pfn);
  for (uint64_t p : singles) RC_ASSERT(pool.free_run(Pfn(p), 1).has_value());
}

}  // namespace
}  // namespace pepita::memory
