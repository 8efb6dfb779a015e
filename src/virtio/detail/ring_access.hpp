#pragma once
// Ordered access to the 16-bit ring indices the driver and the device share (virtio 1.2 2.7.7,
// 2.7.13). The indices live in guest RAM; their alignment is checked when a queue activates.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace pepita::virtio::detail {

// SAFETY: `bytes` is a 2-byte span of mapped guest RAM at a 2-aligned address (Queue::activate
// checked the ring alignments, and every index sits at an even offset), so it can be viewed as
// one uint16_t for an atomic access. The driver writes it concurrently: only atomic access.
inline uint16_t load_acquire_u16(std::span<std::byte> bytes) {
  auto* p = reinterpret_cast<uint16_t*>(bytes.data());
  return std::atomic_ref<uint16_t>(*p).load(std::memory_order_acquire);
}
inline uint16_t read_once_u16(std::span<std::byte> bytes) {
  auto* p = reinterpret_cast<uint16_t*>(bytes.data());  // SAFETY: as load_acquire_u16
  return std::atomic_ref<uint16_t>(*p).load(std::memory_order_relaxed);
}
inline void store_release_u16(std::span<std::byte> bytes, uint16_t v) {
  auto* p = reinterpret_cast<uint16_t*>(bytes.data());  // SAFETY: as load_acquire_u16
  std::atomic_ref<uint16_t>(*p).store(v, std::memory_order_release);
}
/// Full barrier: orders our index store before our read of the driver's suppression field
/// (the store-load pair of the event-index protocol; the driver has the mirror-image fence).
inline void full_fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace pepita::virtio::detail
