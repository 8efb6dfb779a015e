#pragma once
// The page table entry of ZramStore (zram's zram_table_entry), shared by the store and its test
// probe.

#include <atomic>
#include <cstdint>

#include "detail/zs_pool.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram::detail {

/// One entry of the page table (zram's zram_table_entry). Fields other than `lock` are read and
/// written only with `lock` held.
struct Slot {
  std::atomic<uint16_t> lock{0};  // 0 free, 1 held, 2 held and someone may be waiting
  PageInfo::Kind kind = PageInfo::Kind::Empty;
  uint16_t size = 0;  // stored bytes
  uint16_t obj = 0;
  Zspage* zspage = nullptr;  // Huge / Compressed
  uint64_t same_value = 0;   // Same
};

}  // namespace pepita::zram::detail
