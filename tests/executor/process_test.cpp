#include "pepita/executor/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;
using task::Task;

ExecutionResult run_one(Executor& exec, const Task& task, std::stop_token stop = {}) {
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  auto started =
      exec.start(task, std::move(stop), [&p](ExecutionResult r) { p.set_value(std::move(r)); });
  EXPECT_TRUE(started) << started.error().message();
  if (!started) return {};
  return f.get();
}

std::unique_ptr<ProcessExecutor> make(std::chrono::nanoseconds grace = 2s) {
  auto e = ProcessExecutor::create({.slots = 4, .kill_grace = grace});
  EXPECT_TRUE(e) << e.error().message();
  return std::move(*e);
}

Task sh(const std::string& script) {
  return Task::binary("/bin/sh").args({"-c", script}).build().value();
}

// A process that is gone or a zombie no longer runs anything.
bool process_running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] != 'Z';
}

TEST(ProcessExecutor, CapturesOutputAndExitStatus) {
  auto exec = make();
  auto r = run_one(*exec, sh("echo out; echo err >&2; exit 0"));
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_GT(r.wall, 0ns);
  EXPECT_GT(r.max_rss_kb, 0);
  EXPECT_TRUE(r.ok());

  auto failed = run_one(*exec, sh("exit 3"));
  EXPECT_EQ(failed.status, Status::Failed);
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_NE(failed.error.find("status 3"), std::string::npos);
}

