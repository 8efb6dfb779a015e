#pragma once
// Shared checks every BlockDevice must pass: round trips, each op, and refusal of bad requests
// (the device must stay unchanged after a refused request).

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"

namespace pepita::blk_mq::testing {

/// A 4096-aligned byte buffer (O_DIRECT-safe).
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t size)
      : size_(size), storage_(std::make_unique<Page[]>(size / 4096 + 1)) {}
  std::byte* data() { return storage_[0].bytes; }
  std::span<std::byte> span() { return {data(), size_}; }
  size_t size() const { return size_; }
  void fill_pattern(uint32_t seed) {
    std::mt19937 rng(seed);
    for (size_t i = 0; i < size_; ++i) data()[i] = static_cast<std::byte>(rng());
  }

 private:
  struct alignas(4096) Page {
    std::byte bytes[4096];
  };
  size_t size_;
  std::unique_ptr<Page[]> storage_;
};

inline int submit_raw(BlockDevice& device, uint32_t queue, Request req) {
  SyncCompletion done;
  req.completion = &done;
  device.submit(queue, req);
  return done.wait();
}

inline void expect_round_trip(BlockDevice& device, TagSet& tags) {
  const uint32_t lbs = device.info().logical_block_size;
  AlignedBuffer out(3 * 4096), in(3 * 4096);
  out.fill_pattern(7);
  const uint64_t sector = 2 * (lbs / 512);
  ASSERT_EQ(execute(device, tags, 0, Op::Write, sector, out.span()).value(), out.size());
  ASSERT_EQ(execute(device, tags, 0, Op::Read, sector, in.span()).value(), in.size());
  EXPECT_EQ(std::memcmp(out.data(), in.data(), out.size()), 0);
  ASSERT_TRUE(execute(device, tags, 0, Op::Flush, 0, {}).has_value());
  ASSERT_TRUE(execute(device, tags, 0, Op::Write, sector, out.span(), 0, req_flags::kFua));
}

inline void expect_discard_and_write_zeroes_read_zero(BlockDevice& device, TagSet& tags) {
  const uint32_t lbs = device.info().logical_block_size;
  AlignedBuffer out(4 * 4096), in(4 * 4096);
  out.fill_pattern(11);
  ASSERT_TRUE(execute(device, tags, 0, Op::Write, 0, out.span()).has_value());
  // Discard the 2nd page, write-zeroes (keeping allocation) one block in the 4th.
  ASSERT_TRUE(execute(device, tags, 0, Op::Discard, 8, {}, 8).has_value());
  ASSERT_TRUE(execute(device, tags, 0, Op::WriteZeroes, 24, {}, lbs / 512, req_flags::kNoUnmap));
  ASSERT_TRUE(execute(device, tags, 0, Op::Read, 0, in.span()).has_value());
  std::vector<std::byte> expect(out.data(), out.data() + out.size());
  std::fill(expect.begin() + 4096, expect.begin() + 8192, std::byte{0});
  std::fill(expect.begin() + 3 * 4096, expect.begin() + 3 * 4096 + lbs, std::byte{0});
  EXPECT_EQ(std::memcmp(expect.data(), in.data(), in.size()), 0);
}

