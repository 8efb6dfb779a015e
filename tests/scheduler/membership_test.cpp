// Scheduler::add_worker / deactivate_worker / is_worker_active (the crate's names): a
// deactivated worker loses no task and runs none once deactivation returns, add_worker starts a
// thread that takes work or reactivates the lowest inactive worker, bad ids and bad options are
// refused naming what is wrong, and fork-join stays correct while workers come and go.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task_group.hpp"
#include "scheduler_test_util.hpp"

namespace pepita::scheduler {
namespace {

using namespace std::chrono_literals;

/// Waits (bounded) until `count` reaches `want`; false on timeout.
bool wait_for(const std::atomic<int>& count, int want, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (count.load() < want) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

void spin_for(std::chrono::microseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

TEST(SchedulerMembership, DeactivatingAWorkerMidStreamRunsEveryTaskExactlyOnce) {
  auto s = make(3);
  ASSERT_TRUE(s);
  const int outer = test_scale() >= 1 ? 2000 : 300;
  constexpr int kInner = 4;
  const int total = outer * (1 + kInner);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(total));
  std::atomic<int> done{0};
  for (int i = 0; i < outer; ++i) {
    s->submit([&, i] {
      // Children go on this worker's own deque: the ones a deactivated worker holds must move.
      for (int k = 1; k <= kInner; ++k) {
        s->submit([&, i, k] {
          runs[static_cast<std::size_t>(i * (1 + kInner) + k)].fetch_add(1);
          done.fetch_add(1);
        });
      }
      spin_for(20us);
      runs[static_cast<std::size_t>(i * (1 + kInner))].fetch_add(1);
      done.fetch_add(1);
    });
    if (i == outer / 3) {
      ASSERT_TRUE(s->deactivate_worker(WorkerId{1}).has_value());
    }
    if (i == 2 * outer / 3) {
      ASSERT_TRUE(s->deactivate_worker(WorkerId{0}).has_value());
    }
  }
  ASSERT_TRUE(wait_for(done, total)) << done.load() << " of " << total << " tasks ran";
  for (int i = 0; i < total; ++i) ASSERT_EQ(runs[static_cast<std::size_t>(i)].load(), 1) << i;
  EXPECT_EQ(s->active_workers(), 1u);
  EXPECT_EQ(s->worker_count(), 3u);
}

TEST(SchedulerMembership, AnInactiveWorkerRunsNothingAfterDeactivationReturns) {
  auto s = make(2);
  ASSERT_TRUE(s);
  std::atomic<bool> deactivated{false};
  std::atomic<int> ran_on_inactive{0};
  std::atomic<int> done{0};
  const int n = test_scale() >= 1 ? 4000 : 600;
  std::thread producer([&] {
    for (int i = 0; i < n; ++i) {
      s->submit([&] {
        // Read the flag before the worker id: a task started after deactivation returned
        // must not be on worker 1.
        const bool after = deactivated.load();
        if (after && Scheduler::current_worker() == WorkerId{1}) ran_on_inactive.fetch_add(1);
        spin_for(10us);
        done.fetch_add(1);
      });
    }
  });
  while (done.load() < n / 4) std::this_thread::sleep_for(100us);
  ASSERT_TRUE(s->deactivate_worker(WorkerId{1}).has_value());
  deactivated.store(true);
  const std::uint64_t ran_before = s->stats().workers[1].tasks_executed;
  producer.join();
  ASSERT_TRUE(wait_for(done, n));
  EXPECT_EQ(ran_on_inactive.load(), 0);
  EXPECT_EQ(s->stats().workers[1].tasks_executed, ran_before);
  auto active = s->is_worker_active(WorkerId{1});
  ASSERT_TRUE(active.has_value());
  EXPECT_FALSE(*active);
  EXPECT_TRUE(*s->is_worker_active(WorkerId{0}));
  EXPECT_EQ(s->active_workers(), 1u);
}

TEST(SchedulerMembership, AddWorkerStartsAThreadThatTakesTasks) {
  auto s = make(1, 3);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->worker_count(), 1u);
  auto id = s->add_worker();
  ASSERT_TRUE(id.has_value()) << id.error().to_string();
  EXPECT_EQ(*id, WorkerId{1});
  EXPECT_EQ(s->worker_count(), 2u);
  EXPECT_EQ(s->active_workers(), 2u);
  EXPECT_TRUE(*s->is_worker_active(*id));
  // Tasks that sleep: worker 0 alone cannot take them all, so the new worker must.
  std::mutex mu;
  std::set<std::uint32_t> seen;
  std::atomic<int> done{0};
  constexpr int kTasks = 200;
  for (int i = 0; i < kTasks; ++i) {
    s->submit([&] {
      if (auto w = Scheduler::current_worker()) {
        std::lock_guard lock(mu);
        seen.insert(w->as_u32());
      }
      std::this_thread::sleep_for(200us);
      done.fetch_add(1);
    });
  }
  ASSERT_TRUE(wait_for(done, kTasks));
  EXPECT_TRUE(seen.count(1) == 1) << "no task ran on the added worker 1";
  EXPECT_EQ(s->stats().workers.size(), 2u);
  EXPECT_GT(s->stats().workers[1].tasks_executed, 0u);
  // Fill the last slot, then one more is refused naming max_workers.
  auto third = s->add_worker();
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(*third, WorkerId{2});
  auto over = s->add_worker();
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_NE(over.error().message().find("max_workers"), std::string::npos)
      << over.error().message();
}

TEST(SchedulerMembership, AddWorkerReactivatesTheLowestInactiveWorker) {
  auto s = make(3);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->deactivate_worker(WorkerId{2}).has_value());
  ASSERT_TRUE(s->deactivate_worker(WorkerId{1}).has_value());
  EXPECT_EQ(s->active_workers(), 1u);
  auto id = s->add_worker();
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, WorkerId{1});
  EXPECT_TRUE(*s->is_worker_active(WorkerId{1}));
  EXPECT_FALSE(*s->is_worker_active(WorkerId{2}));
  EXPECT_EQ(s->worker_count(), 3u);  // no new thread
  // The reactivated worker takes tasks again.
  const std::uint64_t before = s->stats().workers[1].tasks_executed;
  std::atomic<int> done{0};
  for (int i = 0; i < 200; ++i) {
    s->submit([&] {
      std::this_thread::sleep_for(200us);
      done.fetch_add(1);
    });
  }
  ASSERT_TRUE(wait_for(done, 200));
  EXPECT_GT(s->stats().workers[1].tasks_executed, before);
  EXPECT_EQ(s->stats().workers[2].tasks_executed, 0u);
}

