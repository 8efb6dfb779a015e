// WorkerLedger and can_ever_fit_any: the dispatcher's resource placement on one worker, without
// sockets — which queued task a lease scan takes, the reservation that keeps a large task from
// starving, and the submit-time error naming the largest worker.
#include "pepita/transport/placement.hpp"

#include <gtest/gtest.h>

#include <set>

namespace pepita::transport {
namespace {

using Admit = LeaseTable::Admit;

task::Inventory inventory(unsigned cpus, std::uint64_t memory, std::vector<std::string> gpus) {
  task::Inventory inv;
  for (unsigned c = 0; c < cpus; ++c) inv.cpus.push_back(c);
  inv.memory = memory;
  inv.gpus = std::move(gpus);
  return inv;
}

task::ResourceRequest gpus(double n) {
  task::ResourceRequest r;
  r.gpus = n;
  return r;
}

task::ResourceRequest cpus(double n) {
  task::ResourceRequest r;
  r.cpus = n;
  return r;
}

constexpr std::uint64_t kGiB = 1ull << 30;

TEST(WorkerLedger, TwoOneGpuTasksGetDisjointIdsAndAThirdIsSkipped) {
  WorkerLedger w(inventory(8, 16 * kGiB, {"0", "1"}));
  w.begin_scan();
  ASSERT_EQ(w.admit(1, gpus(1), 1), Admit::Take);
  ASSERT_EQ(w.admit(2, gpus(1), 1), Admit::Take);
  EXPECT_EQ(w.admit(3, gpus(1), 1), Admit::Skip);
  ASSERT_NE(w.allocation(1), nullptr);
  ASSERT_NE(w.allocation(2), nullptr);
  EXPECT_EQ(w.allocation(3), nullptr);
  const std::set<std::string> ids{w.allocation(1)->gpu_list(), w.allocation(2)->gpu_list()};
  EXPECT_EQ(ids, (std::set<std::string>{"0", "1"}));
  // Released, its GPU goes to the waiting task.
  const std::string freed = w.allocation(1)->gpu_list();
  w.release(1);
  w.begin_scan();
  ASSERT_EQ(w.admit(3, gpus(1), 1), Admit::Take);
  EXPECT_EQ(w.allocation(3)->gpu_list(), freed);
  EXPECT_EQ(w.holders(), (std::vector<std::uint64_t>{2, 3}));
}

TEST(WorkerLedger, EmptyRequestsAreAlwaysTakenAndHoldNothing) {
  WorkerLedger w(inventory(1, kGiB, {}));
  w.begin_scan();
  EXPECT_EQ(w.admit(1, {}, 1), Admit::Take);
  EXPECT_EQ(w.allocation(1), nullptr);
  EXPECT_TRUE(w.holders().empty());
  w.release(1);  // no-op
}

TEST(WorkerLedger, ATaskThatNeverFitsHereIsSkippedWithoutReserving) {
  WorkerLedger w(inventory(4, kGiB, {}));
  w.begin_scan();
  task::ResourceRequest big;
  big.memory = 2 * kGiB;  // another worker's task
  EXPECT_EQ(w.admit(1, big, 1), Admit::Skip);
  EXPECT_EQ(w.admit(2, cpus(4), 1), Admit::Take);  // not held back by a reservation
}

TEST(WorkerLedger, TheFirstWaitingTaskReservesWhatItIsShortOf) {
  WorkerLedger w(inventory(4, 16 * kGiB, {}));
  w.begin_scan();
  ASSERT_EQ(w.admit(1, cpus(2), 1), Admit::Take);
  // A 4-CPU task waits for room; a later 1-CPU task may not take the CPUs it waits for.
  EXPECT_EQ(w.admit(2, cpus(4), 1), Admit::Skip);
  EXPECT_EQ(w.admit(3, cpus(1), 1), Admit::Skip);
  // Memory is not what it is short of: a memory-only task still goes.
  task::ResourceRequest mem;
  mem.memory = kGiB;
  EXPECT_EQ(w.admit(4, mem, 1), Admit::Take);
  w.release(1);
  w.begin_scan();
  EXPECT_EQ(w.admit(2, cpus(4), 1), Admit::Take);
}

TEST(WorkerLedger, AGrowingRequestIsPlacedAtItsAttempt) {
  WorkerLedger w(inventory(4, 4 * kGiB, {}));
  task::ResourceRequest r;
  r.memory = kGiB;
  r.memory_growth = task::Growth::PerAttempt;
  w.begin_scan();
  ASSERT_EQ(w.admit(1, r, 3), Admit::Take);
  EXPECT_EQ(w.allocation(1)->memory, 3 * kGiB);
  EXPECT_EQ(w.allocation(1)->attempt, 3u);
  EXPECT_EQ(w.admit(2, r, 2), Admit::Skip);  // 2G of the 1G left
}

TEST(CanEverFitAny, NamesTheLargestWorker) {
  const std::vector<task::Inventory> ws{inventory(4, 8 * kGiB, {"0"}),
                                        inventory(2, 4 * kGiB, {"0", "1"})};
  auto r = can_ever_fit_any(ws, gpus(4));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(r.error().message().find("needs 4 GPUs; the largest worker has 2"), std::string::npos)
      << r.error().message();
  EXPECT_TRUE(can_ever_fit_any(ws, gpus(2)));
  EXPECT_TRUE(can_ever_fit_any(ws, cpus(4)));
  task::ResourceRequest mem;
  mem.memory = 16 * kGiB;
  auto m = can_ever_fit_any(ws, mem);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("the largest worker has 8G"), std::string::npos)
      << m.error().message();
}

TEST(CanEverFitAny, EveryKindFitsSomewhereButNotAllOnOneWorker) {
  const std::vector<task::Inventory> ws{inventory(8, kGiB, {}), inventory(1, 8 * kGiB, {})};
  task::ResourceRequest r;
  r.cpus = 4;
  r.memory = 4 * kGiB;
  auto e = can_ever_fit_any(ws, r);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("no worker has all of it"), std::string::npos)
      << e.error().message();
}

