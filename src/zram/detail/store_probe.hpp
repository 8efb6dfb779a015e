#pragma once
// Test access to a ZramStore's page table: corrupts a stored object in place, the one way to
// reach the store's -EIO read path (a bit flip in RAM) without a faulty DIMM, and holds a page
// lock as an operation in flight would. Not used by the library itself.

#include <cstdint>
#include <cstring>

#include "detail/slot.hpp"
#include "detail/zs_pool.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram::detail {

/// Tests only: when set, recompression calls it on the recompressing thread for each page between
/// encoding (unlocked) and relocking to install, so a test can rewrite the page in that window.
inline thread_local void (*recompress_midpoint)(void* context, uint64_t index) = nullptr;
inline thread_local void* recompress_midpoint_context = nullptr;

struct StoreProbe {
  /// Overwrites the compressed bytes of page `index` with 0xFF (an LZ4 literal run, or zstd
  /// magic, that cannot decode to 4096 bytes). False when the page holds no compressed object.
  static bool corrupt(ZramStore& store, uint64_t index) noexcept {
    if (index >= store.num_pages_) return false;
    store.lock(index);
    const Slot& slot = store.slots_[index];
    const bool compressed = slot.kind == PageInfo::Kind::Compressed;
    if (compressed) std::memset(ZsPool::address({slot.zspage, slot.obj}), 0xFF, slot.size);
    store.unlock(index);
    return compressed;
  }

  /// Holds page `index`'s lock as a read or write in flight does, until release(): the one way
  /// to have reset() meet a busy page deterministically.
  static void hold(ZramStore& store, uint64_t index) noexcept { store.lock(index); }
  static void release(ZramStore& store, uint64_t index) noexcept { store.unlock(index); }
};

}  // namespace pepita::zram::detail
