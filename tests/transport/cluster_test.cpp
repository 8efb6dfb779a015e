// Several worker *processes* on loopback: 1,000 tasks with one worker killed by SIGKILL
// mid-run — every task completes exactly once — and the killed worker, restarted on its port,
// is reconnected to and used again.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "pepita/transport/remote.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

TEST(Cluster, ThousandTasksSurviveKillNineOfAWorker) {
  test::KeyFile kf;
  std::vector<std::unique_ptr<test::WorkerProcess>> procs;
  for (int i = 0; i < 3; ++i) {
    procs.push_back(test::WorkerProcess::spawn(kf.path, 4));
    ASSERT_TRUE(procs.back()) << "worker process " << i << " did not start";
  }
  RemoteOptions o;
  for (auto& p : procs) o.workers.push_back(p->address());
  o.key = kf.key;
  o.heartbeat_interval = 200ms;
  o.suspect_after = 1000ms;
  o.dead_after = 2000ms;
  o.reconnect_initial = 50ms;
  o.reconnect_max = 200ms;
  o.max_attempts = 10;
  o.log = [](std::string_view) {};
  auto d = RemoteDispatcher::start(std::move(o)).value();

  constexpr int kTasks = 1000;
  test::EchoTasks tasks;
  ASSERT_TRUE(tasks.submit(*d, kTasks));
  // Kill one worker mid-run, without warning.
  const auto t0 = std::chrono::steady_clock::now();
  while (tasks.done() < kTasks / 4 && std::chrono::steady_clock::now() - t0 < 60s) {
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_LT(tasks.done(), kTasks) << "finished before the kill could happen";
  const std::uint16_t victim_port = procs[1]->port();
  const int status = procs[1]->kill_and_wait(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status));

  ASSERT_TRUE(d->wait_idle(90s)) << "only " << tasks.done() << " of " << kTasks << " completed";
  EXPECT_TRUE(tasks.each_exactly_once());
  auto infos = d->workers();
  ASSERT_EQ(infos.size(), 3u);
  EXPECT_NE(infos[1].state, WorkerState::Alive);
  EXPECT_GT(infos[0].completed, 0u);
  EXPECT_GT(infos[2].completed, 0u);

  // The worker comes back on the same port: it is reconnected to and gets work again.
  procs[1] = test::WorkerProcess::spawn(kf.path, 4, victim_port);
  ASSERT_TRUE(procs[1]) << "restarted worker did not start";
  const auto t1 = std::chrono::steady_clock::now();
  while (d->workers()[1].state != WorkerState::Alive &&
         std::chrono::steady_clock::now() - t1 < 20s) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(d->workers()[1].state, WorkerState::Alive);
  EXPECT_EQ(d->workers()[1].connects, 2u);
  const std::uint64_t before = d->workers()[1].completed;
  for (int i = 1; i <= 60; ++i) {
    ASSERT_TRUE(d->submit(test::sleep_task(static_cast<std::uint64_t>(kTasks + i), 20),
                          [](RemoteOutcome) {}));
  }
  ASSERT_TRUE(d->wait_idle(30s));
  EXPECT_GT(d->workers()[1].completed, before) << "restarted worker was not used again";
}

// A dispatcher over `workers` with fast heartbeats and reconnects, logging nothing.
std::unique_ptr<RemoteDispatcher> quiet_dispatcher(const Key& key,
                                                   std::vector<std::string> workers) {
  RemoteOptions o;
  o.workers = std::move(workers);
  o.key = key;
  o.heartbeat_interval = 200ms;
  o.reconnect_initial = 50ms;
  o.log = [](std::string_view) {};
  return RemoteDispatcher::start(std::move(o)).value();
}

