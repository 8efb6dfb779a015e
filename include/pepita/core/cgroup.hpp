#pragma once
// Control groups for process tasks: this process's own cgroup(s) found from /proc/self/cgroup and
// /proc/self/mountinfo (cgroup v2, or the v1 memory, cpu, cpuacct and pids hierarchies), a parent
// `pepita-<pid>-<starttime>` beneath it, and one child cgroup per task attempt with its limits.
// Follows the kernel's Documentation/admin-guide/cgroup-v2.rst (delegation, the no-internal-process
// rule, cgroup.kill) and cgroup-v1/memory.rst. Nothing outside our own subtree is ever changed.
//
//   auto tree = CgroupTree::acquire();                 // Unsupported with the reason if unusable
//   auto cg = tree->make("task-7", {.memory = 200 << 20, .cpus = 0.5});
//   // ... the child writes "0" to each of cg->join_fds() before exec ...
//   CgroupUsage u = cg->usage();                       // peak memory, OOM kills, cpu time
//   cg->end();                                         // kills what is left, removes it
//
//   for (auto& dir : reap_stale_cgroups().value()) std::printf("removed %s\n", dir.c_str());

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita {

enum class CgroupVersion : std::uint8_t { V1, V2 };

/// Where this process's cgroups live. Pure data (see parse_cgroup_layout).
struct CgroupLayout {
  /// v2: our cgroup's directory in the unified hierarchy ("/sys/fs/cgroup/user.slice/x"); empty
  /// when cgroup2 is not mounted.
  std::string unified;
  /// v1: our cgroup's directory in each mounted hierarchy we use ("memory", "cpu", "cpuacct",
  /// "pids"); empty strings for those not mounted.
  std::string memory, cpu, cpuacct, pids;
};

/// Parses /proc/self/cgroup and /proc/self/mountinfo text into our cgroup directories (a mount
/// whose root is not "/", as in a container, is handled by stripping that root). Pure: no file
/// is read. Unsupported when no hierarchy is mounted at all.
Result<CgroupLayout> parse_cgroup_layout(std::string_view proc_self_cgroup,
                                         std::string_view mountinfo);

/// The limits of one attempt's cgroup; 0 means "none".
struct CgroupLimits {
  std::uint64_t memory = 0;  // bytes: v2 memory.max (+ memory.swap.max 0), v1 limit_in_bytes+memsw
  double cpus = 0;           // CFS quota in CPUs (0.5 = half a CPU): cpu.max / cfs_quota_us,
                             // and a weight proportional to it (cpu.weight / cpu.shares)
  std::uint32_t pids = 0;    // pids.max
};

/// What an attempt's cgroup used.
struct CgroupUsage {
  std::uint64_t peak_memory = 0;     // v2 memory.peak (else memory.current), v1 max_usage_in_bytes
  std::uint64_t oom_kills = 0;       // v2 memory.events oom_kill, v1 memory.oom_control oom_kill
  std::uint64_t memory_failcnt = 0;  // v1 memory.failcnt (hit the limit; for old kernels)
  bool oom_kill_counted = false;     // whether oom_kills was readable (else use failcnt)
  std::chrono::nanoseconds cpu{0};   // v2 cpu.stat usage_usec, v1 cpuacct.usage
};

/// One attempt's cgroup: one directory per hierarchy (one on v2). Move-only; the destructor
/// ends it (end()). Made by CgroupTree::make.
class Cgroup {
 public:
  Cgroup() = default;
  Cgroup(Cgroup&&) noexcept = default;
  Cgroup& operator=(Cgroup&& other) noexcept;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  ~Cgroup() { (void)end(); }

  bool valid() const noexcept { return !dirs_.empty(); }
  /// The cgroup.procs files of every directory, open for writing: a process that writes "0" to
  /// each joins the cgroup (the spawned child does, before exec).
  std::vector<int> join_fds() const;
  /// The directory in the memory hierarchy (v1) or the unified one (v2).
  const std::string& path() const noexcept;
  /// Every directory (for messages and tests).
  std::vector<std::string> paths() const;
  /// Reads peak memory, OOM kills and cpu time; fields it cannot read stay 0.
  CgroupUsage usage() const;
  /// Moves process `pid` in (v1: every hierarchy). Errors: the errno of the write.
  Result<void> join(pid_t pid) const;
  /// SIGKILLs every process in it (v2 cgroup.kill; v1 cgroup.procs until empty) and waits until it
  /// is empty (bounded: Busy if something is still there after ~5 s).
  Result<void> kill_all() const;
  /// kill_all(), then removes the directories. Idempotent.
  Result<void> end();

 private:
  friend class CgroupTree;
  struct Dir {
    std::string path;
    UniqueFd procs;  // cgroup.procs, O_WRONLY
  };
  CgroupVersion version_ = CgroupVersion::V1;
  std::vector<Dir> dirs_;  // [0]: memory (v1) or unified (v2)
  std::string cpuacct_;    // v1 cpuacct dir (may equal one in dirs_); empty if none
};

/// This process's `pepita-<pid>-<starttime>` parent cgroup(s). One per process, shared by every
/// holder (acquire() counts references; the last release kills what is left and removes it).
class CgroupTree {
 public:
  /// Finds our cgroups, creates the parent (or takes another reference to it). Unsupported,
  /// saying why and what to do, when cgroups are not mounted or not writable (EACCES, EROFS).
  static Result<std::shared_ptr<CgroupTree>> acquire();
  ~CgroupTree();
  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;

  CgroupVersion version() const noexcept { return version_; }
  /// Whether make() can set a memory limit; if not, memory_note() says why.
  bool can_limit_memory() const noexcept { return memory_note_.empty(); }
  const std::string& memory_note() const noexcept { return memory_note_; }
  /// The parent directory in the memory (v1) or unified (v2) hierarchy.
  const std::string& path() const noexcept { return dirs_.front(); }
  /// A child cgroup `<name>` with `limits`. InvalidArgument for a name with '/' or "..";
  /// Unsupported for a memory limit when !can_limit_memory(); the errno of mkdir or of a limit
  /// file otherwise (naming the file).
  Result<Cgroup> make(std::string_view name, const CgroupLimits& limits);

  struct Private {
    explicit Private() = default;
  };
  CgroupTree(Private, CgroupVersion version, std::vector<std::string> dirs, std::string cpu_dir,
             std::string cpuacct_dir, std::string pids_dir, std::string memory_note);

 private:
  CgroupVersion version_;
  std::vector<std::string> dirs_;  // every parent dir; [0] memory (v1) or unified (v2)
  std::string cpu_dir_, cpuacct_dir_, pids_dir_;  // v1 parents in those hierarchies, or empty
  std::string memory_note_;
};

/// The `pepita-<pid>-<starttime>` name of process `pid` (its start time from /proc/<pid>/stat);
/// empty if the process is gone.
std::string cgroup_parent_name(pid_t pid);

/// Ends what a crashed pepita left: every `pepita-<pid>-<starttime>` directory beneath our own
/// cgroup(s) whose process is gone (no such pid, or a different start time) has its processes
/// killed and is removed, with everything beneath it. Returns the directories removed. Our own
/// and other live processes' are left alone. Unsupported when cgroups cannot be used (see
/// CgroupTree::acquire).
Result<std::vector<std::string>> reap_stale_cgroups();

}  // namespace pepita
