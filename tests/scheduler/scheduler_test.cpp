// Scheduler and TaskGroup: submission, fork-join correctness, errors, cancellation, shutdown,
// idle CPU use and statistics.

#include "pepita/scheduler/scheduler.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "pepita/scheduler/task_group.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

std::uint64_t fib_par(Scheduler& s, int n) {
  if (n < 2) return static_cast<std::uint64_t>(n);
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  TaskGroup g(s);
  g.run([&] { a = fib_par(s, n - 1); });
  b = fib_par(s, n - 2);
  EXPECT_TRUE(g.wait().has_value());
  return a + b;
}

TEST(Scheduler, RejectsAbsurdWorkerCount) {
  auto s = Scheduler::create({.workers = 100000});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(s.error().message().find("limit"), std::string::npos);
}

TEST(Scheduler, DefaultsToOneWorkerPerAllowedCpu) {
  auto s = make(0);
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(s->worker_count(), static_cast<unsigned>(CPU_COUNT(&set)));
  EXPECT_LE(s->worker_count(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(Scheduler, SubmitFromOutsideRunsEveryTask) {
  auto s = make(2);
  std::atomic<int> count{0};
  constexpr int kTasks = 10000;
  for (int i = 0; i < kTasks; ++i)
    s->submit([&] { count.fetch_add(1, std::memory_order_relaxed); });
  s.reset();  // drains
  EXPECT_EQ(count.load(), kTasks);
}

TEST(Scheduler, FibMatchesSequential) {
  auto s = make(3);
  int n = test_scale() >= 1 ? 22 : 16;
  TaskGroup g(*s);
  std::uint64_t result = 0;
  g.run([&] { result = fib_par(*s, n); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(result, fib_serial(n));
  Stats st = s->stats();
  EXPECT_GT(st.total().tasks_executed, 0u);
  EXPECT_EQ(st.workers.size(), 3u);
}

int nqueens(Scheduler& s, int n, int row, std::uint32_t cols, std::uint32_t d1, std::uint32_t d2) {
  if (row == n) return 1;
  std::atomic<int> total{0};
  TaskGroup g(s);
  std::uint32_t free = ~(cols | d1 | d2) & ((1u << n) - 1);
  while (free != 0) {
    std::uint32_t bit = free & (~free + 1);
    free ^= bit;
    g.run([&, bit] {
      total.fetch_add(nqueens(s, n, row + 1, cols | bit, (d1 | bit) << 1, (d2 | bit) >> 1),
                      std::memory_order_relaxed);
    });
  }
  EXPECT_TRUE(g.wait().has_value());
  return total.load();
}

TEST(Scheduler, NQueensMatchesKnownCounts) {
  auto s = make(2);
  TaskGroup g(*s);
  int q6 = 0;
  int q8 = 0;
  g.run([&] { q6 = nqueens(*s, 6, 0, 0, 0, 0); });
  g.run([&] { q8 = nqueens(*s, 8, 0, 0, 0, 0); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(q6, 4);
  EXPECT_EQ(q8, 92);
}

TEST(Scheduler, SingleWorkerNestedWaitsDoNotDeadlock) {
  auto s = make(1);
  TaskGroup g(*s);
  std::uint64_t result = 0;
  g.run([&] { result = fib_par(*s, 15); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(result, fib_serial(15));
}

// A chain of groups, each waited from inside a task of the previous one.
int nest(Scheduler& s, int depth) {
  if (depth == 0) return 0;
  int inner = -1;
  TaskGroup g(s);
  g.run([&] { inner = nest(s, depth - 1); });
  EXPECT_TRUE(g.wait().has_value());
  return inner + 1;
}

TEST(Scheduler, DeeplyNestedGroups) {
  auto s = make(2);
  TaskGroup g(*s);
  int depth = 0;
  g.run([&] { depth = nest(*s, 500); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(depth, 500);
}

TEST(Scheduler, WaitFromOutsideThreadWhileWorkersRun) {
  auto s = make(2);
  TaskGroup g(*s);
  std::atomic<int> count{0};
  for (int i = 0; i < 1000; ++i) g.run([&] { count.fetch_add(1); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(count.load(), 1000);
  EXPECT_FALSE(s->on_worker_thread());
  EXPECT_EQ(Scheduler::current_worker_index(), -1);
}

TEST(Scheduler, TasksKnowTheirWorker) {
  auto s = make(2);
  TaskGroup g(*s);
  std::atomic<int> bad{0};
  for (int i = 0; i < 100; ++i) {
    g.run([&] {
      int idx = Scheduler::current_worker_index();
      if (!s->on_worker_thread() || idx < 0 || idx >= 2) bad.fetch_add(1);
    });
  }
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(bad.load(), 0);
}

TEST(Scheduler, ManyExternalProducers) {
  auto s = make(2);
  std::atomic<int> count{0};
  constexpr int kThreads = 4;
  const int per = test_scale() >= 1 ? 20000 : 2000;
  {
    std::vector<std::jthread> producers;
    for (int t = 0; t < kThreads; ++t) {
      producers.emplace_back([&] {
        for (int i = 0; i < per; ++i)
          s->submit([&] { count.fetch_add(1, std::memory_order_relaxed); });
      });
    }
  }
  s.reset();
  EXPECT_EQ(count.load(), kThreads * per);
}

TEST(Scheduler, SubmitFromTaskGoesToLocalDequeAndDrainsAtShutdown) {
  auto s = make(2);
  std::atomic<int> count{0};
  Scheduler* raw = s.get();  // s is null while its destructor drains
  for (int i = 0; i < 100; ++i) {
    raw->submit([&] {
      EXPECT_GE(Scheduler::current_worker_index(), 0);
      for (int j = 0; j < 100; ++j) raw->submit([&] { count.fetch_add(1); });
    });
  }
  s.reset();
  EXPECT_EQ(count.load(), 100 * 100);
}

// The sleep/wake protocol: a worker pushes one child onto its own deque and then refuses to run
// it, so only a sleeping peer can. A lost wake-up (the race the membarrier closes) hangs here, and
// the bounded wait turns that into a failure. spin_rounds = 0 parks idle workers at once.
TEST(Scheduler, LocalSpawnWakesAParkedPeer) {
  auto s = Scheduler::create({.workers = 2, .spin_rounds = 0});
  ASSERT_TRUE(s.has_value());
  Scheduler& sched = **s;
  const int rounds = test_scale() >= 1 ? 200 : 50;
  int lost = 0;
  for (int round = 0; round < rounds && lost == 0; ++round) {
    std::atomic<bool> child_ran{false};
    TaskGroup outer(sched);
    outer.run([&] {
      TaskGroup inner(sched);
      inner.run([&] { child_ran.store(true); });
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!child_ran.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      if (!child_ran.load()) ++lost;
      (void)inner.wait();
    });
    ASSERT_TRUE(outer.wait().has_value());
    if (round % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(lost, 0) << "a spawned task sat in a deque while the other worker slept";
}

// The sleeper's re-scan (the "re-check" of the file comment in scheduler.cpp) covers the worker
// deques, not only the injection queue: a lone worker waiting in wait_until whose arm() spawns a
// task (onto its own deque, after the worker announced itself idle) sees it there and runs it
// without parking once. Deterministic: one worker, so nothing else can take the task.
TEST(Scheduler, AWaitingWorkerRunsATaskQueuedAfterItWentIdleWithoutParking) {
  auto s = Scheduler::create({.workers = 1, .spin_rounds = 0});
  ASSERT_TRUE(s.has_value());
  Scheduler& sched = **s;
  std::atomic<bool> child_ran{false};
  std::atomic<int> arms{0};
  std::atomic<std::uint64_t> parks_while_waiting{~std::uint64_t{0}};
  TaskGroup g(sched);
  g.run([&] {
    const int key = 0;
    // The worker reads its own counter: exact, nothing else writes it.
    const std::uint64_t before = sched.stats().workers[0].parks;
    sched.wait_until(
        &key, [&] { return child_ran.load(); },
        [&] {
          if (arms.fetch_add(1) == 0) {
            sched.submit([&] { child_ran.store(true); });
            return false;
          }
          return child_ran.load();
        });
    parks_while_waiting.store(sched.stats().workers[0].parks - before);
  });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_TRUE(child_ran.load());
  EXPECT_GE(arms.load(), 1);
  EXPECT_EQ(parks_while_waiting.load(), 0u)
      << "the worker parked with a task on its own deque (its re-scan missed the deques)";
}

TEST(Scheduler, ExternalSubmitWakesParkedWorkers) {
  auto s = Scheduler::create({.workers = 2, .spin_rounds = 0});
  ASSERT_TRUE(s.has_value());
  const int rounds = test_scale() >= 1 ? 300 : 50;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<bool> ran{false};
    (*s)->submit([&] { ran.store(true); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!ran.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(ran.load()) << "round " << round << ": submitted task never ran";
    if (round % 16 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(Scheduler, ShutdownDiscardsTasksOfCancelledGroups) {
  auto s = make(1);
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  {
    TaskGroup g(*s);  // outlives the scheduler's drain; its tasks are gone by then
    g.run([&] {
      started.store(true);
      while (!release.load()) std::this_thread::yield();
      ran.fetch_add(1);
    });
    while (!started.load()) std::this_thread::yield();
    for (int i = 0; i < 100; ++i) g.run([&] { ran.fetch_add(1); });
    g.cancel();
    release.store(true);
    s.reset();  // drains: the running task finishes, the 100 queued ones are discarded unrun
    EXPECT_EQ(ran.load(), 1);
  }
  EXPECT_EQ(ran.load(), 1);
}

TEST(Scheduler, UncaughtExceptionsOfSubmittedTasksAreCounted) {
  std::atomic<int> seen{0};
  Scheduler::Options opt;
  opt.workers = 2;
  opt.on_uncaught_exception = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error&) {
      seen.fetch_add(1);
    }
  };
  auto s = Scheduler::create(std::move(opt));
  ASSERT_TRUE(s.has_value());
  for (int i = 0; i < 5; ++i) (*s)->submit([] { throw std::runtime_error("lost"); });
  TaskGroup g(**s);
  g.run([] {});
  ASSERT_TRUE(g.wait().has_value());
  std::unique_ptr<Scheduler> owned = std::move(*s);
  owned.reset();  // drains: all five have run
  EXPECT_EQ(seen.load(), 5);
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

TEST(Scheduler, IdleSchedulerUsesAlmostNoCpu) {
  auto s = make(4);
  // Make the workers run and then go idle.
  TaskGroup g(*s);
  for (int i = 0; i < 1000; ++i) g.run([] {});
  ASSERT_TRUE(g.wait().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  double before = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  double used = cpu_seconds() - before;
  // 4 spinning workers would burn ~1-4 s of CPU here; parked ones burn ~0.
  EXPECT_LT(used, 0.05) << "idle scheduler used " << used << " s of CPU in 1 s";
  Stats st = s->stats();
  EXPECT_GE(st.total().parks, 4u);
  // And it still wakes up for new work.
  std::atomic<int> n{0};
  s->submit([&] { n.fetch_add(1); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (n.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(n.load(), 1);
}

TEST(Scheduler, StatsCountTasksAndSteals) {
  auto s = make(2);
  TaskGroup g(*s);
  std::uint64_t r = 0;
  g.run([&] { r = fib_par(*s, 18); });
  ASSERT_TRUE(g.wait().has_value());
  Stats st = s->stats();
  WorkerStats total = st.total();
  // fib_par(18) runs one task per call with n >= 2 plus the root.
  EXPECT_GE(total.tasks_executed, 4180u);
  EXPECT_GE(total.steals_attempted, total.steals_succeeded);
  EXPECT_EQ(st.workers.size(), 2u);
}

TEST(Scheduler, DefaultInstanceIsShared) {
  Scheduler& a = Scheduler::default_instance();
  Scheduler& b = Scheduler::default_instance();
  EXPECT_EQ(&a, &b);
  EXPECT_GE(a.worker_count(), 1u);
  TaskGroup g;  // defaults to it
  int x = 0;
  g.run([&] { x = 1; });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(x, 1);
}

TEST(Scheduler, PinnedWorkersStillRun) {
  auto s = Scheduler::create({.workers = 2, .pin_workers = true});
  ASSERT_TRUE(s.has_value());
  TaskGroup g(**s);
  std::atomic<int> n{0};
  for (int i = 0; i < 100; ++i) g.run([&] { n.fetch_add(1); });
  ASSERT_TRUE(g.wait().has_value());
  EXPECT_EQ(n.load(), 100);
}

TEST(Scheduler, IntrospectionCountsQueuedTasksPerWorkerAndInjected) {
  auto s = Scheduler::create({.workers = 1, .deque_capacity = 2});
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  Scheduler& sched = **s;
  EXPECT_TRUE(sched.is_running());
  EXPECT_EQ(sched.num_workers(), 1u);
  EXPECT_FALSE(Scheduler::current_worker().has_value());
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  std::optional<WorkerId> seen;
  sched.submit([&] {
    seen = Scheduler::current_worker();
    // Queue three tasks on this worker's own deque, then hold the only worker.
    for (int i = 0; i < 3; ++i) sched.submit([&] { ran.fetch_add(1); });
    started.store(true);
    while (!release.load()) std::this_thread::yield();
  });
  while (!started.load()) std::this_thread::yield();
  for (int i = 0; i < 4; ++i) sched.submit([&] { ran.fetch_add(1); });  // injected
  EXPECT_EQ(sched.pending_tasks(), 7u);
  EXPECT_EQ(sched.worker_loads(), std::vector<std::size_t>{3});
  release.store(true);
  s->reset();  // drains
  EXPECT_EQ(ran.load(), 7);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->as_u32(), 0u);
}

TEST(Scheduler, RejectsAbsurdDequeCapacityNamingTheField) {
  auto s = Scheduler::create({.workers = 1, .deque_capacity = std::size_t{1} << 40});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(s.error().message().find("deque_capacity"), std::string::npos) << s.error().message();
}

}  // namespace
}  // namespace pepita::scheduler
