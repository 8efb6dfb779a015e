// The serve executor (executor/serve.hpp): one persistent server per slot answering frames on
// fd 3, reused across tasks, replaced after a crash, a timeout or a new command; bad options
// and non-process tasks are errors. The server is tests/executor/serve_echo.cc.
#include "pepita/executor/serve.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "executor/process_test_util.hpp"

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;

task::Task request(const std::string& word, std::chrono::nanoseconds timeout = 0ns,
                   std::map<std::string, std::string> env = {}) {
  auto b = task::Task::binary(PEPITA_SERVE_ECHO);
  b.stdin(word);
  for (auto& [k, v] : env) b.env(k, v);
  if (timeout.count() > 0) b.timeout(timeout);
  return b.build().value();
}

std::shared_ptr<Executor> make(std::size_t slots = 1) {
  ServeOptions o;
  o.slots = slots;
  o.what = "echo server";
  return make_serve_executor(std::move(o)).value();
}

ExecutionResult run(Executor& exec, const task::Task& t, std::stop_token stop = {}) {
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  auto started = exec.start(t, stop, [&p](ExecutionResult r) { p.set_value(std::move(r)); });
  EXPECT_TRUE(started) << (started ? "" : started.error().to_string());
  return f.get();
}

TEST(ServeExecutor, AnswersEachTaskWithTheServersReplyFrame) {
  auto exec = make();
  const ExecutionResult r = run(*exec, request("hello"));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "hello");
  EXPECT_EQ(r.exit_code, 0);
}

// With stdin and stdout closed the server's socket and pipes get descriptors 0 and 1: they are
// moved above the descriptors the server is given (0..3), which still get the right ends.
TEST(ServeExecutor, AnswersWhenItsOwnStdioIsClosed) {
  const auto code = pepita::test::run_forked([] {
    ::close(0);
    const int out = ::fcntl(1, F_DUPFD_CLOEXEC, 10);  // gtest still prints to it
    ASSERT_GE(out, 0);
    ::close(1);
    auto exec = make();
    const ExecutionResult r = run(*exec, request("hello"));
    ::dup2(out, 1);
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_EQ(r.stdout_data, "hello");
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
}

TEST(ServeExecutor, ReusesOneServerPerSlotAcrossTasks) {
  auto exec = make();
  const std::string first = run(*exec, request("pid")).stdout_data;
  ASSERT_FALSE(first.empty());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run(*exec, request("pid")).stdout_data, first);
}

// A server killed from outside between tasks fails only the task sent to it, saying it died
// before it took the task; a new server takes the next one.
TEST(ServeExecutor, AServerKilledBetweenTasksFailsTheNextTaskAndIsReplaced) {
  auto exec = make();
  const std::string pid = run(*exec, request("pid")).stdout_data;
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(::kill(std::stoi(pid), SIGKILL), 0);
  for (int i = 0; i < 1000 && test::process_running(std::stoi(pid)); ++i) {
    std::this_thread::sleep_for(10ms);  // until it is a zombie: its socket is closed
  }
  ASSERT_FALSE(test::process_running(std::stoi(pid)));
  const ExecutionResult r = run(*exec, request("hello"));
  EXPECT_NE(r.status, Status::Succeeded);
  EXPECT_NE(r.error.find("before it took this task"), std::string::npos) << r.error;
  const ExecutionResult next = run(*exec, request("pid"));
  ASSERT_EQ(next.status, Status::Succeeded) << next.error;
  EXPECT_NE(next.stdout_data, pid);
}

TEST(ServeExecutor, ServersOutputBecomesTheTasksStderr) {
  auto exec = make();
  const ExecutionResult r = run(*exec, request("print:chatter"));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "printed");
  EXPECT_NE(r.stderr_data.find("chatter"), std::string::npos) << r.stderr_data;
}

TEST(ServeExecutor, CrashFailsOnlyThatTaskAndANewServerTakesTheNext) {
  auto exec = make();
  const std::string before = run(*exec, request("pid")).stdout_data;
  const ExecutionResult crashed = run(*exec, request("crash"));
  EXPECT_EQ(crashed.status, Status::Failed);
  EXPECT_EQ(crashed.exit_code, 7);
  EXPECT_NE(crashed.error.find("echo server"), std::string::npos) << crashed.error;
  EXPECT_NE(crashed.error.find("exited with status 7"), std::string::npos) << crashed.error;
  const ExecutionResult segv = run(*exec, request("segv"));
  EXPECT_EQ(segv.status, Status::Signaled);
  EXPECT_EQ(segv.signal, SIGSEGV);
  const ExecutionResult after = run(*exec, request("pid"));
  ASSERT_EQ(after.status, Status::Succeeded) << after.error;
  EXPECT_NE(after.stdout_data, before);
}

TEST(ServeExecutor, TimeoutKillsTheServerAndTheNextTaskGetsANewOne) {
  auto exec = make();
  const std::string before = run(*exec, request("pid")).stdout_data;
  const ExecutionResult r = run(*exec, request("sleep", 200ms));
  EXPECT_EQ(r.status, Status::TimedOut);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  const ExecutionResult after = run(*exec, request("pid"));
  ASSERT_EQ(after.status, Status::Succeeded) << after.error;
  EXPECT_NE(after.stdout_data, before);
}

