// Setup helpers: SINGLE_ISSUER + DEFER_TASKRUN (RingOptions::single_thread) and COOP_TASKRUN
// (RingOptions::cooperative) rings work, a submission from another thread is refused with a
// clear Busy/EEXIST error, and impossible combinations are refused before the kernel sees them.
#include <gtest/gtest.h>

#include <cerrno>
#include <optional>
#include <string>
#include <thread>

#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

void expect_nops_complete(Ring& ring, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    abi::Sqe* sqe = ring.get_sqe();
    ASSERT_NE(sqe, nullptr);
    prep_nop(*sqe);
    sqe->user_data = 100 + i;
  }
  const auto done = test::reap(ring, n);
  ASSERT_EQ(done.size(), n);
  for (unsigned i = 0; i < n; ++i) {
    EXPECT_EQ(done[i].user_data, 100 + i);
    EXPECT_EQ(done[i].res, 0);
  }
}

TEST(RingSetup, SingleThreadRingSetsDeferTaskrunAndSingleIssuerAndRuns) {
  PEPITA_RING_OR_SKIP(ring, RingOptions::single_thread(8));
  EXPECT_NE(ring.setup_flags() & abi::setup::DEFER_TASKRUN, 0u);
  EXPECT_NE(ring.setup_flags() & abi::setup::SINGLE_ISSUER, 0u);
  expect_nops_complete(ring, 4);
}

// A read that completes asynchronously (through task work) is seen by peek_cqe alone.
void expect_async_completion_seen_by_peek(Ring& ring) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  char c = 0;
  abi::Sqe* sqe = ring.get_sqe();
  prep_read(*sqe, r.get(), &c, 1, ~0ull);  // completes asynchronously, through task work
  sqe->user_data = 5;
  ASSERT_TRUE(ring.submit());
  ASSERT_EQ(::write(w.get(), "z", 1), 1);
  // The completion is deferred task work until this thread enters; peek_cqe must enter for it.
  const abi::Cqe* cqe = nullptr;
  for (int i = 0; i < 1000 && cqe == nullptr; ++i) {
    cqe = ring.peek_cqe();
    if (cqe == nullptr) std::this_thread::yield();
  }
  ASSERT_NE(cqe, nullptr) << "peek_cqe on a DEFER_TASKRUN ring must run the deferred work";
  EXPECT_EQ(cqe->user_data, 5u);
  EXPECT_EQ(cqe->res, 1);
  ring.cqe_seen();
  EXPECT_EQ(c, 'z');
}

TEST(RingSetup, DeferTaskrunCompletionsAppearToPeekWithoutAWait) {
  PEPITA_RING_OR_SKIP(ring, RingOptions::single_thread(4));
  EXPECT_NE(ring.setup_flags() & abi::setup::TASKRUN_FLAG, 0u);
  expect_async_completion_seen_by_peek(ring);
}

TEST(RingSetup, DeferTaskrunWithoutTaskrunFlagStillShowsCompletionsToPeek) {
  RingOptions o;
  o.entries = 4;
  o.single_issuer = true;
  o.defer_taskrun = true;
  PEPITA_RING_OR_SKIP(ring, o);
  EXPECT_EQ(ring.setup_flags() & abi::setup::TASKRUN_FLAG, 0u);
  expect_async_completion_seen_by_peek(ring);
}

TEST(RingSetup, CooperativeRingSetsCoopTaskrunAndRuns) {
  PEPITA_RING_OR_SKIP(ring, RingOptions::cooperative(8));
  EXPECT_NE(ring.setup_flags() & abi::setup::COOP_TASKRUN, 0u);
  EXPECT_NE(ring.setup_flags() & abi::setup::TASKRUN_FLAG, 0u);
  expect_nops_complete(ring, 4);
}

TEST(RingSetup, SubmittingFromAnotherThreadIsRefusedWithAClearError) {
  PEPITA_RING_OR_SKIP(ring, RingOptions::single_thread(8));
  expect_nops_complete(ring, 1);  // the creating thread is the issuer
  std::optional<Result<unsigned>> other;
  std::thread t([&] {
    prep_nop(*ring.get_sqe());
    other.emplace(ring.submit());
  });
  t.join();
  ASSERT_TRUE(other.has_value());
  ASSERT_FALSE(*other) << "the kernel accepted a submission from a second thread";
  EXPECT_EQ(other->error().code(), ErrorCode::Busy);
  EXPECT_EQ(other->error().sys_errno(), EEXIST);
  EXPECT_NE(other->error().message().find("single_issuer"), std::string::npos)
      << other->error().message();
  // The owner still submits what is queued.
  auto done = test::reap(ring, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].res, 0);
}

TEST(RingSetup, DeferTaskrunWithoutSingleIssuerIsRefused) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  RingOptions o;
  o.defer_taskrun = true;
  auto r = Ring::create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("single_issuer"), std::string::npos);
  o = RingOptions{};
  o.taskrun_flag = true;
  r = Ring::create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  o = RingOptions::single_thread();
  o.sqpoll = true;
  r = Ring::create(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita::io_uring
