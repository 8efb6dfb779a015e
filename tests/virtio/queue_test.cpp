// Split-virtqueue conformance with crafted rings: every malformed ring is an error that breaks
// the queue (NEEDS_RESET), never a crash (this binary also runs under ASan/UBSan).
#include "pepita/virtio/queue.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "driver_ring.hpp"

namespace pepita::virtio {
namespace {
using testing::DriverRing;
namespace v = abi::virtio;

void expect_broken(Queue& q, const char* what) {
  Chain c;
  auto r = q.pop(c);
  ASSERT_FALSE(r.has_value()) << what << ": popped a chain from a malformed ring";
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol) << r.error().to_string();
  EXPECT_TRUE(q.broken());
  EXPECT_FALSE(q.pop(c).has_value()) << "a broken queue stays broken";
  EXPECT_FALSE(q.add_used(0, 0).has_value());
}

TEST(QueueActivate, RejectsBadLayouts) {
  DriverRing d(16);
  auto bad = [&](QueueLayout l, const char* what) {
    auto q = Queue::activate(l, d.mem, {});
    EXPECT_FALSE(q.has_value()) << what;
    if (!q) {
      EXPECT_EQ(q.error().code(), ErrorCode::InvalidArgument);
    }
  };
  auto l = d.layout;
  l.size = 0;
  bad(l, "size 0");
  l.size = 12;
  bad(l, "size not a power of two");
  l = d.layout;
  l.size = 1024;
  EXPECT_FALSE(Queue::activate(l, d.mem, {}, 0, 256).has_value()) << "size above max";
  l = d.layout;
  l.desc = PhysAddr(8);
  bad(l, "descriptor table not 16-aligned");
  l = d.layout;
  l.avail = PhysAddr(DriverRing::kAvail + 1);
  bad(l, "avail ring odd");
  l = d.layout;
  l.used = PhysAddr(DriverRing::kUsed + 2);
  bad(l, "used ring not 4-aligned");
  l = d.layout;
  l.used = PhysAddr(DriverRing::kMemSize - 8);
  bad(l, "used ring past the end of RAM");
  l = d.layout;
  l.desc = PhysAddr(~0ull & ~15ull);
  bad(l, "descriptor table wrapping the address space");
}

// The used ring is what the device writes: laid over the avail ring, every used entry moved the
// avail index and a device serving until the ring was empty never stopped (a fuzzer's hang).
TEST(QueueActivate, RefusesAUsedRingOverTheAvailRingOrTheDescriptorTable) {
  DriverRing d(16);
  for (const auto& [used, what] : {std::pair{d.layout.avail, "over the avail ring"},
                                   std::pair{d.layout.desc, "over the descriptor table"}}) {
    auto l = d.layout;
    l.used = used;
    auto q = Queue::activate(l, d.mem, {});
    ASSERT_FALSE(q.has_value()) << what;
    EXPECT_EQ(q.error().code(), ErrorCode::InvalidArgument) << what;
    EXPECT_NE(q.error().message().find("used ring overlaps"), std::string::npos)
        << q.error().message();
  }
  EXPECT_TRUE(Queue::activate(d.layout, d.mem, {}).has_value()) << "the separate parts still do";
}

TEST(Queue, PopsAChainAndPublishesUsed) {
  DriverRing d(16);
  Queue q = d.activate();
  Chain c;
  EXPECT_FALSE(q.pop(c).value()) << "empty ring";
  d.desc(3, d.alloc(16), 16, v::DESC_F_NEXT, 7);
  d.desc(7, d.alloc(512), 512, v::DESC_F_NEXT | v::DESC_F_WRITE, 1);
  d.desc(1, d.alloc(1), 1, v::DESC_F_WRITE);
  d.publish(3);
  ASSERT_TRUE(q.pop(c).value());
  EXPECT_EQ(c.head, 3);
  ASSERT_EQ(c.segments.size(), 3u);
  EXPECT_FALSE(c.segments[0].writable);
  EXPECT_TRUE(c.segments[1].writable);
  EXPECT_EQ(c.readable_bytes, 16u);
  EXPECT_EQ(c.writable_bytes, 513u);
  EXPECT_FALSE(q.pop(c).value());
  ASSERT_TRUE(q.add_used(3, 513));
  EXPECT_EQ(d.used_idx(), 1);
  EXPECT_EQ(d.used(0).id, 3u);
  EXPECT_EQ(d.used(0).len, 513u);
  EXPECT_EQ(q.next_avail(), 1);
}

TEST(Queue, ResumesAtSavedBase) {
  DriverRing d(8);
  for (uint16_t i = 0; i < 5; ++i) {
    d.desc(i, d.alloc(8), 8, 0);
    d.publish(i);
  }
  auto q = Queue::activate(d.layout, d.mem, {}, /*next_avail=*/3).value();
  Chain c;
  ASSERT_TRUE(q.pop(c).value());
  EXPECT_EQ(c.head, 3);
}

TEST(QueueMalformed, DescriptorLoop) {
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(8), 8, v::DESC_F_NEXT, 1);
  d.desc(1, d.alloc(8), 8, v::DESC_F_NEXT, 0);
  d.publish(0);
  expect_broken(q, "two-descriptor loop");
}

