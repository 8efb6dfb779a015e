// WorkStealingDeque<T> for movable, non-trivially-copyable T (boxed slots): order, ownership
// (every item destroyed exactly once, none leaked by the destructor), the crate's
// steal_half/steal_batch/len/is_empty, and a multi-thief stress with move-only items.

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pepita/scheduler/deque.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

// Counts live instances so a leak or a double destruction shows up as a non-zero balance.
struct Tracked {
  static inline std::atomic<long> live{0};
  explicit Tracked(std::uint64_t v) : value(std::make_unique<std::uint64_t>(v)) { live++; }
  Tracked(Tracked&& o) noexcept : value(std::move(o.value)) { live++; }
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() { live--; }
  std::unique_ptr<std::uint64_t> value;  // move-only, non-trivial
};

static_assert(!std::is_trivially_copyable_v<std::string>);

TEST(WorkStealingDequeMovable, StringsKeepLifoForOwnerAndFifoForThief) {
  WorkStealingDeque<std::string> dq(2);
  for (int i = 0; i < 5; ++i) dq.push(std::string(40, static_cast<char>('a' + i)));  // no SSO
  EXPECT_EQ(dq.len(), 5u);
  EXPECT_EQ(dq.steal(), std::string(40, 'a'));
  EXPECT_EQ(dq.pop(), std::string(40, 'e'));
  EXPECT_EQ(dq.steal(), std::string(40, 'b'));
  EXPECT_EQ(dq.pop(), std::string(40, 'd'));
  EXPECT_EQ(dq.pop(), std::string(40, 'c'));
  EXPECT_FALSE(dq.pop().has_value());
  EXPECT_FALSE(dq.steal().has_value());
  EXPECT_TRUE(dq.is_empty());
}

TEST(WorkStealingDequeMovable, MoveOnlyItemsSurviveGrowth) {
  WorkStealingDeque<std::unique_ptr<int>> dq(2);
  for (int i = 0; i < 100; ++i) dq.push(std::make_unique<int>(i));
  EXPECT_GE(dq.capacity(), 100u);
  for (int i = 99; i >= 0; --i) {
    auto p = dq.pop();
    ASSERT_TRUE(p.has_value());
    ASSERT_NE(*p, nullptr);
    EXPECT_EQ(**p, i);
  }
}

TEST(WorkStealingDequeMovable, DestructorDestroysQueuedItemsExactlyOnce) {
  ASSERT_EQ(Tracked::live.load(), 0);
  {
    WorkStealingDeque<Tracked> dq(4);
    for (std::uint64_t i = 0; i < 37; ++i) dq.push(Tracked(i));
    auto a = dq.pop();
    auto b = dq.steal();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(*a->value, 36u);
    EXPECT_EQ(*b->value, 0u);
    EXPECT_EQ(Tracked::live.load(), 37);  // 35 boxed + the two taken
  }
  EXPECT_EQ(Tracked::live.load(), 0);
}

TEST(WorkStealingDequeMovable, StealHalfTakesTheOldestHalfRoundedUp) {
  WorkStealingDeque<std::string> dq(8);
  for (int i = 0; i < 7; ++i) dq.push(std::to_string(i));
  std::vector<std::string> half = dq.steal_half();
  ASSERT_EQ(half.size(), 4u);
  EXPECT_EQ(half, (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(dq.len(), 3u);
  std::vector<std::string> batch;
  EXPECT_EQ(dq.steal_batch(10, batch), 3u);  // asks for more than there is
  EXPECT_EQ(batch, (std::vector<std::string>{"4", "5", "6"}));
  EXPECT_TRUE(dq.steal_half().empty());
  EXPECT_EQ(dq.steal_batch(0, batch), 0u);
}

TEST(WorkStealingDequeMovable, StealHalfOfOneItemTakesIt) {
  WorkStealingDeque<std::uint64_t> dq(2);  // the unboxed path has the same API
  dq.push(9);
  EXPECT_EQ(dq.steal_half(), std::vector<std::uint64_t>{9});
  EXPECT_TRUE(dq.is_empty());
}

RC_GTEST_PROP(WorkStealingDequeMovable, MatchesSequentialModel,
              (const std::vector<std::uint8_t>& ops)) {
  WorkStealingDeque<std::string> dq(2);
  std::deque<std::string> model;
  int next = 0;
  for (std::uint8_t op : ops) {
    switch (op % 4) {
      case 0:
      case 1: {
        std::string s = std::string(24, 'x') + std::to_string(next++);
        dq.push(s);
        model.push_back(s);
        break;
      }
      case 2: {
        auto got = dq.pop();
        RC_ASSERT(got.has_value() == !model.empty());
        if (got) {
          RC_ASSERT(*got == model.back());
          model.pop_back();
        }
        break;
      }
      default: {
        auto got = dq.steal();
        RC_ASSERT(got.has_value() == !model.empty());
        if (got) {
          RC_ASSERT(*got == model.front());
          model.pop_front();
        }
      }
    }
    RC_ASSERT(dq.len() == model.size());
  }
}

TEST(WorkStealingDequeMovable, StressEveryBoxTakenExactlyOnce) {
  const std::uint64_t kItems = test_scale() >= 1 ? 1'000'000 : 100'000;
  ASSERT_EQ(Tracked::live.load(), 0);
  std::vector<std::atomic<std::uint8_t>> taken(kItems);
  std::atomic<bool> done{false};
  {
    WorkStealingDeque<Tracked> dq(4);
    std::vector<std::thread> thieves;
    for (int t = 0; t < 3; ++t) {
      thieves.emplace_back([&] {
        std::vector<Tracked> batch;
        for (;;) {
          batch.clear();
          if (dq.steal_batch(3, batch) != 0) {
            for (auto& item : batch) taken[*item.value].fetch_add(1, std::memory_order_relaxed);
          } else if (done.load(std::memory_order_acquire)) {
            if (dq.is_empty()) break;
          } else {
            std::this_thread::yield();
          }
        }
      });
    }
    std::uint64_t rng = 88172645463325252ull;
    for (std::uint64_t next = 0; next < kItems;) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      for (std::uint64_t i = 0; i < 1 + rng % 32 && next < kItems; ++i) dq.push(Tracked(next++));
      for (std::uint64_t i = 0; i < rng >> 60; ++i) {
        auto item = dq.pop();
        if (!item) break;
        taken[*item->value].fetch_add(1, std::memory_order_relaxed);
      }
    }
    while (auto item = dq.pop()) taken[*item->value].fetch_add(1, std::memory_order_relaxed);
    done.store(true, std::memory_order_release);
    for (auto& t : thieves) t.join();
  }
  std::uint64_t wrong = 0;
  for (auto& c : taken) wrong += c.load() != 1 ? 1 : 0;
  EXPECT_EQ(wrong, 0u) << "items taken zero times or more than once";
  EXPECT_EQ(Tracked::live.load(), 0) << "boxes leaked or destroyed twice";
}

}  // namespace
}  // namespace pepita::scheduler
