// The worker's execution section: attempts go to executor::ProcessExecutor asynchronously (no
// thread per running attempt), results come back with every field (cpu and rss included)
// through the dispatcher, and a task's own termination signal is reported as the task's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pepita/transport/connection.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/worker.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

RemoteTask shell_task(std::uint64_t id, std::string script) {
  RemoteTask t{.id = id};
  t.spec.kind = TaskKind::Process;
  t.spec.path = "/bin/sh";
  t.spec.args = {"-c", std::move(script)};
  t.spec.timeout_ns = 60'000'000'000;
  return t;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)e;
    ++n;
  }
  return n;
}

// A task that burns 0.3 s of CPU (counted in the shell's own /proc stat, so load on the machine
// cannot shorten it) reports that much CPU and a non-zero peak RSS at the dispatcher.
TEST(WorkerExecution, ARemoteTaskReportsItsCpuTimeAndPeakRssThroughTheDispatcher) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()})).value();
  const std::string burn =
      "t=$(getconf CLK_TCK); while :; do read -r l < /proc/$$/stat; set -- ${l##*) }; "
      "[ $(( ${12} + ${13} )) -ge $(( t * 30 / 100 )) ] && echo burnt && exit 0; done";
  auto out = d->run(shell_task(1, burn));
  ASSERT_TRUE(out) << out.error().to_string();
  const ResultMsg& r = out->result;
  ASSERT_EQ(r.status, TaskStatus::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "burnt\n");
  EXPECT_GE(r.cpu_ns, 250'000'000) << "cpu " << r.cpu_ns << " ns";
  EXPECT_LE(r.cpu_ns, r.wall_ns + 100'000'000);  // one single-threaded shell
  EXPECT_GT(r.max_rss_kb, 0);
  EXPECT_GT(r.wall_ns, 0);
}

// Sixteen processes running at once on a 16-slot worker take no thread each: the executor's
// reactor watches them all (a runner thread per slot made it 16 more).
TEST(WorkerExecution, RunningProcessesTakeNoThreadPerSlot) {
  test::KeyFile kf;
  constexpr int kTasks = 16;
  const std::size_t before = thread_count();
  auto w = test::start_worker(kf.key, kTasks);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()})).value();
  const std::string dir = ::testing::TempDir() + "pepita-exec-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::mutex mu;
  std::vector<RemoteOutcome> outcomes;
  for (int i = 1; i <= kTasks; ++i) {
    // Each marks that it runs, then waits for the test's go file.
    const std::string script = "touch " + dir + "/" + std::to_string(i) + "; while [ ! -e " + dir +
                               "/go ]; do sleep 0.02; done";
    ASSERT_TRUE(d->submit(shell_task(static_cast<std::uint64_t>(i), script), [&](RemoteOutcome o) {
      std::lock_guard lock(mu);
      outcomes.push_back(std::move(o));
    }));
  }
  const auto until = std::chrono::steady_clock::now() + 30s;
  auto running = [&] {
    int n = 0;
    for (int i = 1; i <= kTasks; ++i) n += std::filesystem::exists(dir + "/" + std::to_string(i));
    return n;
  };
  while (running() < kTasks && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(running(), kTasks) << "all tasks run at once on 16 slots";
  const std::size_t busy = thread_count();
  std::ofstream(dir + "/go").put('1');
  ASSERT_TRUE(d->wait_idle(30s));
  std::filesystem::remove_all(dir);
  // The worker's acceptor, its session and the process reactor; the dispatcher's connection.
  EXPECT_LT(busy, before + 8) << "threads before " << before << ", with " << kTasks << " running "
                              << busy;
  std::lock_guard lock(mu);
  ASSERT_EQ(outcomes.size(), static_cast<std::size_t>(kTasks));
  for (const auto& o : outcomes)
    EXPECT_EQ(o.result.status, TaskStatus::Succeeded) << o.result.error;
}

// A task that dies of its own SIGTERM while the worker is not stopping is the task's failure:
// reported Signaled (after the short wait for a stop of the whole job that never comes), not
// handed back for another worker.
TEST(WorkerExecution, ATaskKilledByItsOwnSigtermIsReportedSignaled) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()})).value();
  const auto t0 = std::chrono::steady_clock::now();
  auto out = d->run(shell_task(1, "kill -TERM $$"));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Signaled) << out->result.error;
  EXPECT_EQ(out->result.signal, SIGTERM);
  EXPECT_EQ(out->attempts, 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 2s) << "held back for the worker's stop";
}

