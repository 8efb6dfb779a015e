// Pool::function_group (issue 27): plain callables on the pool's cpu workers, without a Task.
#include "pepita/pool/function_group.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <new>
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

// A callable whose copy throws: run(lvalue) copies it into the group.
struct ThrowsOnCopy {
  std::atomic<int>* ran;
  explicit ThrowsOnCopy(std::atomic<int>* r) : ran(r) {}
  ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy refused"); }
  ThrowsOnCopy& operator=(const ThrowsOnCopy&) = delete;
  void operator()() const { ran->fetch_add(1); }
};

TEST(FunctionGroup, CallableWhoseCopyThrowsIsAFailureNotAnEscape) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<int> ran{0}, copies_ran{0};
  const ThrowsOnCopy bad(&copies_ran);
  constexpr int n = 200;
  for (int i = 0; i < n; ++i) {
    // Staged together or alone: the failed copy is counted either way, the next callable runs.
    EXPECT_NO_THROW(g.run(bad));
    g.run([&ran] { ran.fetch_add(1); });
  }
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Internal);
  EXPECT_NE(r.error().message().find(std::to_string(n) + " of " + std::to_string(2 * n) +
                                     " function tasks failed"),
            std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("copy refused"), std::string::npos) << r.error().message();
  EXPECT_EQ(ran.load(), n);
  EXPECT_EQ(copies_ran.load(), 0);
  EXPECT_EQ(g.last_report().failed, static_cast<std::uint64_t>(n));
  EXPECT_EQ(g.last_report().ran, static_cast<std::uint64_t>(n));
  EXPECT_THROW(std::rethrow_exception(g.exception()), std::runtime_error);
}

TEST(FunctionGroup, NestedRunWhoseCopyThrowsOrThatIsCancelledIsCountedNotLost) {
  auto pool = make_pool();
  auto g = make_group(pool);
  FunctionGroup* gp = &g;
  std::atomic<int> copies_ran{0};
  const ThrowsOnCopy bad(&copies_ran);
  g.run([gp, &bad] { gp->run(bad); });
  auto failed = g.wait();
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message().find("1 of 2 function tasks failed"), std::string::npos)
      << failed.error().message();
  EXPECT_NE(failed.error().message().find("copy refused"), std::string::npos)
      << failed.error().message();
  EXPECT_EQ(copies_ran.load(), 0);

  std::atomic<int> nested_ran{0};
  g.run([gp, &nested_ran] {
    gp->cancel();  // the nested callable below is queued after this: it never runs
    gp->run([&nested_ran] { nested_ran.fetch_add(1); });
  });
  auto cancelled = g.wait();
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(cancelled.error().message().find("1 of 2 function tasks were cancelled"),
            std::string::npos)
      << cancelled.error().message();
  EXPECT_EQ(nested_ran.load(), 0);
}

TEST(FunctionGroup, BadAllocIsResourceExhaustedWithEnomem) {
  auto pool = make_pool();
  auto g = make_group(pool);
  g.run([] { throw std::bad_alloc(); });
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_EQ(r.error().sys_errno(), ENOMEM);
  EXPECT_NE(r.error().message().find("function task ran out of memory"), std::string::npos)
      << r.error().message();
}

TEST(FunctionGroup, FailuresAndCancellationsTogetherAreBothReported) {
  auto pool = make_pool();
  auto g = make_group(pool);
  std::atomic<bool> release{false};
  std::atomic<unsigned> started{0};
  for (unsigned i = 0; i < kWorkers; ++i) {
    g.run([&release, &started] {
      started.fetch_add(1);
      while (!release.load()) std::this_thread::yield();
      throw std::runtime_error("late failure");
    });
  }
  g.flush();
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (started.load() < kWorkers && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(started.load(), kWorkers) << "the blocking callables never started";
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) g.run([&ran] { ran.fetch_add(1); });
  g.flush();
  g.cancel();
  release.store(true);
  auto r = g.wait();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Internal);
  EXPECT_NE(r.error().message().find("2 of 102 function tasks failed; the first: "),
            std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("late failure"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(" (100 more were cancelled before they ran)"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(ran.load(), 0);
}

TEST(FunctionGroup, MoveAssignmentWaitsForTheReplacedGroupAndKeepsTheMovedOne) {
  auto pool = make_pool();
  auto a = make_group(pool);
  auto b = make_group(pool);
  std::atomic<int> ran_a{0}, ran_b{0};
  for (int i = 0; i < 50; ++i) a.run([&ran_a] { ran_a.fetch_add(1); });
  b.run([&ran_b] { ran_b.fetch_add(1); });
  a = std::move(b);
  EXPECT_EQ(ran_a.load(), 50) << "the replaced group's callables all ran before it went";
  a.run([&ran_b] { ran_b.fetch_add(1); });
  EXPECT_TRUE(a.wait());
  EXPECT_EQ(ran_b.load(), 2);
  EXPECT_EQ(a.last_report().submitted, 2u);
  FunctionGroup& self = a;
  a = std::move(self);  // self-assignment keeps the group
  a.run([&ran_b] { ran_b.fetch_add(1); });
  EXPECT_TRUE(a.wait());
  EXPECT_EQ(ran_b.load(), 3);
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
