#pragma once
// Spawning one child (clone with CLONE_VM | CLONE_VFORK, then exec): its own process group,
// default signal dispositions, empty mask, SIGKILL when its parent thread dies, stdin/stdout/
// stderr wired to the given fds, every other inherited fd closed, optional cwd and environment.
// Private to the executor module.

#include <sys/types.h>

#include "pepita/task/task.hpp"

namespace pepita::executor::detail {

struct SpawnFds {
  int stdin_fd;   // read end for the child (a pipe or /dev/null)
  int stdout_fd;  // write ends for the child
  int stderr_fd;
};

/// Spawns the process; returns its pid or a negative errno (ENOENT for a missing binary, EACCES,
/// ENOEXEC, or the chdir error for a bad cwd: the child reports its failure to the parent). A bare
/// name is looked up in the caller's PATH, as posix_spawnp does.
///
/// The child gets PR_SET_PDEATHSIG = SIGKILL, which the kernel sends when the *thread* that
/// called this exits, not the process: call it only from a thread that outlives the child
/// (ProcessExecutor's reactor, which reaps every child before it returns). Then a parent killed
/// with SIGKILL, which runs no teardown, still leaves no task running. Limits: the signal reaches
/// the child only (its own children are reparented, as before), and the kernel clears it when
/// the child execs a set-user-ID, set-group-ID or file-capability binary.
pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds);

}  // namespace pepita::executor::detail
