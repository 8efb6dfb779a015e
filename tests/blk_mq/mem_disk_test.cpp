#include "pepita/blk_mq/mem_disk.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cerrno>
#include <string>
#include <thread>

#include "blk_mq/device_conformance.hpp"

namespace pepita::blk_mq {
namespace {

using testing::AlignedBuffer;

std::unique_ptr<MemDisk> make(uint32_t lbs, uint32_t queues = 2, uint64_t bytes = 1 << 20) {
  auto disk = MemDisk::create(
      {.capacity_bytes = bytes, .logical_block_size = lbs, .queues = queues, .queue_depth = 8});
  EXPECT_TRUE(disk.has_value()) << disk.error().to_string();
  return std::move(*disk);
}

TEST(MemDisk, RoundTripAndEveryOp) {
  for (uint32_t lbs : {512u, 4096u}) {
    auto disk = make(lbs);
    TagSet tags(disk->info().tag_set);
    testing::expect_round_trip(*disk, tags);
    testing::expect_discard_and_write_zeroes_read_zero(*disk, tags);
    testing::expect_bad_requests_refused(*disk, tags);
  }
}

TEST(MemDisk, RejectsBadGeometry) {
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 0}).has_value());
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 1000}).has_value());
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 8192, .logical_block_size = 768}).has_value());
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 8192, .logical_block_size = 8192}).has_value());
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 8192, .queues = 0}).has_value());
  EXPECT_FALSE(MemDisk::create({.capacity_bytes = 8192, .queue_depth = 40000}).has_value());
  EXPECT_TRUE(MemDisk::create({.capacity_bytes = 512}).has_value());
}

// validate_geometry (also used by FileDisk and ublk) refuses a zero capacity itself, with the rule
// in its message, not only because a zero-byte disk fails later in MemDisk::create.
TEST(MemDisk, ValidateGeometryRefusesZeroCapacityNamingTheRule) {
  auto zero = validate_geometry(0, 512);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(zero.error().message().find("capacity 0 bytes must be a non-zero multiple of the "
                                        "block size 512"),
            std::string::npos)
      << zero.error().message();
  EXPECT_TRUE(validate_geometry(512, 512));
  EXPECT_TRUE(validate_geometry(4096, 4096));
}

TEST(MemDisk, MissingQueueIsInvalidQueueId) {
  auto disk = make(512, 2);
  TagSet tags(disk->info().tag_set);
  AlignedBuffer buf(512);
  auto r = execute(*disk, tags, 2, Op::Read, 0, buf.span());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), KernelError::InvalidQueueId);
  EXPECT_EQ(r.error().to_negative_errno(), -EINVAL);
  EXPECT_NE(r.error().message().find("queue 2 does not exist"), std::string::npos);
}

TEST(MemDisk, QueuesRunConcurrently) {
  constexpr uint32_t kQueues = 4;
  auto disk = make(4096, kQueues, 4 << 20);
  TagSet tags(disk->info().tag_set);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (uint32_t q = 0; q < kQueues; ++q) {
    threads.emplace_back([&, q] {
      AlignedBuffer out(16 * 4096), in(16 * 4096);
      for (int round = 0; round < 20; ++round) {
        out.fill_pattern(q * 100 + round);
        // Each queue owns a 1 MiB region; all queues also hammer the shared first page.
        const uint64_t sector = (q * (1 << 20) + 4096) / 512;
        if (!execute(*disk, tags, q, Op::Write, sector, out.span())) ++failures;
        if (!execute(*disk, tags, q, Op::Read, sector, in.span())) ++failures;
        if (std::memcmp(out.data(), in.data(), out.size()) != 0) ++failures;
        if (!execute(*disk, tags, q, Op::Write, 0, out.span().first(4096))) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// Random op sequences against a plain byte-array model.
RC_GTEST_PROP(MemDisk, MatchesReferenceModel, ()) {
  constexpr uint64_t kBytes = 64 * 1024;
  auto disk = make(512, 1, kBytes);
  TagSet tags(disk->info().tag_set);
  std::vector<std::byte> model(kBytes);
  const int steps = *rc::gen::inRange(1, 40);
  for (int step = 0; step < steps; ++step) {
    const auto op = *rc::gen::element(Op::Read, Op::Write, Op::Discard, Op::WriteZeroes);
    const uint64_t sector = *rc::gen::inRange<uint64_t>(0, kBytes / 512);
    const uint32_t nr = *rc::gen::inRange<uint32_t>(1, 3 * 8 + 1);
    const bool fits = sector + nr <= kBytes / 512;
    std::vector<std::byte> buffer(nr * 512);
    if (op == Op::Write)
      for (auto& b : buffer) b = static_cast<std::byte>(*rc::gen::arbitrary<uint8_t>());
    auto res = (op == Op::Read || op == Op::Write) ? execute(*disk, tags, 0, op, sector, buffer)
                                                   : execute(*disk, tags, 0, op, sector, {}, nr);
    RC_ASSERT(res.has_value() == fits);
    if (!fits) continue;
    const size_t off = sector * 512;
    if (op == Op::Read) {
      RC_ASSERT(std::memcmp(buffer.data(), model.data() + off, buffer.size()) == 0);
    } else if (op == Op::Write) {
      std::copy(buffer.begin(), buffer.end(), model.begin() + off);
    } else {
      std::fill(model.begin() + off, model.begin() + off + nr * 512, std::byte{0});
    }
  }
  std::vector<std::byte> all(kBytes);
  RC_ASSERT(execute(*disk, tags, 0, Op::Read, 0, all).has_value());
  RC_ASSERT(std::memcmp(all.data(), model.data(), kBytes) == 0);
}

}  // namespace
}  // namespace pepita::blk_mq