TEST(QueueMalformed, SelfLoopInIndirectTable) {
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t table = d.alloc(64);
  d.set_desc(table, 0, d.alloc(8), 8, v::DESC_F_NEXT, 1);
  d.set_desc(table, 1, d.alloc(8), 8, v::DESC_F_NEXT, 1);
  d.desc(0, table, 64, v::DESC_F_INDIRECT);
  d.publish(0);
  expect_broken(q, "indirect self loop");
}

TEST(QueueMalformed, AddressOutOfRange) {
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, DriverRing::kMemSize - 4, 8, 0);
  d.publish(0);
  expect_broken(q, "buffer straddling the end of RAM");
}

TEST(QueueMalformed, LengthOverflowsAddressSpace) {
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, ~0ull - 0x100, 0x1000, 0);
  d.publish(0);
  expect_broken(q, "addr + len wraps");
}

TEST(QueueMalformed, ReadableAfterWritable) {
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(8), 8, v::DESC_F_WRITE | v::DESC_F_NEXT, 1);
  d.desc(1, d.alloc(8), 8, 0);
  d.publish(0);
  expect_broken(q, "RO after WO");
}

TEST(QueueMalformed, IndirectInsideIndirect) {
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t inner = d.alloc(32);
  d.set_desc(inner, 0, d.alloc(8), 8, 0);
  const uint64_t outer = d.alloc(32);
  d.set_desc(outer, 0, inner, 32, v::DESC_F_INDIRECT);
  d.desc(0, outer, 32, v::DESC_F_INDIRECT);
  d.publish(0);
  expect_broken(q, "indirect in indirect");
}

TEST(QueueMalformed, IndirectWithoutFeatureOrWithNextOrBadLength) {
  {
    DriverRing d(8);
    Queue q = d.activate({.event_idx = false, .indirect = false});
    const uint64_t t = d.alloc(16);
    d.set_desc(t, 0, d.alloc(8), 8, 0);
    d.desc(0, t, 16, v::DESC_F_INDIRECT);
    d.publish(0);
    expect_broken(q, "indirect not negotiated");
  }
  {
    DriverRing d(8);
    Queue q = d.activate();
    const uint64_t t = d.alloc(16);
    d.set_desc(t, 0, d.alloc(8), 8, 0);
    d.desc(0, t, 16, v::DESC_F_INDIRECT | v::DESC_F_NEXT, 1);
    d.desc(1, d.alloc(8), 8, 0);
    d.publish(0);
    expect_broken(q, "INDIRECT with NEXT");
  }
  for (uint32_t len : {0u, 15u, 24u}) {
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(32), len, v::DESC_F_INDIRECT);
    d.publish(0);
    expect_broken(q, "indirect table length not a non-zero multiple of 16");
  }
}

TEST(Queue, IndirectChain) {
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t t = d.alloc(48);
  d.set_desc(t, 0, d.alloc(16), 16, v::DESC_F_NEXT, 2);
  d.set_desc(t, 2, d.alloc(4096), 4096, v::DESC_F_NEXT | v::DESC_F_WRITE, 1);
  d.set_desc(t, 1, d.alloc(1), 1, v::DESC_F_WRITE);
  d.desc(5, t, 48, v::DESC_F_INDIRECT);
  d.publish(5);
  Chain c;
  ASSERT_TRUE(q.pop(c).value());
  EXPECT_EQ(c.head, 5);
  EXPECT_EQ(c.segments.size(), 3u);
  EXPECT_EQ(c.writable_bytes, 4097u);
}

TEST(QueueMalformed, HeadNextAndAvailIndexOutOfRange) {
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.publish(8);
    expect_broken(q, "head == queue size");
  }
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(8), 8, v::DESC_F_NEXT, 200);
    d.publish(0);
    expect_broken(q, "next beyond the table");
  }
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.set_avail_idx(9);
    expect_broken(q, "avail index 9 entries ahead on a queue of 8");
  }
}

