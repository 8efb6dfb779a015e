// Pool::function_group (issue 27): plain callables on the pool's cpu workers, without a Task.
#include "pepita/pool/function_group.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using namespace std::chrono_literals;

constexpr unsigned kWorkers = 2;

Pool make_pool() {
  auto p = Pool::builder().cpu_workers(kWorkers).process_slots(1).build();
  EXPECT_TRUE(p) << p.error().message();
  return std::move(*p);
}

FunctionGroup make_group(Pool& pool) {
  auto g = pool.function_group();
  EXPECT_TRUE(g) << g.error().message();
  return std::move(*g);
}

// Occupies every worker with a callable that spins until `release` is true, and returns once
// all of them have started (so later callables of the group stay queued).
void block_workers(FunctionGroup& g, std::atomic<bool>& release, std::atomic<unsigned>& started) {
  for (unsigned i = 0; i < kWorkers; ++i) {
    g.run([&release, &started] {
      started.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
    });
  }
  g.flush();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (started.load() < kWorkers && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(started.load(), kWorkers) << "the blocking callables never started";
}

TEST(FunctionGroup, MillionIncrementsSumExactly) {
  auto pool = make_pool();
  auto g = make_group(pool);
  constexpr std::uint64_t n = 1'000'000;
  std::atomic<std::uint64_t> sum{0};
  for (std::uint64_t i = 0; i < n; ++i) {
    g.run([&sum, i] { sum.fetch_add(i, std::memory_order_relaxed); });
  }
  auto r = g.wait();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(sum.load(), n * (n - 1) / 2);
  const FunctionGroup::Report rep = g.last_report();
  EXPECT_EQ(rep.submitted, n);
  EXPECT_EQ(rep.ran, n);
  EXPECT_EQ(rep.failed, 0u);
  EXPECT_EQ(rep.cancelled, 0u);
  const Stats st = pool.stats();
  EXPECT_EQ(st.functions, n);
  EXPECT_EQ(st.submitted, n);
  EXPECT_EQ(st.done, n);
  EXPECT_EQ(st.succeeded, n);
  EXPECT_EQ(st.failed, 0u);
}

TEST(FunctionGroup, ErrorsAndExceptionsAreCountedAndReportedNothingLost) {
  auto pool = make_pool();
  auto g = make_group(pool);
  constexpr int n = 1000;
  std::atomic<int> ran{0};
  int expect_failed = 0;
  for (int i = 0; i < n; ++i) {
    if (i % 100 == 7) {
      ++expect_failed;
      g.run([&ran]() -> Result<void> {
        ran.fetch_add(1);
        return fail(ErrorCode::NotFound, "input file is missing");
      });
    } else if (i % 250 == 3) {
      ++expect_failed;
      g.run([&ran] {
        ran.fetch_add(1);
        throw std::runtime_error("boom");
      });
    } else if (i == 500) {
      ++expect_failed;
      g.run([&ran] {
        ran.fetch_add(1);
        throw 42;  // not a std::exception
      });
    } else {
      g.run([&ran]() -> Result<int> {
        ran.fetch_add(1);
        return 1;
      });
    }
  }
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(ran.load(), n) << "a failure must not stop the other callables";
  const FunctionGroup::Report rep = g.last_report();
  EXPECT_EQ(rep.failed, static_cast<std::uint64_t>(expect_failed));
  EXPECT_EQ(rep.ran, static_cast<std::uint64_t>(n - expect_failed));
  EXPECT_EQ(rep.cancelled, 0u);
  const std::string msg = r.error().message();
  EXPECT_NE(msg.find(std::to_string(expect_failed) + " of 1000 function tasks failed; the first: "),
            std::string::npos)
      << msg;
  EXPECT_TRUE(msg.find("input file is missing") != std::string::npos ||
              msg.find("boom") != std::string::npos ||
              msg.find("non-std::exception") != std::string::npos)
      << msg;
  EXPECT_EQ(pool.stats().failed, static_cast<std::uint64_t>(expect_failed));

  // Reset by the wait: the next batch reports only itself.
  g.run([] {});
  EXPECT_TRUE(g.wait());
  EXPECT_EQ(g.last_report().submitted, 1u);
  EXPECT_EQ(g.last_report().failed, 0u);
}

TEST(FunctionGroup, ExceptionIsKeptForRethrow) {
  auto pool = make_pool();
  auto g = make_group(pool);
  g.run([] { throw std::invalid_argument("bad width"); });
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  ASSERT_TRUE(g.exception());
  EXPECT_THROW(std::rethrow_exception(g.exception()), std::invalid_argument);
}

TEST(FunctionGroup, CancelSkipsQueuedCallablesAndCountsThem) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<bool> release{false};
  std::atomic<unsigned> started{0};
  block_workers(g, release, started);
  std::atomic<int> ran{0};
  for (int i = 0; i < 10'000; ++i) g.run([&ran] { ran.fetch_add(1); });
  g.flush();
  g.cancel();
  EXPECT_TRUE(g.is_cancelled());
  release.store(true);
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(r.error().message().find("10000 of 10002 function tasks were cancelled"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(g.last_report().cancelled, 10'000u);
  EXPECT_EQ(g.last_report().ran, 2u);
  // The cancellation lasts until the wait: the group runs again afterwards.
  EXPECT_FALSE(g.is_cancelled());
  g.run([&ran] { ran.fetch_add(1); });
  EXPECT_TRUE(g.wait());
  EXPECT_EQ(ran.load(), 1);
}

TEST(FunctionGroup, PoolCancelAllCancelsQueuedCallables) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<bool> release{false};
  std::atomic<unsigned> started{0};
  block_workers(g, release, started);
  std::atomic<int> ran{0};
  for (int i = 0; i < 5'000; ++i) g.run([&ran] { ran.fetch_add(1); });
  pool.cancel_all();
  release.store(true);
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(g.last_report().cancelled, 5'000u);
  const Stats st = pool.stats();
  EXPECT_EQ(st.functions, 5'002u);
  EXPECT_EQ(st.failed, 5'000u) << "cancelled callables count as failed final results";
}

TEST(FunctionGroup, NestedRunsFromInsideCallablesAreWaitedFor) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<int> inner{0};
  FunctionGroup* gp = &g;
  for (int i = 0; i < 100; ++i) {
    g.run([gp, &inner] {
      for (int j = 0; j < 100; ++j) gp->run([&inner] { inner.fetch_add(1); });
    });
  }
  auto r = g.wait();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(inner.load(), 10'000);
  EXPECT_EQ(g.last_report().submitted, 10'100u);
  EXPECT_EQ(g.last_report().ran, 10'100u);
}

TEST(FunctionGroup, WaitFromSeveralThreadsSeesEveryCallableDone) {
  auto pool = make_pool();
  auto g = make_group(pool);
  constexpr int n = 100'000;
  std::atomic<int> ran{0};
  for (int i = 0; i < n; ++i) g.run([&ran] { ran.fetch_add(1); });
  std::atomic<int> ok{0}, saw_all{0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < 4; ++t) {
    waiters.emplace_back([&] {
      if (g.wait()) ok.fetch_add(1);
      if (ran.load() == n) saw_all.fetch_add(1);
    });
  }
  for (auto& w : waiters) w.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(saw_all.load(), 4);
  EXPECT_EQ(ran.load(), n);
}

TEST(FunctionGroup, PoolDestroyedWithWorkQueuedCancelsItAndSurvives) {
  auto pool = std::make_unique<Pool>(make_pool());
  auto g = make_group(*pool);
  std::atomic<unsigned> started{0};
  // The blockers hold both workers until the pool's destruction cancels the group.
  FunctionGroup* gp = &g;
  for (unsigned i = 0; i < kWorkers; ++i) {
    g.run([gp, &started] {
      started.fetch_add(1);
      while (!gp->is_cancelled()) std::this_thread::yield();
    });
  }
  g.flush();
  while (started.load() < kWorkers) std::this_thread::sleep_for(1ms);
  std::atomic<int> ran{0};
  for (int i = 0; i < 20'000; ++i) g.run([&ran] { ran.fetch_add(1); });
  pool.reset();                         // shutdown(Immediate): queued callables are destroyed unrun
  g.run([&ran] { ran.fetch_add(1); });  // after the pool is gone: counted, never run
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_EQ(ran.load(), 0);
  const FunctionGroup::Report rep = g.last_report();
  EXPECT_EQ(rep.submitted, 20'003u);
  EXPECT_EQ(rep.ran, 2u);
  EXPECT_EQ(rep.cancelled, 20'001u);
}

TEST(FunctionGroup, AfterShutdownNewCallablesAreCancelledAndNewGroupsRefused) {
  auto pool = make_pool();
  auto g = make_group(pool);
  pool.shutdown();
  std::atomic<int> ran{0};
  g.run([&ran] { ran.fetch_add(1); });
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Cancelled);
  EXPECT_EQ(ran.load(), 0);
  auto again = pool.function_group();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(again.error().message().find("shut down"), std::string::npos);
}

TEST(FunctionGroup, MovedFromPoolIsInvalidArgument) {
  auto pool = make_pool();
  Pool other = std::move(pool);
  auto g = pool.function_group();  // NOLINT(bugprone-use-after-move): the case under test
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(other.function_group());
}

TEST(FunctionGroup, LargeCallablesAreStoredOutOfLineAndRunOnce) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<std::uint64_t> sum{0};
  for (std::uint64_t i = 0; i < 1000; ++i) {
    std::array<std::uint64_t, 32> big{};  // 256 bytes: past the 48-byte inline slot
    big.fill(i);
    g.run([&sum, big] { sum.fetch_add(big[31], std::memory_order_relaxed); });
  }
  ASSERT_TRUE(g.wait());
  EXPECT_EQ(sum.load(), 999u * 1000u / 2u);
}

// Liveness, not speed: a deadline only so that a held-back callable fails instead of hanging.
bool eventually(const std::atomic<int>& v, int want) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (v.load() < want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  return v.load() == want;
}

TEST(FunctionGroup, ASlowProducersCallablesStartWithoutWait) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(2ms);  // slower than the 20 us hand-out rule
    g.run([&ran] { ran.fetch_add(1); });
    ASSERT_TRUE(eventually(ran, i + 1)) << "callable " << i << " was held back";
  }
  EXPECT_TRUE(g.wait());
}

TEST(FunctionGroup, FlushStartsABurstsTailWithoutWait) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<int> ran{0};
  for (int i = 0; i < 40; ++i) g.run([&ran] { ran.fetch_add(1); });
  g.flush();
  EXPECT_TRUE(eventually(ran, 40));
  EXPECT_TRUE(g.wait());
  EXPECT_EQ(g.last_report().ran, 40u);
}

TEST(FunctionGroup, SeveralGroupsAndTasksShareThePool) {
  auto pool = make_pool();
  auto a = make_group(pool);
  auto b = make_group(pool);
  std::atomic<int> na{0}, nb{0};
  for (int i = 0; i < 10'000; ++i) {
    a.run([&na] { na.fetch_add(1); });
    b.run([&nb] { nb.fetch_add(1); });
  }
  auto t = pool.run(Task::function([] {}).build().value());
  ASSERT_TRUE(t);
  EXPECT_EQ(t->status, Status::Succeeded);
  ASSERT_TRUE(a.wait());
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(na.load(), 10'000);
  EXPECT_EQ(nb.load(), 10'000);
  EXPECT_EQ(pool.stats().functions, 20'000u);
  EXPECT_EQ(pool.stats().submitted, 20'001u);
}

}  // namespace
}  // namespace pepita::pool
