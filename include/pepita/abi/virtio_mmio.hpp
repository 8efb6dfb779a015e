#pragma once
// virtio-mmio transport register map (virtio 1.2 spec section 4.2.2, version 2 "modern" layout;
// Linux include/uapi/linux/virtio_mmio.h). Offsets are bytes from the device's MMIO base.

#include <stdint.h>

namespace pepita::abi::virtio_mmio {

inline constexpr uint32_t MAGIC = 0x74726976;  // "virt", little-endian
inline constexpr uint32_t VERSION_MODERN = 2;
inline constexpr uint32_t REGION_SIZE = 0x200;

inline constexpr uint32_t MAGIC_VALUE = 0x000;
inline constexpr uint32_t VERSION = 0x004;
inline constexpr uint32_t DEVICE_ID = 0x008;
inline constexpr uint32_t VENDOR_ID = 0x00c;
inline constexpr uint32_t DEVICE_FEATURES = 0x010;
inline constexpr uint32_t DEVICE_FEATURES_SEL = 0x014;
inline constexpr uint32_t DRIVER_FEATURES = 0x020;
inline constexpr uint32_t DRIVER_FEATURES_SEL = 0x024;
inline constexpr uint32_t GUEST_PAGE_SIZE = 0x028;  // legacy only
inline constexpr uint32_t QUEUE_SEL = 0x030;
inline constexpr uint32_t QUEUE_NUM_MAX = 0x034;
inline constexpr uint32_t QUEUE_NUM = 0x038;
inline constexpr uint32_t QUEUE_ALIGN = 0x03c;  // legacy only
inline constexpr uint32_t QUEUE_PFN = 0x040;    // legacy only
inline constexpr uint32_t QUEUE_READY = 0x044;
inline constexpr uint32_t QUEUE_NOTIFY = 0x050;
inline constexpr uint32_t INTERRUPT_STATUS = 0x060;
inline constexpr uint32_t INTERRUPT_ACK = 0x064;
inline constexpr uint32_t STATUS = 0x070;
inline constexpr uint32_t QUEUE_DESC_LOW = 0x080;
inline constexpr uint32_t QUEUE_DESC_HIGH = 0x084;
inline constexpr uint32_t QUEUE_AVAIL_LOW = 0x090;
inline constexpr uint32_t QUEUE_AVAIL_HIGH = 0x094;
inline constexpr uint32_t QUEUE_USED_LOW = 0x0a0;
inline constexpr uint32_t QUEUE_USED_HIGH = 0x0a4;
inline constexpr uint32_t SHM_SEL = 0x0ac;
inline constexpr uint32_t SHM_LEN_LOW = 0x0b0;
inline constexpr uint32_t SHM_LEN_HIGH = 0x0b4;
inline constexpr uint32_t SHM_BASE_LOW = 0x0b8;
inline constexpr uint32_t SHM_BASE_HIGH = 0x0bc;
inline constexpr uint32_t CONFIG_GENERATION = 0x0fc;
inline constexpr uint32_t CONFIG = 0x100;

inline constexpr uint32_t INT_VRING = 1u << 0;
inline constexpr uint32_t INT_CONFIG = 1u << 1;

}  // namespace pepita::abi::virtio_mmio
