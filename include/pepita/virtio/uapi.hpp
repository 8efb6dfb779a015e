#pragma once
// The virtio names of the reference crate (pepita::virtio::{VirtqDesc, VirtQueue, VirtioBlock,
// BlockRequestHeader, device_type, status, ring_flags, ...}) over pepita's virtio ABI and devices:
// each is the real spec struct or device, with the crate's spelling. Values follow the virtio 1.2
// spec and Linux's uapi virtio headers (checked in tests/virtio/uapi_test.cpp). The crate's vsock
// types are in pepita/virtio/vsock_crate.hpp.
//
//   VirtQueue queue = PEPITA_TRY(VirtQueue::activate(VirtQueueConfig{256, desc, avail, used},
//   ram)); Chain chain; while (PEPITA_TRY(queue.pop(chain))) { /* serve it */
//   PEPITA_TRY_VOID(queue.add_used(...)); }

#include <cstdint>

#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio {

/// Device IDs (spec 5; VIRTIO_ID_*).
namespace device_type {
inline constexpr uint32_t NET = abi::virtio::ID_NET;
inline constexpr uint32_t BLK = abi::virtio::ID_BLOCK;
inline constexpr uint32_t CONSOLE = abi::virtio::ID_CONSOLE;
inline constexpr uint32_t RNG = abi::virtio::ID_RNG;
inline constexpr uint32_t BALLOON = 5;
inline constexpr uint32_t SCSI = 8;
inline constexpr uint32_t P9 = 9;
inline constexpr uint32_t GPU = 16;
inline constexpr uint32_t INPUT = 18;
inline constexpr uint32_t VSOCK = abi::virtio::ID_VSOCK;
inline constexpr uint32_t CRYPTO = 20;
inline constexpr uint32_t FS = 26;
}  // namespace device_type

/// Device status bits (spec 2.1; VIRTIO_CONFIG_S_*).
namespace status {
inline constexpr uint8_t ACKNOWLEDGE = abi::virtio::STATUS_ACKNOWLEDGE;
inline constexpr uint8_t DRIVER = abi::virtio::STATUS_DRIVER;
inline constexpr uint8_t DRIVER_OK = abi::virtio::STATUS_DRIVER_OK;
inline constexpr uint8_t FEATURES_OK = abi::virtio::STATUS_FEATURES_OK;
inline constexpr uint8_t DEVICE_NEEDS_RESET = abi::virtio::STATUS_NEEDS_RESET;
inline constexpr uint8_t FAILED = abi::virtio::STATUS_FAILED;
}  // namespace status

/// Ring notification-suppression flags (VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY).
namespace ring_flags {
inline constexpr uint16_t AVAIL_NO_INTERRUPT = abi::virtio::AVAIL_F_NO_INTERRUPT;
inline constexpr uint16_t USED_NO_NOTIFY = abi::virtio::USED_F_NO_NOTIFY;
}  // namespace ring_flags

/// The queue size pepita's devices offer by default (BlkOptions::max_queue_size) and the spec's
/// largest split queue.
inline constexpr uint16_t DEFAULT_QUEUE_SIZE = 256;
inline constexpr uint16_t MAX_QUEUE_SIZE = abi::virtio::MAX_QUEUE_SIZE;

using VirtqDesc = abi::virtio::Desc;          // make/has_next/is_write_only/is_indirect
using VirtqAvail = abi::virtio::AvailHeader;  // flags, idx; the ring follows
using VirtqUsedElem = abi::virtio::UsedElem;  // id, len
using VirtqUsed = abi::virtio::UsedHeader;    // flags, idx; the ring follows
using VirtQueueConfig = QueueLayout;          // size and the three guest addresses
using VirtQueue = Queue;                      // activate/pop/add_used/should_notify
using BlockRequestType = abi::virtio_blk::RequestType;
using BlockRequestHeader = abi::virtio_blk::RequestHeader;  // read/write/flush/get_type/SIZE
using BlockConfig = abi::virtio_blk::Config;
using VirtioBlock = blk::BlkDevice;  // create over any blk_mq::BlockDevice; activate/reset

}  // namespace pepita::virtio
