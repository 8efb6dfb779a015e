// Conformance: pepita's blk-mq request model against the kernel's ublk UAPI (linux/ublk_cmd.h).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <pepita_test/kernel_uapi.hpp>

#include "pepita/abi/blk_mq.hpp"

namespace pepita::abi::blk_mq {
namespace {

constexpr uint8_t raw(Op op) { return static_cast<uint8_t>(op); }

static_assert(sizeof(Op) == 1);
static_assert(sizeof(TagSetConfig) == 8 && alignof(TagSetConfig) == 4);
static_assert(offsetof(TagSetConfig, nr_hw_queues) == 0);
static_assert(offsetof(TagSetConfig, queue_depth) == 4);

TEST(BlkMqAbi, OpCodesMatchUblk) {
  EXPECT_EQ(raw(Op::Read), UBLK_IO_OP_READ);
  EXPECT_EQ(raw(Op::Write), UBLK_IO_OP_WRITE);
  EXPECT_EQ(raw(Op::Flush), UBLK_IO_OP_FLUSH);
  EXPECT_EQ(raw(Op::Discard), UBLK_IO_OP_DISCARD);
  EXPECT_EQ(raw(Op::WriteSame), UBLK_IO_OP_WRITE_SAME);
  EXPECT_EQ(raw(Op::WriteZeroes), UBLK_IO_OP_WRITE_ZEROES);
  EXPECT_EQ(raw(Op::ZoneOpen), UBLK_IO_OP_ZONE_OPEN);
  EXPECT_EQ(raw(Op::ZoneClose), UBLK_IO_OP_ZONE_CLOSE);
  EXPECT_EQ(raw(Op::ZoneFinish), UBLK_IO_OP_ZONE_FINISH);
  EXPECT_EQ(raw(Op::ZoneAppend), UBLK_IO_OP_ZONE_APPEND);
  EXPECT_EQ(raw(Op::ZoneResetAll), UBLK_IO_OP_ZONE_RESET_ALL);
  EXPECT_EQ(raw(Op::ZoneReset), UBLK_IO_OP_ZONE_RESET);
  EXPECT_EQ(raw(Op::ReportZones), UBLK_IO_OP_REPORT_ZONES);
}

TEST(BlkMqAbi, FlagBitsMatchUblk) {
  EXPECT_EQ(flags::kFailfastDev, UBLK_IO_F_FAILFAST_DEV);
  EXPECT_EQ(flags::kFailfastTransport, UBLK_IO_F_FAILFAST_TRANSPORT);
  EXPECT_EQ(flags::kFailfastDriver, UBLK_IO_F_FAILFAST_DRIVER);
  EXPECT_EQ(flags::kMeta, UBLK_IO_F_META);
  EXPECT_EQ(flags::kFua, UBLK_IO_F_FUA);
  EXPECT_EQ(flags::kNoUnmap, UBLK_IO_F_NOUNMAP);
  EXPECT_EQ(flags::kSwap, UBLK_IO_F_SWAP);
  // pepita-only bits must not collide with the op byte or any ublk bit.
  EXPECT_EQ(flags::kSync & kOpMask, 0u);
  EXPECT_EQ(flags::kNoWait & kOpMask, 0u);
  EXPECT_EQ(flags::kSync & (UBLK_IO_F_SWAP * 2 - 1), 0u);
  EXPECT_EQ(flags::kNoWait & (UBLK_IO_F_SWAP * 2 - 1), 0u);
  EXPECT_NE(flags::kSync, flags::kNoWait);
  EXPECT_EQ(kSectorSize, 512u);
}

TEST(BlkMqAbi, ValidOpsAreExactlyTheUblkOnes) {
  int valid = 0;
  for (unsigned code = 0; code < 256; ++code) {
    if (is_valid_op(static_cast<uint8_t>(code))) ++valid;
  }
  EXPECT_EQ(valid, 13);
  EXPECT_FALSE(is_valid_op(6));
  EXPECT_FALSE(is_valid_op(9));
  EXPECT_FALSE(is_valid_op(16));
  EXPECT_FALSE(is_valid_op(255));
  EXPECT_TRUE(op_writes_data(Op::Write));
  EXPECT_TRUE(op_reads_data(Op::Read));
  EXPECT_FALSE(op_writes_data(Op::Discard));
  EXPECT_FALSE(op_reads_data(Op::Flush));
  EXPECT_TRUE(is_zone_op(Op::ZoneReset));
  EXPECT_FALSE(is_zone_op(Op::WriteZeroes));
}

TEST(BlkMqAbi, TagSetLimitsAtEveryBoundary) {
  EXPECT_EQ(validate({1, 1}), TagSetError::Ok);
  EXPECT_EQ(validate({128, 32768}), TagSetError::Ok);
  EXPECT_EQ(validate({0, 64}), TagSetError::TooFewQueues);
  EXPECT_EQ(validate({129, 64}), TagSetError::TooManyQueues);
  EXPECT_EQ(validate({4, 0}), TagSetError::DepthTooSmall);
  EXPECT_EQ(validate({4, 32769}), TagSetError::DepthTooLarge);
  EXPECT_EQ(validate({0xffffffffu, 0xffffffffu}), TagSetError::TooManyQueues);
  EXPECT_EQ(total_tags({128, 32768}), 1u << 22);
}

RC_GTEST_PROP(BlkMqAbi, OpFlagsRoundTrip, (uint32_t request_flags)) {
  const Op op = *rc::gen::element(Op::Read, Op::Write, Op::Flush, Op::Discard, Op::WriteSame,
                                  Op::WriteZeroes, Op::ZoneOpen, Op::ZoneClose, Op::ZoneFinish,
                                  Op::ZoneAppend, Op::ZoneResetAll, Op::ZoneReset, Op::ReportZones);
  RC_ASSERT(is_valid_op(static_cast<uint8_t>(op)));
  const uint32_t word = encode_op_flags(op, request_flags & flags::kAll);
  RC_ASSERT(decode_op(word) == op);
  RC_ASSERT(decode_flags(word) == (request_flags & flags::kAll));
}

}  // namespace
}  // namespace pepita::abi::blk_mq
