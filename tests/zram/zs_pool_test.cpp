// ZsPool size classes, limits and PageArena reuse, tested below ZramStore.
#include "detail/zs_pool.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "detail/page_arena.hpp"

namespace pepita::zram::detail {
namespace {

TEST(ZsPool, ClassesFitEverySizeAndWasteLittle) {
  ZsPool pool(0);
  for (uint32_t size = 1; size <= kZsPageSize; ++size) {
    const uint32_t slot = pool.class_size(size);
    ASSERT_GE(slot, size);
    ASSERT_EQ(slot % kZsClassDelta, 0u);
    // A slot never wastes more than a delta, except where classes merged into a bigger slot
    // sharing the same zspage shape (no memory lost: the zspage holds as many objects).
    if (size >= kZsMinAlloc && slot - size >= kZsClassDelta) {
      ASSERT_LT(slot - size, kZsPageSize / 4) << "size " << size;
    }
  }
  EXPECT_GT(pool.huge_class_size(), kZsPageSize / 2);
  EXPECT_LE(pool.huge_class_size(), kZsPageSize);
  EXPECT_EQ(pool.class_size(kZsPageSize), kZsPageSize);
}

TEST(ZsPool, AllocFreeAndLimit) {
  ZsPool pool(8);  // 8 pages
  std::vector<ObjRef> refs;
  for (int i = 0;; ++i) {
    ObjRef ref;
    const int rc = pool.alloc(kZsPageSize, static_cast<uint32_t>(i), ref);
    if (rc == -ENOSPC) break;
    ASSERT_EQ(rc, 0);
    std::memset(ZsPool::address(ref), i, kZsPageSize);
    refs.push_back(ref);
  }
  EXPECT_EQ(refs.size(), 8u);
  EXPECT_EQ(pool.total_pages(), 8u);
  for (size_t i = 0; i < refs.size(); ++i)
    EXPECT_EQ(ZsPool::address(refs[i])[100], static_cast<std::byte>(i));
  for (const auto& ref : refs) pool.free(ref);
  EXPECT_EQ(pool.total_pages(), 0u);
  EXPECT_EQ(pool.max_pages(), 8u);
  ObjRef bad;
  EXPECT_EQ(pool.alloc(0, 0, bad), -EINVAL);
  EXPECT_EQ(pool.alloc(kZsPageSize + 1, 0, bad), -EINVAL);
}

TEST(ZsPool, SmallObjectsShareZspages) {
  ZsPool pool(0);
  std::vector<ObjRef> refs(1000);
  for (uint32_t i = 0; i < refs.size(); ++i) ASSERT_EQ(pool.alloc(100, i, refs[i]), 0);
  // 1000 x 112-byte slots: about 28 pages, far from one page per object.
  EXPECT_LE(pool.total_pages(), 32u);
  for (const auto& ref : refs) pool.free(ref);
  EXPECT_EQ(pool.total_pages(), 0u);
}

TEST(PageArena, ReusesRunsAndCapsCachedMemory) {
  PageArena arena;
  std::byte* first = arena.alloc(2);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % kZsPageSize, 0u);  // SAFETY: alignment only
  std::memset(first, 1, 2 * kZsPageSize);
  arena.free(first, 2);
  EXPECT_EQ(arena.cached_pages(), 2u);
  EXPECT_EQ(arena.alloc(2), first);  // same run length: reused
  EXPECT_EQ(arena.cached_pages(), 0u);
  // Free far more than the cap: the excess goes back to the kernel, not into the cache.
  std::vector<std::byte*> runs;
  for (int i = 0; i < 3000; ++i) runs.push_back(arena.alloc(1));
  for (auto* run : runs) {
    ASSERT_NE(run, nullptr);
    *run = std::byte{7};
  }
  for (auto* run : runs) arena.free(run, 1);
  EXPECT_LE(arena.cached_pages(), 2048u);
  std::byte* again = arena.alloc(1);
  ASSERT_NE(again, nullptr);
  again[0] = std::byte{1};  // released runs are still usable (they fault back in as zeros)
  arena.free(again, 1);
  arena.free(first, 2);
}

}  // namespace
}  // namespace pepita::zram::detail