TEST(ProcessExecutor, ReportsSignalsAndCpuTime) {
  auto exec = make();
  auto r = run_one(*exec, sh("kill -KILL $$"));
  EXPECT_EQ(r.status, Status::Signaled);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_NE(r.error.find("KILL"), std::string::npos);
  auto busy = run_one(*exec, sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"));
  EXPECT_EQ(busy.status, Status::Succeeded);
  EXPECT_GT(busy.cpu, 10ms);
}

TEST(ProcessExecutor, OutputCapCountsDroppedBytes) {
  auto exec = make();
  auto t =
      Task::binary("/usr/bin/head").args({"-c", "300000", "/dev/zero"}).output_cap(1000).build();
  auto r = run_one(*exec, t.value());
  EXPECT_EQ(r.status, Status::Succeeded);
  EXPECT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_EQ(r.stdout_bytes, 300000u);
  EXPECT_TRUE(r.output_truncated());
}

TEST(ProcessExecutor, StdinEnvCwd) {
  auto exec = make();
  std::string big(1 << 20, 'x');  // larger than a pipe: stdin and stdout must flow together
  auto cat = run_one(*exec, Task::binary("cat").stdin(big).build().value());
  EXPECT_EQ(cat.status, Status::Succeeded) << cat.error;
  EXPECT_EQ(cat.stdout_data.size(), big.size());
  auto env = run_one(*exec, Task::binary("/bin/sh")
                                .args({"-c", "echo $FOO; pwd"})
                                .env("FOO", "bar baz")
                                .cwd("/tmp")
                                .build()
                                .value());
  EXPECT_EQ(env.stdout_data, "bar baz\n/tmp\n");
  auto clean =
      run_one(*exec, Task::binary("/usr/bin/env").clear_env().env("ONLY", "1").build().value());
  EXPECT_EQ(clean.stdout_data, "ONLY=1\n");
}

TEST(ProcessExecutor, LaunchFailuresAreResultsNotCrashes) {
  auto exec = make();
  auto missing = run_one(*exec, Task::binary("/nonexistent/bin").build().value());
  EXPECT_EQ(missing.status, Status::LaunchFailed);
  EXPECT_NE(missing.error.find("ENOENT"), std::string::npos) << missing.error;
  auto bad_cwd = run_one(*exec, Task::binary("/bin/true").cwd("/nonexistent-dir").build().value());
  EXPECT_EQ(bad_cwd.status, Status::LaunchFailed);
  auto fn = Task::function([] {}).build().value();
  EXPECT_FALSE(exec->start(fn, {}, [](ExecutionResult) {}));
}

// The spawn does its own PATH search (no malloc in the child): execvp's errors, not others.
TEST(ProcessExecutor, PathSearchErrorsMatchExecvp) {
  auto exec = make();
  auto found = run_one(*exec, Task::binary("true").build().value());
  EXPECT_EQ(found.status, Status::Succeeded) << found.error;
  auto missing = run_one(*exec, Task::binary("pepita-no-such-binary").build().value());
  EXPECT_EQ(missing.status, Status::LaunchFailed);
  EXPECT_NE(missing.error.find("ENOENT"), std::string::npos) << missing.error;
  // A file that is there but not executable: EACCES, for a path and for a PATH entry (relative
  // to the task's cwd: an empty PATH element is the current directory).
  const auto dir =
      std::filesystem::temp_directory_path() / ("pepita-noexec-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "noexec") << "#!/bin/sh\n";
  auto denied = run_one(*exec, Task::binary((dir / "noexec").string()).build().value());
  EXPECT_EQ(denied.status, Status::LaunchFailed);
  EXPECT_NE(denied.error.find("EACCES"), std::string::npos) << denied.error;
  std::filesystem::remove_all(dir);
}

// The reactor thread blocks SIGPIPE and the test may ignore signals: a task starts with an empty
// mask and default dispositions all the same, in its own process group.
TEST(ProcessExecutor, ChildStartsWithCleanSignalStateInItsOwnGroup) {
  auto exec = make();
  struct sigaction ignore {
  }, old_int{}, old_quit{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  auto r = run_one(*exec, Task::binary("/bin/sh")
                              .args({"-c",
                                     "grep -E '^Sig(Blk|Ign)' /proc/self/status; "
                                     "[ \"$(ps -o pgid= $$ | tr -d ' ')\" = \"$$\" ] && echo own"})
                              .build()
                              .value());
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  EXPECT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nown\n");
}

TEST(ProcessExecutor, TimeoutKillsWholeProcessGroup) {
  auto exec = make(200ms);
  const auto pidfile =
      std::filesystem::temp_directory_path() / ("pepita-grandchild-" + std::to_string(::getpid()));
  // The grandchild ignores nothing; the shell itself ignores SIGTERM, so SIGKILL must follow.
  auto t = Task::binary("/bin/sh")
               .args({"-c", "trap '' TERM; sleep 30 & echo $! > " + pidfile.string() + "; wait"})
               .timeout(200ms)
               .build();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(*exec, t.value());
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.status, Status::TimedOut) << r.error;
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(took, 5s);
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  in >> grandchild;
  std::filesystem::remove(pidfile);
  ASSERT_GT(grandchild, 0);
  for (int i = 0; i < 100 && process_running(grandchild); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(process_running(grandchild)) << "grandchild " << grandchild << " survived";
}

TEST(ProcessExecutor, CancelStopsARunningChild) {
  auto exec = make(200ms);
  std::stop_source stop;
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  ASSERT_TRUE(exec->start(sh("sleep 30"), stop.get_token(),
                          [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  std::this_thread::sleep_for(100ms);
  stop.request_stop();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().status, Status::Cancelled);
  std::stop_source pre;
  pre.request_stop();
  EXPECT_EQ(run_one(*exec, sh("sleep 30"), pre.get_token()).status, Status::Cancelled);
}

// Issue 19: a task must not outlive a driver killed with SIGKILL (which runs no teardown). A
// forked copy of the test stands in for the driver: it starts `sleep 60` on a ProcessExecutor and
// reports the task's pid through a pipe; the test SIGKILLs it, and the task must die with it
// (PR_SET_PDEATHSIG, set by the spawn in the child before exec).
TEST(ProcessExecutor, TasksDieWithAKilledParent) {
  const auto pidfile =
      std::filesystem::temp_directory_path() / ("pepita-pdeathsig-" + std::to_string(::getpid()));
  std::filesystem::remove(pidfile);
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t driver = ::fork();
  ASSERT_GE(driver, 0);
  if (driver == 0) {
    ::close(report[0]);
    pid_t task_pid = -1;
    auto exec = ProcessExecutor::create({.slots = 1});
    // The shell execs sleep: the task's pid is the spawned child's own.
    if (exec && (*exec)->start(sh("echo $$ > " + pidfile.string() + "; exec sleep 60"), {},
                               [](ExecutionResult) {})) {
      for (int i = 0; i < 500 && task_pid <= 0; ++i) {
        std::ifstream in(pidfile);
        if (!(in >> task_pid)) std::this_thread::sleep_for(10ms);
      }
    }
    [[maybe_unused]] ssize_t n = ::write(report[1], &task_pid, sizeof task_pid);
    for (;;) ::pause();  // until the test kills it; never runs gtest's teardown
  }
  ::close(report[1]);
  pid_t task_pid = -1;
  const ssize_t got = ::read(report[0], &task_pid, sizeof task_pid);
  ::close(report[0]);
  std::filesystem::remove(pidfile);
  ASSERT_EQ(::kill(driver, SIGKILL), 0);
  ASSERT_EQ(::waitpid(driver, nullptr, 0), driver);
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof task_pid));
  ASSERT_GT(task_pid, 0) << "the forked driver could not start its task";
  // The orphan is reparented to init (or a subreaper), which reaps it; a zombie runs nothing.
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (process_running(task_pid) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  const bool survived = process_running(task_pid);
  if (survived) ::kill(task_pid, SIGKILL);  // leave nothing behind either way
  EXPECT_FALSE(survived) << "task " << task_pid << " outlived its SIGKILLed parent by 2 s";
}

TEST(ProcessExecutor, NoFdLeaksNoZombies) {
  const int leaky = ::fcntl(STDERR_FILENO, F_DUPFD, 100);  // deliberately without CLOEXEC
  ASSERT_GE(leaky, 100);
  {
    auto exec = make();
    auto r = run_one(*exec, Task::binary("/bin/ls").args({"/proc/self/fd"}).build().value());
    EXPECT_EQ(r.status, Status::Succeeded);
    EXPECT_EQ(r.stdout_data, "0\n1\n2\n3\n") << "the child inherited extra descriptors";
    std::atomic<int> ok{0};
    std::atomic<int> finished{0};
    auto t = Task::binary("/bin/true").build().value();
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(exec->start(t, {}, [&](ExecutionResult res) {
        ok += res.ok();
        ++finished;
      }));
    }
    exec->shutdown();
    EXPECT_EQ(finished.load(), 200);
    EXPECT_EQ(ok.load(), 200);
    EXPECT_FALSE(exec->start(t, {}, [](ExecutionResult) {}));
  }
  ::close(leaky);
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD) << "a child was left unreaped";
}

}  // namespace
}  // namespace pepita::executor
