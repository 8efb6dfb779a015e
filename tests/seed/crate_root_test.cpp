// The umbrella header (pepita/pepita.hpp): the reference crate's root re-exports are the real
// types, its `constants` are the limits pepita enforces, its module paths name our types, and the
// crate's own ABI asserts (lib.rs, io_uring.rs, ublk.rs) compile as written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "pepita/pepita.hpp"

namespace {

// lib.rs's front-page example and test_public_api_accessible, as written there.
static_assert(sizeof(pepita::UblkCtrlCmd) == 32);
static_assert(sizeof(pepita::UblkIoDesc) == 24);
static_assert(sizeof(pepita::IoUringSqe) == 64);
static_assert(sizeof(pepita::UblkIoCmd) == 16);
static_assert(sizeof(pepita::IoUringCqe) == 16);
static_assert(sizeof(pepita::RequestOp) == 1);
static_assert(sizeof(pepita::Request) > 0);
// memory.rs's asserts.
static_assert(sizeof(pepita::PhysAddr) == 8 && sizeof(pepita::VirtAddr) == 8 &&
              sizeof(pepita::Pfn) == 8);
static_assert(std::is_enum_v<pepita::KernelError>);
static_assert(std::is_same_v<pepita::DmaBuffer, pepita::memory::DmaBuffer>);

// The root names are the module types, not copies.
static_assert(std::is_same_v<pepita::Request, pepita::blk_mq::Request>);
static_assert(std::is_same_v<pepita::BlockOps, pepita::blk_mq::BlockDevice>);
static_assert(std::is_same_v<pepita::TagSetConfig, pepita::abi::blk_mq::TagSetConfig>);
static_assert(std::is_same_v<pepita::IoUringSqe, pepita::abi::Sqe>);
static_assert(std::is_same_v<pepita::UblkIoDesc, pepita::abi::ublk::IoDesc>);
static_assert(std::is_same_v<pepita::Result<int>, std::expected<int, pepita::Error>>);
static_assert(pepita::IORING_OP_URING_CMD == 46);
// The crate's module paths.
static_assert(std::is_class_v<pepita::pool::Pool> && std::is_class_v<pepita::task::Task>);
static_assert(std::is_same_v<pepita::executor::Backend, pepita::task::Backend>);
static_assert(std::is_same_v<pepita::task::ExecutionResult, pepita::executor::ExecutionResult>);

TEST(CrateRoot, SizesAsTheCrateAssertsThem) {
  EXPECT_EQ(sizeof(pepita::UblkCtrlCmd), 32u);
  EXPECT_EQ(sizeof(pepita::UblkIoDesc), 24u);
  EXPECT_EQ(sizeof(pepita::IoUringSqe), 64u);
  EXPECT_EQ(sizeof(pepita::UblkIoCmd), 16u);
  EXPECT_EQ(sizeof(pepita::IoUringCqe), 16u);
}

TEST(CrateRoot, ConstantsAreTheCratesValues) {
  EXPECT_EQ(pepita::constants::SECTOR_SIZE, 512u);
  EXPECT_EQ(pepita::constants::PAGE_SIZE, 4096u);
  EXPECT_EQ(pepita::constants::MAX_QUEUE_DEPTH, 32768u);
  EXPECT_EQ(pepita::constants::MAX_HW_QUEUES, 128u);
  EXPECT_EQ(pepita::constants::PAGE_SIZE, static_cast<size_t>(::sysconf(_SC_PAGESIZE)))
      << "the ABI headers assume 4 KiB pages; this host's differ";
}

TEST(CrateRoot, QueueLimitsAreTheOnesTagSetsEnforce) {
  using pepita::constants::MAX_HW_QUEUES;
  using pepita::constants::MAX_QUEUE_DEPTH;
  EXPECT_TRUE(
      pepita::blk_mq::validate_tag_set(pepita::TagSetConfig{MAX_HW_QUEUES, MAX_QUEUE_DEPTH}));
  auto deep = pepita::blk_mq::validate_tag_set(pepita::TagSetConfig{1, MAX_QUEUE_DEPTH + 1u});
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().code(), pepita::ErrorCode::InvalidArgument);
  EXPECT_FALSE(pepita::blk_mq::validate_tag_set(pepita::TagSetConfig{MAX_HW_QUEUES + 1u, 1}));
}

TEST(CrateRoot, RootRequestRunsOnABlockOpsDevice) {
  auto disk = pepita::blk_mq::MemDisk::create({.capacity_bytes = 64 * 1024});
  ASSERT_TRUE(disk) << disk.error().to_string();
  pepita::BlockOps& ops = **disk;
  std::vector<std::byte> sector(pepita::constants::SECTOR_SIZE, std::byte{7});
  std::vector<std::byte> back(sector.size());
  pepita::blk_mq::SyncCompletion done;
  pepita::Request write = pepita::Request::write(0, 3, 1, sector.data());
  write.completion = &done;
  ops.submit(0, write);
  ASSERT_EQ(done.wait(), static_cast<int>(sector.size()));
  done.reset();
  pepita::Request read = pepita::Request::read(0, 3, 1, back.data());
  read.completion = &done;
  ops.submit(0, read);
  ASSERT_EQ(done.wait(), static_cast<int>(back.size()));
  EXPECT_EQ(std::memcmp(back.data(), sector.data(), back.size()), 0);
}

}  // namespace