inline void expect_bad_requests_refused(BlockDevice& device, TagSet& tags) {
  const DeviceInfo& info = device.info();
  const uint32_t lbs_sectors = info.logical_block_size / 512;
  AlignedBuffer buffer(2 * 4096), before(2 * 4096), after(2 * 4096);
  buffer.fill_pattern(3);
  const uint64_t last = info.capacity_sectors - lbs_sectors;
  ASSERT_TRUE(execute(device, tags, 0, Op::Read, last - lbs_sectors,
                      before.span().first(2 * info.logical_block_size)));
  auto raw = [&](Op op, uint64_t sector, uint32_t nr, std::byte* data, uint32_t flags = 0,
                 uint32_t queue = 0) {
    return submit_raw(
        device, queue,
        Request{
            .op = op, .flags = flags, .sector = sector, .nr_sectors = nr, .tag = 0, .data = data});
  };
  // The last block is fine; one more is past the end; overflowing sector arithmetic too.
  EXPECT_EQ(raw(Op::Write, last, lbs_sectors, buffer.data()),
            static_cast<int>(info.logical_block_size));
  EXPECT_EQ(raw(Op::Write, last, 2 * lbs_sectors, buffer.data()), -EIO);
  EXPECT_EQ(raw(Op::Read, info.capacity_sectors, lbs_sectors, buffer.data()), -EIO);
  EXPECT_EQ(raw(Op::Read, ~uint64_t{0} & ~uint64_t{lbs_sectors - 1u}, lbs_sectors, buffer.data()),
            -EIO);
  EXPECT_EQ(raw(Op::Discard, info.capacity_sectors - lbs_sectors, 2 * lbs_sectors, nullptr), -EIO);
  EXPECT_EQ(raw(Op::Read, 0, 0, buffer.data()), -EINVAL);
  EXPECT_EQ(raw(Op::Write, 0, 0, buffer.data()), -EINVAL);
  EXPECT_EQ(raw(Op::Discard, 0, 0, nullptr), -EINVAL);
  EXPECT_EQ(raw(Op::Flush, 0, 8, nullptr), -EINVAL);
  EXPECT_EQ(raw(Op::Write, 0, info.max_sectors + lbs_sectors, buffer.data()), -EINVAL);
  EXPECT_EQ(raw(Op::Read, 0, lbs_sectors, nullptr), -EFAULT);
  EXPECT_EQ(raw(Op::Read, 0, lbs_sectors, buffer.data(), 1u << 30), -EINVAL);
  EXPECT_EQ(raw(Op::ZoneReset, 0, lbs_sectors, nullptr), -EOPNOTSUPP);
  EXPECT_EQ(raw(Op::WriteSame, 0, lbs_sectors, buffer.data()), -EOPNOTSUPP);
  EXPECT_EQ(raw(static_cast<Op>(7), 0, lbs_sectors, buffer.data()), -EOPNOTSUPP);
  EXPECT_EQ(raw(Op::Read, 0, lbs_sectors, buffer.data(), 0, info.tag_set.nr_hw_queues), -EINVAL);
  EXPECT_EQ(submit_raw(device, 0,
                       Request{.op = Op::Read,
                               .sector = 0,
                               .nr_sectors = lbs_sectors,
                               .tag = info.tag_set.queue_depth,
                               .data = buffer.data()}),
            -EINVAL);
  if (lbs_sectors > 1) {
    EXPECT_EQ(raw(Op::Write, 1, lbs_sectors, buffer.data()), -EINVAL);
    EXPECT_EQ(raw(Op::Write, 0, 1, buffer.data()), -EINVAL);
  }
  // The refused writes changed nothing (the accepted one rewrote the last block with `buffer`).
  ASSERT_TRUE(execute(device, tags, 0, Op::Read, last - lbs_sectors,
                      after.span().first(2 * info.logical_block_size)));
  EXPECT_EQ(std::memcmp(before.data(), after.data(), info.logical_block_size), 0);
  EXPECT_EQ(
      std::memcmp(buffer.data(), after.data() + info.logical_block_size, info.logical_block_size),
      0);
  // The synchronous helper turns the errno into an Error that says what happened.
  auto past = execute(device, tags, 0, Op::Read, info.capacity_sectors,
                      buffer.span().first(info.logical_block_size));
  ASSERT_FALSE(past.has_value());
  EXPECT_EQ(past.error().sys_errno(), EIO);
  EXPECT_NE(past.error().message().find("beyond the end"), std::string::npos)
      << past.error().message();
  auto odd = execute(device, tags, 0, Op::Read, 0, buffer.span().first(100));
  ASSERT_FALSE(odd.has_value());
  EXPECT_EQ(odd.error().code(), ErrorCode::InvalidArgument);
}

}  // namespace pepita::blk_mq::testing
