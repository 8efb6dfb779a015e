#pragma once
// Starting a program under test as a direct child, the way a user's `kill PID` or Ctrl-C reaches
// it: default dispositions and an empty signal mask (a background job of a non-interactive shell
// may have SIGINT ignored), stdout and stderr in files; and waiting for it with a bound, so a
// hang fails the test instead of running into CI's time limit. And running a piece of a test in
// a forked child (a namespace or identity of its own) with its assertions still counting.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/child_coverage.hpp"

namespace pepita::test {

/// Forks and execs argv[0] with `argv` as its arguments and stdout/stderr written to the files
/// `out` and `err`. Returns the child's pid (-1 when fork failed); exit status 126 means a file
/// could not be opened, 127 that the exec failed.
inline pid_t spawn_child(std::vector<std::string> argv, const std::string& out,
                         const std::string& err) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls from here
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o < 0 || e < 0 || ::dup2(o, 1) < 0 || ::dup2(e, 2) < 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits at most `limit` for the child: its exit code, or 128 + the signal that ended it; nullopt
/// when it was still running then (it is left running: the caller decides).
inline std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0 || std::chrono::steady_clock::now() > until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// Runs `body` in a forked child: for what must not touch the test process (unshare, umount,
/// setuid). GoogleTest assertions in `body` count: a failure prints from the child, whose exit
/// code is then 1 (0 when none failed). Returns that code, or 128 + the signal that ended the
/// child; nullopt when it ran past `limit` (then it is killed and reaped) or fork failed.
inline std::optional<int> run_forked(const std::function<void()>& body,
                                     std::chrono::milliseconds limit = std::chrono::seconds(120)) {
  std::fflush(nullptr);  // what the parent buffered is printed once, by the parent
  const pid_t pid = ::fork();
  if (pid < 0) return std::nullopt;
  if (pid == 0) {
    child_coverage_start();  // the parent's counts stay the parent's
    body();
    const bool failed = ::testing::Test::HasFailure();
    child_coverage_dump();  // _exit writes no counts: what only the child ran would be lost
    std::fflush(nullptr);
    ::_exit(failed ? 1 : 0);
  }
  auto code = wait_child(pid, limit);
  if (!code) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return code;
}

/// run_forked, with `body` unable to start a thread or a process (clone fails with EAGAIN): the
/// child's RLIMIT_NPROC is 0 and its real and effective uid 65534 while body runs (root ignores
/// the limit), root again afterwards. Needs root.
inline std::optional<int> run_forked_without_new_threads(const std::function<void()>& body) {
  return run_forked([&] {
    const rlimit none{0, 0};
    ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &none), 0) << std::strerror(errno);
    ASSERT_EQ(::setresuid(65534, 65534, 0), 0) << std::strerror(errno);
    body();
    ASSERT_EQ(::setresuid(0, 0, 0), 0) << std::strerror(errno);
  });
}

}  // namespace pepita::test
