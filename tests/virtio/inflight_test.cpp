// Inflight I/O tracking of a split virtqueue (vhost-user.rst "Inflight I/O tracking"): the region
// a Queue keeps while a device completes out of order, and what a second Queue over the same
// region and ring resubmits -- after a clean drop and after a kill at each point of the used-ring
// write sequence. Bad regions (too small, another version or queue size, inconsistent contents)
// are clear errors, never a crash.
#include "pepita/virtio/inflight.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <vector>

#include "driver_ring.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio {
namespace {
using testing::DriverRing;
namespace v = abi::virtio;

// One queue's slice in 8-byte aligned memory, as the mapping of a memfd would be.
struct Region {
  explicit Region(uint16_t queue_size, uint64_t bytes = 0)
      : words((bytes != 0 ? bytes : inflight_queue_bytes(queue_size)) / 8) {}
  std::span<std::byte> bytes() { return std::as_writable_bytes(std::span(words)); }
  InflightHeader& header() { return *reinterpret_cast<InflightHeader*>(words.data()); }
  InflightDesc& desc(uint16_t i) {
    return reinterpret_cast<InflightDesc*>(words.data() + sizeof(InflightHeader) / 8)[i];
  }
  std::vector<uint64_t> words;
};

// Publishes `n` one-descriptor chains with heads 0..n-1.
void publish(DriverRing& d, uint16_t first, uint16_t n) {
  for (uint16_t i = first; i < first + n; ++i) {
    d.desc(i, d.alloc(64), 64, v::DESC_F_WRITE);
    d.publish(i);
  }
}

TEST(InflightLayout, QueueBytesMatchTheSpecLayoutRoundedTo64) {
  EXPECT_EQ(inflight_queue_bytes(1), 64u);
  EXPECT_EQ(inflight_queue_bytes(4), 128u);
  EXPECT_EQ(inflight_queue_bytes(128), 16u * 128 + 64);
  for (uint32_t qs = 1; qs <= v::MAX_QUEUE_SIZE; qs *= 2) {
    const uint64_t bytes = inflight_queue_bytes(static_cast<uint16_t>(qs));
    EXPECT_GE(bytes, sizeof(InflightHeader) + sizeof(InflightDesc) * qs) << "queue size " << qs;
    EXPECT_EQ(bytes % 64, 0u);
  }
}

TEST(InflightQueue, FreshRegionIsInitialisedAndResubmitsNothing) {
  Region r(16);
  auto q = InflightQueue::open(r.bytes(), 16);
  ASSERT_TRUE(q.has_value()) << q.error().to_string();
  EXPECT_TRUE(q->was_fresh());
  EXPECT_EQ(r.header().version, kInflightVersion);
  EXPECT_EQ(r.header().desc_num, 16);
  auto heads = q->recover(0);
  ASSERT_TRUE(heads.has_value());
  EXPECT_TRUE(heads->empty());
}

TEST(InflightQueue, OutOfOrderCompletionsLeaveExactlyTheIncompleteHeadsInCounterOrder) {
  DriverRing d(16);
  Region r(16);
  Queue q = d.activate();
  ASSERT_TRUE(q.track_inflight(InflightQueue::open(r.bytes(), 16).value(), true).has_value());
  publish(d, 0, 6);
  Chain c;
  std::vector<uint16_t> popped;
  while (q.pop(c).value()) popped.push_back(c.head);
  ASSERT_EQ(popped, (std::vector<uint16_t>{0, 1, 2, 3, 4, 5}));
  // The device completes 5, 3 and 1 (reverse, skipping the others), then "dies".
  for (uint16_t h : {5, 3, 1}) ASSERT_TRUE(q.add_used(h, 0));
  EXPECT_EQ(d.used_idx(), 3);
  EXPECT_EQ(r.header().used_idx, 3);
  EXPECT_EQ(r.header().last_batch_head, 1);

  auto again = InflightQueue::open(r.bytes(), 16);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->was_fresh());
  EXPECT_EQ(again->inflight_count(), 3);
  auto heads = again->recover(d.used_idx());
  ASSERT_TRUE(heads.has_value()) << heads.error().to_string();
  EXPECT_EQ(*heads, (std::vector<uint16_t>{0, 2, 4}));
}

