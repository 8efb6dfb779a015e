// The reference crate's blk_mq names (RequestOp, RequestFlags, BioVec, Request::read/write/...,
// TagSetConfig::validate/total_tags, BlockOps, BLK_MQ_*): each drives a real MemDisk or the real
// tag-set validator, and bad input is refused with an error that names the field.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"

namespace pepita::blk_mq {
namespace {

static_assert(BLK_MQ_MAX_DEPTH == 32768 && BLK_MQ_MAX_HW_QUEUES == 128);
static_assert(std::is_trivially_copyable_v<BioVec> && std::is_standard_layout_v<BioVec>);

TEST(BlkMqCrateNames, RequestOpPredicatesFollowTheKernelOpCodes) {
  EXPECT_TRUE(is_read(RequestOp::Read));
  EXPECT_FALSE(is_read(RequestOp::Write));
  EXPECT_TRUE(is_write(RequestOp::Write));
  EXPECT_TRUE(has_data(RequestOp::Read));
  EXPECT_TRUE(has_data(RequestOp::Write));
  EXPECT_FALSE(has_data(RequestOp::Flush));
  EXPECT_FALSE(has_data(RequestOp::Discard));
  EXPECT_TRUE(is_zone_op(RequestOp::ZoneReset));
  EXPECT_FALSE(is_zone_op(RequestOp::WriteZeroes));
  EXPECT_EQ(request_op_from_u8(0), RequestOp::Read);
  EXPECT_EQ(request_op_from_u8(5), RequestOp::WriteZeroes);  // UBLK_IO_OP_WRITE_ZEROES
  EXPECT_EQ(request_op_from_u8(6), std::nullopt);            // no kernel op 6..9
  EXPECT_EQ(request_op_from_u8(255), std::nullopt);
}

TEST(BlkMqCrateNames, RequestFlagsChainToTheKernelBits) {
  const RequestFlags flags = RequestFlags::NONE.with_fua().with_sync();
  EXPECT_TRUE(flags.is_fua());
  EXPECT_TRUE(flags.is_sync());
  EXPECT_FALSE(flags.is_nowait());
  EXPECT_EQ(flags.bits(), req_flags::kFua | req_flags::kSync);
  EXPECT_EQ(RequestFlags::NOWAIT.bits(), req_flags::kNoWait);
  EXPECT_EQ(RequestFlags(0xffu).bits(), 0u);  // op bits are not flags
  EXPECT_EQ(RequestFlags::META.bits(), req_flags::kMeta);
}

TEST(BlkMqCrateNames, BioVecAddsItsOffset) {
  const BioVec v = BioVec::with_offset(0x1000, 512, 16);
  EXPECT_EQ(v.effective_addr(), 0x1010u);
  EXPECT_FALSE(v.is_empty());
  EXPECT_TRUE(BioVec{}.is_empty());
}

TEST(BlkMqCrateNames, RequestFactoriesReadBackWhatTheyWroteOnAMemDisk) {
  auto disk = MemDisk::create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(disk) << disk.error().to_string();
  BlockOps& ops = **disk;
  std::vector<std::byte> out(4096, std::byte{0x5a});
  std::vector<std::byte> in(4096);

  Request write = Request::write(/*tag=*/0, /*sector=*/0, /*nr_sectors=*/0, nullptr);
  ASSERT_TRUE(write.set_bio_vec(BioVec{reinterpret_cast<uint64_t>(out.data()), 4096, 0}));
  write.set_sector_range(16, write.nr_sectors);
  write.set_flags(RequestFlags::NONE.with_sync());
  EXPECT_EQ(write.nr_sectors, 8u);
  EXPECT_EQ(write.byte_offset(), 16u * 512);
  EXPECT_EQ(write.byte_len(), 4096u);
  SyncCompletion done;
  write.completion = &done;
  ASSERT_TRUE(check_request(write, ops.info()));
  ops.submit(0, write);
  EXPECT_EQ(done.wait(), 4096);

  Request read = Request::read(/*tag=*/1, 16, 8, in.data());
  done.reset();
  read.completion = &done;
  ops.submit(0, read);
  EXPECT_EQ(done.wait(), 4096);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.size()), 0);
}

