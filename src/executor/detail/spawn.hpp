#pragma once
// Spawning one child (our own clone(CLONE_VM|CLONE_VFORK) + exec, as glibc's posix_spawn does it,
// plus what posix_spawn cannot do): its own process group (or a pipeline's), default signal
// dispositions, empty mask, stdin/stdout/stderr wired to the given fds, every other inherited fd
// closed, optional cwd and environment, PR_SET_PDEATHSIG(SIGKILL) so it dies with the spawning
// thread, joining the attempt's cgroup(s) and its CPU affinity — all before exec. Private to the
// executor module.

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include <map>
#include <span>
#include <string>
#include <vector>

#include "pepita/task/task.hpp"

namespace pepita::executor::detail {

// The kernel's struct sigaction for rt_sigaction; all zero is SIG_DFL with no flags and mask.
// (A child that shares our memory resets every handler with it, by raw syscall.)
struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};

// Blocks every signal of the calling thread while it lives: a child cloned meanwhile must not
// run a handler of ours on its borrowed stack before it resets them.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockAllSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t old_;
};

struct SpawnFds {
  int stdin_fd;   // read end for the child (a pipe or /dev/null)
  int stdout_fd;  // write ends for the child
  int stderr_fd;
};

/// What the child does beyond the ProcessSpec, before exec.
struct SpawnExtras {
  /// cgroup.procs files open for writing: the child writes "0" to each (joins the cgroup), so it
  /// never runs a single instruction of the task outside it.
  std::span<const int> cgroup_procs{};
  /// sched_setaffinity to these CPUs; empty: inherit the spawning thread's mask.
  std::span<const unsigned> cpus{};
  /// Variables set on top of the spec's environment (the GPU ids).
  const std::map<std::string, std::string>* env = nullptr;
  /// The attempt has a memory limit (a cgroup that may OOM-kill): the sandbox's supervisor then
  /// gets a copy of our memory rather than sharing it (an OOM kill of a process kills every
  /// process that shares its memory).
  bool memory_limit = false;
  /// Sandboxes with `network = "none"`: a prepared loopback-only network namespace to start the
  /// supervisor in (detail/slot_netns.hpp) instead of a new one, and the spawning thread's own to
  /// return to; -1: none (the supervisor makes its own with CLONE_NEWNET).
  int netns = -1;
  int host_netns = -1;
};

/// Spawns the process; returns its pid or a negative errno (ENOENT for a missing binary, EACCES,
/// ENOEXEC, the chdir error for a bad cwd, the cgroup.procs write error or the
/// sched_setaffinity error: the child reports its failure through memory it shares with us).
/// `pgid` 0 makes the child the leader of a new process group; otherwise it joins group `pgid`
/// (a pipeline's later stages join the first stage's group, which must still exist: its leader
/// alive or an unreaped zombie). The child gets SIGKILL when the calling *thread* exits
/// (PR_SET_PDEATHSIG), so call this only from a thread that outlives its children.
/// With `pidfd`, the child's pidfd (O_CLOEXEC, the caller's to close) is stored there from the
/// clone itself (CLONE_PIDFD), or -1 where the kernel has no CLONE_PIDFD (then use pidfd_open).
pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid = 0,
                    const SpawnExtras& extras = {}, int* pidfd = nullptr);

/// envp for `spec`: the parent's environment (when the spec inherits it) with the spec's variables
/// and then `extra` layered on top. The strings live in `storage`, which must outlive the spawn.
std::vector<char*> build_environment(const task::ProcessSpec& spec,
                                     const std::map<std::string, std::string>* extra,
                                     std::vector<std::string>& storage);

}  // namespace pepita::executor::detail