TEST(ServeExecutor, CancelKillsTheServerAndReportsCancelled) {
  auto exec = make();
  std::stop_source stop;
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  ASSERT_TRUE(exec->start(request("sleep"), stop.get_token(),
                          [&p](ExecutionResult r) { p.set_value(std::move(r)); }));
  std::this_thread::sleep_for(100ms);
  stop.request_stop();
  EXPECT_EQ(f.get().status, Status::Cancelled);
}

TEST(ServeExecutor, ReplyOverTheOutputCapFailsTheTask) {
  auto exec = make();
  auto t = task::Task::binary(PEPITA_SERVE_ECHO).stdin("big").output_cap(100).build().value();
  const ExecutionResult r = run(*exec, t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("output cap"), std::string::npos) << r.error;
  EXPECT_EQ(run(*exec, request("ok")).stdout_data, "ok");
}

TEST(ServeExecutor, ANewCommandOrEnvironmentReplacesTheSlotsServer) {
  auto exec = make();
  const std::string a = run(*exec, request("pid", 0ns, {{"MODE", "a"}})).stdout_data;
  EXPECT_EQ(run(*exec, request("pid", 0ns, {{"MODE", "a"}})).stdout_data, a);
  EXPECT_NE(run(*exec, request("pid", 0ns, {{"MODE", "b"}})).stdout_data, a);
}

TEST(ServeExecutor, MissingProgramIsALaunchFailureNamingIt) {
  auto exec = make();
  auto t = task::Task::binary("/nonexistent/server").stdin("x").build().value();
  const ExecutionResult r = run(*exec, t);
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("/nonexistent/server"), std::string::npos) << r.error;
}

TEST(ServeExecutor, RelativeProgramPathIsALaunchFailureSayingWhy) {
  auto exec = make();
  auto t = task::Task::binary("serve_echo").stdin("x").build().value();
  const ExecutionResult r = run(*exec, t);
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("absolute path"), std::string::npos) << r.error;
}

TEST(ServeExecutor, RejectsNonProcessTasks) {
  auto exec = make();
  auto t = task::Task::function([](std::stop_token) -> Result<std::string> { return {}; })
               .build()
               .value();
  auto started = exec->start(t, {}, [](ExecutionResult) {});
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), ErrorCode::InvalidArgument);
}

// A fixed command serves every task whatever its own path; abandon() kills the servers at once.
TEST(ServeExecutor, FixedCommandServesEveryTaskAndAbandonKillsTheServers) {
  ServeOptions o;
  o.slots = 2;
  o.backend = "echo-fixed";
  o.command = ServeCommand{.argv = {PEPITA_SERVE_ECHO, "--serve", "3"}, .env = {}};
  auto exec = make_serve_executor(std::move(o)).value();
  EXPECT_EQ(exec->backend().name(), "echo-fixed");
  EXPECT_EQ(exec->slots(), 2u);
  // The task names another program; the fixed command answers it.
  const auto t = task::Task::binary("/bin/false").stdin("pid").build().value();
  const ExecutionResult r = run(*exec, t);
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const pid_t server = static_cast<pid_t>(std::stol(r.stdout_data));
  ASSERT_GT(server, 0);
  ASSERT_EQ(::kill(server, 0), 0);
  exec->abandon();
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(server) + "/stat");
    std::string line;
    gone = !std::getline(stat, line) || line.find(") Z ") != std::string::npos;
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "server " << server << " survived abandon()";
  exec->shutdown();
}

TEST(ServeExecutor, BadOptionsAreInvalidArgument) {
  ServeOptions zero;
  zero.slots = 0;
  EXPECT_EQ(make_serve_executor(zero).error().code(), ErrorCode::InvalidArgument);
  ServeOptions many;
  many.slots = 1025;
  EXPECT_EQ(make_serve_executor(many).error().code(), ErrorCode::InvalidArgument);
  ServeOptions empty;
  empty.command = ServeCommand{};
  EXPECT_EQ(make_serve_executor(empty).error().code(), ErrorCode::InvalidArgument);
  ServeOptions name;
  name.backend = "Not A Name";
  EXPECT_EQ(make_serve_executor(name).error().code(), ErrorCode::InvalidArgument);
}

TEST(ServeCommandOf, AppendsServeArgsAndLayersTheTasksEnvironment) {
  task::ProcessSpec spec("/usr/bin/prog");
  spec.args = {"a"};
  spec.env = {{"K", "v"}};
  spec.inherit_env = false;
  const ServeCommand c = serve_command_of(spec, {"--serve", "3"}).value();
  EXPECT_EQ(c.argv, (std::vector<std::string>{"/usr/bin/prog", "a", "--serve", "3"}));
  EXPECT_EQ(c.env, (std::vector<std::string>{"K=v"}));
  EXPECT_EQ(serve_command_of(task::ProcessSpec("prog"), {}).error().code(),
            ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita::executor
