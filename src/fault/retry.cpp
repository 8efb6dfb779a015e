// Backoff arithmetic and the breaker state machine.
#include "pepita/fault/retry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace pepita::fault {

std::string_view to_string(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::Exit: return "exit";
    case FailureKind::Signal: return "signal";
    case FailureKind::Timeout: return "timeout";
    case FailureKind::Launch: return "launch";
    case FailureKind::Error: return "error";
    case FailureKind::Rejected: return "rejected";
    case FailureKind::Cancelled: return "cancelled";
    case FailureKind::Oom: return "oom";
    case FailureKind::Sandbox: return "sandbox";
  }
  return "unknown";
}

RetryPolicy& RetryPolicy::max_attempts(std::uint32_t n) {
  max_attempts_ = std::max<std::uint32_t>(n, 1);
  return *this;
}
RetryPolicy& RetryPolicy::base_delay(std::chrono::nanoseconds d) {
  base_ = std::max(d, std::chrono::nanoseconds(0));
  return *this;
}
RetryPolicy& RetryPolicy::max_delay(std::chrono::nanoseconds d) {
  max_ = std::max(d, std::chrono::nanoseconds(0));
  return *this;
}
RetryPolicy& RetryPolicy::multiplier(double m) {
  multiplier_ = (std::isfinite(m) && m >= 1.0) ? m : 1.0;
  return *this;
}
RetryPolicy& RetryPolicy::jitter(bool full) {
  full_jitter_ = full;
  return *this;
}
RetryPolicy& RetryPolicy::retry_on(Predicate p) {
  retry_on_ = std::move(p);
  return *this;
}

RetryPolicy RetryPolicy::standard() {
  RetryPolicy p;
  p.max_attempts(4)
      .base_delay(std::chrono::milliseconds(100))
      .max_delay(std::chrono::seconds(30))
      .multiplier(2)
      .jitter(true);
  return p;
}

RetryPolicy RetryPolicy::no_retry() { return standard().with_max_retries(0); }

RetryPolicy RetryPolicy::critical() {
  RetryPolicy p;
  p.max_attempts(11)
      .base_delay(std::chrono::milliseconds(500))
      .max_delay(std::chrono::seconds(60))
      .multiplier(2)
      .jitter(true);
  return p;
}

RetryPolicy RetryPolicy::with_max_retries(std::uint32_t retries) const {
  RetryPolicy p = *this;
  // Saturates: with_max_retries(UINT32_MAX) is "retry for ever", not one attempt.
  p.max_attempts(retries == UINT32_MAX ? retries : retries + 1);
  return p;
}

RetryPolicy RetryPolicy::with_initial_delay(std::chrono::nanoseconds d) const {
  RetryPolicy p = *this;
  p.base_delay(d);
  return p;
}

RetryPolicy RetryPolicy::with_max_delay(std::chrono::nanoseconds d) const {
  RetryPolicy p = *this;
  p.max_delay(d);
  return p;
}

void RetryState::record_failure(std::string error, Clock::time_point now) {
  if (attempts < UINT32_MAX) ++attempts;
  last_failure = now;
  last_error = std::move(error);
}

void RetryState::reset() {
  attempts = 0;
  last_failure.reset();
  last_error.reset();
}

bool RetryState::in_backoff(const RetryPolicy& policy, Clock::time_point now) const {
  return last_failure && now - *last_failure < next_delay(policy);
}

bool RetryPolicy::should_retry(std::uint32_t attempts, const Failure& failure,
                               std::optional<std::uint32_t> task_retries) const {
  if (failure.kind == FailureKind::Cancelled || failure.kind == FailureKind::Sandbox) return false;
  const std::uint64_t limit = task_retries ? std::uint64_t{*task_retries} + 1 : max_attempts_;
  if (attempts >= limit) return false;
  return retry_on_ ? retry_on_(failure) : true;
}

std::chrono::nanoseconds RetryPolicy::backoff_ceiling(std::uint32_t retry) const noexcept {
  if (retry == 0 || base_.count() <= 0) return std::chrono::nanoseconds(0);  // 0 x inf is NaN
  // In floating point, so a large retry count saturates at max_delay (a NaN fails the < too).
  const double ceiling =
      static_cast<double>(base_.count()) * std::pow(multiplier_, static_cast<double>(retry - 1));
  const double cap = static_cast<double>(max_.count());
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ceiling < cap ? ceiling : cap));
}

std::chrono::nanoseconds RetryPolicy::backoff(std::uint32_t retry, std::mt19937_64& rng) const {
  const auto ceiling = backoff_ceiling(retry);
  if (!full_jitter_ || ceiling.count() <= 0) return ceiling;
  std::uniform_int_distribution<std::int64_t> dist(0, ceiling.count());
  return std::chrono::nanoseconds(dist(rng));
}

std::chrono::nanoseconds RetryPolicy::backoff(std::uint32_t retry) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return backoff(retry, rng);
}

bool CircuitBreaker::allow() {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::Closed) return true;
  }
  return allow(Clock::now());
}

bool CircuitBreaker::allow(Clock::time_point now) {
  std::lock_guard lock(mu_);
  switch (state_) {
    case State::Closed: return true;
    case State::Open:
      if (now - opened_at_ < config_.cool_down) return false;
      state_ = State::HalfOpen;
      probes_ = 0;
      successes_ = 0;
      [[fallthrough]];
    case State::HalfOpen:
      if (probes_ >= std::max<std::uint32_t>(config_.half_open_probes, 1)) return false;
      ++probes_;
      return true;
  }
  return false;
}

void CircuitBreaker::record_success() {
  std::lock_guard lock(mu_);
  failures_ = 0;
  if (state_ == State::HalfOpen &&
      ++successes_ < std::max<std::uint32_t>(config_.success_threshold, 1)) {
    if (probes_ > 0) --probes_;  // this probe is done: admit the next one
    return;
  }
  state_ = State::Closed;
  probes_ = 0;
  successes_ = 0;
}

void CircuitBreaker::record_failure(Clock::time_point now) {
  std::lock_guard lock(mu_);
  ++failures_;
  if (state_ == State::HalfOpen ||
      (state_ == State::Closed &&
       failures_ >= std::max<std::uint32_t>(config_.failure_threshold, 1))) {
    state_ = State::Open;
    opened_at_ = now;
    probes_ = 0;
    successes_ = 0;
  }
}

void CircuitBreaker::reset() {
  std::lock_guard lock(mu_);
  state_ = State::Closed;
  failures_ = 0;
  probes_ = 0;
  successes_ = 0;
}

CircuitBreaker::State CircuitBreaker::state(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  if (state_ == State::Open && now - opened_at_ >= config_.cool_down) return State::HalfOpen;
  return state_;
}

std::uint32_t CircuitBreaker::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

std::chrono::nanoseconds CircuitBreaker::retry_after(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  if (state_ != State::Open) return std::chrono::nanoseconds(0);
  const auto left = config_.cool_down - (now - opened_at_);
  return std::max(std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                  std::chrono::nanoseconds(0));
}

std::string_view to_string(CircuitBreaker::State state) noexcept {
  switch (state) {
    case CircuitBreaker::State::Closed: return "closed";
    case CircuitBreaker::State::Open: return "open";
    case CircuitBreaker::State::HalfOpen: return "half-open";
  }
  return "unknown";
}

}  // namespace pepita::fault
