// The pool's state machine (src/pool/state.cpp): failure_of() for every status, a start the
// executor refuses (cancelled or failed to launch), the circuit breaker's refusal, the texts of
// skipped and late tasks, retry_on codes at their boundary, and the Retrying event's contents.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/pool/pool.hpp"
#include "refusing_executor.hpp"

namespace pepita::pool {
namespace {

using namespace std::chrono_literals;
using fault::FailureKind;
using pepita::test::TempDir;
using task::RetryOn;
using test_support::RefusingExecutor;

// A pool whose process backend refuses every start with `code`.
Pool refusing_pool(ErrorCode code, fault::RetryPolicy policy = fault::RetryPolicy(),
                   fault::BreakerConfig breaker = {}) {
  return Pool::builder()
      .executor(std::make_shared<RefusingExecutor>(code))
      .retry_policy(std::move(policy))
      .circuit_breaker(breaker)
      .build()
      .value();
}

ExecutionResult run(Pool& pool, Task task) {
  auto r = pool.run(std::move(task));
  EXPECT_TRUE(r) << r.error().message();
  return r ? *r : ExecutionResult{};
}

// A shell command as a task, with retry_on `on` and one retry at most.
Task sh_retrying_on(const std::string& script, RetryOn on) {
  return Task::binary("/bin/sh").args({"-c", script}).retry_on({on}).max_retries(1).build().value();
}

TEST(FailureOf, GivesEachStatusItsKindAndTheCodeThatMatters) {
  ExecutionResult r;
  r.exit_code = 7;
  r.signal = 9;
  auto of = [&](Status s) {
    r.status = s;
    const fault::Failure f = failure_of(r);
    return std::pair{f.kind, f.code};
  };
  EXPECT_EQ(of(Status::Succeeded), std::pair(FailureKind::Exit, 7));
  EXPECT_EQ(of(Status::Failed), std::pair(FailureKind::Exit, 7));
  EXPECT_EQ(of(Status::Signaled), std::pair(FailureKind::Signal, 9));
  EXPECT_EQ(of(Status::TimedOut), std::pair(FailureKind::Timeout, 9));
  EXPECT_EQ(of(Status::LaunchFailed), std::pair(FailureKind::Launch, 0));
  EXPECT_EQ(of(Status::Rejected), std::pair(FailureKind::Rejected, 0));
  EXPECT_EQ(of(Status::OutOfMemory), std::pair(FailureKind::Oom, 9));
  EXPECT_EQ(of(Status::Sandboxed), std::pair(FailureKind::Sandbox, 9));
  EXPECT_EQ(of(Status::Cancelled), std::pair(FailureKind::Cancelled, 0));
  EXPECT_EQ(of(Status::Skipped), std::pair(FailureKind::Cancelled, 0));
  EXPECT_EQ(of(static_cast<Status>(200)), std::pair(FailureKind::Error, 0)) << "not a status";
}

TEST(PoolState, AStartRefusedAsCancelledEndsCancelledOnceWithTheExecutorsReason) {
  auto pool = refusing_pool(ErrorCode::Cancelled, fault::RetryPolicy().max_attempts(3));
  const ExecutionResult r = run(pool, Task::binary("/bin/true").build().value());
  EXPECT_EQ(r.status, Status::Cancelled);
  EXPECT_EQ(r.attempts, 1u) << "a cancelled start is not retried";
  EXPECT_NE(r.error.find("the inner executor refused"), std::string::npos) << r.error;
}

TEST(PoolState, AStartRefusedOtherwiseIsALaunchFailureRetriedByThePolicy) {
  auto pool = refusing_pool(ErrorCode::Io, fault::RetryPolicy().max_attempts(3).base_delay(1ms));
  const ExecutionResult r = run(pool, Task::binary("/bin/true").build().value());
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_NE(r.error.find("the inner executor refused"), std::string::npos) << r.error;
}

TEST(PoolState, AnOpenBreakerRefusesNamingTheBackendTheFailuresAndTheWait) {
  auto pool = refusing_pool(ErrorCode::Io, fault::RetryPolicy().max_attempts(1),
                            {.failure_threshold = 1, .cool_down = 30s, .half_open_probes = 1});
  EXPECT_EQ(run(pool, Task::binary("/bin/true").build().value()).status, Status::LaunchFailed);
  const ExecutionResult r = run(pool, Task::binary("/bin/true").build().value());
  EXPECT_EQ(r.status, Status::Rejected);
  EXPECT_EQ(r.attempts, 1u);
  const std::string head =
      "not started: the process backend's circuit breaker is open after 1 consecutive launch "
      "failures; it lets a probe through in ";
  ASSERT_EQ(r.error.substr(0, head.size()), head) << r.error;
  ASSERT_TRUE(r.error.ends_with(" ms")) << r.error;
  const long ms = std::stol(r.error.substr(head.size()));
  EXPECT_GT(ms, 25000) << r.error;
  EXPECT_LE(ms, 30000) << r.error;
}

TEST(PoolState, SkippedTasksNameTheDependencyThatFailed) {
  auto pool = Pool::builder().build().value();
  auto bad = Task::binary("/bin/false").name("bad").build().value();
  auto child = Task::binary("/bin/true").depends_on({bad.id()}).build().value();
  ASSERT_TRUE(pool.submit(bad));
  auto child_handle = pool.submit(child);
  ASSERT_TRUE(child_handle) << child_handle.error().message();
  EXPECT_EQ(child_handle->wait().error, "not run: dependency 'bad' did not succeed");
  pool.wait_idle();
  // Submitted after its dependency failed: that one is named by id (its node is gone).
  const ExecutionResult late =
      run(pool, Task::binary("/bin/true").depends_on({bad.id()}).build().value());
  EXPECT_EQ(late.status, Status::Skipped);
  EXPECT_EQ(late.error, "not run: dependency id " + std::to_string(bad.id()) + " did not succeed");
  EXPECT_EQ(late.attempts, 0u);
}

TEST(PoolState, ADeadlineOfOneNanosecondHasPassedBeforeTheTaskCanStart) {
  auto pool = Pool::builder().build().value();
  const ExecutionResult r = run(pool, Task::binary("/bin/true").deadline(1ns).build().value());
  EXPECT_EQ(r.status, Status::TimedOut);
  EXPECT_EQ(r.error, "deadline of 0.000000 s passed before the task could start");
  EXPECT_EQ(r.attempts, 0u);
}

// Exit code 0 is a code like any other, not "any" (-1). (A signal 0 cannot be asked for: the
// task builder refuses it.)
TEST(PoolState, RetryOnExitZeroMatchesOnlyThatCodeNotAny) {
  auto pool = Pool::builder().build().value();
  const ExecutionResult exit3 = run(pool, sh_retrying_on("exit 3", RetryOn::exit(0)));
  EXPECT_EQ(exit3.exit_code, 3);
  EXPECT_EQ(exit3.attempts, 1u) << "exit 3 is not exit 0";
  EXPECT_EQ(run(pool, sh_retrying_on("exit 3", RetryOn::exit(3))).attempts, 2u);
}

TEST(PoolState, RetryOnWithoutMaxRetriesTakesThePolicysMaxAttempts) {
  auto pool = Pool::builder().retry_policy(fault::RetryPolicy().max_attempts(3)).build().value();
  auto task =
      Task::binary("/bin/sh").args({"-c", "exit 3"}).retry_on({RetryOn::exit(3)}).build().value();
  EXPECT_EQ(run(pool, std::move(task)).attempts, 3u);
}

// A launch failure's result is made by the pool (the executor never saw the task), so the
// Retrying event's result gets its id and name there.
TEST(PoolState, TheRetryingEventOfAFailedLaunchNamesTheTaskAndCarriesTheDelay) {
  struct Seen {
    TaskId id, result_id;
    std::string name, result_name;
    std::uint32_t attempt;
    std::chrono::nanoseconds delay;
    Status status;
  };
  std::mutex mu;
  std::optional<Seen> seen;
  auto pool = Pool::builder()
                  .executor(std::make_shared<RefusingExecutor>(ErrorCode::Io))
                  .retry_policy(fault::RetryPolicy().max_attempts(2).base_delay(30ms).jitter(false))
                  .on_event([&](const Event& e) {
                    if (e.kind != Event::Kind::Retrying || e.result == nullptr) return;
                    std::lock_guard lock(mu);
                    seen = Seen{e.id,      e.result->id,  e.name,          e.result->name,
                                e.attempt, e.retry_delay, e.result->status};
                  })
                  .build()
                  .value();
  auto task = Task::binary("/bin/true").name("flaky").build().value();
  const TaskId id = task.id();
  EXPECT_EQ(run(pool, std::move(task)).attempts, 2u);
  std::lock_guard lock(mu);
  ASSERT_TRUE(seen) << "no Retrying event";
  EXPECT_EQ(seen->id, id);
  EXPECT_EQ(seen->result_id, id);
  EXPECT_EQ(seen->name, "flaky");
  EXPECT_EQ(seen->result_name, "flaky");
  EXPECT_EQ(seen->attempt, 1u);
  EXPECT_EQ(seen->delay, 30ms);
  EXPECT_EQ(seen->status, Status::LaunchFailed);
}

TEST(PoolState, ATaskWhoseDependencyAlreadySucceededRuns) {
  auto pool = Pool::builder().build().value();
  auto first = Task::binary("/bin/true").build().value();
  ASSERT_TRUE(run(pool, first).ok());
  const ExecutionResult r =
      run(pool, Task::binary("/bin/true").depends_on({first.id()}).build().value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(pool.stats().succeeded, 2u);
  EXPECT_EQ(pool.stats().from_cache, 0u) << "both ran: a success is no cache hit";
}

TEST(PoolState, AResultReplayedFromTheJournalKeepsItsRecordedAttempts) {
  TempDir dir{"pool-state"};
  const std::string journal = dir.file("journal");
  auto once = [] { return Task::binary("/bin/true").name("once").build().value(); };
  {
    auto pool = Pool::builder().journal(journal).build().value();
    EXPECT_EQ(run(pool, once()).attempts, 1u);
  }
  auto pool = Pool::builder().journal(journal, /*resume=*/true).build().value();
  const ExecutionResult r = run(pool, once());
  EXPECT_TRUE(r.from_journal);
  EXPECT_EQ(r.attempts, 1u) << "as recorded, though it made no attempt in this run";
}

TEST(PoolState, ATaskForABackendThePoolLacksIsRefusedListingTheBackendsItHas) {
  auto pool = Pool::builder().build().value();
  auto task =
      Task::binary("/bin/true").name("c").backend(task::Backend::named("red").value()).build();
  auto r = pool.submit(task.value());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
  EXPECT_EQ(r.error().message(),
            "task 'c' needs the red backend, which this pool has no executor for (it has: cpu, "
            "process); register one with Pool::Builder::executor()");
}

}  // namespace
}  // namespace pepita::pool
