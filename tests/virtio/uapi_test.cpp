// The reference crate's virtio names (pepita/virtio/uapi.hpp): constants against Linux's uapi
// virtio headers, and a request built with VirtqDesc / BlockRequestHeader parsed by the real
// virtio-blk request parser out of a real split queue.
#include "pepita/virtio/uapi.hpp"

#include <gtest/gtest.h>

#include <array>
#include <type_traits>

// clang-format off
#define PEPITA_VIRTIO_NAMES(X) \
  X(device_type::NET, VIRTIO_ID_NET) \
  X(device_type::BLK, VIRTIO_ID_BLOCK) \
  X(device_type::CONSOLE, VIRTIO_ID_CONSOLE) \
  X(device_type::RNG, VIRTIO_ID_RNG) \
  X(device_type::BALLOON, VIRTIO_ID_BALLOON) \
  X(device_type::SCSI, VIRTIO_ID_SCSI) \
  X(device_type::P9, VIRTIO_ID_9P) \
  X(device_type::GPU, VIRTIO_ID_GPU) \
  X(device_type::INPUT, VIRTIO_ID_INPUT) \
  X(device_type::VSOCK, VIRTIO_ID_VSOCK) \
  X(device_type::CRYPTO, VIRTIO_ID_CRYPTO) \
  X(device_type::FS, VIRTIO_ID_FS) \
  X(status::ACKNOWLEDGE, VIRTIO_CONFIG_S_ACKNOWLEDGE) \
  X(status::DRIVER, VIRTIO_CONFIG_S_DRIVER) \
  X(status::DRIVER_OK, VIRTIO_CONFIG_S_DRIVER_OK) \
  X(status::FEATURES_OK, VIRTIO_CONFIG_S_FEATURES_OK) \
  X(status::DEVICE_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET) \
  X(status::FAILED, VIRTIO_CONFIG_S_FAILED) \
  X(ring_flags::AVAIL_NO_INTERRUPT, VRING_AVAIL_F_NO_INTERRUPT) \
  X(ring_flags::USED_NO_NOTIFY, VRING_USED_F_NO_NOTIFY) \
  X(VirtqDesc::F_NEXT, VRING_DESC_F_NEXT) \
  X(VirtqDesc::F_WRITE, VRING_DESC_F_WRITE) \
  X(VirtqDesc::F_INDIRECT, VRING_DESC_F_INDIRECT) \
  X(MAX_QUEUE_SIZE, 32768) \
  X(BlockRequestHeader::SIZE, sizeof(virtio_blk_outhdr)) \
  X(static_cast<uint32_t>(BlockRequestType::In), VIRTIO_BLK_T_IN) \
  X(static_cast<uint32_t>(BlockRequestType::Out), VIRTIO_BLK_T_OUT) \
  X(static_cast<uint32_t>(BlockRequestType::Flush), VIRTIO_BLK_T_FLUSH) \
  X(static_cast<uint32_t>(BlockRequestType::GetId), VIRTIO_BLK_T_GET_ID) \
  X(static_cast<uint32_t>(BlockRequestType::Discard), VIRTIO_BLK_T_DISCARD) \
  X(static_cast<uint32_t>(BlockRequestType::WriteZeroes), VIRTIO_BLK_T_WRITE_ZEROES) \
  X(static_cast<uint32_t>(BlockRequestType::SecureErase), VIRTIO_BLK_T_SECURE_ERASE)
// clang-format on

#include <pepita_test/kernel_uapi.hpp>

#include "driver_ring.hpp"

