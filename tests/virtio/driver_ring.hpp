#pragma once
// Test-side driver of a split virtqueue: lays out the descriptor table and rings in a
// GuestMemory and lets a test craft any chain, well formed or not.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "pepita/abi/virtio.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio::testing {

namespace v = abi::virtio;

struct DriverRing {
  static constexpr uint64_t kMemSize = 4 << 20;
  static constexpr uint64_t kDesc = 0x0;
  static constexpr uint64_t kAvail = 0x40000;
  static constexpr uint64_t kUsed = 0x50000;
  static constexpr uint64_t kBuffers = 0x100000;

  /// Rings in private anonymous RAM, or (when `shared` is given) in that view of RAM the test
  /// shares with a backend.
  explicit DriverRing(uint16_t queue_size = 16, const GuestMemory* shared = nullptr)
      : mem(std::move(memory::GuestMemory::anonymous(PhysAddr(0), kMemSize).value())),
        view(shared != nullptr ? shared : &mem),
        size(queue_size) {
    layout = QueueLayout{size, PhysAddr(kDesc), PhysAddr(kAvail), PhysAddr(kUsed)};
  }

  Queue activate(QueueFeatures f = {.event_idx = true, .indirect = true}) {
    auto q = Queue::activate(layout, *view, f);
    EXPECT_TRUE(q.has_value()) << (q ? "" : q.error().to_string());
    return std::move(q).value();
  }

  void set_desc(uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
                uint16_t next = 0) {
    ASSERT_TRUE(view->write(PhysAddr(table + 16ull * i), v::Desc{addr, len, flags, next}));
  }
  void desc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    set_desc(kDesc, i, addr, len, flags, next);
  }
  /// Puts `head` in the next avail slot and publishes it.
  void publish(uint16_t head) {
    ASSERT_TRUE(view->write(PhysAddr(kAvail + 4 + 2ull * (avail_idx % size)), head));
    ++avail_idx;
    ASSERT_TRUE(view->write(PhysAddr(kAvail + 2), avail_idx));
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx = idx;
    ASSERT_TRUE(view->write(PhysAddr(kAvail + 2), idx));
  }
  void set_used_event(uint16_t e) {
    ASSERT_TRUE(view->write(PhysAddr(kAvail + 4 + 2ull * size), e));
  }
  uint16_t avail_event() { return view->read<uint16_t>(PhysAddr(kUsed + 4 + 8ull * size)).value(); }
  uint16_t used_idx() { return view->read<uint16_t>(PhysAddr(kUsed + 2)).value(); }
  v::UsedElem used(uint16_t i) {
    return view->read<v::UsedElem>(PhysAddr(kUsed + 4 + 8ull * (i % size))).value();
  }
  /// A fresh buffer area of `len` bytes (16-byte aligned).
  uint64_t alloc(uint32_t len) {
    const uint64_t at = next_buf;
    next_buf += (len + 15) & ~15u;
    return at;
  }
  void fill(uint64_t gpa, const void* src, size_t len) {
    auto dst = view->span(PhysAddr(gpa), len);
    ASSERT_TRUE(dst.has_value());
    std::memcpy(dst->data(), src, len);
  }
  std::vector<std::byte> bytes(uint64_t gpa, size_t len) {
    auto src = view->span(PhysAddr(gpa), len);
    EXPECT_TRUE(src.has_value());
    if (!src) return {};
    return {src->begin(), src->end()};
  }

  memory::GuestMemory mem;
  const GuestMemory* view;
  uint16_t size;
  QueueLayout layout;
  uint16_t avail_idx = 0;
  uint64_t next_buf = kBuffers;
};

}  // namespace pepita::virtio::testing
