#include "pepita/fault/retry.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <limits>
#include <string_view>
#include <utility>

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

// A zero base delay is no delay at any retry: 0 x 2^1024 is 0 x inf, a NaN in floating point,
// which once became INT64_MIN nanoseconds (found by BackoffNeverExceedsCeiling). A huge retry
// count with a base saturates at max_delay.
TEST(RetryPolicy, AZeroBaseIsNoDelayAndAHugeRetryCountSaturatesAtTheMax) {
  RetryPolicy p;
  p.base_delay(0ns).max_delay(1s).multiplier(2);
  std::mt19937_64 rng(1);
  for (const std::uint32_t retry : {1u, 1025u, 4000000000u}) {
    EXPECT_EQ(p.backoff_ceiling(retry), 0ns) << retry;
    EXPECT_EQ(p.backoff(retry, rng), 0ns) << retry;
  }
  p.base_delay(1ms);
  EXPECT_EQ(p.backoff_ceiling(1025), 1s);
  EXPECT_EQ(p.backoff_ceiling(4000000000u), 1s);
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

TEST(RetryPolicy, CratePresetsCarryTheCratesValues) {
  const RetryPolicy none = RetryPolicy::no_retry();
  EXPECT_EQ(none.max_retries(), 0u);
  EXPECT_FALSE(none.should_retry(1));
  EXPECT_FALSE(none.should_retry(1, {FailureKind::Exit, 1}));

  const RetryPolicy std3 = RetryPolicy::standard();
  EXPECT_EQ(std3.max_retries(), 3u);
  EXPECT_EQ(std3.delay_for_attempt(0), 0ns);
  EXPECT_EQ(std3.delay_for_attempt(1), 100ms);
  EXPECT_EQ(std3.delay_for_attempt(2), 200ms);
  EXPECT_EQ(std3.delay_for_attempt(20), 30s);

  const RetryPolicy crit = RetryPolicy::critical();
  EXPECT_EQ(crit.max_retries(), 10u);
  EXPECT_EQ(crit.delay_for_attempt(1), 500ms);
  EXPECT_EQ(crit.delay_for_attempt(3), 2s);
  EXPECT_EQ(crit.delay_for_attempt(100), 60s);
  // with_max_retries(n): the first attempt plus n retries.
  EXPECT_TRUE(crit.should_retry(10));
  EXPECT_FALSE(crit.should_retry(11));
}

TEST(RetryPolicy, WithBuildersReturnChangedCopies) {
  const RetryPolicy base = RetryPolicy::standard();
  const RetryPolicy p = base.with_max_retries(5).with_initial_delay(10ms).with_max_delay(50ms);
  EXPECT_EQ(p.max_retries(), 5u);
  EXPECT_EQ(p.max_attempts(), 6u);
  EXPECT_EQ(p.delay_for_attempt(1), 10ms);
  EXPECT_EQ(p.delay_for_attempt(3), 40ms);
  EXPECT_EQ(p.delay_for_attempt(4), 50ms);
  EXPECT_EQ(base.max_retries(), 3u);  // the original is untouched
  EXPECT_EQ(base.delay_for_attempt(1), 100ms);
  // Bad input: negative delays clamp to zero, UINT32_MAX retries saturates instead of wrapping.
  const RetryPolicy odd = base.with_initial_delay(-5ms).with_max_retries(UINT32_MAX);
  EXPECT_EQ(odd.delay_for_attempt(1), 0ns);
  EXPECT_EQ(odd.max_attempts(), UINT32_MAX);
  EXPECT_TRUE(odd.should_retry(1000));
}

TEST(RetryState, CountsFailuresAndBacksOffUntilTheDelayPasses) {
  const RetryPolicy p = RetryPolicy::standard().with_max_retries(2).with_initial_delay(100ms);
  RetryState st;
  const auto t0 = RetryState::Clock::now();
  EXPECT_FALSE(st.in_backoff(p, t0));  // nothing failed yet
  EXPECT_TRUE(st.should_retry(p));
  st.record_failure("connection refused", t0);
  EXPECT_EQ(st.attempts, 1u);
  EXPECT_EQ(st.last_error, "connection refused");
  EXPECT_EQ(st.next_delay(p), 100ms);
  EXPECT_TRUE(st.in_backoff(p, t0 + 99ms));
  EXPECT_FALSE(st.in_backoff(p, t0 + 100ms));
  st.record_failure("timed out", t0 + 200ms);
  EXPECT_EQ(st.next_delay(p), 200ms);
  EXPECT_TRUE(st.should_retry(p));
  st.record_failure("timed out", t0 + 500ms);
  EXPECT_FALSE(st.should_retry(p));  // 3 attempts = first + 2 retries
  st.reset();
  EXPECT_EQ(st.attempts, 0u);
  EXPECT_FALSE(st.last_error.has_value());
  EXPECT_FALSE(st.last_failure.has_value());
  EXPECT_TRUE(st.should_retry(p));
}

TEST(CircuitBreaker, CrateConstructorNeedsSuccessThresholdSuccessesToClose) {
  CircuitBreaker b(1, 2, 10ms);
  const auto t0 = CircuitBreaker::Clock::now();
  b.record_failure(t0);
  EXPECT_EQ(b.state(t0), CircuitState::Open);
  EXPECT_FALSE(b.allow(t0 + 5ms));
  EXPECT_TRUE(b.allow(t0 + 20ms));  // half-open: one probe
  EXPECT_FALSE(b.allow(t0 + 20ms));
  b.record_success();
  EXPECT_EQ(b.state(t0 + 20ms), CircuitState::HalfOpen);  // 1 of 2 successes
  EXPECT_TRUE(b.allow(t0 + 21ms));                        // the probe slot is free again
  b.record_success();
  EXPECT_EQ(b.state(), CircuitState::Closed);
  EXPECT_TRUE(b.allows_execution());
}

// A success reported while no probe is out (a call admitted before the breaker opened ends late)
// counts toward closing but frees no probe slot that was not taken: the next probe is admitted.
TEST(CircuitBreaker, ASuccessWithNoProbeOutLeavesTheProbeSlotFree) {
  CircuitBreaker b(1, 3, 10ms);
  const auto t0 = CircuitBreaker::Clock::now();
  b.record_failure(t0);
  ASSERT_TRUE(b.allow(t0 + 20ms));  // half-open: the one probe
  b.record_success();               // 1 of 3; the probe is back
  b.record_success();               // 2 of 3, from a call that was no probe
  EXPECT_EQ(b.state(t0 + 20ms), CircuitState::HalfOpen);
  EXPECT_TRUE(b.allow(t0 + 21ms)) << "the free probe slot was counted away";
  EXPECT_FALSE(b.allow(t0 + 21ms)) << "one probe at a time";
  b.record_success();
  EXPECT_EQ(b.state(), CircuitState::Closed);
}

TEST(CircuitBreaker, HalfOpenFailureReopensAndResetClosesAtOnce) {
  CircuitBreaker b(1, 2, 10ms);
  const auto t0 = CircuitBreaker::Clock::now();
  b.record_failure(t0);
  EXPECT_TRUE(b.allow(t0 + 20ms));
  b.record_failure(t0 + 20ms);
  EXPECT_EQ(b.state(t0 + 21ms), CircuitState::Open);
  b.reset();
  EXPECT_EQ(b.state(t0 + 21ms), CircuitState::Closed);
  EXPECT_EQ(b.failures(), 0u);
  EXPECT_EQ(b.retry_after(t0 + 21ms), 0ns);
  EXPECT_TRUE(b.allows_execution());
  // A reset breaker counts from zero again: one failure (threshold 1) opens it.
  b.record_failure(t0 + 30ms);
  EXPECT_FALSE(b.allow(t0 + 31ms));
}

TEST(RetryPolicy, EveryFailureKindHasAName) {
  const std::pair<FailureKind, std::string_view> names[] = {
      {FailureKind::Exit, "exit"},           {FailureKind::Signal, "signal"},
      {FailureKind::Timeout, "timeout"},     {FailureKind::Launch, "launch"},
      {FailureKind::Error, "error"},         {FailureKind::Rejected, "rejected"},
      {FailureKind::Cancelled, "cancelled"}, {FailureKind::Oom, "oom"},
      {FailureKind::Sandbox, "sandbox"}};
  for (const auto& [kind, name] : names) EXPECT_EQ(to_string(kind), name);
}

TEST(RetryPolicy, SandboxFailureIsNeverRetriedWhateverThePredicate) {
  RetryPolicy p;
  p.max_attempts(5).retry_on([](const Failure&) { return true; });
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Sandbox}));
  EXPECT_FALSE(p.should_retry(1, {FailureKind::Sandbox}, 10));
  EXPECT_TRUE(p.should_retry(1, {FailureKind::Oom, 9}));
}

