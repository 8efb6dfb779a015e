#pragma once
// Thread placement and process-wide barriers: sched_getaffinity(2) / pthread_setaffinity_np(3),
// pthread_setname_np(3) and membarrier(2). Each returns 0/positive or a negative errno.

#include <span>
#include <vector>

namespace pepita::sys {

/// membarrier(2). cmd is a MEMBARRIER_CMD_* value.
int membarrier(int cmd, unsigned flags) noexcept;

/// Registers this process for MEMBARRIER_CMD_PRIVATE_EXPEDITED; true when the kernel supports
/// it (Linux >= 4.14 and not filtered by seccomp).
bool membarrier_register_private_expedited() noexcept;

/// Issues an expedited private membarrier: every running thread of this process executes a full
/// memory barrier before this returns. 0 or negative errno.
int membarrier_private_expedited() noexcept;

/// CPUs in the calling thread's affinity mask, ascending; empty on failure.
std::vector<int> allowed_cpus();

/// Pins the calling thread to one CPU; 0 or negative errno (-EINVAL outside [0, CPU_SETSIZE)).
int pin_current_thread(int cpu) noexcept;

/// Sets the calling thread's affinity mask to exactly `cpus` (sched_setaffinity(0, ...)); a
/// process it spawns afterwards inherits the mask. 0 or negative errno (-EINVAL: a CPU outside
/// [0, CPU_SETSIZE), an empty set, or none of them allowed by the cpuset).
int set_current_thread_cpus(std::span<const unsigned> cpus) noexcept;

/// Names the calling thread (truncated to 15 chars); 0 or negative errno.
int set_current_thread_name(const char* name) noexcept;

}  // namespace pepita::sys
