#pragma once
// Retry policy and circuit breaker: what the pool consults after a failed attempt (retry? after
// how long?) and before dispatching to a backend (is it healthy?). Backoff is "exponential with
// full jitter" (AWS Architecture Blog, Brooker 2015); the breaker follows Nygard, "Release It!".

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace pepita::fault {

/// Why an attempt failed, as far as retry and breaker decisions need to know.
enum class FailureKind : std::uint8_t {
  Exit,       // ran and exited non-zero (code = exit status)
  Signal,     // killed by a signal (code = signal number)
  Timeout,    // exceeded its deadline and was killed
  Launch,     // the backend could not start it (spawn/exec failed; code = errno)
  Error,      // a function task returned an Error (code = ErrorCode)
  Rejected,   // a circuit breaker refused the attempt
  Cancelled,  // the user cancelled it; never retried
  Oom,        // killed by its memory limit (code = the signal, SIGKILL)
  Sandbox,    // stopped by its sandbox (a denied syscall or path); never retried: it would again
};

struct Failure {
  FailureKind kind;
  int code = 0;
};

std::string_view to_string(FailureKind kind) noexcept;

/// How many attempts a task gets and how long to wait between them.
///
///   RetryPolicy p;
///   p.max_attempts(4).base_delay(50ms).max_delay(2s);
///   if (p.should_retry(attempts, failure)) sleep(p.backoff(attempts));
class RetryPolicy {
 public:
  using Predicate = std::function<bool(const Failure&)>;

  /// Total attempts including the first (1 = no retries). Values below 1 are treated as 1.
  RetryPolicy& max_attempts(std::uint32_t n);
  /// Delay ceiling of the first retry; it doubles (by `multiplier`) each retry up to max_delay.
  RetryPolicy& base_delay(std::chrono::nanoseconds d);
  RetryPolicy& max_delay(std::chrono::nanoseconds d);
  RetryPolicy& multiplier(double m);
  /// With full jitter (the default) the delay is uniform in [0, ceiling]; without, the ceiling.
  RetryPolicy& jitter(bool full);
  /// Which failures are worth retrying. Default: all but Cancelled.
  RetryPolicy& retry_on(Predicate p);

  std::uint32_t max_attempts() const noexcept { return max_attempts_; }
  std::chrono::nanoseconds base_delay() const noexcept { return base_; }
  std::chrono::nanoseconds max_delay() const noexcept { return max_; }

  // --- The reference crate's spelling (issue 21) -------------------------------------------
  // Presets and value-returning builders, so `RetryPolicy::critical().with_max_retries(3)` reads
  // as in the crate. Counts are *retries* here (attempts - 1); the setters above count attempts.

  /// The crate's defaults (its `RetryPolicy::new()`): 3 retries, 100 ms doubling to at most
  /// 30 s, full jitter. (A default-constructed RetryPolicy keeps the pool's "one attempt unless
  /// asked" contract.)
  static RetryPolicy standard();
  /// Never retries: one attempt, whatever the failure.
  static RetryPolicy no_retry();
  /// For work that must get through: 10 retries, 500 ms doubling to at most 60 s, full jitter.
  static RetryPolicy critical();
  /// Copies with one setting changed.
  [[nodiscard]] RetryPolicy with_max_retries(std::uint32_t retries) const;
  [[nodiscard]] RetryPolicy with_initial_delay(std::chrono::nanoseconds d) const;
  [[nodiscard]] RetryPolicy with_max_delay(std::chrono::nanoseconds d) const;
  /// Retries after the first attempt (max_attempts - 1).
  std::uint32_t max_retries() const noexcept { return max_attempts_ - 1; }
  /// The un-jittered wait before retry number `attempt` (0 for 0): backoff_ceiling().
  std::chrono::nanoseconds delay_for_attempt(std::uint32_t attempt) const noexcept {
    return backoff_ceiling(attempt);
  }
  /// True when `attempts` failed attempts leave room for another (attempts < max_attempts).
  /// Unlike the crate, whose `attempts < max_retries` allows one retry fewer than it says,
  /// with_max_retries(3) here means the first attempt plus 3 retries.
  bool should_retry(std::uint32_t attempts) const noexcept { return attempts < max_attempts_; }
  // --- end of the crate's spelling ----------------------------------------------------------

  /// True when a task that has made `attempts` attempts and just failed with `failure` should
  /// run again. `task_retries` (a task's own max_retries) overrides max_attempts - 1.
  bool should_retry(std::uint32_t attempts, const Failure& failure,
                    std::optional<std::uint32_t> task_retries = std::nullopt) const;

  /// The deterministic ceiling for the wait before retry number `retry` (1-based):
  /// min(max_delay, base_delay * multiplier^(retry-1)).
  std::chrono::nanoseconds backoff_ceiling(std::uint32_t retry) const noexcept;
  /// The wait to apply before retry number `retry`, drawn from `rng` (full jitter).
  std::chrono::nanoseconds backoff(std::uint32_t retry, std::mt19937_64& rng) const;
  /// Same, from a per-thread generator.
  std::chrono::nanoseconds backoff(std::uint32_t retry) const;

 private:
  std::uint32_t max_attempts_ = 1;
  std::chrono::nanoseconds base_{std::chrono::milliseconds(100)};
  std::chrono::nanoseconds max_{std::chrono::seconds(10)};
  double multiplier_ = 2.0;
  bool full_jitter_ = true;
  Predicate retry_on_;
};

/// One retried operation's bookkeeping (the crate's RetryState): failed attempts so far, when
/// the last one failed and why. Pair it with a RetryPolicy; reset() after a success.
///
///   RetryState st;
///   while (!(r = connect())) {
///     st.record_failure(r.error().message());
///     if (!st.should_retry(policy)) return r;
///     sleep(policy.backoff(st.attempts));   // or wait until !st.in_backoff(policy, now)
///   }
///   st.reset();
struct RetryState {
  using Clock = std::chrono::steady_clock;

  std::uint32_t attempts = 0;  // failed attempts since the last reset
  std::optional<Clock::time_point> last_failure{};
  std::optional<std::string> last_error{};

  /// Counts one failed attempt at `now` (saturating; never wraps).
  void record_failure(std::string error, Clock::time_point now = Clock::now());
  /// Forgets everything (after a success).
  void reset();
  /// policy.should_retry(attempts).
  bool should_retry(const RetryPolicy& policy) const noexcept {
    return policy.should_retry(attempts);
  }
  /// The un-jittered wait before the next attempt: policy.delay_for_attempt(attempts).
  std::chrono::nanoseconds next_delay(const RetryPolicy& policy) const noexcept {
    return policy.delay_for_attempt(attempts);
  }
  /// True while less than next_delay() has passed since the last failure (false before any).
  bool in_backoff(const RetryPolicy& policy, Clock::time_point now = Clock::now()) const;
};

/// Circuit breaker settings.
struct BreakerConfig {
  std::uint32_t failure_threshold = 5;  // consecutive failures that open the circuit
  std::chrono::nanoseconds cool_down{std::chrono::seconds(1)};  // open -> half-open after this
  std::uint32_t half_open_probes = 1;                           // attempts admitted while half-open
  /// Successes needed while half-open to close again (the crate's success_threshold); each
  /// success below it frees its probe slot for the next probe.
  std::uint32_t success_threshold = 1;
};

/// A thread-safe closed / open / half-open breaker. The pool keeps one per backend, calls
/// allow() before each attempt and record_*() after it.
class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State : std::uint8_t { Closed, Open, HalfOpen };

  explicit CircuitBreaker(BreakerConfig config = {}) : config_(config) {}
  /// The crate's `CircuitBreaker::new(failure_threshold, success_threshold, reset_timeout)`.
  CircuitBreaker(std::uint32_t failure_threshold, std::uint32_t success_threshold,
                 std::chrono::nanoseconds reset_timeout)
      : config_{.failure_threshold = failure_threshold,
                .cool_down = reset_timeout,
                .half_open_probes = 1,
                .success_threshold = success_threshold} {}

  /// May an attempt start now? Closed: yes. Open: no until the cool-down has passed, then the
  /// breaker turns half-open. Half-open: yes for up to half_open_probes outstanding probes.
  bool allow(Clock::time_point now);
  /// Same, reading the clock only when the breaker is not closed (the hot path stays cheap).
  bool allow();
  /// The crate's name for allow().
  bool allows_execution() { return allow(); }
  /// A success resets the failure count; success_threshold of them close a half-open breaker.
  void record_success();
  /// A failure re-opens a half-open breaker, and opens a closed one at the threshold.
  void record_failure(Clock::time_point now = Clock::now());

  State state(Clock::time_point now = Clock::now()) const;
  /// Consecutive failures counted so far.
  std::uint32_t failures() const;
  /// How long until an open breaker lets a probe through; zero unless open.
  std::chrono::nanoseconds retry_after(Clock::time_point now = Clock::now()) const;
  /// Back to closed with every count at zero, whatever the state (an operator's override, or a
  /// backend that was replaced).
  void reset();

 private:
  BreakerConfig config_;
  mutable std::mutex mu_;
  State state_ = State::Closed;
  std::uint32_t failures_ = 0;
  std::uint32_t probes_ = 0;
  std::uint32_t successes_ = 0;  // while half-open
  Clock::time_point opened_at_{};
};

/// The crate's name for the breaker's states.
using CircuitState = CircuitBreaker::State;

std::string_view to_string(CircuitBreaker::State state) noexcept;

}  // namespace pepita::fault