TEST(InflightQueue, KilledAfterTheUsedIndexMovedTheLastBatchIsCleared) {
  Region r(8);
  auto q = InflightQueue::open(r.bytes(), 8).value();
  for (uint16_t h = 0; h < 4; ++h) q.popped(h);
  q.before_used(2);
  q.after_used(2, 1);
  // Head 3's element was written and the ring's idx moved to 2, then the backend was killed
  // before it cleared head 3 and recorded the index.
  q.before_used(3);
  auto after = InflightQueue::open(r.bytes(), 8).value();
  auto heads = after.recover(/*ring_used_idx=*/2);
  ASSERT_TRUE(heads.has_value()) << heads.error().to_string();
  EXPECT_EQ(*heads, (std::vector<uint16_t>{0, 1})) << "head 3 reached the driver: not resubmitted";
  EXPECT_EQ(r.header().used_idx, 2);
  EXPECT_EQ(r.desc(3).inflight, 0);
}

TEST(InflightQueue, KilledBeforeTheUsedIndexMovedTheHeadIsResubmitted) {
  Region r(8);
  auto q = InflightQueue::open(r.bytes(), 8).value();
  for (uint16_t h = 0; h < 3; ++h) q.popped(h);
  q.before_used(1);  // element written, idx not published: the driver never saw it
  auto after = InflightQueue::open(r.bytes(), 8).value();
  auto heads = after.recover(/*ring_used_idx=*/0);
  ASSERT_TRUE(heads.has_value());
  EXPECT_EQ(*heads, (std::vector<uint16_t>{0, 1, 2}));
}

TEST(InflightQueue, CountersContinueAfterTheLargestInFlight) {
  Region r(8);
  auto q = InflightQueue::open(r.bytes(), 8).value();
  for (uint16_t h : {4, 6, 1}) q.popped(h);  // counters 0, 1, 2
  auto after = InflightQueue::open(r.bytes(), 8).value();
  EXPECT_EQ(after.recover(0).value(), (std::vector<uint16_t>{4, 6, 1}));
  after.popped(0);
  EXPECT_EQ(r.desc(0).counter, 3u) << "a new pop orders after every resubmitted head";
}

