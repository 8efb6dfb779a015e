// parallel_for / parallel_reduce / parallel_invoke: results equal the sequential ones, every index
// is visited exactly once, failures and cancellation reach the caller.

#include "pepita/scheduler/parallel.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

TEST(ParallelFor, VisitsEveryIndexExactlyOnce) {
  auto s = make(3);
  std::size_t n = test_scale() >= 1 ? 1'000'000 : 100'000;
  std::vector<std::atomic<std::uint8_t>> hits(n);
  auto r = parallel_for(*s, 0, n,
                        [&](std::size_t i) { hits[i].fetch_add(1, std::memory_order_relaxed); });
  ASSERT_TRUE(r.has_value());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1u) << i;
}

TEST(ParallelReduce, SumEqualsSequential) {
  auto s = make(2);
  std::size_t n = 1'000'000;
  std::vector<std::uint64_t> v(n);
  std::iota(v.begin(), v.end(), 1);
  auto sum = parallel_reduce(
      *s, 0, n, std::uint64_t{0},
      [&](IndexRange r, std::uint64_t acc) {
        for (std::size_t i = r.begin; i < r.end; ++i) acc += v[i];
        return acc;
      },
      std::plus<>{});
  ASSERT_TRUE(sum.has_value());
  EXPECT_EQ(*sum, std::uint64_t{n} * (n + 1) / 2);
}

TEST(ParallelInvoke, RunsAll) {
  auto s = make(2);
  std::atomic<int> a{0};
  auto r = parallel_invoke(
      *s, [&] { a += 1; }, [&] { a += 10; }, [&] { a += 100; });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(a.load(), 111);
}

TEST(ParallelFor, EmptyAndReversedRangesCallNothing) {
  auto s = make(2);
  std::atomic<int> calls{0};
  EXPECT_TRUE(parallel_for(*s, 5, 5, [&](std::size_t) { calls.fetch_add(1); }).has_value());
  EXPECT_TRUE(parallel_for(*s, 10, 3, [&](std::size_t) { calls.fetch_add(1); }).has_value());
  EXPECT_EQ(calls.load(), 0);
}

TEST(ParallelFor, RangeBodySeesDisjointChunksCoveringTheRange) {
  auto s = make(3);
  const std::size_t n = 100'003;  // not a multiple of any grain
  std::vector<std::atomic<std::uint8_t>> hits(n);
  std::atomic<std::size_t> chunks{0};
  auto r = parallel_for(
      *s, 0, n,
      [&](IndexRange range) {
        ASSERT_LT(range.begin, range.end);
        ASSERT_LE(range.end, n);
        chunks.fetch_add(1);
        for (std::size_t i = range.begin; i < range.end; ++i) hits[i].fetch_add(1);
      },
      1000);
  ASSERT_TRUE(r.has_value());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1u) << i;
  EXPECT_GE(chunks.load(), n / 1000);
}

TEST(ParallelFor, GrainOneAndOffsetRange) {
  auto s = make(2);
  std::vector<int> v(2000, 0);
  auto r = parallel_for(
      *s, 500, 1500, [&](std::size_t i) { v[i] = static_cast<int>(i); }, 1);
  ASSERT_TRUE(r.has_value());
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(v[i], i >= 500 && i < 1500 ? static_cast<int>(i) : 0) << i;
  }
}

TEST(ParallelFor, ExceptionInBodyReachesCallerAndStopsTheLoop) {
  auto s = make(2);
  std::atomic<std::size_t> visited{0};
  const std::size_t n = 1'000'000;
  auto r = parallel_for(
      *s, 0, n,
      [&](std::size_t i) {
        visited.fetch_add(1, std::memory_order_relaxed);
        if (i == 1234) throw std::out_of_range("index 1234 is poisoned");
      },
      64);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("poisoned"), std::string::npos);
  EXPECT_LT(visited.load(), n);  // cancellation cut the remaining chunks
}

TEST(ParallelFor, BodyReturningErrorStopsTheLoop) {
  auto s = make(2);
  std::atomic<std::size_t> visited{0};
  auto r = parallel_for(
      *s, 0, 100'000,
      [&](std::size_t i) -> Result<void> {
        visited.fetch_add(1, std::memory_order_relaxed);
        if (i == 500) return fail(ErrorCode::Io, "disk 500 failed");
        return {};
      },
      16);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Io);
  EXPECT_EQ(r.error().message(), "disk 500 failed");
  EXPECT_LT(visited.load(), 100'000u);

  auto ok = parallel_for(*s, 0, 1000, [](IndexRange) -> Result<void> { return {}; });
  EXPECT_TRUE(ok.has_value());
}

