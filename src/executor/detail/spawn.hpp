#pragma once
// posix_spawn set-up for one child: its own process group (or a pipeline's), default signal
// dispositions, empty mask, stdin/stdout/stderr wired to the given fds, every other inherited fd
// closed, optional cwd and environment; and the CPU affinity a child inherits from the spawning
// thread. Private to the executor module.

#include <sys/types.h>

#include <span>
#include <vector>

#include "pepita/task/task.hpp"

namespace pepita::executor::detail {

struct SpawnFds {
  int stdin_fd;   // read end for the child (a pipe or /dev/null)
  int stdout_fd;  // write ends for the child
  int stderr_fd;
};

/// Spawns the process; returns its pid or a negative errno (ENOENT for a missing binary, EACCES,
/// ENOEXEC, or the chdir error for a bad cwd: glibc reports the child's failure to the parent).
/// `pgid` 0 makes the child the leader of a new process group; otherwise it joins group `pgid`
/// (a pipeline's later stages join the first stage's group, which must still exist: its leader
/// alive or an unreaped zombie).
pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid = 0);

/// Narrows the calling thread's CPU mask for the children it spawns while this lives (glibc's
/// posix_spawn has no affinity attribute; a child inherits the spawning thread's mask, and only
/// this thread spawns, so nothing else sees the narrowed mask), then restores the old mask.
class ScopedSpawnAffinity {
 public:
  ScopedSpawnAffinity() = default;
  ScopedSpawnAffinity(const ScopedSpawnAffinity&) = delete;
  ScopedSpawnAffinity& operator=(const ScopedSpawnAffinity&) = delete;
  ~ScopedSpawnAffinity();
  /// 0, or a negative errno when the mask cannot be set (the thread keeps its own mask then).
  /// An empty `cpus` changes nothing.
  int apply(std::span<const unsigned> cpus);

 private:
  std::vector<unsigned> saved_;  // non-empty once apply() changed the mask
};

}  // namespace pepita::executor::detail
