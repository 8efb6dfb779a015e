// virtio ABI fidelity: rings, virtio-blk, virtio-mmio and vsock structs and constants of
// pepita/abi/virtio*.hpp against the kernel's UAPI headers (6.12). The build fails on a mismatch.
#include <gtest/gtest.h>

#include <pepita_test/kernel_uapi.hpp>

#include "fidelity.hpp"
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/abi/virtio_vsock.hpp"

namespace v = pepita::abi::virtio;
namespace blk = pepita::abi::virtio_blk;
namespace mmio = pepita::abi::virtio_mmio;
namespace vsock = pepita::abi::virtio_vsock;

// --- split virtqueue ---
PEPITA_SAME_LAYOUT(v::Desc, vring_desc);
PEPITA_SAME_FIELD(v::Desc, vring_desc, addr, addr);
PEPITA_SAME_FIELD(v::Desc, vring_desc, len, len);
PEPITA_SAME_FIELD(v::Desc, vring_desc, flags, flags);
PEPITA_SAME_FIELD(v::Desc, vring_desc, next, next);
PEPITA_SAME_FIELD(v::AvailHeader, vring_avail, flags, flags);
PEPITA_SAME_FIELD(v::AvailHeader, vring_avail, idx, idx);
static_assert(v::AVAIL_RING_OFFSET == offsetof(vring_avail, ring));
static_assert(sizeof(v::AvailHeader) == offsetof(vring_avail, ring));
PEPITA_SAME_LAYOUT(v::UsedElem, vring_used_elem);
PEPITA_SAME_FIELD(v::UsedElem, vring_used_elem, id, id);
PEPITA_SAME_FIELD(v::UsedElem, vring_used_elem, len, len);
PEPITA_SAME_FIELD(v::UsedHeader, vring_used, flags, flags);
PEPITA_SAME_FIELD(v::UsedHeader, vring_used, idx, idx);
static_assert(v::USED_RING_OFFSET == offsetof(vring_used, ring));
static_assert(sizeof(v::UsedHeader) == offsetof(vring_used, ring));
PEPITA_SAME_CONSTANT(v::DESC_ALIGN, VRING_DESC_ALIGN_SIZE);
PEPITA_SAME_CONSTANT(v::AVAIL_ALIGN, VRING_AVAIL_ALIGN_SIZE);
PEPITA_SAME_CONSTANT(v::USED_ALIGN, VRING_USED_ALIGN_SIZE);
PEPITA_SAME_CONSTANT(v::DESC_F_NEXT, VRING_DESC_F_NEXT);
PEPITA_SAME_CONSTANT(v::DESC_F_WRITE, VRING_DESC_F_WRITE);
PEPITA_SAME_CONSTANT(v::DESC_F_INDIRECT, VRING_DESC_F_INDIRECT);
PEPITA_SAME_CONSTANT(v::USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);
PEPITA_SAME_CONSTANT(v::AVAIL_F_NO_INTERRUPT, VRING_AVAIL_F_NO_INTERRUPT);
PEPITA_SAME_CONSTANT(v::F_RING_INDIRECT_DESC, VIRTIO_RING_F_INDIRECT_DESC);
PEPITA_SAME_CONSTANT(v::F_RING_EVENT_IDX, VIRTIO_RING_F_EVENT_IDX);