TEST(CanEverFitAny, NoWorkerKnownYetAcceptsAnything) {
  EXPECT_TRUE(can_ever_fit_any({}, gpus(64)));
  EXPECT_TRUE(can_ever_fit_any({inventory(1, kGiB, {})}, {}));
}

// Named counts are judged like the kinds above: the largest worker has the most of each name, and
// a name no worker has is named.
TEST(CanEverFitAny, NamedCountsNameTheLargestWorkersCountOrItsLack) {
  std::vector<task::Inventory> ws{inventory(1, kGiB, {}), inventory(1, kGiB, {}),
                                  inventory(1, kGiB, {})};
  ws[0].named["licence"] = 2;
  ws[1].named["licence"] = 5;
  ws[2].named["licence"] = 3;
  task::ResourceRequest six;
  six.named["licence"] = 6;
  auto r = can_ever_fit_any(ws, six);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(r.error().message().find("needs licence=6; the largest worker has 5"),
            std::string::npos)
      << r.error().message();
  task::ResourceRequest five;
  five.named["licence"] = 5;
  EXPECT_TRUE(can_ever_fit_any(ws, five));
  task::ResourceRequest seat;
  seat.named["seat"] = 1;
  auto none = can_ever_fit_any(ws, seat);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("needs seat=1; the largest worker has no 'seat'"),
            std::string::npos)
      << none.error().message();
}

// When no one worker has all of a request, the error lists every worker, in order.
TEST(CanEverFitAny, NoWorkerHasItAllListsEachWorker) {
  std::vector<task::Inventory> ws{inventory(8, kGiB, {}), inventory(1, 8 * kGiB, {"0"})};
  ws[1].named["licence"] = 2;
  task::ResourceRequest r;
  r.cpus = 4;
  r.gpus = 1;
  auto e = can_ever_fit_any(ws, r);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(
      e.error().message().find("(workers: cpus=8 memory=1G; cpus=1 memory=8G gpus=0 licence=2)"),
      std::string::npos)
      << e.error().message();
}

// Of workers with as many GPUs, the largest worker's GPU ids are the first one's: a request for
// an id only a smaller worker has is named against them.
TEST(CanEverFitAny, OfEquallyManyGpusTheFirstWorkersIdsAreTheLargest) {
  const std::vector<task::Inventory> ws{inventory(8, kGiB, {"0", "1"}),
                                        inventory(1, kGiB, {"2", "3"})};
  task::ResourceRequest r;
  r.cpus = 8;
  r.gpu_ids = {"2"};
  auto e = can_ever_fit_any(ws, r);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("needs GPU '2'; the largest worker has GPUs 0,1"),
            std::string::npos)
      << e.error().message();
}

}  // namespace
}  // namespace pepita::transport
