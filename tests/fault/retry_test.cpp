#include "pepita/fault/retry.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace pepita::fault {
namespace {

using namespace std::chrono_literals;

TEST(RetryPolicy, AttemptLimitsAndPredicate) {
  RetryPolicy p;
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Exit, 1}));  // default: one attempt
  p.max_attempts(3);
  EXPECT_TRUE(p.should_retry(1, {FailureKind::Exit, 1}));
  EXPECT_TRUE(p.should_retry(2, {FailureKind::Timeout}));
  EXPECT_FALSE(p.should_retry(3, {FailureKind::Exit, 1}));
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Cancelled}));
  // A task's own retry count overrides the policy.
  EXPECT_TRUE(p.should_retry(5, {FailureKind::Exit, 1}, 5));
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Exit, 1}, 0));
  p.retry_on([](const Failure& f) { return f.kind == FailureKind::Timeout; });
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Exit, 1}));
  EXPECT_TRUE(p.should_retry(1, {FailureKind::Timeout}));
  p.max_attempts(0);
  EXPECT_EQ(p.max_attempts(), 1u);
}

TEST(RetryPolicy, ExponentialCeilingCapped) {
  RetryPolicy p;
  p.base_delay(10ms).max_delay(100ms).multiplier(2);
  EXPECT_EQ(p.backoff_ceiling(0), 0ns);
  EXPECT_EQ(p.backoff_ceiling(1), 10ms);
  EXPECT_EQ(p.backoff_ceiling(2), 20ms);
  EXPECT_EQ(p.backoff_ceiling(4), 80ms);
  EXPECT_EQ(p.backoff_ceiling(5), 100ms);
  EXPECT_EQ(p.backoff_ceiling(1000), 100ms);
  p.jitter(false);
  std::mt19937_64 rng(1);
  EXPECT_EQ(p.backoff(3, rng), 40ms);
}

TEST(RetryPolicy, FullJitterSpreadsOverWholeRange) {
  RetryPolicy p;
  p.base_delay(1ms).max_delay(1s);
  std::mt19937_64 rng(42);
  std::chrono::nanoseconds lo = 1s, hi = 0ns;
  for (int i = 0; i < 2000; ++i) {
    const auto d = p.backoff(4, rng);  // ceiling 8 ms
    ASSERT_GE(d, 0ns);
    ASSERT_LE(d, 8ms);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 1ms);
  EXPECT_GT(hi, 7ms);
}

RC_GTEST_PROP(RetryPolicy, BackoffNeverExceedsCeiling, (std::uint32_t retry, std::uint64_t seed)) {
  RetryPolicy p;
  p.base_delay(std::chrono::microseconds(*rc::gen::inRange(0, 100000)))
      .max_delay(std::chrono::milliseconds(*rc::gen::inRange(0, 60000)))
      .multiplier(*rc::gen::inRange(1, 10));
  std::mt19937_64 rng(seed);
  const auto d = p.backoff(retry, rng);
  RC_ASSERT(d >= 0ns);
  RC_ASSERT(d <= p.backoff_ceiling(retry));
}

TEST(CircuitBreaker, OpensAtThresholdThenHalfOpenProbe) {
  CircuitBreaker b({.failure_threshold = 3, .cool_down = 100ms, .half_open_probes = 1});
  const auto t0 = CircuitBreaker::Clock::now();
  EXPECT_TRUE(b.allow(t0));
  b.record_failure(t0);
  b.record_failure(t0);
  EXPECT_EQ(b.state(t0), CircuitBreaker::State::Closed);
  b.record_failure(t0);
  EXPECT_EQ(b.state(t0), CircuitBreaker::State::Open);
  EXPECT_FALSE(b.allow(t0 + 50ms));
  EXPECT_EQ(b.retry_after(t0 + 40ms), 60ms);
  // Cool-down over: exactly one probe admitted.
  EXPECT_TRUE(b.allow(t0 + 100ms));
  EXPECT_FALSE(b.allow(t0 + 100ms));
  // Probe fails: open again, for a fresh cool-down.
  b.record_failure(t0 + 110ms);
  EXPECT_FALSE(b.allow(t0 + 150ms));
  EXPECT_TRUE(b.allow(t0 + 210ms));
  b.record_success();
  EXPECT_EQ(b.state(), CircuitBreaker::State::Closed);
  EXPECT_EQ(b.failures(), 0u);
  EXPECT_TRUE(b.allow());
}

TEST(CircuitBreaker, SuccessResetsConsecutiveCount) {
  CircuitBreaker b({.failure_threshold = 2, .cool_down = 1s, .half_open_probes = 1});
  b.record_failure();
  b.record_success();
  b.record_failure();
  EXPECT_EQ(b.state(), CircuitBreaker::State::Closed);
  EXPECT_EQ(to_string(b.state()), "closed");
}

}  // namespace
}  // namespace pepita::fault