TEST(SchedulerMembership, BadWorkerIdsAreRefusedNamingTheId) {
  auto s = make(2, 4);
  ASSERT_TRUE(s);
  for (std::uint32_t bad : {2u, 3u, 77u, 4096u}) {  // 2 and 3: slots with no thread yet
    auto d = s->deactivate_worker(WorkerId{bad});
    ASSERT_FALSE(d.has_value());
    EXPECT_EQ(d.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(d.error().message().find("worker id " + std::to_string(bad)), std::string::npos)
        << d.error().message();
    auto a = s->is_worker_active(WorkerId{bad});
    ASSERT_FALSE(a.has_value());
    EXPECT_EQ(a.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(a.error().message().find("worker id " + std::to_string(bad)), std::string::npos);
  }
  EXPECT_EQ(s->active_workers(), 2u);  // nothing changed
}

TEST(SchedulerMembership, TheLastActiveWorkerCannotBeDeactivated) {
  auto s = make(2);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->deactivate_worker(WorkerId{0}).has_value());
  ASSERT_TRUE(s->deactivate_worker(WorkerId{0}).has_value());  // again: a no-op
  auto last = s->deactivate_worker(WorkerId{1});
  ASSERT_FALSE(last.has_value());
  EXPECT_EQ(last.error().code(), ErrorCode::Busy);
  EXPECT_NE(last.error().message().find("last active worker"), std::string::npos);
  EXPECT_TRUE(*s->is_worker_active(WorkerId{1}));
  // Work still runs.
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) s->submit([&] { done.fetch_add(1); });
  EXPECT_TRUE(wait_for(done, 100));
}

TEST(SchedulerMembership, MaxWorkersOutOfRangeIsRefusedNamingTheField) {
  for (unsigned max : {2u, 5000u}) {
    auto s = Scheduler::create({.workers = 4, .max_workers = max});
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(s.error().message().find("max_workers"), std::string::npos);
  }
}

