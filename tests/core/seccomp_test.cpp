#include "pepita/core/seccomp.hpp"

#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace pepita::sys {
namespace {

bool lists(const SeccompFilter& f, int nr, const std::string& name) {
  return std::find(f.denied.begin(), f.denied.end(), std::pair{nr, name}) != f.denied.end();
}

// Forks a child that installs `filter` (no_new_privs first, as the sandbox does) and then runs
// `body`; returns its wait status. Between fork and _exit the child makes only raw system calls.
template <typename Body>
int in_filtered_child(const SeccompFilter& filter, Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    sock_fprog prog{static_cast<unsigned short>(filter.program.size()),
                    const_cast<sock_filter*>(filter.program.data())};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(100);
    if (::syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) ::_exit(101);
    ::_exit(body());
  }
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

bool killed_by_sigsys(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS; }

TEST(SeccompDenyFilter, IsBuiltOncePerIdAndAction) {
  auto kill7 = seccomp_deny_filter(7, SeccompDeny::Kill);
  auto kill7_again = seccomp_deny_filter(7, SeccompDeny::Kill);
  auto notify7 = seccomp_deny_filter(7, SeccompDeny::Notify);
  auto kill8 = seccomp_deny_filter(8, SeccompDeny::Kill);
  ASSERT_TRUE(kill7 && kill7_again && notify7 && kill8);
  EXPECT_EQ(*kill7, *kill7_again);
  EXPECT_NE(*kill7, *notify7);
  EXPECT_NE(*kill7, *kill8);
  EXPECT_NE(*notify7, *kill8);
  // Different actions give different programs over the same list.
  EXPECT_EQ((*kill7)->denied, (*notify7)->denied);
  EXPECT_NE((*kill7)->program.size(), 0u);
}

TEST(SeccompDenyFilter, ListsEveryDeniedSyscallOfThisArchitectureByNumberAndName) {
  auto f = seccomp_deny_filter(0, SeccompDeny::Kill);
  ASSERT_TRUE(f) << f.error().message();
  const SeccompFilter& filter = **f;
  EXPECT_TRUE(lists(filter, __NR_ptrace, "ptrace"));
  EXPECT_TRUE(lists(filter, __NR_mount, "mount"));
  EXPECT_TRUE(lists(filter, __NR_bpf, "bpf"));
  EXPECT_TRUE(lists(filter, __NR_init_module, "init_module"));
  EXPECT_TRUE(lists(filter, __NR_kexec_load, "kexec_load"));
  EXPECT_TRUE(lists(filter, __NR_setuid, "setuid"));
  EXPECT_TRUE(lists(filter, __NR_clone, "clone (new namespace)"));
  // Every name on the list that x86-64 has is in the filter (a few, e.g. nfsservctl, are not).
  EXPECT_GE(filter.denied.size(), seccomp_denied_syscalls().size() - 4);
  EXPECT_EQ(filter.name(__NR_ptrace), "ptrace");
  EXPECT_EQ(filter.name(__NR_getpid), "syscall " + std::to_string(__NR_getpid));
}

TEST(SeccompDenyFilter, KillsAChildOnADeniedSyscallAndLetsTheRestRun) {
  const auto id = static_cast<std::uint32_t>(::getuid());
  auto f = seccomp_deny_filter(id, SeccompDeny::Kill);
  ASSERT_TRUE(f) << f.error().message();
  const SeccompFilter& filter = **f;

  // An allowed syscall runs and the child exits normally.
  int status = in_filtered_child(filter, [] { return ::syscall(__NR_getpid) > 0 ? 0 : 1; });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);

  EXPECT_TRUE(killed_by_sigsys(in_filtered_child(
      filter, [] { return static_cast<int>(::syscall(__NR_ptrace, 0, 0, 0, 0)); })));
  EXPECT_TRUE(killed_by_sigsys(in_filtered_child(
      filter, [] { return static_cast<int>(::syscall(__NR_unshare, CLONE_NEWUSER)); })));
  // clone with a CLONE_NEW* flag is denied; plain clone (fork) is not.
  EXPECT_TRUE(killed_by_sigsys(in_filtered_child(filter, [] {
    return static_cast<int>(::syscall(__NR_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
  })));
  status = in_filtered_child(filter, [] {
    const long child = ::syscall(__NR_clone, SIGCHLD, 0, 0, 0, 0);
    if (child == 0) ::_exit(0);
    int st = 0;
    return child > 0 && ::waitpid(static_cast<pid_t>(child), &st, 0) == child ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // The setuid family may switch to the sandbox's own id only.
  status = in_filtered_child(filter, [id] { return ::syscall(__NR_setuid, id) == 0 ? 0 : 1; });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(killed_by_sigsys(in_filtered_child(
      filter, [id] { return static_cast<int>(::syscall(__NR_setuid, id + 1)); })));

  // io_uring and clone3 answer ENOSYS instead of killing.
  status = in_filtered_child(filter, [] {
    return ::syscall(__NR_io_uring_setup, 4, nullptr) == -1 && errno == ENOSYS ? 0 : 1;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace pepita::sys
