#pragma once
// Counts the io_uring_enter(2) calls a piece of code really makes: it runs in a forked child
// under ptrace (PTRACE_TRACEME, then a stop at every syscall entry read with
// PTRACE_GET_SYSCALL_INFO, Linux 5.3+), so every path into the kernel is seen, not only the ones
// going through pepita's sys layer. The child marks phases with close(kPhaseBase - phase), a call
// nothing else makes, and the trace splits the enters by phase. It can also fail chosen enters
// with an errno of its choosing (on x86-64): the call is skipped, so the kernel never sees it, and
// the child sees the error as the kernel's answer.
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace pepita::io_uring::test {

struct EnterTrace {
  bool ptrace_denied = false;  // PTRACE_TRACEME failed: nothing was run
  int exit_status = -1;        // the child's exit status (128 + signal when killed)
  std::string child_error;     // what the child's body reported ("" = it succeeded)
  /// Phase -> the `flags` argument of each io_uring_enter made during it (phase 0: before the
  /// first mark).
  std::map<int, std::vector<std::uint64_t>> enters;
  bool inject_unsupported = false;  // failures were asked for on an architecture without them

  /// The flags of each io_uring_enter made during `phase` (empty when it made none).
  [[nodiscard]] std::vector<std::uint64_t> enters_in(int phase) const {
    const auto it = enters.find(phase);
    return it == enters.end() ? std::vector<std::uint64_t>{} : it->second;
  }
  /// Why nothing was traced as asked ("" when it was): the test skips with it.
  [[nodiscard]] std::string skip_reason() const {
    if (inject_unsupported) return "failing a syscall under ptrace needs x86-64";
    if (ptrace_denied) return "ptrace(PTRACE_TRACEME) is not permitted here";
    return "";
  }
};

/// Phase -> what the first io_uring_enter calls of that phase return, in order: a negative errno
/// fails that call without it reaching the kernel, 0 lets it through; later calls go through.
using EnterFailures = std::map<int, std::vector<int>>;

inline constexpr int kPhaseBase = -4000;

/// Starts phase `phase` (>= 1) of a traced body.
inline void mark_phase(int phase) { (void)::close(kPhaseBase - phase); }

/// Runs `body` in a traced child and returns what it did. `body` returns "" on success or a
/// description of what went wrong (gtest assertions do not cross the fork). The child is killed
/// by SIGALRM after `limit_s` seconds so a hang fails instead of blocking the test run.
inline EnterTrace trace_io_uring_enter(const std::function<std::string()>& body,
                                       unsigned limit_s = 30, const EnterFailures& fail = {}) {
  EnterTrace trace;
#if !defined(__x86_64__)
  if (!fail.empty()) {
    trace.inject_unsupported = true;
    return trace;
  }
#endif
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    trace.child_error = "pipe2 failed";
    return trace;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(report[0]);
    if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) ::_exit(77);
    ::raise(SIGSTOP);  // the tracer sets its options, then lets us run
    ::alarm(limit_s);
    const std::string error = body();
    if (!error.empty()) (void)!::write(report[1], error.data(), error.size());
    ::_exit(error.empty() ? 0 : 1);
  }
  ::close(report[1]);
  int phase = 0;
  bool options_set = false;
  int injected = 0;  // the errno the skipped call in progress returns at its exit stop
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, __WALL) != pid) break;
    if (WIFEXITED(status)) {
      trace.exit_status = WEXITSTATUS(status);
      break;
    }
    if (WIFSIGNALED(status)) {
      trace.exit_status = 128 + WTERMSIG(status);
      break;
    }
    if (!WIFSTOPPED(status)) continue;
    int deliver = 0;
    const int sig = WSTOPSIG(status);
    if (!options_set && sig == SIGSTOP) {
      ::ptrace(PTRACE_SETOPTIONS, pid, nullptr,
               reinterpret_cast<void*>(std::uintptr_t{PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL}));
      options_set = true;
    } else if (sig == (SIGTRAP | 0x80)) {
      __ptrace_syscall_info info{};
      const long got =
          ::ptrace(PTRACE_GET_SYSCALL_INFO, pid, reinterpret_cast<void*>(sizeof info), &info);
      if (got > 0 && info.op == PTRACE_SYSCALL_INFO_ENTRY) {
        const auto nr = static_cast<long>(info.entry.nr);
        if (nr == SYS_close && static_cast<int>(info.entry.args[0]) < kPhaseBase) {
          phase = kPhaseBase - static_cast<int>(info.entry.args[0]);
        } else if (nr == SYS_io_uring_enter) {
          std::vector<std::uint64_t>& seen = trace.enters[phase];
          seen.push_back(info.entry.args[3]);
          const auto planned = fail.find(phase);
          if (planned != fail.end() && seen.size() <= planned->second.size())
            injected = planned->second[seen.size() - 1];
#if defined(__x86_64__)
          if (injected != 0) {
            // Syscall number -1: the kernel skips the call (and returns -ENOSYS, replaced below).
            user_regs_struct regs{};
            ::ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
            regs.orig_rax = static_cast<unsigned long long>(-1);
            ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
          }
#endif
        }
      } else if (got > 0 && info.op == PTRACE_SYSCALL_INFO_EXIT && injected != 0) {
#if defined(__x86_64__)
        user_regs_struct regs{};
        ::ptrace(PTRACE_GETREGS, pid, nullptr, &regs);
        regs.rax = static_cast<unsigned long long>(static_cast<long long>(injected));
        ::ptrace(PTRACE_SETREGS, pid, nullptr, &regs);
#endif
        injected = 0;
      }
    } else {
      deliver = sig;  // a real signal for the child (SIGALRM on a hang): pass it on
    }
    ::ptrace(PTRACE_SYSCALL, pid, nullptr,
             reinterpret_cast<void*>(static_cast<std::uintptr_t>(deliver)));
  }
  char buf[512];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;) trace.child_error.append(buf, n);
  ::close(report[0]);
  trace.ptrace_denied = !options_set && trace.exit_status == 77;
  return trace;
}

}  // namespace pepita::io_uring::test