TEST(ParallelFor, NestedInsideTasksAndFromDefaultScheduler) {
  std::vector<std::vector<int>> grid(64, std::vector<int>(257, 0));
  auto r = parallel_for(0, grid.size(), [&](std::size_t row) {
    auto inner = parallel_for(0, grid[row].size(), [&](std::size_t col) {
      grid[row][col] = static_cast<int>(row * 1000 + col);
    });
    ASSERT_TRUE(inner.has_value());
  });
  ASSERT_TRUE(r.has_value());
  for (std::size_t row = 0; row < grid.size(); ++row) {
    for (std::size_t col = 0; col < grid[row].size(); ++col) {
      ASSERT_EQ(grid[row][col], static_cast<int>(row * 1000 + col));
    }
  }
}

// combine is associative but not commutative: concatenation. The result must list every index in
// order, which only holds if stolen halves are combined in index order.
RC_GTEST_PROP(ParallelReduce, NonCommutativeCombineKeepsIndexOrder, ()) {
  static std::unique_ptr<Scheduler> s = make(3);
  const std::size_t n = *rc::gen::inRange<std::size_t>(0, 5000);
  const std::size_t grain = *rc::gen::inRange<std::size_t>(0, 300);
  auto r = parallel_reduce(
      *s, 0, n, std::vector<std::uint32_t>{},
      [](IndexRange range, std::vector<std::uint32_t> acc) {
        for (std::size_t i = range.begin; i < range.end; ++i) {
          acc.push_back(static_cast<std::uint32_t>(i));
        }
        return acc;
      },
      [](std::vector<std::uint32_t> a, const std::vector<std::uint32_t>& b) {
        a.insert(a.end(), b.begin(), b.end());
        return a;
      },
      grain);
  RC_ASSERT(r.has_value());
  RC_ASSERT(r->size() == n);
  for (std::size_t i = 0; i < n; ++i) RC_ASSERT((*r)[i] == i);
}

RC_GTEST_PROP(ParallelReduce, IntegerSumEqualsSerialFold, (const std::vector<std::int32_t>& v)) {
  static std::unique_ptr<Scheduler> s = make(2);
  std::int64_t serial = std::accumulate(v.begin(), v.end(), std::int64_t{0});
  auto r = parallel_reduce(
      *s, 0, v.size(), std::int64_t{0},
      [&](IndexRange range, std::int64_t acc) {
        for (std::size_t i = range.begin; i < range.end; ++i) acc += v[i];
        return acc;
      },
      std::plus<>{}, 1);
  RC_ASSERT(r.has_value());
  RC_ASSERT(*r == serial);
}

TEST(ParallelReduce, EmptyRangeGivesIdentity) {
  auto s = make(2);
  auto r = parallel_reduce(
      *s, 7, 7, 42, [](IndexRange, int acc) { return acc + 1; }, std::plus<>{});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 42);
}

TEST(ParallelReduce, ExceptionInMapKeepsItsType) {
  auto s = make(2);
  auto r = parallel_reduce(
      *s, 0, 100'000, 0L,
      [](IndexRange range, long acc) {
        if (range.begin <= 77'777 && 77'777 < range.end) throw std::length_error("too long");
        return acc + static_cast<long>(range.size());
      },
      std::plus<>{}, 100);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("too long"), std::string::npos);
}

TEST(ParallelInvoke, FailureOfAnyBranchIsReported) {
  auto s = make(2);
  std::atomic<int> ran{0};
  auto r = parallel_invoke(
      *s, [&] { ran.fetch_add(1); }, [] { throw std::runtime_error("branch 2"); },
      [&] { ran.fetch_add(1); });
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("branch 2"), std::string::npos);
  auto r2 = parallel_invoke(
      *s, []() -> Result<void> { return fail(ErrorCode::NotFound, "shard 9 missing"); });
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code(), ErrorCode::NotFound);
}

TEST(ParallelInvoke, RecursiveQuicksortSortsLikeStdSort) {
  auto s = make(3);
  std::vector<std::uint32_t> v(test_scale() >= 1 ? 200'000 : 20'000);
  std::uint32_t x = 12345;
  for (auto& e : v) e = (x = x * 1664525u + 1013904223u);
  std::vector<std::uint32_t> expect = v;
  std::sort(expect.begin(), expect.end());
  std::function<void(std::uint32_t*, std::uint32_t*)> qs = [&](std::uint32_t* lo,
                                                               std::uint32_t* hi) {
    if (hi - lo < 512) {
      std::sort(lo, hi);
      return;
    }
    std::uint32_t pivot = lo[(hi - lo) / 2];
    std::uint32_t* mid1 = std::partition(lo, hi, [pivot](std::uint32_t e) { return e < pivot; });
    std::uint32_t* mid2 = std::partition(mid1, hi, [pivot](std::uint32_t e) { return e == pivot; });
    auto r = parallel_invoke(
        *s, [&] { qs(lo, mid1); }, [&] { qs(mid2, hi); });
    ASSERT_TRUE(r.has_value());
  };
  qs(v.data(), v.data() + v.size());
  EXPECT_EQ(v, expect);
}

}  // namespace
}  // namespace pepita::scheduler
