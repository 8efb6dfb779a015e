// LeaseTable unit tests: leasing, renewal and expiry, requeue on worker loss, exactly-once
// completion, cancellation — no sockets, threads or clocks.
#include "pepita/transport/lease_table.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using Report = LeaseTable::Report;
using Action = LeaseTable::Action;
using CancelAction = LeaseTable::CancelAction;

const LeaseTable::TimePoint t0{};

LeaseTable table(std::uint32_t max_attempts = 3) {
  return LeaseTable({.max_attempts = max_attempts, .lease_ttl = 5s});
}

TEST(LeaseTable, LeasesInFifoOrderUpToTheWorkersSlots) {
  auto t = table();
  for (std::uint64_t id = 1; id <= 5; ++id) ASSERT_TRUE(t.add(id));
  EXPECT_FALSE(t.add(3)) << "a known id is refused";
  const auto a = t.lease(0, 2, t0);
  ASSERT_EQ(a.granted.size(), 2u);
  EXPECT_EQ(a.granted[0].id, 1u);
  EXPECT_EQ(a.granted[0].attempt, 1u);
  EXPECT_EQ(a.granted[1].id, 2u);
  EXPECT_TRUE(t.lease(0, 2, t0).granted.empty()) << "no free slot left";
  const auto b = t.lease(1, 8, t0);
  ASSERT_EQ(b.granted.size(), 3u);
  EXPECT_EQ(b.granted[0].id, 3u);
  EXPECT_EQ(t.held(0), 2u);
  EXPECT_EQ(t.held(1), 3u);
  EXPECT_EQ(t.holder(4), 1u);
  EXPECT_EQ(t.queued(), 0u);
}

