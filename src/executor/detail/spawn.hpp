#pragma once
// posix_spawn set-up for one child: its own process group, default signal dispositions, empty
// mask, stdin/stdout/stderr wired to the given fds, every other inherited fd closed, optional cwd
// and environment. Private to the executor module.

#include <sys/types.h>

#include "pepita/task/task.hpp"

namespace pepita::executor::detail {

struct SpawnFds {
  int stdin_fd;   // read end for the child (a pipe or /dev/null)
  int stdout_fd;  // write ends for the child
  int stderr_fd;
};

/// Spawns the process; returns its pid or a negative errno (ENOENT for a missing binary, EACCES,
/// ENOEXEC, or the chdir error for a bad cwd: glibc reports the child's failure to the parent).
pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds);

}  // namespace pepita::executor::detail