// --- status, transport features, device ids ---
PEPITA_SAME_CONSTANT(v::STATUS_ACKNOWLEDGE, VIRTIO_CONFIG_S_ACKNOWLEDGE);
PEPITA_SAME_CONSTANT(v::STATUS_DRIVER, VIRTIO_CONFIG_S_DRIVER);
PEPITA_SAME_CONSTANT(v::STATUS_DRIVER_OK, VIRTIO_CONFIG_S_DRIVER_OK);
PEPITA_SAME_CONSTANT(v::STATUS_FEATURES_OK, VIRTIO_CONFIG_S_FEATURES_OK);
PEPITA_SAME_CONSTANT(v::STATUS_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
PEPITA_SAME_CONSTANT(v::STATUS_FAILED, VIRTIO_CONFIG_S_FAILED);
PEPITA_SAME_CONSTANT(v::F_NOTIFY_ON_EMPTY, VIRTIO_F_NOTIFY_ON_EMPTY);
PEPITA_SAME_CONSTANT(v::F_ANY_LAYOUT, VIRTIO_F_ANY_LAYOUT);
PEPITA_SAME_CONSTANT(v::F_VERSION_1, VIRTIO_F_VERSION_1);
PEPITA_SAME_CONSTANT(v::F_ACCESS_PLATFORM, VIRTIO_F_ACCESS_PLATFORM);
PEPITA_SAME_CONSTANT(v::F_RING_PACKED, VIRTIO_F_RING_PACKED);
PEPITA_SAME_CONSTANT(v::F_IN_ORDER, VIRTIO_F_IN_ORDER);
PEPITA_SAME_CONSTANT(v::F_ORDER_PLATFORM, VIRTIO_F_ORDER_PLATFORM);
PEPITA_SAME_CONSTANT(v::F_SR_IOV, VIRTIO_F_SR_IOV);
PEPITA_SAME_CONSTANT(v::F_NOTIFICATION_DATA, VIRTIO_F_NOTIFICATION_DATA);
PEPITA_SAME_CONSTANT(v::F_NOTIF_CONFIG_DATA, VIRTIO_F_NOTIF_CONFIG_DATA);
PEPITA_SAME_CONSTANT(v::F_RING_RESET, VIRTIO_F_RING_RESET);
PEPITA_SAME_CONSTANT(v::F_ADMIN_VQ, VIRTIO_F_ADMIN_VQ);
PEPITA_SAME_CONSTANT(v::TRANSPORT_F_START, VIRTIO_TRANSPORT_F_START);
PEPITA_SAME_CONSTANT(v::TRANSPORT_F_END, VIRTIO_TRANSPORT_F_END);
PEPITA_SAME_CONSTANT(v::ID_NET, VIRTIO_ID_NET);
PEPITA_SAME_CONSTANT(v::ID_BLOCK, VIRTIO_ID_BLOCK);
PEPITA_SAME_CONSTANT(v::ID_CONSOLE, VIRTIO_ID_CONSOLE);
PEPITA_SAME_CONSTANT(v::ID_RNG, VIRTIO_ID_RNG);
PEPITA_SAME_CONSTANT(v::ID_VSOCK, VIRTIO_ID_VSOCK);

// --- virtio-blk ---
PEPITA_SAME_LAYOUT(blk::RequestHeader, virtio_blk_outhdr);
PEPITA_SAME_FIELD(blk::RequestHeader, virtio_blk_outhdr, type, type);
PEPITA_SAME_FIELD(blk::RequestHeader, virtio_blk_outhdr, ioprio, ioprio);
PEPITA_SAME_FIELD(blk::RequestHeader, virtio_blk_outhdr, sector, sector);
PEPITA_SAME_LAYOUT(blk::DiscardWriteZeroes, virtio_blk_discard_write_zeroes);
PEPITA_SAME_FIELD(blk::DiscardWriteZeroes, virtio_blk_discard_write_zeroes, sector, sector);
PEPITA_SAME_FIELD(blk::DiscardWriteZeroes, virtio_blk_discard_write_zeroes, num_sectors,
                  num_sectors);
PEPITA_SAME_FIELD(blk::DiscardWriteZeroes, virtio_blk_discard_write_zeroes, flags, flags);
PEPITA_SAME_LAYOUT(blk::Geometry, virtio_blk_config::virtio_blk_geometry);
PEPITA_SAME_FIELD(blk::Geometry, virtio_blk_config::virtio_blk_geometry, cylinders, cylinders);
PEPITA_SAME_FIELD(blk::Geometry, virtio_blk_config::virtio_blk_geometry, heads, heads);
PEPITA_SAME_FIELD(blk::Geometry, virtio_blk_config::virtio_blk_geometry, sectors, sectors);
using KernelZoned = virtio_blk_config::virtio_blk_zoned_characteristics;
PEPITA_SAME_LAYOUT(blk::ZonedCharacteristics, KernelZoned);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, zone_sectors, zone_sectors);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, max_open_zones, max_open_zones);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, max_active_zones, max_active_zones);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, max_append_sectors, max_append_sectors);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, write_granularity, write_granularity);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, model, model);
PEPITA_SAME_FIELD(blk::ZonedCharacteristics, KernelZoned, unused2, unused2);
PEPITA_SAME_LAYOUT(blk::Config, virtio_blk_config);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, capacity, capacity);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, size_max, size_max);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, seg_max, seg_max);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, geometry, geometry);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, blk_size, blk_size);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, physical_block_exp, physical_block_exp);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, alignment_offset, alignment_offset);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, min_io_size, min_io_size);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, opt_io_size, opt_io_size);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, wce, wce);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, unused, unused);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, num_queues, num_queues);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_discard_sectors, max_discard_sectors);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_discard_seg, max_discard_seg);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, discard_sector_alignment,
                  discard_sector_alignment);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_write_zeroes_sectors,
                  max_write_zeroes_sectors);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_write_zeroes_seg, max_write_zeroes_seg);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, write_zeroes_may_unmap, write_zeroes_may_unmap);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, unused1, unused1);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_secure_erase_sectors,
                  max_secure_erase_sectors);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, max_secure_erase_seg, max_secure_erase_seg);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, secure_erase_sector_alignment,
                  secure_erase_sector_alignment);
