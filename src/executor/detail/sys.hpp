#pragma once
// Thin wrappers over the process syscalls glibc 2.36 lacks or wraps incompletely: pidfd_open,
// waitid with rusage, and the raw calls a CLONE_VM child makes before exec (spawn.cpp). Each
// returns a value >= 0 or a negative errno; nothing above reads errno.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

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

/// clone(CLONE_VM | CLONE_VFORK | SIGCHLD): runs `fn(arg)` in a new process on `stack_top`,
/// sharing this address space; returns (with the child's pid) once the child has exec'd or
/// exited, or a negative errno.
inline pid_t clone_vfork(int (*fn)(void*), void* stack_top, void* arg) noexcept {
  const int pid = ::clone(fn, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
  return pid < 0 ? -errno : pid;
}

/// Waits for (reaps) `pid`, retrying on EINTR.
inline int wait_pid(pid_t pid) noexcept {
  for (;;) {
    if (::waitpid(pid, nullptr, 0) == pid) return 0;
    if (errno != EINTR) return -errno;
  }
}

// The calls below run in a CLONE_VM child before exec. They go straight to syscall(2): no glibc
// wrapper state, no sanitizer interceptor, nothing that allocates or takes a lock. errno, which
// syscall(2) sets on failure, is the parent thread's (shared TLS); the parent does not read it.
// Not instrumented either (PEPITA_VFORK_CHILD): ASan would poison shadow memory for frames on the
// child's stack that exec never unwinds, and call __asan_handle_no_return before _exit on a stack
// it does not know.
#define PEPITA_VFORK_CHILD __attribute__((no_sanitize("address", "undefined")))
namespace child {

PEPITA_VFORK_CHILD inline int ret(long rc) noexcept {
  return rc < 0 ? -errno : static_cast<int>(rc);
}

/// Kernel signal numbers run 1..64 on every Linux ABI; the kernel's sigset is 8 bytes.
inline constexpr int kSignals = 64;
inline constexpr unsigned long kSigsetBytes = 8;

/// Sets the disposition of `sig` to SIG_DFL (EINVAL for SIGKILL, SIGSTOP).
PEPITA_VFORK_CHILD inline int set_default_action(int sig) noexcept {
  // The kernel's struct sigaction: handler, flags, restorer (where the ABI has one), mask. All
  // zero is SIG_DFL with no flags and an empty mask on every layout.
  struct {
    unsigned long words[4];
  } action{};
  return ret(::syscall(SYS_rt_sigaction, sig, &action, nullptr, kSigsetBytes));
}

/// Unblocks every signal.
PEPITA_VFORK_CHILD inline int clear_sigmask() noexcept {
  const std::uint64_t none = 0;
  return ret(::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, kSigsetBytes));
}

PEPITA_VFORK_CHILD inline int setpgid_self() noexcept { return ret(::syscall(SYS_setpgid, 0, 0)); }
PEPITA_VFORK_CHILD inline int set_parent_death_signal(int sig) noexcept {
  return ret(
      ::syscall(SYS_prctl, PR_SET_PDEATHSIG, static_cast<unsigned long>(sig), 0UL, 0UL, 0UL));
}
PEPITA_VFORK_CHILD inline pid_t getppid() noexcept {
  return static_cast<pid_t>(::syscall(SYS_getppid));
}
PEPITA_VFORK_CHILD inline int dup_at_least(int fd, int min) noexcept {
  return ret(::syscall(SYS_fcntl, fd, F_DUPFD, min));
}
PEPITA_VFORK_CHILD inline int clear_cloexec(int fd) noexcept {
  return ret(::syscall(SYS_fcntl, fd, F_SETFD, 0));
}
PEPITA_VFORK_CHILD inline int dup_to(int fd, int target) noexcept {
  return ret(::syscall(SYS_dup3, fd, target, 0));
}

/// Closes every fd >= `first` (close_range(2), Linux 5.9; a loop up to RLIMIT_NOFILE before).
PEPITA_VFORK_CHILD inline int close_from(int first) noexcept {
  const long rc = ::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U);
  if (rc == 0 || (errno != ENOSYS && errno != EINVAL)) return ret(rc);
  struct rlimit limit {};
  if (::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, nullptr, &limit) < 0) return -errno;
  const rlim_t end = limit.rlim_cur < (rlim_t{1} << 20) ? limit.rlim_cur : (rlim_t{1} << 20);
  for (rlim_t fd = static_cast<rlim_t>(first); fd < end; ++fd) ::syscall(SYS_close, fd);
  return 0;
}

PEPITA_VFORK_CHILD inline int chdir(const char* dir) noexcept {
  return ret(::syscall(SYS_chdir, dir));
}
/// Returns only on failure.
PEPITA_VFORK_CHILD inline int execve(const char* path, char* const argv[],
                                     char* const envp[]) noexcept {
  return ret(::syscall(SYS_execve, path, argv, envp));
}

}  // namespace child

}  // namespace pepita::executor::sys