TEST(Queue, ZeroLengthDescriptorsAreOnlyCounted) {
  // The ring allows a zero-length buffer; the device decides (virtio-blk refuses such a chain).
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(8), 0, v::DESC_F_WRITE);
  d.publish(0);
  Chain c;
  ASSERT_TRUE(q.pop(c).value());
  EXPECT_EQ(c.readable_bytes + c.writable_bytes, 0u);
}

TEST(QueueEventIdx, NotifiesOnlyWhenUsedEventPassed) {
  DriverRing d(8);
  Queue q = d.activate({.event_idx = true, .indirect = false});
  for (uint16_t i = 0; i < 4; ++i) {
    d.desc(i, d.alloc(8), 8, v::DESC_F_WRITE);
    d.publish(i);
  }
  Chain c;
  d.set_used_event(2);  // the driver wants an interrupt once used idx passes 2
  ASSERT_TRUE(q.pop(c).value());
  ASSERT_TRUE(q.add_used(c.head, 0));
  EXPECT_TRUE(q.should_notify().value()) << "first check always notifies";
  ASSERT_TRUE(q.pop(c).value());
  ASSERT_TRUE(q.add_used(c.head, 0));
  EXPECT_FALSE(q.should_notify().value()) << "used idx 2 has not passed used_event 2";
  ASSERT_TRUE(q.pop(c).value());
  ASSERT_TRUE(q.add_used(c.head, 0));
  EXPECT_TRUE(q.should_notify().value()) << "used idx 3 passed used_event 2";
  EXPECT_TRUE(q.enable_kicks().value()) << "one chain still available";
  EXPECT_EQ(d.avail_event(), 3);
  ASSERT_TRUE(q.pop(c).value());
  EXPECT_FALSE(q.enable_kicks().value());
  EXPECT_EQ(d.avail_event(), 4);
}

TEST(QueueEventIdx, NoInterruptFlagWithoutEventIdx) {
  DriverRing d(8);
  Queue q = d.activate({.event_idx = false, .indirect = false});
  d.desc(0, d.alloc(8), 8, v::DESC_F_WRITE);
  d.publish(0);
  Chain c;
  ASSERT_TRUE(q.pop(c).value());
  ASSERT_TRUE(q.add_used(0, 0));
  ASSERT_TRUE(d.mem.write<uint16_t>(PhysAddr(DriverRing::kAvail), v::AVAIL_F_NO_INTERRUPT));
  EXPECT_FALSE(q.should_notify().value());
  ASSERT_TRUE(d.mem.write<uint16_t>(PhysAddr(DriverRing::kAvail), 0));
  EXPECT_TRUE(q.should_notify().value());
}

// Fuzz-style property: arbitrary descriptor tables and avail rings never crash the walker, and
// every chain it returns has at most queue-size (or indirect-table-size) segments inside RAM.
RC_GTEST_PROP(QueueProperty, ArbitraryRingsNeverCrash, ()) {
  DriverRing d(8);
  Queue q = Queue::activate(d.layout, d.mem, {.event_idx = true, .indirect = true}).value();
  const auto descs =
      *rc::gen::container<std::vector<std::tuple<uint8_t, uint32_t, uint16_t, uint16_t>>>(
          8, rc::gen::arbitrary<std::tuple<uint8_t, uint32_t, uint16_t, uint16_t>>());
  for (uint32_t i = 0; i < 8; ++i) {
    auto [page, len, flags, next] = descs[i];
    // Addresses: mostly inside RAM (so chains get deep), some anywhere.
    const uint64_t addr = page < 200 ? DriverRing::kBuffers + page * 64ull : ~0ull - page;
    d.desc(i, addr, len % 0x2000, flags & 7, next % 10);
  }
  // Some indirect tables in the buffer area, filled with random descriptors too.
  const auto table = *rc::gen::container<std::vector<uint64_t>>(64, rc::gen::arbitrary<uint64_t>());
  RC_ASSERT(d.mem.write_bytes(PhysAddr(DriverRing::kBuffers), std::as_bytes(std::span(table)))
                .has_value());
  const auto heads =
      *rc::gen::container<std::vector<uint16_t>>(8, rc::gen::inRange<uint16_t>(0, 10));
  for (uint16_t h : heads) d.publish(h);
  Chain c;
  for (int i = 0; i < 8; ++i) {
    auto r = q.pop(c);
    if (!r) {
      RC_ASSERT(q.broken());
      break;
    }
    RC_ASSERT(*r);
    RC_ASSERT(c.segments.size() <= 512u);
    for (const auto& s : c.segments) RC_ASSERT(d.mem.span(s.gpa, s.len).has_value());
  }
}

}  // namespace
}  // namespace pepita::virtio
