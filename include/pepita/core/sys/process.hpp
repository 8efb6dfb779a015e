#pragma once
// Process system calls by pidfd (pidfd_open(2), pidfd_send_signal(2), waitid(P_PIDFD) with
// rusage), which glibc 2.36 lacks or wraps incompletely, and kill of a process group. Each returns
// a value >= 0 or a negative errno; nothing above reads errno.

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <string>

#include "pepita/core/sys/check.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::sys {

/// A pidfd for `pid` (CLOEXEC is implied by the kernel), or -errno (-ESRCH: no such process,
/// -ENOSYS: kernel older than 5.3).
int pidfd_open(pid_t pid, unsigned flags = 0) noexcept;
/// The same, owned, with a message naming the pid.
Result<UniqueFd> open_pidfd(pid_t pid);

/// Sends `sig` to the process behind `pidfd` (race-free against pid reuse): 0 or -errno.
int pidfd_send_signal(int pidfd, int sig) noexcept;

/// Reaps the child behind `pidfd` if it has exited (`options` defaults to WEXITED | WNOHANG),
/// filling `info` and, when not null, `usage` (the raw syscall's fifth argument the glibc wrapper
/// hides). Returns 0 when reaped, 1 when still running (WNOHANG), or -errno.
int waitid_pidfd(int pidfd, siginfo_t* info, struct rusage* usage,
                 int options = WEXITED | WNOHANG) noexcept;

/// kill(2): 0 or -errno. kill_group signals every process of group `pgid`.
int kill(pid_t pid, int sig) noexcept;
int kill_group(pid_t pgid, int sig) noexcept;

/// execvp's search, done before any fork: `name` itself when it has a '/', else the first entry
/// of PATH (unset: /usr/local/bin:/usr/bin:/bin; an empty entry is the cwd) holding an executable
/// regular file. 0 with `out` set, -ENOENT when no entry has the name, -EACCES when one has it
/// but may not run it. The one PATH search of the executor, the job loader and the result cache.
int find_executable(const std::string& name, std::string& out);

}  // namespace pepita::sys