TEST(LeaseTable, AdmitSkipsKeepTheirPlaceInTheQueue) {
  auto t = table();
  for (std::uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(t.add(id));
  std::vector<std::uint64_t> asked;
  // Worker 0 takes only even ids (say, only they fit its resources).
  const auto a = t.lease(0, 8, t0, [&](std::uint64_t id, std::uint32_t attempt) {
    asked.push_back(id);
    EXPECT_EQ(attempt, 1u);
    return id % 2 == 0 ? LeaseTable::Admit::Take : LeaseTable::Admit::Skip;
  });
  EXPECT_EQ(asked, (std::vector<std::uint64_t>{1, 2, 3, 4}));
  ASSERT_EQ(a.granted.size(), 2u);
  EXPECT_EQ(a.granted[0].id, 2u);
  EXPECT_EQ(a.granted[1].id, 4u);
  EXPECT_EQ(t.queued(), 2u);
  EXPECT_EQ(t.attempts(1), 0u) << "a skipped task used no attempt";
  // The skipped ones are still first, in order, for the next worker.
  const auto b = t.lease(1, 1, t0);
  ASSERT_EQ(b.granted.size(), 1u);
  EXPECT_EQ(b.granted[0].id, 1u);
  // A worker that is full is not asked at all.
  asked.clear();
  (void)t.lease(0, 2, t0, [&](std::uint64_t id, std::uint32_t) {
    asked.push_back(id);
    return LeaseTable::Admit::Take;
  });
  EXPECT_TRUE(asked.empty());
}

TEST(LeaseTable, AResultCompletesOnceAndALateDuplicateIsDropped) {
  auto t = table();
  ASSERT_TRUE(t.add(7));
  ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
  const auto v = t.on_result(0, 7, Report::Final);
  EXPECT_EQ(v.action, Action::Complete);
  EXPECT_EQ(v.attempts, 1u);
  EXPECT_FALSE(t.contains(7)) << "completed and reported by its holder: forgotten";
  EXPECT_EQ(t.on_result(0, 7, Report::Final).action, Action::Duplicate);
  EXPECT_EQ(t.duplicates(), 1u);
  EXPECT_EQ(t.held(0), 0u);
}

TEST(LeaseTable, ALostWorkersLeasesAreRequeuedAtTheFrontAndRunElsewhere) {
  auto t = table();
  for (std::uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(t.add(id));
  ASSERT_EQ(t.lease(0, 2, t0).granted.size(), 2u);  // 1, 2 on worker 0
  const auto lost = t.worker_lost(0);
  EXPECT_EQ(lost.leases, 2u);
  ASSERT_EQ(lost.requeued.size(), 2u);
  EXPECT_TRUE(lost.cancelled.empty());
  EXPECT_EQ(t.held(0), 0u);
  EXPECT_EQ(t.queued(), 4u);
  const auto again = t.lease(1, 1, t0);
  ASSERT_EQ(again.granted.size(), 1u);
  EXPECT_EQ(again.granted[0].id, 1u) << "requeued tasks go first, in id order";
  EXPECT_EQ(again.granted[0].attempt, 2u);
}

TEST(LeaseTable, TheResultOfARequeuedLeaseCompletesItOnceWhoeverSendsItFirst) {
  auto t = table();
  ASSERT_TRUE(t.add(9));
  ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
  (void)t.worker_lost(0);
  ASSERT_EQ(t.lease(1, 1, t0).granted.size(), 1u);  // attempt 2 on worker 1
  // Worker 0 reconnected and reports attempt 1 first: the work ran, it completes the task.
  EXPECT_EQ(t.on_result(0, 9, Report::Final).action, Action::Complete);
  EXPECT_TRUE(t.completed(9)) << "kept until the current holder reports";
  EXPECT_EQ(t.on_result(1, 9, Report::Final).action, Action::Duplicate);
  EXPECT_FALSE(t.contains(9));
  EXPECT_EQ(t.duplicates(), 1u);
}

TEST(LeaseTable, RenewedLeasesLiveAndSilentOnesExpireIntoTheQueue) {
  auto t = table();
  ASSERT_TRUE(t.add(1));
  ASSERT_TRUE(t.add(2));
  ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
  ASSERT_EQ(t.lease(1, 1, t0).granted.size(), 1u);
  t.renew(0, t0 + 4s);
  t.renew(1, t0 + 1s);
  EXPECT_FALSE(t.silent(0, t0 + 7s));
  EXPECT_TRUE(t.silent(1, t0 + 7s));
  EXPECT_TRUE(t.expire(t0 + 5s).requeued.empty()) << "nothing is past its ttl yet";
  const auto r = t.expire(t0 + 7s);
  ASSERT_EQ(r.requeued.size(), 1u);
  EXPECT_EQ(r.requeued[0], 2u) << "worker 1 was silent 6 s > 5 s";
  EXPECT_EQ(t.holder(1), 0u);
  EXPECT_FALSE(t.holder(2).has_value());
  EXPECT_EQ(t.queued(), 1u);
  const auto r2 = t.expire(t0 + 10s);
  ASSERT_EQ(r2.requeued.size(), 1u);
  EXPECT_EQ(r2.requeued[0], 1u);
}

TEST(LeaseTable, AReturnedTaskIsRequeuedWithoutCountingAnAttempt) {
  auto t = table(1);
  ASSERT_TRUE(t.add(5));
  ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
  const auto v = t.on_result(0, 5, Report::Returned);
  EXPECT_EQ(v.action, Action::Requeued);
  EXPECT_EQ(t.attempts(5), 0u);
  const auto again = t.lease(1, 1, t0);
  ASSERT_EQ(again.granted.size(), 1u) << "max_attempts 1 still allows it: the return was free";
  EXPECT_EQ(again.granted[0].attempt, 1u);
}

TEST(LeaseTable, ATaskLostMaxAttemptsTimesIsGivenUp) {
  auto t = table(2);
  ASSERT_TRUE(t.add(3));
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
    (void)t.worker_lost(0);
  }
  const auto l = t.lease(0, 1, t0);
  EXPECT_TRUE(l.granted.empty());
  ASSERT_EQ(l.exhausted.size(), 1u);
  EXPECT_EQ(l.exhausted[0].id, 3u);
  EXPECT_EQ(l.exhausted[0].attempts, 2u);
  EXPECT_FALSE(t.contains(3));
}

TEST(LeaseTable, CancellingAQueuedTaskCompletesItAtOnce) {
  auto t = table();
  ASSERT_TRUE(t.add(1));
  ASSERT_TRUE(t.add(2));
  EXPECT_EQ(t.cancel(1).action, CancelAction::Completed);
  EXPECT_EQ(t.cancel(1).action, CancelAction::None);
  EXPECT_EQ(t.queued(), 1u);
  const auto l = t.lease(0, 4, t0);
  ASSERT_EQ(l.granted.size(), 1u);
  EXPECT_EQ(l.granted[0].id, 2u);
}

TEST(LeaseTable, CancellingALeasedTaskAsksItsHolderAndNeverRequeuesIt) {
  auto t = table();
  ASSERT_TRUE(t.add(1));
  ASSERT_TRUE(t.add(2));
  ASSERT_EQ(t.lease(4, 2, t0).granted.size(), 2u);
  const auto c = t.cancel(1);
  EXPECT_EQ(c.action, CancelAction::SendToHolder);
  EXPECT_EQ(c.holder, 4u);
  // The worker hands it back unstarted: cancelled, not requeued.
  EXPECT_EQ(t.on_result(4, 1, Report::Returned).action, Action::CompleteCancelled);
  ASSERT_EQ(t.cancel(2).action, CancelAction::SendToHolder);
  const auto lost = t.worker_lost(4);
  EXPECT_TRUE(lost.requeued.empty());
  ASSERT_EQ(lost.cancelled.size(), 1u);
  EXPECT_EQ(lost.cancelled[0].id, 2u);
  EXPECT_EQ(t.queued(), 0u);
  EXPECT_FALSE(t.contains(2));
}

TEST(LeaseTable, DrainAndShutdownCompleteWhatIsLeftExactlyOnce) {
  auto t = table();
  for (std::uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(t.add(id));
  ASSERT_EQ(t.lease(0, 1, t0).granted.size(), 1u);
  const auto drained = t.drain_queue();
  ASSERT_EQ(drained.size(), 2u);
  EXPECT_EQ(drained[0].id, 2u);
  EXPECT_EQ(t.queued(), 0u);
  const auto rest = t.shutdown();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].id, 1u);
  EXPECT_FALSE(t.contains(1));
  EXPECT_EQ(t.on_result(0, 1, Report::Final).action, Action::Duplicate);
}

}  // namespace
}  // namespace pepita::transport