TEST(Cluster, SigtermDrainsAWorkerProcessWithoutLosingTasks) {
  test::KeyFile kf;
  auto a = test::WorkerProcess::spawn(kf.path, 2);
  auto b = test::WorkerProcess::spawn(kf.path, 2);
  ASSERT_TRUE(a && b);
  auto d = quiet_dispatcher(kf.key, {a->address(), b->address()});
  std::atomic<int> ok{0};
  for (int i = 1; i <= 40; ++i) {
    ASSERT_TRUE(
        d->submit(test::sleep_task(static_cast<std::uint64_t>(i), 25), [&](RemoteOutcome out) {
          if (out.result.status == TaskStatus::Succeeded) ok.fetch_add(1);
        }));
  }
  std::this_thread::sleep_for(100ms);
  const int status = a->kill_and_wait(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);  // a clean, drained exit
  ASSERT_TRUE(d->wait_idle(30s));
  EXPECT_EQ(ok.load(), 40);
}

// The parent pid of `pid`, from /proc/PID/stat (field 4, after the parenthesised name).
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

// A cluster manager tearing down a job (scancel, preemption) signals the worker and its task at
// the same moment: the task is not failed, it runs again on another worker.
TEST(Cluster, ATaskKilledTogetherWithItsWorkerRunsElsewhere) {
  test::KeyFile kf;
  auto a = test::WorkerProcess::spawn(kf.path, 1);
  auto b = test::WorkerProcess::spawn(kf.path, 1);
  ASSERT_TRUE(a && b);
  auto d = quiet_dispatcher(kf.key, {a->address(), b->address()});

  const std::string dir = kf.path + ".killed";
  std::filesystem::create_directories(dir);
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/sh";
  t.spec.args = {"-c", "cd " + dir +
                           "; if [ -e marker ]; then echo second; else touch marker; "
                           "echo $$ > pid.tmp && mv pid.tmp pid; exec sleep 30; fi"};
  std::promise<RemoteOutcome> done;
  auto outcome = done.get_future();
  ASSERT_TRUE(d->submit(std::move(t), [&](RemoteOutcome out) { done.set_value(std::move(out)); }));
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(dir + "/pid") && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  std::ifstream pid_in(dir + "/pid");
  pid_t task_pid = -1;
  pid_in >> task_pid;
  ASSERT_GT(task_pid, 0) << "the task never started";
  const pid_t worker_pid = parent_of(task_pid);
  auto& host = worker_pid == a->pid() ? a : b;
  ASSERT_EQ(worker_pid, host->pid());
  ::kill(task_pid, SIGTERM);  // everything in the job at once, the task first
  host->kill_and_wait(SIGTERM);

  ASSERT_EQ(outcome.wait_for(30s), std::future_status::ready);
  const RemoteOutcome out = outcome.get();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded) << out.result.error;
  EXPECT_EQ(out.result.stdout_data, "second\n");
  // 2, or 3 when the stopping worker was leased the task again before its Drain arrived.
  EXPECT_GE(out.attempts, 2u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pepita::transport

namespace pepita::transport {
namespace {

// Not built under ThreadSanitizer: the TSan runtime itself keeps an idle worker process busy
// (~0.5 CPU-s/s measured), which would fail the threshold and prove nothing; the plain and ASan
// builds check it. (Not built rather than skipped, so the TSan run's skip list stays empty.)
#if !defined(__SANITIZE_THREAD__)
// utime + stime of a process, in clock ticks.
long cpu_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

TEST(Cluster, IdleWorkerDoesNotSpinAfterADriverLeaves) {
  test::KeyFile kf;
  auto w = test::WorkerProcess::spawn(kf.path, 1);
  ASSERT_TRUE(w);
  {
    RemoteOptions o;
    o.workers = {w->address()};
    o.key = kf.key;
    o.log = [](std::string_view) {};
    auto d = RemoteDispatcher::start(std::move(o)).value();
    RemoteTask t{.id = 1};
    t.spec.kind = TaskKind::Function;
    t.spec.path = "noop";
    ASSERT_TRUE(d->run(std::move(t)));
  }  // the driver disconnects
  std::this_thread::sleep_for(200ms);
  const long before = cpu_ticks(w->pid());
  std::this_thread::sleep_for(1s);
  const long used = cpu_ticks(w->pid()) - before;
  EXPECT_LT(used, ::sysconf(_SC_CLK_TCK) / 5) << "idle worker burned " << used << " ticks in 1 s";
}

#endif  // !__SANITIZE_THREAD__

}  // namespace
}  // namespace pepita::transport