TEST(BlkMqCrateNames, BadBioVecAndRangeAreRefused) {
  std::vector<std::byte> buf(1000);
  Request req = Request::write(0, 0, 0, nullptr);
  auto odd = req.set_bio_vec(BioVec{reinterpret_cast<uint64_t>(buf.data()), 1000, 0});
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(odd.error().message().find("bio_vec.len"), std::string::npos);
  EXPECT_FALSE(req.set_bio_vec(BioVec{}));

  auto disk = MemDisk::create({.capacity_bytes = 1 << 20});
  ASSERT_TRUE(disk);
  std::vector<std::byte> page(4096);
  const Request past_end = Request::read(0, (1 << 20) / 512, 8, page.data());
  EXPECT_EQ(check_request(past_end, (*disk)->info()).neg_errno, -EIO);
}

// op_name gives each kernel op its blk_types.h name (lower case, dashes); a value outside the
// enum, as a peer may send, is named as such rather than read out of bounds.
TEST(BlkMqCrateNames, OpNameNamesEveryKernelOpAndAnUnknownOne) {
  const std::pair<Op, std::string_view> names[] = {
      {Op::Read, "read"},
      {Op::Write, "write"},
      {Op::Flush, "flush"},
      {Op::Discard, "discard"},
      {Op::WriteSame, "write-same"},
      {Op::WriteZeroes, "write-zeroes"},
      {Op::ZoneOpen, "zone-open"},
      {Op::ZoneClose, "zone-close"},
      {Op::ZoneFinish, "zone-finish"},
      {Op::ZoneAppend, "zone-append"},
      {Op::ZoneResetAll, "zone-reset-all"},
      {Op::ZoneReset, "zone-reset"},
      {Op::ReportZones, "report-zones"},
  };
  for (const auto& [op, name] : names) EXPECT_EQ(op_name(op), name);
  EXPECT_EQ(op_name(static_cast<Op>(7)), "unknown-op");
}

// A device without discard or write-zeroes refuses them with EOPNOTSUPP and names which.
TEST(BlkMqCrateNames, CheckRequestRefusesOpsTheDeviceDoesNotOffer) {
  DeviceInfo info{.capacity_sectors = 2048, .max_sectors = 256};
  Request req{.op = Op::WriteZeroes, .sector = 0, .nr_sectors = 8, .tag = 0};
  RequestCheck check = check_request(req, info);
  EXPECT_EQ(check.neg_errno, -EOPNOTSUPP);
  EXPECT_EQ(check.reason, "device has no write-zeroes");
  req.op = Op::Discard;
  check = check_request(req, info);
  EXPECT_EQ(check.neg_errno, -EOPNOTSUPP);
  EXPECT_EQ(check.reason, "device has no discard");
  info.features = features::kWriteZeroes | features::kDiscard;
  EXPECT_TRUE(check_request(req, info)) << check_request(req, info).reason;
  req.op = Op::WriteZeroes;
  EXPECT_TRUE(check_request(req, info)) << check_request(req, info).reason;
}

TEST(BlkMqCrateNames, TagSetConfigValidatesAndCountsTags) {
  const TagSetConfig ok{4, 128};
  EXPECT_EQ(ok.validate(), abi::blk_mq::TagSetError::Ok);
  EXPECT_EQ(ok.total_tags(), 512u);
  EXPECT_EQ((TagSetConfig{0, 128}).validate(), abi::blk_mq::TagSetError::TooFewQueues);
  EXPECT_EQ((TagSetConfig{129, 1}).validate(), abi::blk_mq::TagSetError::TooManyQueues);
  EXPECT_EQ((TagSetConfig{1, 0}).validate(), abi::blk_mq::TagSetError::DepthTooSmall);
  EXPECT_EQ((TagSetConfig{1, 32769}).validate(), abi::blk_mq::TagSetError::DepthTooLarge);
  EXPECT_EQ((TagSetConfig{BLK_MQ_MAX_HW_QUEUES, BLK_MQ_MAX_DEPTH}).total_tags(), 1u << 22);
  auto refused = validate_tag_set(TagSetConfig{1, 0});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  auto tags = TagSet::create(ok);
  ASSERT_TRUE(tags);
  EXPECT_EQ((*tags)->config().total_tags(), 512u);
}

}  // namespace
}  // namespace pepita::blk_mq
