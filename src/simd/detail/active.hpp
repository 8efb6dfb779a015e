#pragma once
// The active kernel table, read on every kernel call: one relaxed atomic load and a predicted
// branch. Include only from baseline translation units (kernels.cpp, sgemm.cpp, dispatch.cpp):
// an inline function emitted from an ISA file could be the copy the linker keeps.

#include <atomic>

#include "detail/table.hpp"

namespace pepita::simd::detail {

// Set by dispatch.cpp on first use and by every level change. Relaxed: the tables are
// constants, so the pointer publishes no data that needs ordering.
extern std::atomic<const Kernels*> g_active_table;

/// First use: probes the CPU, applies PEPITA_SIMD, publishes and returns the table.
const Kernels& init_active_kernels() noexcept;

inline const Kernels& active_kernels() noexcept {
  const Kernels* table = g_active_table.load(std::memory_order_relaxed);
  if (table != nullptr) [[likely]]
    return *table;
  return init_active_kernels();
}

}  // namespace pepita::simd::detail