namespace pepita::virtio {
namespace {

namespace vb = abi::virtio_blk;

static_assert(sizeof(VirtqDesc) == 16 && sizeof(VirtqUsedElem) == 8);
static_assert(sizeof(BlockRequestHeader) == BlockRequestHeader::SIZE);
static_assert(std::is_standard_layout_v<VirtqDesc> && std::is_trivially_copyable_v<VirtqDesc>);
static_assert(std::is_standard_layout_v<BlockRequestHeader> &&
              std::is_trivially_copyable_v<BlockRequestHeader>);

TEST(VirtioUapi, ConstantsEqualLinuxUapiHeaders) {
#define PEPITA_CHECK(ours, kernel) EXPECT_EQ(uint64_t(ours), uint64_t(kernel)) << #ours;
  PEPITA_VIRTIO_NAMES(PEPITA_CHECK)
#undef PEPITA_CHECK
  EXPECT_EQ(DEFAULT_QUEUE_SIZE, blk::BlkOptions{}.max_queue_size);
}

TEST(VirtioUapi, DescAndHeaderConstructors) {
  const VirtqDesc d = VirtqDesc::make(0x1000, 512, VirtqDesc::F_NEXT | VirtqDesc::F_WRITE, 3);
  EXPECT_TRUE(d.has_next());
  EXPECT_TRUE(d.is_write_only());
  EXPECT_FALSE(d.is_indirect());
  EXPECT_EQ(d.next, 3);
  EXPECT_EQ(BlockRequestHeader::read(9).get_type(), BlockRequestType::In);
  EXPECT_EQ(BlockRequestHeader::write(9).sector, 9u);
  EXPECT_EQ(BlockRequestHeader::flush().get_type(), BlockRequestType::Flush);
  // An unknown type stays what the driver sent (the crate maps it to In; the device refuses it).
  EXPECT_EQ(static_cast<uint32_t>(BlockRequestHeader{99, 0, 0}.get_type()), 99u);
}

// header (readable) + data + status (writable), laid out with the crate's names.
void lay_out(testing::DriverRing& ring, const BlockRequestHeader& header, uint32_t data_len,
             bool device_writes) {
  const uint64_t hdr = ring.alloc(BlockRequestHeader::SIZE);
  ring.fill(hdr, &header, sizeof header);
  const uint64_t data = ring.alloc(data_len);
  const uint64_t status = ring.alloc(1);
  const std::array<VirtqDesc, 3> chain{
      VirtqDesc::make(hdr, BlockRequestHeader::SIZE, VirtqDesc::F_NEXT, 1),
      VirtqDesc::make(
          data, data_len,
          static_cast<uint16_t>(VirtqDesc::F_NEXT | (device_writes ? VirtqDesc::F_WRITE : 0)), 2),
      VirtqDesc::make(status, 1, VirtqDesc::F_WRITE, 0)};
  for (uint16_t i = 0; i < chain.size(); ++i)
    ring.desc(i, chain[i].addr, chain[i].len, chain[i].flags, chain[i].next);
  ring.publish(0);
}

blk::Limits limits() {
  return {.capacity_sectors = 2048,
          .max_data_bytes = 1u << 20,
          .logical_block_size = 512,
          .read_only = false,
          .discard = true,
          .write_zeroes = true};
}

TEST(VirtioUapi, CrateBuiltRequestParsesFromARealQueue) {
  testing::DriverRing ring(16);
  VirtQueue queue = ring.activate();
  lay_out(ring, BlockRequestHeader::write(8), 4096, /*device_writes=*/false);
  Chain chain;
  ASSERT_TRUE(queue.pop(chain).value());
  auto req = blk::Request::parse(chain, ring.mem, limits());
  ASSERT_TRUE(req) << req.error().to_string();
  EXPECT_EQ(req->status, vb::S_OK) << req->reason;
  EXPECT_EQ(req->type, vb::T_OUT);
  EXPECT_EQ(req->sector, 8u);
  EXPECT_EQ(req->data_bytes, 4096u);
}

// The crate's VirtQueue::pending_count / avail_idx / used_idx on a real split ring.
TEST(VirtioUapi, PendingCountFollowsTheDriversAvailIndex) {
  testing::DriverRing ring(16);
  VirtQueue queue = ring.activate();
  EXPECT_EQ(queue.pending_count().value(), 0u);
  lay_out(ring, BlockRequestHeader::flush(), 512, /*device_writes=*/true);
  ring.publish(0);  // the same chain twice: two entries pending
  EXPECT_EQ(queue.pending_count().value(), 2u);
  Chain chain;
  ASSERT_TRUE(queue.pop(chain).value());
  EXPECT_EQ(queue.pending_count().value(), 1u);
  EXPECT_EQ(queue.next_avail(), 1u);
  ASSERT_TRUE(queue.add_used(chain.head, 0));
  EXPECT_EQ(queue.next_used(), 1u);
  EXPECT_EQ(ring.used_idx(), 1u);
  // A driver that claims more entries than the queue holds breaks the queue.
  ring.set_avail_idx(100);
  auto bad = queue.pending_count();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::Protocol);
  EXPECT_TRUE(queue.broken());
}

TEST(VirtioUapi, WrongDirectionAndRangeAreRefused) {
  testing::DriverRing ring(16);
  VirtQueue queue = ring.activate();
  // A read whose data buffer the device may not write: refused with an I/O error status.
  lay_out(ring, BlockRequestHeader::read(0), 512, /*device_writes=*/false);
  Chain chain;
  ASSERT_TRUE(queue.pop(chain).value());
  auto req = blk::Request::parse(chain, ring.mem, limits());
  ASSERT_TRUE(req);
  EXPECT_EQ(req->status, vb::S_IOERR);

  testing::DriverRing past(16);
  VirtQueue q2 = past.activate();
  lay_out(past, BlockRequestHeader::read(2047), 1024, /*device_writes=*/true);
  ASSERT_TRUE(q2.pop(chain).value());
  req = blk::Request::parse(chain, past.mem, limits());
  ASSERT_TRUE(req);
  EXPECT_EQ(req->status, vb::S_IOERR) << "a range past the capacity";
}

}  // namespace
}  // namespace pepita::virtio