TEST(InflightQueue, RejectsRegionsItCannotUse) {
  {
    Region r(16);  // room enough: a queue of size 0 is refused for itself
    auto q = InflightQueue::open(r.bytes(), 0);
    ASSERT_FALSE(q.has_value());
    EXPECT_EQ(q.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(q.error().message().find("size 0"), std::string::npos) << q.error().message();
  }
  {
    Region r(16, 64);  // a slice for 16 entries needs 320 bytes
    auto q = InflightQueue::open(r.bytes(), 16);
    ASSERT_FALSE(q.has_value());
    EXPECT_EQ(q.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(q.error().message().find("needs"), std::string::npos) << q.error().message();
  }
  {
    Region r(16);
    r.header().version = 7;
    auto q = InflightQueue::open(r.bytes(), 16);
    ASSERT_FALSE(q.has_value());
    EXPECT_NE(q.error().message().find("version 7"), std::string::npos) << q.error().message();
  }
  {
    Region r(16);
    r.header().version = kInflightVersion;
    r.header().desc_num = 8;
    auto q = InflightQueue::open(r.bytes(), 16);
    ASSERT_FALSE(q.has_value());
    EXPECT_NE(q.error().message().find("queue size 8"), std::string::npos) << q.error().message();
  }
  {
    Region r(8);
    auto q = InflightQueue::open(r.bytes(), 8).value();
    q.popped(1);
    r.desc(1).inflight = 2;
    auto after = InflightQueue::open(r.bytes(), 8).value();
    EXPECT_FALSE(after.recover(0).has_value()) << "an inflight byte other than 0/1";
  }
  {
    Region r(8);
    auto q = InflightQueue::open(r.bytes(), 8).value();
    q.popped(1);
    r.header().last_batch_head = 200;
    auto after = InflightQueue::open(r.bytes(), 8).value();
    EXPECT_FALSE(after.recover(1).has_value()) << "last batch head out of range";
    EXPECT_FALSE(after.recover(100).has_value()) << "a batch longer than the queue";
  }
}

// A queue tracking in-flight heads in `r` pops heads 0-3, completes `completed` and is dropped
// (a backend that went away) with the rest still held.
void hold_four_then_drop(DriverRing& d, Region& r, std::initializer_list<uint16_t> completed) {
  Queue q = d.activate();
  ASSERT_TRUE(q.track_inflight(InflightQueue::open(r.bytes(), 16).value(), true));
  publish(d, 0, 4);
  Chain c;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(q.pop(c).value());
  for (uint16_t h : completed) ASSERT_TRUE(q.add_used(h, 0));
}

TEST(QueueInflight, RestartedQueueResubmitsHeldHeadsBeforeNewAvailEntries) {
  DriverRing d(16);
  Region r(16);
  hold_four_then_drop(d, r, {3, 1});  // heads 0 and 2 held
  publish(d, 4, 2);                   // the driver goes on posting meanwhile

  // As a reconnect: the frontend resumes the ring at its used index (2).
  auto q = Queue::activate(d.layout, d.mem, {.event_idx = true, .indirect = true}, d.used_idx());
  ASSERT_TRUE(q.has_value());
  auto n = q->track_inflight(InflightQueue::open(r.bytes(), 16).value(), true);
  ASSERT_TRUE(n.has_value()) << n.error().to_string();
  EXPECT_EQ(*n, 2);
  EXPECT_EQ(q->next_avail(), 4) << "used index + what was in flight";
  EXPECT_EQ(q->pending_count().value(), 4);
  Chain c;
  std::vector<uint16_t> order;
  while (q->pop(c).value()) order.push_back(c.head);
  EXPECT_EQ(order, (std::vector<uint16_t>{0, 2, 4, 5}));
  for (uint16_t h : {5, 0, 4, 2}) ASSERT_TRUE(q->add_used(h, 0));
  EXPECT_EQ(d.used_idx(), 6);
  EXPECT_EQ(InflightQueue::open(r.bytes(), 16).value().inflight_count(), 0);
}

TEST(QueueInflight, TakeUnresubmittedReturnsOnlyTheHeadsPopHasNotHandedOutAgain) {
  DriverRing d(16);
  Region r(16);
  hold_four_then_drop(d, r, {3});  // heads 0, 1 and 2 held

  auto q = Queue::activate(d.layout, d.mem, {.event_idx = true, .indirect = true}, d.used_idx());
  ASSERT_TRUE(q.has_value());
  auto n = q->track_inflight(InflightQueue::open(r.bytes(), 16).value(), true);
  ASSERT_TRUE(n.has_value()) << n.error().to_string();
  ASSERT_EQ(*n, 3);
  Chain c;
  ASSERT_TRUE(q->pop(c).value());
  EXPECT_EQ(c.head, 0);
  // The ring stops after one resubmission: the other two move to the next Queue.
  const std::vector<uint16_t> rest = q->take_unresubmitted();
  EXPECT_EQ(rest, (std::vector<uint16_t>{1, 2}));
  EXPECT_EQ(q->pending_count().value(), 0) << "nothing left to resubmit, no new avail entry";
  EXPECT_TRUE(q->take_unresubmitted().empty());

  auto next =
      Queue::activate(d.layout, d.mem, {.event_idx = true, .indirect = true}, q->next_avail());
  ASSERT_TRUE(next.has_value());
  auto carried = next->track_inflight(InflightQueue::open(r.bytes(), 16).value(), false, rest);
  ASSERT_TRUE(carried.has_value()) << carried.error().to_string();
  EXPECT_EQ(*carried, 2);
  std::vector<uint16_t> order;
  while (next->pop(c).value()) order.push_back(c.head);
  EXPECT_EQ(order, (std::vector<uint16_t>{1, 2}));
}

TEST(QueueInflight, RefusesARegionThatContradictsTheRing) {
  DriverRing d(16);
  Region r(16);
  auto fresh = InflightQueue::open(r.bytes(), 16).value();
  for (uint16_t h = 0; h < 3; ++h) fresh.popped(h);  // three in flight, none published
  Queue q = d.activate();
  auto n = q.track_inflight(InflightQueue::open(r.bytes(), 16).value(), true);
  ASSERT_FALSE(n.has_value());
  EXPECT_EQ(n.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(n.error().message().find("outstanding"), std::string::npos) << n.error().message();

  Region small(8);
  auto other = q.track_inflight(InflightQueue::open(small.bytes(), 8).value(), true);
  ASSERT_FALSE(other.has_value()) << "a region for queue size 8 on a 16-entry ring";
  EXPECT_EQ(q.next_avail(), 0) << "the queue is unchanged";
}

}  // namespace
}  // namespace pepita::virtio