PEPITA_SAME_FIELD(blk::Config, virtio_blk_config, zoned, zoned);
PEPITA_SAME_CONSTANT(blk::ID_BYTES, VIRTIO_BLK_ID_BYTES);
PEPITA_SAME_CONSTANT(blk::T_IN, VIRTIO_BLK_T_IN);
PEPITA_SAME_CONSTANT(blk::T_OUT, VIRTIO_BLK_T_OUT);
PEPITA_SAME_CONSTANT(blk::T_FLUSH, VIRTIO_BLK_T_FLUSH);
PEPITA_SAME_CONSTANT(blk::T_GET_ID, VIRTIO_BLK_T_GET_ID);
PEPITA_SAME_CONSTANT(blk::T_DISCARD, VIRTIO_BLK_T_DISCARD);
PEPITA_SAME_CONSTANT(blk::T_WRITE_ZEROES, VIRTIO_BLK_T_WRITE_ZEROES);
PEPITA_SAME_CONSTANT(blk::T_SECURE_ERASE, VIRTIO_BLK_T_SECURE_ERASE);
PEPITA_SAME_CONSTANT(blk::T_ZONE_APPEND, VIRTIO_BLK_T_ZONE_APPEND);
PEPITA_SAME_CONSTANT(blk::T_ZONE_REPORT, VIRTIO_BLK_T_ZONE_REPORT);
PEPITA_SAME_CONSTANT(blk::T_ZONE_OPEN, VIRTIO_BLK_T_ZONE_OPEN);
PEPITA_SAME_CONSTANT(blk::T_ZONE_CLOSE, VIRTIO_BLK_T_ZONE_CLOSE);
PEPITA_SAME_CONSTANT(blk::T_ZONE_FINISH, VIRTIO_BLK_T_ZONE_FINISH);
PEPITA_SAME_CONSTANT(blk::T_ZONE_RESET, VIRTIO_BLK_T_ZONE_RESET);
PEPITA_SAME_CONSTANT(blk::T_ZONE_RESET_ALL, VIRTIO_BLK_T_ZONE_RESET_ALL);
PEPITA_SAME_CONSTANT(blk::S_OK, VIRTIO_BLK_S_OK);
PEPITA_SAME_CONSTANT(blk::S_IOERR, VIRTIO_BLK_S_IOERR);
PEPITA_SAME_CONSTANT(blk::S_UNSUPP, VIRTIO_BLK_S_UNSUPP);
PEPITA_SAME_CONSTANT(blk::S_ZONE_INVALID_CMD, VIRTIO_BLK_S_ZONE_INVALID_CMD);
PEPITA_SAME_CONSTANT(blk::S_ZONE_UNALIGNED_WP, VIRTIO_BLK_S_ZONE_UNALIGNED_WP);
PEPITA_SAME_CONSTANT(blk::S_ZONE_OPEN_RESOURCE, VIRTIO_BLK_S_ZONE_OPEN_RESOURCE);
PEPITA_SAME_CONSTANT(blk::S_ZONE_ACTIVE_RESOURCE, VIRTIO_BLK_S_ZONE_ACTIVE_RESOURCE);
PEPITA_SAME_CONSTANT(blk::WRITE_ZEROES_FLAG_UNMAP, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
PEPITA_SAME_CONSTANT(blk::F_SIZE_MAX, VIRTIO_BLK_F_SIZE_MAX);
PEPITA_SAME_CONSTANT(blk::F_SEG_MAX, VIRTIO_BLK_F_SEG_MAX);
PEPITA_SAME_CONSTANT(blk::F_GEOMETRY, VIRTIO_BLK_F_GEOMETRY);
PEPITA_SAME_CONSTANT(blk::F_RO, VIRTIO_BLK_F_RO);
PEPITA_SAME_CONSTANT(blk::F_BLK_SIZE, VIRTIO_BLK_F_BLK_SIZE);
PEPITA_SAME_CONSTANT(blk::F_FLUSH, VIRTIO_BLK_F_FLUSH);
PEPITA_SAME_CONSTANT(blk::F_TOPOLOGY, VIRTIO_BLK_F_TOPOLOGY);
PEPITA_SAME_CONSTANT(blk::F_CONFIG_WCE, VIRTIO_BLK_F_CONFIG_WCE);
PEPITA_SAME_CONSTANT(blk::F_MQ, VIRTIO_BLK_F_MQ);
PEPITA_SAME_CONSTANT(blk::F_DISCARD, VIRTIO_BLK_F_DISCARD);
PEPITA_SAME_CONSTANT(blk::F_WRITE_ZEROES, VIRTIO_BLK_F_WRITE_ZEROES);
PEPITA_SAME_CONSTANT(blk::F_SECURE_ERASE, VIRTIO_BLK_F_SECURE_ERASE);
PEPITA_SAME_CONSTANT(blk::F_ZONED, VIRTIO_BLK_F_ZONED);

// --- virtio-mmio ---
PEPITA_SAME_CONSTANT(mmio::MAGIC_VALUE, VIRTIO_MMIO_MAGIC_VALUE);
PEPITA_SAME_CONSTANT(mmio::VERSION, VIRTIO_MMIO_VERSION);
PEPITA_SAME_CONSTANT(mmio::DEVICE_ID, VIRTIO_MMIO_DEVICE_ID);
PEPITA_SAME_CONSTANT(mmio::VENDOR_ID, VIRTIO_MMIO_VENDOR_ID);
PEPITA_SAME_CONSTANT(mmio::DEVICE_FEATURES, VIRTIO_MMIO_DEVICE_FEATURES);
PEPITA_SAME_CONSTANT(mmio::DEVICE_FEATURES_SEL, VIRTIO_MMIO_DEVICE_FEATURES_SEL);
PEPITA_SAME_CONSTANT(mmio::DRIVER_FEATURES, VIRTIO_MMIO_DRIVER_FEATURES);
PEPITA_SAME_CONSTANT(mmio::DRIVER_FEATURES_SEL, VIRTIO_MMIO_DRIVER_FEATURES_SEL);
PEPITA_SAME_CONSTANT(mmio::GUEST_PAGE_SIZE, VIRTIO_MMIO_GUEST_PAGE_SIZE);
PEPITA_SAME_CONSTANT(mmio::QUEUE_SEL, VIRTIO_MMIO_QUEUE_SEL);
PEPITA_SAME_CONSTANT(mmio::QUEUE_NUM_MAX, VIRTIO_MMIO_QUEUE_NUM_MAX);
PEPITA_SAME_CONSTANT(mmio::QUEUE_NUM, VIRTIO_MMIO_QUEUE_NUM);
PEPITA_SAME_CONSTANT(mmio::QUEUE_ALIGN, VIRTIO_MMIO_QUEUE_ALIGN);
PEPITA_SAME_CONSTANT(mmio::QUEUE_PFN, VIRTIO_MMIO_QUEUE_PFN);
PEPITA_SAME_CONSTANT(mmio::QUEUE_READY, VIRTIO_MMIO_QUEUE_READY);
PEPITA_SAME_CONSTANT(mmio::QUEUE_NOTIFY, VIRTIO_MMIO_QUEUE_NOTIFY);
PEPITA_SAME_CONSTANT(mmio::INTERRUPT_STATUS, VIRTIO_MMIO_INTERRUPT_STATUS);
PEPITA_SAME_CONSTANT(mmio::INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_ACK);
PEPITA_SAME_CONSTANT(mmio::STATUS, VIRTIO_MMIO_STATUS);
PEPITA_SAME_CONSTANT(mmio::QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_LOW);
PEPITA_SAME_CONSTANT(mmio::QUEUE_DESC_HIGH, VIRTIO_MMIO_QUEUE_DESC_HIGH);
PEPITA_SAME_CONSTANT(mmio::QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_AVAIL_LOW);
PEPITA_SAME_CONSTANT(mmio::QUEUE_AVAIL_HIGH, VIRTIO_MMIO_QUEUE_AVAIL_HIGH);
PEPITA_SAME_CONSTANT(mmio::QUEUE_USED_LOW, VIRTIO_MMIO_QUEUE_USED_LOW);
PEPITA_SAME_CONSTANT(mmio::QUEUE_USED_HIGH, VIRTIO_MMIO_QUEUE_USED_HIGH);
PEPITA_SAME_CONSTANT(mmio::SHM_SEL, VIRTIO_MMIO_SHM_SEL);
PEPITA_SAME_CONSTANT(mmio::SHM_LEN_LOW, VIRTIO_MMIO_SHM_LEN_LOW);
PEPITA_SAME_CONSTANT(mmio::SHM_LEN_HIGH, VIRTIO_MMIO_SHM_LEN_HIGH);
PEPITA_SAME_CONSTANT(mmio::SHM_BASE_LOW, VIRTIO_MMIO_SHM_BASE_LOW);
PEPITA_SAME_CONSTANT(mmio::SHM_BASE_HIGH, VIRTIO_MMIO_SHM_BASE_HIGH);
PEPITA_SAME_CONSTANT(mmio::CONFIG_GENERATION, VIRTIO_MMIO_CONFIG_GENERATION);
PEPITA_SAME_CONSTANT(mmio::CONFIG, VIRTIO_MMIO_CONFIG);
PEPITA_SAME_CONSTANT(mmio::INT_VRING, VIRTIO_MMIO_INT_VRING);
PEPITA_SAME_CONSTANT(mmio::INT_CONFIG, VIRTIO_MMIO_INT_CONFIG);

// --- vsock ---
PEPITA_SAME_LAYOUT(vsock::Header, virtio_vsock_hdr);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, src_cid, src_cid);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, dst_cid, dst_cid);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, src_port, src_port);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, dst_port, dst_port);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, len, len);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, type, type);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, op, op);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, flags, flags);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, buf_alloc, buf_alloc);
PEPITA_SAME_FIELD(vsock::Header, virtio_vsock_hdr, fwd_cnt, fwd_cnt);
PEPITA_SAME_LAYOUT(vsock::Config, virtio_vsock_config);
PEPITA_SAME_FIELD(vsock::Config, virtio_vsock_config, guest_cid, guest_cid);
PEPITA_SAME_LAYOUT(vsock::Event, virtio_vsock_event);
PEPITA_SAME_FIELD(vsock::Event, virtio_vsock_event, id, id);
PEPITA_SAME_CONSTANT(vsock::F_SEQPACKET, VIRTIO_VSOCK_F_SEQPACKET);
PEPITA_SAME_CONSTANT(vsock::EVENT_TRANSPORT_RESET, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
PEPITA_SAME_CONSTANT(vsock::TYPE_STREAM, VIRTIO_VSOCK_TYPE_STREAM);
PEPITA_SAME_CONSTANT(vsock::TYPE_SEQPACKET, VIRTIO_VSOCK_TYPE_SEQPACKET);
PEPITA_SAME_CONSTANT(vsock::OP_INVALID, VIRTIO_VSOCK_OP_INVALID);
PEPITA_SAME_CONSTANT(vsock::OP_REQUEST, VIRTIO_VSOCK_OP_REQUEST);
PEPITA_SAME_CONSTANT(vsock::OP_RESPONSE, VIRTIO_VSOCK_OP_RESPONSE);
PEPITA_SAME_CONSTANT(vsock::OP_RST, VIRTIO_VSOCK_OP_RST);
PEPITA_SAME_CONSTANT(vsock::OP_SHUTDOWN, VIRTIO_VSOCK_OP_SHUTDOWN);
PEPITA_SAME_CONSTANT(vsock::OP_RW, VIRTIO_VSOCK_OP_RW);
PEPITA_SAME_CONSTANT(vsock::OP_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
PEPITA_SAME_CONSTANT(vsock::OP_CREDIT_REQUEST, VIRTIO_VSOCK_OP_CREDIT_REQUEST);
PEPITA_SAME_CONSTANT(vsock::SHUTDOWN_RCV, VIRTIO_VSOCK_SHUTDOWN_RCV);
PEPITA_SAME_CONSTANT(vsock::SHUTDOWN_SEND, VIRTIO_VSOCK_SHUTDOWN_SEND);
PEPITA_SAME_CONSTANT(vsock::SEQ_EOM, VIRTIO_VSOCK_SEQ_EOM);
PEPITA_SAME_CONSTANT(vsock::SEQ_EOR, VIRTIO_VSOCK_SEQ_EOR);

namespace {

TEST(VirtioAbi, NeedEventMatchesKernel) {
  for (unsigned event = 0; event < 70000; event += 997) {
    for (unsigned old_idx : {0u, 5u, 65530u}) {
      for (unsigned delta : {0u, 1u, 7u, 300u}) {
        const auto new_idx = static_cast<uint16_t>(old_idx + delta);
        EXPECT_EQ(
            v::need_event(static_cast<uint16_t>(event), new_idx, static_cast<uint16_t>(old_idx)),
            vring_need_event(static_cast<uint16_t>(event), new_idx,
                             static_cast<uint16_t>(old_idx)) != 0);
      }
    }
  }
}

TEST(VirtioAbi, RingSizesFollowTheSpec) {
  // Spec 2.7: avail = 6 + 2*size, used = 6 + 8*size (with the event fields).
  EXPECT_EQ(v::desc_table_bytes(256), 4096u);
  EXPECT_EQ(v::avail_ring_bytes(256), 6u + 2u * 256u);
  EXPECT_EQ(v::used_ring_bytes(256), 6u + 8u * 256u);
  EXPECT_EQ(pepita::abi::virtio_mmio::MAGIC, 0x74726976u);
}

}  // namespace