TEST(RetryPolicy, MultiplierBelowOneOrNotFiniteMeansConstantDelay) {
  for (double m : {0.5, -2.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    RetryPolicy p;
    p.base_delay(10ms).max_delay(1s).multiplier(m);
    EXPECT_EQ(p.backoff_ceiling(1), 10ms) << m;
    EXPECT_EQ(p.backoff_ceiling(50), 10ms) << m;
  }
}

TEST(RetryPolicy, PerThreadGeneratorBackoffStaysUnderTheCeiling) {
  RetryPolicy p;
  p.base_delay(1ms).max_delay(4ms);
  for (std::uint32_t retry = 0; retry < 6; ++retry) {
    const auto d = p.backoff(retry);
    EXPECT_GE(d, 0ns);
    EXPECT_LE(d, p.backoff_ceiling(retry));
  }
  EXPECT_EQ(p.backoff(0), 0ns);
  p.jitter(false);
  EXPECT_EQ(p.backoff(3), 4ms);  // no jitter: the ceiling, capped at max_delay
}

TEST(CircuitBreaker, ClockReadingAllowFollowsTheOpenAndHalfOpenStates) {
  CircuitBreaker b({.failure_threshold = 1, .cool_down = 1h, .half_open_probes = 1});
  b.record_failure();
  EXPECT_EQ(b.state(), CircuitBreaker::State::Open);
  EXPECT_EQ(to_string(b.state()), "open");
  EXPECT_FALSE(b.allow());  // an hour of cool-down is not over
  EXPECT_FALSE(b.allows_execution());
  EXPECT_GT(b.retry_after(), 59min);

  CircuitBreaker quick({.failure_threshold = 1, .cool_down = 0ns, .half_open_probes = 2});
  quick.record_failure();
  EXPECT_EQ(quick.state(), CircuitBreaker::State::HalfOpen);
  EXPECT_EQ(to_string(quick.state()), "half-open");
  EXPECT_TRUE(quick.allow());  // two probes admitted, the third refused
  EXPECT_TRUE(quick.allow());
  EXPECT_FALSE(quick.allow());
}

}  // namespace
}  // namespace pepita::fault
