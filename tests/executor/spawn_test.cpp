// The executor's own clone(CLONE_VM|CLONE_VFORK) spawn: what the child gets before exec, and how
// its failures come back.
#include "detail/spawn.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace pepita::executor::detail {
namespace {

// Runs `spec` with stdout into a pipe; its output and wait status (or the spawn's -errno).
struct Ran {
  pid_t pid = -1;
  std::string out;
  int status = 0;
};

Ran run(const task::ProcessSpec& spec, const SpawnExtras& extras = {}) {
  Ran r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return r;
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  r.pid = spawn_process(spec, {null, p[1], p[1]}, 0, extras);
  ::close(p[1]);
  ::close(null);
  if (r.pid > 0) {
    char buf[4096];
    long n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<std::size_t>(n));
    ::waitpid(r.pid, &r.status, 0);
  }
  ::close(p[0]);
  return r;
}

task::ProcessSpec sh(const std::string& script) {
  task::ProcessSpec s;
  s.path = "/bin/sh";
  s.args = {"-c", script};
  return s;
}

TEST(Spawn, AMissingBinaryOnPathIsEnoentFromTheParent) {
  task::ProcessSpec s;
  s.path = "pepita-no-such-binary-on-path";
  EXPECT_EQ(spawn_process(s, {0, 1, 2}), -ENOENT);
}

TEST(Spawn, ABadCwdComesBackAsTheChildsErrnoAndLeavesNoZombie) {
  task::ProcessSpec s = sh("true");
  s.cwd = "/pepita/no/such/dir";
  EXPECT_EQ(run(s).pid, -ENOENT);
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1) << "the failed child was reaped";
  EXPECT_EQ(errno, ECHILD);
}

TEST(Spawn, TheChildHasDefaultDispositionsAndAnEmptyMask) {
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  struct sigaction old_int {};
  ASSERT_EQ(::sigaction(SIGINT, &ign, &old_int), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);
  const Ran r = run(sh("grep -E '^(SigIgn|SigBlk)' /proc/self/status"));
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  ASSERT_GT(r.pid, 0) << -r.pid;
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(Spawn, OnlyStdinStdoutAndStderrAreInherited) {
  const int leaky = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC on purpose
  ASSERT_GE(leaky, 0);
  const Ran r = run(sh("ls /proc/$$/fd; true"));
  ::close(leaky);
  ASSERT_GT(r.pid, 0) << -r.pid;
  EXPECT_EQ(r.out, "0\n1\n2\n");
}

TEST(Spawn, TheChildLeadsItsOwnProcessGroupWithTheRequestedCpus) {
  const unsigned cpu = 0;
  const Ran r = run(sh("echo $$; echo \" $(cut -d' ' -f5 /proc/$$/stat)\"; grep Cpus_allowed_list "
                       "/proc/self/status"),
                    {.cgroup_procs = {}, .cpus = {&cpu, 1}, .env = nullptr});
  ASSERT_GT(r.pid, 0) << -r.pid;
  const std::string pid = std::to_string(r.pid);
  EXPECT_EQ(r.out.substr(0, pid.size() + 1), pid + "\n") << r.out;
  EXPECT_NE(r.out.find(" " + pid + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Cpus_allowed_list:\t0\n"), std::string::npos) << r.out;
}

TEST(Spawn, ExtraVariablesOverrideTheSpecsAndTheParents) {
  task::ProcessSpec s = sh("echo \"$A|$B\"");
  s.env = {{"A", "spec"}, {"B", "spec"}};
  const std::map<std::string, std::string> extra{{"B", "extra"}};
  const Ran r = run(s, {.cgroup_procs = {}, .cpus = {}, .env = &extra});
  ASSERT_GT(r.pid, 0) << -r.pid;
  EXPECT_EQ(r.out, "spec|extra\n");
}

}  // namespace
}  // namespace pepita::executor::detail