TEST(SchedulerMembership, AWorkerCanDeactivateItselfFromATask) {
  auto s = make(2);
  ASSERT_TRUE(s);
  std::atomic<int> result{-1};
  std::atomic<int> done{0};
  s->submit([&] {
    const auto me = Scheduler::current_worker();
    result.store(s->deactivate_worker(*me).has_value() ? static_cast<int>(me->as_u32()) : -2);
    done.fetch_add(1);
  });
  ASSERT_TRUE(wait_for(done, 1));
  ASSERT_GE(result.load(), 0);
  const WorkerId me{static_cast<std::uint32_t>(result.load())};
  EXPECT_FALSE(*s->is_worker_active(me));
  // Once its task has ended (and been counted) it takes nothing more.
  std::this_thread::sleep_for(20ms);
  const std::uint64_t before = s->stats().workers[me.value].tasks_executed;
  for (int i = 0; i < 100; ++i) s->submit([&] { done.fetch_add(1); });
  ASSERT_TRUE(wait_for(done, 101));
  EXPECT_EQ(s->stats().workers[me.value].tasks_executed, before);
}

// A task blocked in wait_until on a worker that gets deactivated stops helping and sleeps until
// the awaited event; that sleep is a park in its worker's stats like any other. arm() reports
// "already happened" until deactivate_worker has returned (so the worker never parks on the
// active path), then "may sleep": from there the worker is inactive for good, so each later park
// is a deactivated wait's.
TEST(SchedulerMembership, AWaitThatSleepsOnADeactivatedWorkerCountsAsAPark) {
  auto s = Scheduler::create({.workers = 2, .spin_rounds = 0});
  ASSERT_TRUE(s.has_value());
  Scheduler& sched = **s;
  const int key = 0;
  std::atomic<bool> event{false};
  std::atomic<bool> may_sleep{false};
  std::atomic<int> started{0};
  std::atomic<int> armed_to_sleep{0};
  std::atomic<int> finished{0};
  std::atomic<int> worker{-1};
  std::atomic<std::uint64_t> parks_while_waiting{0};
  sched.submit([&] {
    const int me = Scheduler::current_worker_index();
    const auto index = static_cast<std::size_t>(me);
    worker.store(me);
    // The worker reads its own counter: exact, nothing else writes it.
    const std::uint64_t before = sched.stats().workers[index].parks;
    started.store(1);
    sched.wait_until(
        &key, [&] { return event.load(); },
        [&] {
          if (!may_sleep.load()) return true;
          armed_to_sleep.store(1);
          return event.load();
        });
    parks_while_waiting.store(sched.stats().workers[index].parks - before);
    finished.store(1);
  });
  ASSERT_TRUE(wait_for(started, 1));
  const WorkerId id{static_cast<std::uint32_t>(worker.load())};
  ASSERT_TRUE(sched.deactivate_worker(id).has_value());
  may_sleep.store(true);
  ASSERT_TRUE(wait_for(armed_to_sleep, 1)) << "the deactivated worker never armed its wait";
  event.store(true);
  sched.notify_waiters(&key);
  ASSERT_TRUE(wait_for(finished, 1)) << "the deactivated worker's wait never ended";
  EXPECT_GE(parks_while_waiting.load(), 1u)
      << "worker " << id.value << " slept in a deactivated wait that its stats do not count";
  EXPECT_FALSE(*sched.is_worker_active(id));
}

std::uint64_t fib_par(Scheduler& s, int n) {
  if (n < 2) return static_cast<std::uint64_t>(n);
  std::uint64_t a = 0;
  TaskGroup g(s);
  g.run([&] { a = fib_par(s, n - 1); });
  const std::uint64_t b = fib_par(s, n - 2);
  EXPECT_TRUE(g.wait().has_value());
  return a + b;
}

TEST(SchedulerMembership, ForkJoinStaysCorrectWhileWorkersComeAndGo) {
  auto s = make(3, 4);
  ASSERT_TRUE(s);
  const int n = test_scale() >= 1 ? 20 : 15;
  const int rounds = test_scale() >= 1 ? 20 : 5;
  std::atomic<bool> stop{false};
  // Deactivates and re-adds workers (including ones blocked in a TaskGroup wait) meanwhile.
  std::thread churn([&] {
    std::uint32_t next = 0;
    while (!stop.load()) {
      (void)s->deactivate_worker(WorkerId{next % s->worker_count()});
      std::this_thread::sleep_for(300us);
      (void)s->add_worker();
      ++next;
    }
  });
  for (int r = 0; r < rounds; ++r) {
    TaskGroup g(*s);
    std::uint64_t result = 0;
    g.run([&] { result = fib_par(*s, n); });
    ASSERT_TRUE(g.wait().has_value());
    ASSERT_EQ(result, fib_serial(n)) << "round " << r;
  }
  stop.store(true);
  churn.join();
  EXPECT_LE(s->worker_count(), 4u);
  EXPECT_GE(s->active_workers(), 1u);
}

}  // namespace
}  // namespace pepita::scheduler
