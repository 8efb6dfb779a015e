#include "pepita/blk_mq/tag_allocator.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

namespace pepita::blk_mq {
namespace {

TEST(TagAllocator, HandsOutEveryTagOnceThenRunsDry) {
  for (uint32_t depth : {1u, 63u, 64u, 65u, 200u}) {
    TagAllocator tags(depth);
    std::set<uint32_t> seen;
    for (uint32_t i = 0; i < depth; ++i) {
      auto tag = tags.try_get();
      ASSERT_TRUE(tag.has_value()) << "depth " << depth << " i " << i;
      EXPECT_LT(*tag, depth);
      EXPECT_TRUE(seen.insert(*tag).second);
    }
    EXPECT_FALSE(tags.try_get().has_value());
    EXPECT_EQ(tags.in_flight(), depth);
    auto blocked = tags.get(/*no_wait=*/true);
    ASSERT_FALSE(blocked.has_value());
    EXPECT_EQ(blocked.error().code(), KernelError::NoTagsAvailable);
    EXPECT_TRUE(blocked.error().is_retriable());
    EXPECT_EQ(blocked.error().to_negative_errno(), -EAGAIN);
    ASSERT_TRUE(tags.put(*seen.begin()).has_value());
    EXPECT_EQ(tags.try_get(), *seen.begin());
  }
}

TEST(TagAllocator, RejectsDoubleAndForeignPut) {
  TagAllocator tags(8);
  const uint32_t tag = *tags.try_get();
  ASSERT_TRUE(tags.put(tag).has_value());
  auto twice = tags.put(tag);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code(), ErrorCode::InvalidArgument);
  auto outside = tags.put(8);
  ASSERT_FALSE(outside.has_value());
  EXPECT_NE(outside.error().message().find("outside"), std::string::npos);
  EXPECT_EQ(tags.in_flight(), 0u);
}

TEST(TagAllocator, BlockingGetWakesOnPut) {
  TagAllocator tags(1);
  const uint32_t tag = *tags.try_get();
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    auto again = tags.get();
    EXPECT_TRUE(again.has_value());
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(got.load());
  ASSERT_TRUE(tags.put(tag).has_value());
  waiter.join();
  EXPECT_TRUE(got.load());
}

TEST(TagAllocator, ConcurrentOwnersNeverShareATag) {
  TagAllocator tags(16);
  std::vector<std::atomic<int>> owners(16);
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        auto tag = tags.get();
        if (!tag) {
          ++violations;
          return;
        }
        if (owners[*tag].fetch_add(1) != 0) ++violations;
        owners[*tag].fetch_sub(1);
        if (!tags.put(*tag)) ++violations;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(tags.in_flight(), 0u);
}

TEST(TagSet, ValidatesShapeAtBoundaries) {
  EXPECT_TRUE(TagSet::create({1, 1}).has_value());
  EXPECT_TRUE(TagSet::create({128, 32768}).has_value());
  for (TagSetConfig bad :
       {TagSetConfig{0, 1}, TagSetConfig{129, 1}, TagSetConfig{1, 0}, TagSetConfig{1, 32769}}) {
    auto set = TagSet::create(bad);
    ASSERT_FALSE(set.has_value());
    EXPECT_EQ(set.error().code(), ErrorCode::InvalidArgument);
  }
  auto set = TagSet::create({3, 5});
  ASSERT_TRUE(set.has_value());
  EXPECT_EQ((*set)->queue(2).depth(), 5u);
  EXPECT_FALSE(TagAllocator::create(0).has_value());
}

}  // namespace
}  // namespace pepita::blk_mq
