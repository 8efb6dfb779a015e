#include "pepita/executor/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "common/child.hpp"
#include "common/require.hpp"
#include "common/syscall_fault.hpp"
#include "common/temp_dir.hpp"
#include "executor/process_test_util.hpp"

namespace pepita::executor {
namespace {

using test::make;
using test::process_running;
using test::run_one;
using test::wait_for_file;

using namespace std::chrono_literals;
using task::Task;

Task sh(const std::string& script) {
  return Task::binary("/bin/sh").args({"-c", script}).build().value();
}

// run_one with a bound: a reactor stuck in a blocking read or write fails the test instead of
// hanging it (abandon() then kills the attempt, which unblocks the reactor).
ExecutionResult run_within(ProcessExecutor& exec, const Task& task, std::chrono::seconds limit) {
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  auto started = exec.start(task, {}, [&p](ExecutionResult r) { p.set_value(std::move(r)); });
  EXPECT_TRUE(started) << started.error().message();
  if (!started) return {};
  if (f.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "no result within " << limit.count() << " s: the reactor is stuck";
    exec.abandon();
  }
  return f.get();
}

TEST(ProcessExecutor, CapturesOutputAndExitStatus) {
  auto exec = make();
  const Task named = Task::binary("/bin/sh")
                         .args({"-c", "echo out; echo err2 >&2; exit 0"})
                         .name("hi")
                         .build()
                         .value();
  auto r = run_one(*exec, named);
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.id, named.id());
  EXPECT_EQ(r.name, "hi");
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err2\n");
  EXPECT_EQ(r.stdout_bytes, 4u);
  EXPECT_EQ(r.stderr_bytes, 5u);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "");
  EXPECT_GT(r.wall, 0ns);
  EXPECT_GT(r.max_rss_kb, 0);
  EXPECT_TRUE(r.ok());

  auto failed = run_one(*exec, sh("exit 3"));
  EXPECT_EQ(failed.status, Status::Failed);
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.signal, 0);
  EXPECT_EQ(failed.error, "exited with status 3");
}

TEST(ProcessExecutor, ReportsSignalsAndCpuTime) {
  auto exec = make();
  auto r = run_one(*exec, sh("kill -KILL $$"));
  EXPECT_EQ(r.status, Status::Signaled);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.error, "killed by signal 9 (KILL)");
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
  auto cat = run_within(*exec, Task::binary("cat").stdin(big).build().value(), 20s);
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

// A reactor thread the kernel will not start (RLIMIT_NPROC, in a forked child) makes create()
// fail saying so, instead of throwing.
TEST(ProcessExecutor, AReactorThreadThatCannotStartIsResourceExhausted) {
  PEPITA_REQUIRE_CAPABILITY(root);  // the child switches uid to be bound by RLIMIT_NPROC
  const auto code = pepita::test::run_forked_without_new_threads([] {
    auto e = ProcessExecutor::create({.slots = 1, .kill_grace = 1s});
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code(), ErrorCode::ResourceExhausted);
    EXPECT_NE(e.error().message().find("cannot start the process reactor thread: "),
              std::string::npos)
        << e.error().message();
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
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
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.error, "timed out after 0.200000 s; killed by signal 9 (KILL)");
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
  const ExecutionResult r = f.get();
  EXPECT_EQ(r.status, Status::Cancelled);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.error, "cancelled; killed by signal 15 (TERM)");
  std::stop_source pre;
  pre.request_stop();
  const ExecutionResult never = run_one(*exec, sh("sleep 30"), pre.get_token());
  EXPECT_EQ(never.status, Status::Cancelled);
  EXPECT_EQ(never.exit_code, -1);
  EXPECT_EQ(never.signal, 0);
  EXPECT_EQ(never.error, "cancelled before it started");
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

TEST(ProcessExecutor, DefaultSlotsAreTheOnlineCpusAndNegativeGraceIsRefused) {
  auto defaults = ProcessExecutor::create({});
  ASSERT_TRUE(defaults) << defaults.error().message();
  EXPECT_EQ((*defaults)->slots(), static_cast<std::size_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
  auto bad = ProcessExecutor::create({.slots = 1, .kill_grace = -1ms});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("kill_grace must not be negative"), std::string::npos);
}

