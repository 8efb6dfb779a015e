#pragma once
// Thin wrappers over the process syscalls glibc 2.36 lacks or wraps incompletely: pidfd_open and
// waitid with rusage. Each returns a value >= 0 or a negative errno; nothing above reads errno.

#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace pepita::executor::sys {

#ifndef P_PIDFD
inline constexpr idtype_t P_PIDFD = static_cast<idtype_t>(3);
#endif

/// A pidfd for `pid` (CLOEXEC is implied by the kernel).
inline int pidfd_open(pid_t pid) noexcept {
  const long rc = ::syscall(SYS_pidfd_open, pid, 0u);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

/// Reaps the child behind `pidfd` if it has exited (WNOHANG), filling `info` and `usage`.
/// Returns 0 when reaped, 1 when still running, or a negative errno.
inline int waitid_pidfd(int pidfd, siginfo_t* info, struct rusage* usage) noexcept {
  info->si_pid = 0;
  // The raw syscall takes a fifth rusage argument that the glibc wrapper does not expose.
  const long rc = ::syscall(SYS_waitid, P_PIDFD, pidfd, info, WEXITED | WNOHANG, usage);
  if (rc < 0) return -errno;
  return info->si_pid == 0 ? 1 : 0;
}

/// Sends `sig` to every process in group `pgid`.
inline int kill_group(pid_t pgid, int sig) noexcept { return ::kill(-pgid, sig) < 0 ? -errno : 0; }

}  // namespace pepita::executor::sys
