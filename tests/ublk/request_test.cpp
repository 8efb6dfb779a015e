// parse_io_desc: every check on the kernel-written I/O descriptor, as examples and as properties.
#include "pepita/ublk/request.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cerrno>
#include <limits>

namespace pepita::ublk {
namespace {
namespace u = abi::ublk;

constexpr IoLimits kLimits{.capacity_sectors = 1 << 20, .max_io_bytes = 512 << 10};

u::IoDesc desc(uint8_t op, uint64_t sector, uint32_t sectors, uint32_t flags = 0) {
  u::IoDesc d{};
  d.op_flags = op | flags;
  d.start_sector = sector;
  d.nr_sectors = sectors;
  return d;
}

TEST(UblkRequest, AcceptsReadAndWriteInRange) {
  const ParsedIo r = parse_io_desc(desc(u::IO_OP_READ, 8, 8), kLimits);
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.op, Op::Read);
  EXPECT_EQ(r.sector, 8u);
  EXPECT_EQ(r.nr_sectors, 8u);
  EXPECT_EQ(r.byte_length(), 4096u);

  const ParsedIo w =
      parse_io_desc(desc(u::IO_OP_WRITE, (1 << 20) - 1024, 1024, u::IO_F_FUA), kLimits);
  ASSERT_TRUE(w.ok()) << w.reason;
  EXPECT_EQ(w.op, Op::Write);
  EXPECT_EQ(w.flags, u::IO_F_FUA);  // ends exactly at capacity
}

TEST(UblkRequest, OutOfRangeSectorsAreIoErrors) {
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_READ, 1 << 20, 1), kLimits).neg_errno, -EIO);
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_WRITE, (1 << 20) - 1, 2), kLimits).neg_errno, -EIO);
  // start + count wraps around 2^64: must not pass as a small end.
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_READ, std::numeric_limits<uint64_t>::max(), 8), kLimits)
                .neg_errno,
            -EIO);
  EXPECT_EQ(
      parse_io_desc(desc(u::IO_OP_DISCARD, std::numeric_limits<uint64_t>::max() - 3, 8), kLimits)
          .neg_errno,
      -EIO);
}

TEST(UblkRequest, UnknownAndUnsupportedOpsAreRefused) {
  for (uint8_t op : {6, 7, 9, 16, 17, 19, 64, 255}) {
    const ParsedIo io = parse_io_desc(desc(op, 0, 8), kLimits);
    EXPECT_EQ(io.neg_errno, -EOPNOTSUPP) << "op " << int{op};
    EXPECT_FALSE(io.reason.empty());
  }
  for (uint8_t op :
       {u::IO_OP_WRITE_SAME, u::IO_OP_ZONE_APPEND, u::IO_OP_REPORT_ZONES, u::IO_OP_ZONE_RESET})
    EXPECT_EQ(parse_io_desc(desc(op, 0, 8), kLimits).neg_errno, -EOPNOTSUPP) << int{op};
  IoLimits no_discard = kLimits;
  no_discard.discard = false;
  no_discard.write_zeroes = false;
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_DISCARD, 0, 8), no_discard).neg_errno, -EOPNOTSUPP);
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_WRITE_ZEROES, 0, 8), no_discard).neg_errno, -EOPNOTSUPP);
}

TEST(UblkRequest, LengthRules) {
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_READ, 0, 0), kLimits).neg_errno, -EINVAL);
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_DISCARD, 0, 0), kLimits).neg_errno, -EINVAL);
  // Data ops must fit the tag's buffer; discards do not use it.
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_WRITE, 0, 1025), kLimits).neg_errno, -EINVAL);
  EXPECT_TRUE(parse_io_desc(desc(u::IO_OP_WRITE, 0, 1024), kLimits).ok());
  EXPECT_TRUE(parse_io_desc(desc(u::IO_OP_DISCARD, 0, 4096), kLimits).ok());
  EXPECT_TRUE(parse_io_desc(desc(u::IO_OP_WRITE_ZEROES, 0, 4096), kLimits).ok());
}

TEST(UblkRequest, FlushIgnoresItsRange) {
  const ParsedIo f = parse_io_desc(desc(u::IO_OP_FLUSH, ~0ull, 77), kLimits);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f.op, Op::Flush);
  EXPECT_EQ(f.sector, 0u);
  EXPECT_EQ(f.nr_sectors, 0u);
}

TEST(UblkRequest, ReadOnlyDevicesRefuseModifications) {
  IoLimits ro = kLimits;
  ro.read_only = true;
  EXPECT_TRUE(parse_io_desc(desc(u::IO_OP_READ, 0, 8), ro).ok());
  EXPECT_TRUE(parse_io_desc(desc(u::IO_OP_FLUSH, 0, 0), ro).ok());
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_WRITE, 0, 8), ro).neg_errno, -EROFS);
  EXPECT_EQ(parse_io_desc(desc(u::IO_OP_DISCARD, 0, 8), ro).neg_errno, -EROFS);
}

TEST(UblkRequest, UnknownFlagBitsAreDropped) {
  const ParsedIo io = parse_io_desc(desc(u::IO_OP_WRITE, 0, 8, 0xff000000u | u::IO_F_FUA), kLimits);
  ASSERT_TRUE(io.ok());
  EXPECT_EQ(io.flags, u::IO_F_FUA);
}

// Whatever the kernel writes, the result is either a request inside the device and the buffer, or
// one of the documented errnos.
RC_GTEST_PROP(UblkRequestProperty, EveryDescriptorIsServedSafelyOrRefused,
              (uint32_t op_flags, uint64_t sector, uint32_t sectors, bool small_sector)) {
  IoLimits limits = kLimits;
  limits.capacity_sectors = *rc::gen::inRange<uint64_t>(0, 1ull << 40);
  u::IoDesc d{};
  d.op_flags = op_flags;
  d.start_sector = small_sector ? sector % (limits.capacity_sectors + 1) : sector;
  d.nr_sectors = small_sector ? sectors % 4096 : sectors;
  const ParsedIo io = parse_io_desc(d, limits);
  if (!io.ok()) {
    RC_ASSERT(io.neg_errno == -EOPNOTSUPP || io.neg_errno == -EINVAL || io.neg_errno == -EIO ||
              io.neg_errno == -EROFS);
    RC_ASSERT(!io.reason.empty());
    return;
  }
  RC_ASSERT((io.flags & ~kKnownIoFlags) == 0u);
  if (io.op == Op::Flush) return;
  RC_ASSERT(io.nr_sectors > 0u);
  RC_ASSERT(io.sector + io.nr_sectors <= limits.capacity_sectors);
  RC_ASSERT(io.sector + io.nr_sectors >= io.sector);
  if (io.op == Op::Read || io.op == Op::Write) RC_ASSERT(io.byte_length() <= limits.max_io_bytes);
}

}  // namespace
}  // namespace pepita::ublk
