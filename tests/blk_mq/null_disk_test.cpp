// NullDisk (null_blk): every well-formed request completes with its byte count (reads leave the
// buffer as it was, writes are dropped), every malformed one with check_request's errno.
#include "pepita/blk_mq/null_disk.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "blk_mq/device_conformance.hpp"

namespace pepita::blk_mq {
namespace {

using testing::AlignedBuffer;
using testing::submit_raw;

DeviceInfo null_info() {
  DeviceInfo info;
  info.capacity_sectors = 2048;  // 1 MiB
  info.logical_block_size = 512;
  info.features = features::kDiscard;
  info.tag_set = TagSetConfig{2, 8};
  return info;
}

int raw(NullDisk& disk, Op op, uint64_t sector, uint32_t nr, std::byte* data, uint32_t queue = 0) {
  return submit_raw(disk, queue,
                    Request{.op = op, .sector = sector, .nr_sectors = nr, .tag = 0, .data = data});
}

TEST(NullDisk, WellFormedRequestsCompleteWithTheirBytesAndReadsLeaveTheBuffer) {
  NullDisk disk(null_info());
  AlignedBuffer buffer(8192);
  buffer.fill_pattern(5);
  const std::vector<std::byte> before(buffer.data(), buffer.data() + buffer.size());
  EXPECT_EQ(raw(disk, Op::Write, 0, 16, buffer.data()), 8192);
  EXPECT_EQ(raw(disk, Op::Read, 2032, 16, buffer.data(), 1), 8192) << "the last 8 KiB, queue 1";
  EXPECT_EQ(std::memcmp(before.data(), buffer.data(), buffer.size()), 0)
      << "null_blk returns whatever the buffer held";
  EXPECT_EQ(raw(disk, Op::Flush, 0, 0, nullptr), 0);
  EXPECT_EQ(raw(disk, Op::Discard, 8, 8, nullptr), 0) << "no data moved: 0, not 4096";
  TagSet tags(disk.info().tag_set);
  EXPECT_EQ(execute(disk, tags, 0, Op::Read, 8, buffer.span().first(4096)).value(), 4096u);
}

TEST(NullDisk, MalformedRequestsCompleteWithCheckRequestsErrno) {
  NullDisk disk(null_info());
  AlignedBuffer buffer(8192);
  EXPECT_EQ(raw(disk, Op::Read, 2040, 16, buffer.data()), -EIO) << "runs past the end";
  EXPECT_EQ(raw(disk, Op::Write, 2048, 1, buffer.data()), -EIO) << "starts at the end";
  EXPECT_EQ(raw(disk, Op::Read, 0, 0, buffer.data()), -EINVAL) << "empty";
  EXPECT_EQ(raw(disk, Op::Read, 0, 8, nullptr), -EFAULT) << "no buffer";
  EXPECT_EQ(raw(disk, Op::Flush, 0, 8, nullptr), -EINVAL) << "a length on Flush";
  EXPECT_EQ(raw(disk, Op::ZoneReset, 0, 8, nullptr), -EOPNOTSUPP);
  EXPECT_EQ(raw(disk, Op::Read, 0, 8, buffer.data(), 2), -EINVAL) << "queue 2 of 2";
  TagSet tags(disk.info().tag_set);
  auto past = execute(disk, tags, 0, Op::Read, 2048, buffer.span().first(512));
  ASSERT_FALSE(past.has_value());
  EXPECT_EQ(past.error().sys_errno(), EIO);
}

}  // namespace
}  // namespace pepita::blk_mq