// Issue 27: the built-ins that cannot block (noop, echo) are answered on the worker's session
// thread. A driver still sees what the protocol promises for every Submit: Started, then the
// Result, for the same task and attempt; echo's output is cut to the cap the way a function run
// by the CpuExecutor is (stdout_bytes keeps the whole size).
TEST(WorkerExecution, AnInlineBuiltinAnswersStartedThenItsResult) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto conn = Connection::connect(w->endpoint(), kf.key, {.name = "raw-driver"});
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto next = [&]() -> Message {
    for (;;) {
      auto m = (*conn)->receive(5s);
      if (!m || !*m) {
        ADD_FAILURE() << (m ? std::string("no frame within 5 s") : m.error().to_string());
        return {};
      }
      if ((*m)->header.type != MessageType::Heartbeat) return std::move(**m);
    }
  };
  ASSERT_EQ(next().header.type, MessageType::Register);
  SubmitMsg echo{.attempt = 3, .kind = TaskKind::Function, .path = "echo"};
  echo.stdin_data = "hello world";
  echo.output_cap = 5;
  ASSERT_TRUE((*conn)->send(MessageType::Submit, 41, encode(echo)));
  SubmitMsg noop{.attempt = 1, .kind = TaskKind::Function, .path = "noop"};
  ASSERT_TRUE((*conn)->send(MessageType::Submit, 42, encode(noop)));

  for (const auto& [id, attempt] : {std::pair<std::uint64_t, std::uint32_t>{41, 3}, {42, 1}}) {
    const Message started = next();
    ASSERT_EQ(started.header.type, MessageType::Started) << "task " << id;
    EXPECT_EQ(started.header.request_id, id);
    EXPECT_EQ(decode_started(started.payload).value().attempt, attempt);
    const Message result = next();
    ASSERT_EQ(result.header.type, MessageType::Result) << "task " << id;
    EXPECT_EQ(result.header.request_id, id);
    const ResultMsg r = decode_result(result.payload).value();
    EXPECT_EQ(r.attempt, attempt);
    EXPECT_EQ(r.status, TaskStatus::Succeeded) << r.error;
    if (id == 41) {
      EXPECT_EQ(r.stdout_data, "hello");
      EXPECT_EQ(r.stdout_bytes, 11u);
    } else {
      EXPECT_EQ(r.stdout_data, "");
    }
  }
  EXPECT_EQ(w->stats().tasks_run, 2u);
}

// A function registered under a built-in's name replaces it, also where the built-in would have
// been answered inline: the driver gets the registered function's output.
TEST(WorkerExecution, AFunctionRegisteredUnderABuiltinNameReplacesIt) {
  test::KeyFile kf;
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = kf.key;
  o.slots = 1;
  o.cache_dir = (std::filesystem::temp_directory_path() /
                 ("pepita-test-cache-override-" + std::to_string(::getpid())))
                    .string();
  o.sandbox = task::SandboxPolicy::none();
  o.log = [](std::string_view) {};
  o.functions["echo"] = [](std::string_view in, std::stop_token) -> Result<std::string> {
    return std::string("mine: ").append(in);
  };
  o.functions["noop"] = [](std::string_view, std::stop_token) -> Result<std::string> {
    return fail(ErrorCode::InvalidArgument, "registered noop refuses");
  };
  auto w = Worker::start(std::move(o));
  ASSERT_TRUE(w) << w.error().to_string();
  auto d =
      RemoteDispatcher::start(test::fast_options(kf.key, {(*w)->endpoint().to_string()})).value();
  RemoteTask echo{.id = 1};
  echo.spec.kind = TaskKind::Function;
  echo.spec.path = "echo";
  echo.spec.stdin_data = "x";
  auto out = d->run(std::move(echo));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  EXPECT_EQ(out->result.stdout_data, "mine: x");
  RemoteTask noop{.id = 2};
  noop.spec.kind = TaskKind::Function;
  noop.spec.path = "noop";
  auto failed = d->run(std::move(noop));
  ASSERT_TRUE(failed) << failed.error().to_string();
  EXPECT_EQ(failed->result.status, TaskStatus::Failed);
  EXPECT_NE(failed->result.error.find("registered noop refuses"), std::string::npos)
      << failed->result.error;
  d.reset();
  (*w)->stop();
  (*w)->wait();
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                  ("pepita-test-cache-override-" + std::to_string(::getpid())),
                              ec);
}

}  // namespace
}  // namespace pepita::transport
