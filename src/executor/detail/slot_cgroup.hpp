#pragma once
// SlotCgroup: one cgroup per process-executor slot, reused by the attempts that run in that slot
// and ask for no limits, so a `/bin/true` task pays no mkdir/rmdir per attempt (on cgroup v1 up
// to four hierarchies each; creating and removing a memory cgroup dominated the spawn path). It
// keeps what a per-attempt cgroup gave such a task: whatever the attempt leaves running is killed
// when it ends (Cgroup::kill_all), and its peak memory and CPU time are its own — the peak is reset
// before each attempt (v1 memory.max_usage_in_bytes, v2 memory.peak's per-fd reset of Linux
// 6.12) and the CPU time is read as a delta of the slot's counter. Files follow the kernel's
// cgroup-v1/memory.rst and cgroup-v2.rst. Private to the executor module.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/core/cgroup.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::executor::detail {

class SlotCgroup {
 public:
  SlotCgroup() = default;
  SlotCgroup(SlotCgroup&&) noexcept = default;
  SlotCgroup& operator=(SlotCgroup&&) noexcept = default;

  /// Makes cgroup `name` beneath `tree` with no limits but `pids` (pids.max, 0: none; a
  /// sandbox's process limit, which holds per attempt since a slot runs one attempt at a time)
  /// and opens its counters. Unsupported when its peak memory cannot be reset (v2 before Linux
  /// 6.12, or no memory controller): the caller then gives each attempt a cgroup of its own.
  static Result<SlotCgroup> make(CgroupTree& tree, std::string_view name, std::uint32_t pids = 0);

  bool valid() const noexcept { return cgroup_.valid(); }
  /// The cgroup.procs files the child writes "0" to before exec (see Cgroup::join_fds).
  std::vector<int> join_fds() const { return cgroup_.join_fds(); }
  const Cgroup& cgroup() const noexcept { return cgroup_; }
  /// The pids limit it was made with (0: none); an attempt asking for another needs another.
  std::uint32_t pids() const noexcept { return pids_; }
  /// Whether pids.max holds that limit (false without the pids controller: the caller then
  /// falls back to RLIMIT_NPROC).
  bool pids_enforced() const noexcept { return pids_enforced_; }

  /// Before an attempt: resets the peak memory watermark. Errors: the errno of the write (the
  /// caller then drops this cgroup).
  Result<void> begin();
  /// After the attempt's processes were reaped: its peak memory and CPU time (since begin()),
  /// then kills whatever it left in the cgroup. Busy when that did not empty it, or when charges
  /// above 4 MiB plus 64 pages per CPU remain (page cache the attempt wrote; below that, what the
  /// kernel keeps charged ahead or frees late), which would inflate the next attempt's peak: the
  /// caller then ends this cgroup and makes a fresh one for the next attempt. The usage is valid
  /// either way.
  CgroupUsage finish(Result<void>& reusable);

 private:
  Cgroup cgroup_;
  CgroupVersion version_ = CgroupVersion::V1;
  UniqueFd procs_;    // cgroup.procs of the memory (v1) or unified (v2) dir, O_RDONLY
  UniqueFd peak_;     // v1 memory.max_usage_in_bytes (O_RDWR), v2 memory.peak (O_RDWR)
  UniqueFd current_;  // v1 memory.usage_in_bytes, v2 memory.current
  UniqueFd cpu_;      // v1 cpuacct.usage, v2 cpu.stat (closed when there is no such file)
  std::chrono::nanoseconds cpu_base_{0};  // the counter when the slot was last empty
  std::uint32_t pids_ = 0;
  bool pids_enforced_ = false;
};

}  // namespace pepita::executor::detail
