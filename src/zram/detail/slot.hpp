#pragma once
// The page table entry of ZramStore (zram's zram_table_entry), shared by the store and its test
// probe.

#include <atomic>
#include <cstdint>

#include "detail/zs_pool.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram::detail {

/// Slot::flags. Recompression sets kSlotPending under the lock before encoding unlocked; any
/// write, partial write or discard resets the flags, so a page still pending when the encoder
/// relocks holds the bytes it encoded (compaction may have moved them, never changed them).
inline constexpr uint8_t kSlotSecondary = 1;  // encoded with ZramConfig::recompress.algorithm
inline constexpr uint8_t kSlotIdle = 2;       // marked idle, not read or written since
inline constexpr uint8_t kSlotNoShrink = 4;   // the secondary codec did not shrink it: skip
inline constexpr uint8_t kSlotPending = 8;    // being re-encoded

/// One entry of the page table (zram's zram_table_entry). Fields other than `lock` are read and
/// written only with `lock` held.
struct Slot {
  std::atomic<uint16_t> lock{0};  // 0 free, 1 held, 2 held and someone may be waiting
  PageInfo::Kind kind = PageInfo::Kind::Empty;
  uint8_t flags = 0;  // kSlot* bits; every write or discard of the page clears them all
  uint16_t size = 0;  // stored bytes
  uint16_t obj = 0;
  Zspage* zspage = nullptr;  // Huge / Compressed
  uint64_t same_value = 0;   // Same
};

}  // namespace pepita::zram::detail
