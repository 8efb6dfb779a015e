// The ring layout for 128-byte SQEs and 32-byte CQEs, against a fake kernel side in ordinary
// memory (Ring::from_mappings): slot strides, index masking and wrap-around, the identity SQ
// array, head/tail publication and the size checks. Needs no kernel support, so it runs where the
// real SQE128/CQE32 test (ring_test.cpp, Linux 6.7+ for socket uring_cmd) skips.
#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring {
namespace {

// Where the fake kernel puts each field (the real kernel spreads them over cache lines; any
// layout the params describe must work).
constexpr std::uint32_t kHead = 0, kTail = 4, kMask = 8, kEntries = 12, kFlags = 16, kDropped = 20,
                        kOverflow = 24, kCqFlags = 28, kArray = 64, kCqes = 64;

struct FakeRings {
  abi::Params params{};
  Mapping sq, cq, sqes;
  std::byte* sq_base = nullptr;
  std::byte* cq_base = nullptr;
  std::byte* sqe_base = nullptr;

  std::uint32_t& sq_word(std::uint32_t off) { return word(sq_base, off); }
  std::uint32_t& cq_word(std::uint32_t off) { return word(cq_base, off); }
  static std::uint32_t& word(std::byte* base, std::uint32_t off) {
    // SAFETY: the offsets are 4-aligned and inside the page-aligned anonymous mapping.
    return *reinterpret_cast<std::uint32_t*>(base + off);
  }
};

// A fake SQ ring, CQ ring and SQE array as io_uring_setup(2) would describe them, with the ring
// sizes and flags given; `cq_bytes`/`sqe_bytes` size those mappings (0: exactly what fits).
FakeRings fake_rings(std::uint32_t sq_entries, std::uint32_t cq_entries, std::uint32_t flags,
                     std::size_t cq_bytes = 0, std::size_t sqe_bytes = 0) {
  FakeRings f;
  abi::Params& p = f.params;
  p.sq_entries = sq_entries;
  p.cq_entries = cq_entries;
  p.flags = flags;
  p.features = abi::feat::NODROP;
  p.sq_off.head = kHead;
  p.sq_off.tail = kTail;
  p.sq_off.ring_mask = kMask;
  p.sq_off.ring_entries = kEntries;
  p.sq_off.flags = kFlags;
  p.sq_off.dropped = kDropped;
  p.sq_off.array = kArray;
  p.cq_off.head = kHead;
  p.cq_off.tail = kTail;
  p.cq_off.ring_mask = kMask;
  p.cq_off.ring_entries = kEntries;
  p.cq_off.overflow = kOverflow;
  p.cq_off.flags = kCqFlags;
  p.cq_off.cqes = kCqes;
  const std::size_t cqe_size = (flags & abi::setup::CQE32) != 0 ? 32 : 16;
  const std::size_t sqe_size = (flags & abi::setup::SQE128) != 0 ? 128 : 64;
  f.sq = Mapping::anonymous(kArray + sq_entries * 4, "fake SQ ring").value();
  f.cq =
      Mapping::anonymous(cq_bytes != 0 ? cq_bytes : kCqes + cq_entries * cqe_size, "fake CQ ring")
          .value();
  f.sqes =
      Mapping::anonymous(sqe_bytes != 0 ? sqe_bytes : sq_entries * sqe_size, "fake SQEs").value();
  f.sq_base = f.sq.bytes();
  f.cq_base = f.cq.bytes();
  f.sqe_base = f.sqes.bytes();
  // What the kernel writes into the rings at setup.
  f.sq_word(kMask) = sq_entries - 1;
  f.sq_word(kEntries) = sq_entries;
  f.cq_word(kMask) = cq_entries - 1;
  f.cq_word(kEntries) = cq_entries;
  return f;
}

Result<Ring> ring_over(FakeRings& f) {
  return Ring::from_mappings(f.params, std::move(f.sq), std::move(f.cq), std::move(f.sqes));
}

constexpr std::uint32_t kBig = abi::setup::SQE128 | abi::setup::CQE32 | abi::setup::SQPOLL;

TEST(RingLayout, Sqe128SlotsAre128BytesApartAndWrapAtTheMask) {
  FakeRings f = fake_rings(4, 8, kBig);
  auto ring = ring_over(f);
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_EQ(ring->sq_entries(), 4u);
  EXPECT_EQ(ring->sq_space_left(), 4u);
  // The identity index array: ring entry i is SQE slot i.
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(f.sq_word(kArray + 4 * i), i);

  for (std::uint32_t i = 0; i < 4; ++i) {
    abi::Sqe128* sqe = ring->get_sqe128();
    ASSERT_NE(sqe, nullptr) << i;
    EXPECT_EQ(reinterpret_cast<std::byte*>(sqe), f.sqe_base + 128 * i) << i;
    prep_uring_cmd(*sqe, 10 + static_cast<int>(i), 0x77, nullptr, 0);
    sqe->user_data = 100 + i;
    std::memset(sqe->cmd, static_cast<int>(0xc0 + i), sizeof sqe->cmd);  // the upper 64 bytes
  }
  EXPECT_EQ(ring->get_sqe128(), nullptr) << "a 5th SQE in a 4-entry SQ";
  EXPECT_EQ(ring->sq_ready(), 4u);
  // The fake kernel sees each command in its own 128-byte slot, upper half included.
  for (std::uint32_t i = 0; i < 4; ++i) {
    const std::byte* slot = f.sqe_base + 128 * i;
    abi::Sqe128 seen;
    std::memcpy(&seen, slot, sizeof seen);
    EXPECT_EQ(seen.user_data, 100u + i);
    EXPECT_EQ(seen.fd, static_cast<std::int32_t>(10 + i));
    EXPECT_EQ(seen.cmd_op, 0x77u);
    EXPECT_EQ(std::to_integer<unsigned>(slot[127]), 0xc0u + i);
  }

  // SQPOLL with the poller awake: submit only publishes the tail.
  EXPECT_EQ(f.sq_word(kTail), 0u);
  auto n = ring->submit();
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(f.sq_word(kTail), 4u);
  EXPECT_EQ(ring->sq_space_left(), 0u);

  // The fake poller consumes three; the next SQEs wrap to slots 0, 1 and 2.
  f.sq_word(kHead) = 3;
  EXPECT_EQ(ring->sq_space_left(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    abi::Sqe* plain = ring->get_sqe();  // the 64-byte view strides 128 bytes too
    ASSERT_NE(plain, nullptr);
    EXPECT_EQ(reinterpret_cast<std::byte*>(plain), f.sqe_base + 128 * i) << i;
    prep_nop(*plain);
  }
  EXPECT_EQ(ring->get_sqe(), nullptr);
  ASSERT_TRUE(ring->submit());
  EXPECT_EQ(f.sq_word(kTail), 7u);

  // With NEED_WAKEUP set (read at sq_off.flags) submit must enter; without a ring fd that fails.
  f.sq_word(kHead) = 7;
  prep_nop(*ring->get_sqe());
  f.sq_word(kFlags) = abi::sq_flags::NEED_WAKEUP;
  auto woke = ring->submit();
  ASSERT_FALSE(woke);
  EXPECT_EQ(woke.error().sys_errno(), EBADF);
  EXPECT_EQ(f.sq_word(kTail), 8u) << "the tail is published before the wake-up";
}

TEST(RingLayout, Cqe32EntriesAre32BytesApartAndWrapAtTheMask) {
  FakeRings f = fake_rings(4, 8, kBig);
  std::byte* cqes = f.cq_base + kCqes;
  auto ring = ring_over(f);
  ASSERT_TRUE(ring) << ring.error().to_string();
  EXPECT_EQ(ring->cq_entries(), 8u);

  // The fake kernel posts CQEs [first, first + count) and publishes the tail.
  auto post = [&](std::uint32_t first, std::uint32_t count) {
    for (std::uint32_t i = first; i < first + count; ++i) {
      abi::Cqe32 c{.user_data = i,
                   .res = static_cast<std::int32_t>(i * 10),
                   .flags = 0,
                   .big_cqe = {0xb16000u + i, ~std::uint64_t{i}}};
      std::memcpy(cqes + 32 * (i & 7), &c, sizeof c);
    }
    f.cq_word(kTail) = first + count;
  };

  post(0, 6);
  EXPECT_EQ(ring->cq_ready(), 6u);
  const abi::Cqe* first = ring->peek_cqe();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<const std::byte*>(first), cqes);
  std::vector<const abi::Cqe*> seen;
  EXPECT_EQ(ring->for_each_cqe([&](const abi::Cqe& c) { seen.push_back(&c); }), 6u);
  ASSERT_EQ(seen.size(), 6u);
  for (std::uint32_t i = 0; i < 6; ++i) {
    EXPECT_EQ(reinterpret_cast<const std::byte*>(seen[i]), cqes + 32 * i) << i;
    const abi::Cqe32& big = Ring::as_cqe32(*seen[i]);
    EXPECT_EQ(big.user_data, i);
    EXPECT_EQ(big.res, static_cast<std::int32_t>(i * 10));
    EXPECT_EQ(big.big_cqe[0], 0xb16000u + i);
    EXPECT_EQ(big.big_cqe[1], ~std::uint64_t{i});
  }
  EXPECT_EQ(f.cq_word(kHead), 6u) << "for_each_cqe advances the kernel-visible head once";

  // Five more wrap around the 8-entry CQ: indices 6, 7, 0, 1, 2.
  post(6, 5);
  std::array<const abi::Cqe*, 8> batch{};
  ASSERT_EQ(ring->peek_batch(batch), 5u);
  for (std::uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(reinterpret_cast<const std::byte*>(batch[i]), cqes + 32 * ((6 + i) & 7)) << i;
    EXPECT_EQ(Ring::as_cqe32(*batch[i]).big_cqe[0], 0xb16000u + 6 + i);
  }
  EXPECT_EQ(f.cq_word(kHead), 6u) << "peek_batch consumes nothing";
  ring->advance(5);
  EXPECT_EQ(f.cq_word(kHead), 11u);
  EXPECT_EQ(ring->cq_ready(), 0u);

  // The overflow word and the SQ flags word are read where the params say.
  f.cq_word(kOverflow) = 3;
  EXPECT_EQ(ring->cq_dropped(), 3u);
  EXPECT_FALSE(ring->cq_overflow_pending());
  f.sq_word(kFlags) = abi::sq_flags::CQ_OVERFLOW;
  EXPECT_TRUE(ring->cq_overflow_pending());
}

TEST(RingLayout, BigEntriesMustFitTheirMappings) {
  // 128 CQEs of 16 bytes fit 64 + 2048 bytes of CQ ring; of 32 bytes they do not.
  {
    FakeRings small = fake_rings(4, 128, abi::setup::SQPOLL, kCqes + 128 * 16);
    EXPECT_TRUE(ring_over(small));
  }
  {
    FakeRings small = fake_rings(4, 128, abi::setup::SQPOLL | abi::setup::CQE32, kCqes + 128 * 16);
    auto r = ring_over(small);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  }
  // 64 SQEs of 64 bytes fill one page; of 128 bytes they need two.
  {
    FakeRings small = fake_rings(64, 128, abi::setup::SQPOLL, 0, 64 * 64);
    EXPECT_TRUE(ring_over(small));
  }
  {
    FakeRings small = fake_rings(64, 128, abi::setup::SQPOLL | abi::setup::SQE128, 0, 64 * 64);
    auto r = ring_over(small);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  }
  // ring_entries in the ring disagreeing with the params.
  {
    FakeRings bad = fake_rings(4, 8, kBig);
    bad.cq_word(kEntries) = 16;
    EXPECT_FALSE(ring_over(bad));
  }
}

// A timed wait needs IORING_FEAT_EXT_ARG; on rings without it (these fakes offer only NODROP)
// wait() says so instead of returning as if it had waited.
TEST(RingLayout, TimedWaitWithoutExtArgIsUnsupported) {
  FakeRings f = fake_rings(4, 8, 0);
  auto ring = ring_over(f);
  ASSERT_TRUE(ring) << ring.error().to_string();
  ASSERT_FALSE(ring->has_feature(abi::feat::EXT_ARG));
  auto n = ring->wait(1, std::chrono::milliseconds(10));
  ASSERT_FALSE(n.has_value()) << "waited without EXT_ARG";
  EXPECT_EQ(n.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(n.error().message().find("IORING_FEAT_EXT_ARG"), std::string::npos)
      << n.error().message();
}

}  // namespace
}  // namespace pepita::io_uring