// A child that traps SIGTERM and exits with a status of its own: the result keeps that status
// and still says why the attempt ended (its timeout, or the cancel).
TEST(ProcessExecutor, ChildExitingOnSigtermKeepsItsStatusAndTheReason) {
  auto exec = make(5s);
  pepita::test::TempDir dir{"exec-sigterm"};
  const std::string ready = dir.file("ready");
  // The trap is the script's first command; the timeout leaves the shell ample time to reach it.
  const std::string script = "trap 'exit 3' TERM; touch " + ready + "; sleep 30 & wait";
  auto timed =
      run_one(*exec, Task::binary("/bin/sh").args({"-c", script}).timeout(1s).build().value());
  EXPECT_EQ(timed.status, Status::TimedOut) << timed.error;
  EXPECT_EQ(timed.exit_code, 3);
  EXPECT_EQ(timed.error, "timed out; exited with status 3 after SIGTERM");

  std::filesystem::remove(ready);
  std::stop_source stop;
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  ASSERT_TRUE(exec->start(sh(script), stop.get_token(),
                          [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  ASSERT_TRUE(wait_for_file(ready));  // the trap is set
  stop.request_stop();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  const ExecutionResult cancelled = f.get();
  EXPECT_EQ(cancelled.status, Status::Cancelled) << cancelled.error;
  EXPECT_EQ(cancelled.exit_code, 3);
  EXPECT_EQ(cancelled.error, "cancelled");
}

// A cancelled child that ignores SIGTERM is SIGKILLed once the grace period is over.
TEST(ProcessExecutor, ACancelledChildIgnoringSigtermIsKilledAfterTheGrace) {
  auto exec = make(200ms);
  pepita::test::TempDir dir{"exec-ignore-term"};
  const std::string ready = dir.file("ready");
  std::stop_source stop;
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  ASSERT_TRUE(exec->start(sh("trap '' TERM; touch " + ready + "; sleep 30"), stop.get_token(),
                          [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  ASSERT_TRUE(wait_for_file(ready));  // SIGTERM is ignored, by the shell and by its sleep
  stop.request_stop();
  if (f.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "no SIGKILL within 10 s of the cancel";
    exec->abandon();
  }
  const ExecutionResult r = f.get();
  EXPECT_EQ(r.status, Status::Cancelled) << r.error;
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.error, "cancelled; killed by signal 9 (KILL)");
}

TEST(ProcessExecutor, AbandonKillsRunningProcessGroupsAtOnce) {
  auto exec = make(30s);
  pepita::test::TempDir dir{"exec-abandon"};
  const std::string ready = dir.file("ready");
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  ASSERT_TRUE(exec->start(sh("touch " + ready + "; exec sleep 30"), {},
                          [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  ASSERT_TRUE(wait_for_file(ready));  // the child runs
  // SIGKILL, no SIGTERM and no 30 s grace. The child may run before the reactor has recorded its
  // group, so abandon() is repeated (it is idempotent) until the result arrives.
  bool ended = false;
  for (int i = 0; i < 500 && !ended; ++i) {
    exec->abandon();
    ended = f.wait_for(10ms) == std::future_status::ready;
  }
  ASSERT_TRUE(ended) << "abandon() did not end the attempt within 5 s";
  const ExecutionResult r = f.get();
  EXPECT_EQ(r.status, Status::Signaled) << r.error;
  EXPECT_EQ(r.signal, SIGKILL);
}

TEST(ProcessExecutor, ChildThatNeverReadsItsStdinDoesNotStallTheExecutor) {
  auto exec = make();
  // 4 MiB is far more than a pipe holds; the child exits at once, so the rest meets EPIPE.
  auto r =
      run_one(*exec, Task::binary("/bin/true").stdin(std::string(4 << 20, 'x')).build().value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.exit_code, 0);
  // The executor (and its reactor thread) still works: SIGPIPE did not take the process down.
  auto echo = run_one(*exec, Task::binary("/bin/cat").stdin("still here").build().value());
  EXPECT_EQ(echo.status, Status::Succeeded) << echo.error;
  EXPECT_EQ(echo.stdout_data, "still here");
}

// Both output pipes are read without blocking: a child that writes more than a pipe holds to
// stderr and then to stdout never waits on a reactor stuck reading the other one.
TEST(ProcessExecutor, ChildFillingStderrThenStdoutIsDrainedWithoutStalling) {
  auto exec = make();
  auto r = run_within(*exec, sh("head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero"), 20s);
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stderr_bytes, 300000u);
  EXPECT_EQ(r.stdout_bytes, 300000u);
}

// A timer left by an earlier attempt in the same slot (it ended before its timeout) is stale: the
// next attempt there, without a timeout, runs to its end.
TEST(ProcessExecutor, AnEarlierAttemptsTimeoutDoesNotEndTheNextInItsSlot) {
  auto exec = make(200ms);
  const auto quick = run_one(*exec, Task::binary("/bin/true").timeout(300ms).build().value());
  ASSERT_EQ(quick.status, Status::Succeeded) << quick.error;
  const auto slow = run_one(*exec, sh("sleep 1"));
  EXPECT_EQ(slow.status, Status::Succeeded) << slow.error;
  EXPECT_EQ(slow.error, "");
}

// A waitid(2) that fails (ECHILD, from a seccomp filter in a forked child: the executor's reaps
// are its only waitid calls with P_PIDFD, 3, as first argument) ends the attempt Failed with no
// exit status, saying so; in a pipeline, naming the first stage it failed for.
TEST(ProcessExecutor, AFailedWaitidEndsTheAttemptFailedSayingSo) {
  const auto code = pepita::test::run_forked([] {
    ASSERT_EQ(pepita::test::fail_syscalls({{.nr = SCMP_SYS(waitid), .error = ECHILD}}), "");
    auto exec = make();
    const ExecutionResult one = run_one(*exec, Task::binary("/bin/true").build().value());
    EXPECT_EQ(one.status, Status::Failed);
    EXPECT_EQ(one.exit_code, -1);
    EXPECT_EQ(one.signal, 0);
    EXPECT_EQ(one.error, "waitid: No child processes");
    const ExecutionResult two = run_one(*exec, Task::pipeline()
                                                   .add_stage(task::BinaryTask("/bin/true"))
                                                   .add_stage(task::BinaryTask("/bin/true"))
                                                   .build()
                                                   .value());
    EXPECT_EQ(two.status, Status::Failed);
    EXPECT_EQ(two.exit_code, -1);
    EXPECT_EQ(two.signal, 0);
    EXPECT_EQ(
        two.error,
        "pipeline stage 0 ('true') waitid: No child processes; the other stages were stopped");
  });
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace pepita::executor
