// WorkStealingDeque: sequential model check (rapidcheck) and a multi-thief stress test where
// every pushed item must be taken exactly once (count and checksum).

#include "pepita/scheduler/deque.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <thread>
#include <vector>

#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

TEST(WorkStealingDeque, EmptyPopAndStealReturnNullopt) {
  WorkStealingDeque<std::uint64_t> dq(4);
  EXPECT_FALSE(dq.pop().has_value());
  EXPECT_FALSE(dq.steal().has_value());
  dq.push(7);
  EXPECT_EQ(dq.steal(), 7u);
  EXPECT_FALSE(dq.pop().has_value());
  EXPECT_TRUE(dq.empty_hint());
}

TEST(WorkStealingDeque, OwnerIsLifoThiefIsFifo) {
  WorkStealingDeque<int> dq(2);
  for (int i = 0; i < 5; ++i) dq.push(i);
  EXPECT_EQ(dq.steal(), 0);
  EXPECT_EQ(dq.pop(), 4);
  EXPECT_EQ(dq.steal(), 1);
  EXPECT_EQ(dq.pop(), 3);
  EXPECT_EQ(dq.pop(), 2);
  EXPECT_FALSE(dq.pop().has_value());
}

TEST(WorkStealingDeque, GrowsKeepingItemsInOrder) {
  WorkStealingDeque<int> dq(2);
  EXPECT_EQ(dq.capacity(), 2u);
  for (int i = 0; i < 1000; ++i) dq.push(i);
  EXPECT_GE(dq.capacity(), 1000u);
  EXPECT_EQ(dq.size_hint(), 1000u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(dq.steal(), i);
  for (int i = 999; i >= 500; --i) EXPECT_EQ(dq.pop(), i);
}

TEST(WorkStealingDeque, CapacityIsRoundedToPowerOfTwo) {
  EXPECT_EQ(WorkStealingDeque<int>(0).capacity(), 2u);
  EXPECT_EQ(WorkStealingDeque<int>(3).capacity(), 4u);
  EXPECT_EQ(WorkStealingDeque<int>(256).capacity(), 256u);
}

// Single-threaded, the deque is a double-ended queue: bottom ops are LIFO, top ops FIFO.
RC_GTEST_PROP(WorkStealingDeque, MatchesSequentialModel, (const std::vector<std::uint8_t>& ops)) {
  WorkStealingDeque<int> dq(2);
  std::deque<int> model;
  int next = 0;
  for (std::uint8_t op : ops) {
    switch (op % 3) {
      case 0:
        dq.push(next);
        model.push_back(next++);
        break;
      case 1: {
        auto got = dq.pop();
        if (model.empty()) {
          RC_ASSERT(!got.has_value());
        } else {
          RC_ASSERT(got.has_value());
          RC_ASSERT(*got == model.back());
          model.pop_back();
        }
        break;
      }
      default: {
        auto got = dq.steal();
        if (model.empty()) {
          RC_ASSERT(!got.has_value());
        } else {
          RC_ASSERT(got.has_value());
          RC_ASSERT(*got == model.front());
          model.pop_front();
        }
      }
    }
    RC_ASSERT(dq.size_hint() == model.size());
  }
}

// One owner pushing and popping in bursts (so the deque repeatedly grows, empties and races on the
// last item) against several thieves. Every item must come out exactly once.
TEST(WorkStealingDeque, StressOwnerAndThievesTakeEachItemExactlyOnce) {
  const std::uint64_t kItems = test_scale() >= 1 ? 4'000'000 : 300'000;
  const unsigned kThieves = 3;
  WorkStealingDeque<std::uint64_t> dq(4);  // small: exercise growth under contention
  std::vector<std::atomic<std::uint8_t>> taken(kItems + 1);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> stolen_count{0};
  std::atomic<std::uint64_t> stolen_sum{0};

  auto take = [&](std::uint64_t item) { taken[item].fetch_add(1, std::memory_order_relaxed); };

  std::vector<std::thread> thieves;
  for (unsigned t = 0; t < kThieves; ++t) {
    thieves.emplace_back([&] {
      std::uint64_t count = 0;
      std::uint64_t sum = 0;
      for (;;) {
        if (auto item = dq.steal()) {
          take(*item);
          ++count;
          sum += *item;
        } else if (done.load(std::memory_order_acquire)) {
          if (dq.empty_hint()) break;
        } else {
          std::this_thread::yield();
        }
      }
      stolen_count.fetch_add(count);
      stolen_sum.fetch_add(sum);
    });
  }

  std::uint64_t popped_count = 0;
  std::uint64_t popped_sum = 0;
  std::uint64_t next = 1;
  std::uint64_t rng = 88172645463325252ull;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (next <= kItems) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    std::uint64_t burst = 1 + rng % 64;
    for (std::uint64_t i = 0; i < burst && next <= kItems; ++i) dq.push(next++);
    // Alternate phases: pops outpacing pushes (races on the last item) and lagging behind them
    // (a long deque for the thieves, growth while they steal).
    bool draining = ((next >> 14) & 1) != 0;
    std::uint64_t pops = draining ? rng >> 58 : rng >> 60;
    for (std::uint64_t i = 0; i < pops; ++i) {
      auto item = dq.pop();
      if (!item) break;
      take(*item);
      ++popped_count;
      popped_sum += *item;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "stress test exceeded its time bound";
  }
  while (auto item = dq.pop()) {
    take(*item);
    ++popped_count;
    popped_sum += *item;
  }
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();

  EXPECT_EQ(popped_count + stolen_count.load(), kItems);
  EXPECT_EQ(popped_sum + stolen_sum.load(), kItems * (kItems + 1) / 2);
  for (std::uint64_t i = 1; i <= kItems; ++i) ASSERT_EQ(taken[i].load(), 1u) << "item " << i;
  EXPECT_GT(stolen_count.load(), 0u);
  std::printf("stress: %llu items, %llu stolen by %u thieves\n",
              static_cast<unsigned long long>(kItems),
              static_cast<unsigned long long>(stolen_count.load()), kThieves);
}

}  // namespace
}  // namespace pepita::scheduler
