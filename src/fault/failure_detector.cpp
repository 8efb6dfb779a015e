// Phi-accrual arithmetic (Hayashibara et al., SRDS 2004) and the per-worker records. The normal
// tail is Akka's logistic approximation of the CDF (PhiAccrualFailureDetector.scala), written
// so that it neither overflows nor loses monotonicity for a silence of any length.
#include "pepita/fault/failure_detector.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "pepita/core/format.hpp"

namespace pepita::fault {
namespace {

using Seconds = std::chrono::duration<double>;

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<Seconds>(d).count();
}

// phi = -log10(1 - F(elapsed)), F the normal CDF with (mean, sd), via the logistic
// approximation 1 - F(x) ~ 1 / (1 + e^g), g = y (1.5976 + 0.070566 y^2), y = (x - mean) / sd.
// So phi = log10(1 + e^g), computed as g + log1p(e^-g) for g > 0 so that it never overflows.
// g is increasing in y, hence phi is non-decreasing in the elapsed time.
double phi_of(double elapsed, double mean, double sd) {
  const double y = (elapsed - mean) / sd;
  const double g = y * (1.5976 + 0.070566 * y * y);
  const double ln_phi = g > 0 ? g + std::log1p(std::exp(-g)) : std::log1p(std::exp(g));
  return ln_phi / std::log(10.0);
}

bool positive_finite(double v) { return std::isfinite(v) && v > 0; }

}  // namespace

std::string_view to_string(HealthStatus s) noexcept {
  switch (s) {
    case HealthStatus::Healthy: return "healthy";
    case HealthStatus::Suspected: return "suspected";
    case HealthStatus::Failed: return "failed";
    case HealthStatus::Unknown: return "unknown";
  }
  return "unknown";
}

Result<void> validate(const DetectorConfig& c) {
  const auto bad = [](std::string_view field, std::string_view why) {
    return fail(ErrorCode::InvalidArgument, pepita::fmt("failure detector: {} {}", field, why));
  };
  if (c.heartbeat_interval.count() <= 0) {
    return bad("heartbeat_interval", "must be positive (the expected heartbeat period)");
  }
  if (c.min_std_deviation.count() <= 0) {
    return bad("min_std_deviation", "must be positive (e.g. 100 ms)");
  }
  if (c.acceptable_pause.count() < 0) return bad("acceptable_pause", "must not be negative");
  if (c.max_silence.count() < 0) return bad("max_silence", "must not be negative (0 = no bound)");
  if (c.window < 2) return bad("window", "must keep at least 2 samples");
  if (!positive_finite(c.suspect_phi)) {
    return bad("suspect_phi", "must be a positive number (e.g. 1)");
  }
  if (!positive_finite(c.failure_phi)) {
    return bad("failure_phi", "must be a positive number (e.g. 8)");
  }
  if (c.suspect_phi > c.failure_phi) {
    return bad("suspect_phi", "must not exceed failure_phi (suspicion comes before failure)");
  }
  return {};
}

void WorkerHealth::record_heartbeat(Clock::time_point now) {
  if (!last_heartbeat || now > *last_heartbeat) last_heartbeat = now;
  ++heartbeats;
  status = HealthStatus::Healthy;
}

void WorkerHealth::record_task_completion(bool success) {
  if (success) {
    ++tasks_completed;
    consecutive_failures = 0;
  } else {
    ++tasks_failed;
    if (consecutive_failures < UINT32_MAX) ++consecutive_failures;
  }
}

void WorkerHealth::update_status(std::chrono::nanoseconds heartbeat_timeout,
                                 std::uint32_t failure_threshold, Clock::time_point now) {
  if (last_heartbeat) {
    const auto silent = now - *last_heartbeat;
    if (silent > heartbeat_timeout * 3) {
      status = HealthStatus::Failed;
    } else if (silent > heartbeat_timeout) {
      status = HealthStatus::Suspected;
    }
  }
  if (failure_threshold > 0 && consecutive_failures >= failure_threshold) {
    status = HealthStatus::Failed;
  }
}

double WorkerHealth::success_rate() const noexcept {
  const std::uint64_t total = tasks_completed + tasks_failed;
  if (total == 0) return 1.0;
  return static_cast<double>(tasks_completed) / static_cast<double>(total);
}

FailureDetector::FailureDetector(DetectorConfig config) : config_(config) {
  using std::chrono::nanoseconds;
  config_.heartbeat_interval = std::max(config_.heartbeat_interval, nanoseconds(1));
  config_.min_std_deviation = std::max(config_.min_std_deviation, nanoseconds(1));
  config_.acceptable_pause = std::max(config_.acceptable_pause, nanoseconds(0));
  config_.max_silence = std::max(config_.max_silence, nanoseconds(0));
  config_.window = std::max<std::size_t>(config_.window, 2);
  if (!positive_finite(config_.failure_phi)) config_.failure_phi = 8.0;
  if (!positive_finite(config_.suspect_phi)) config_.suspect_phi = 1.0;
  config_.suspect_phi = std::min(config_.suspect_phi, config_.failure_phi);
}

void FailureDetector::register_worker(WorkerId worker) {
  std::lock_guard lock(mu_);
  workers_.insert_or_assign(worker, Record{WorkerHealth(worker), {}});
}

void FailureDetector::deregister_worker(WorkerId worker) {
  std::lock_guard lock(mu_);
  workers_.erase(worker);
}

void FailureDetector::record_heartbeat(WorkerId worker, Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (!running_) return;
  Record& r = workers_.try_emplace(worker, Record{WorkerHealth(worker), {}}).first->second;
  if (r.health.last_heartbeat) {
    const double gap = seconds(std::max(now - *r.health.last_heartbeat, Clock::duration(0)));
    r.intervals.push_back(gap);
    while (r.intervals.size() > config_.window) r.intervals.pop_front();
  } else {
    // First heartbeat: seed the window with the expected period, spread by a quarter of it
    // (mean = interval, sd = interval / 4), as Akka does.
    const double mean = seconds(config_.heartbeat_interval);
    r.intervals = {mean - mean / 4, mean + mean / 4};
  }
  r.health.record_heartbeat(now);
}

void FailureDetector::record_task_result(WorkerId worker, bool success) {
  std::lock_guard lock(mu_);
  if (!running_) return;
  if (auto it = workers_.find(worker); it != workers_.end()) {
    it->second.health.record_task_completion(success);
  }
}

double FailureDetector::phi_locked(const Record& r, Clock::time_point now) const {
  if (!r.health.last_heartbeat || r.intervals.empty()) return 0.0;
  const double n = static_cast<double>(r.intervals.size());
  const double mean = std::accumulate(r.intervals.begin(), r.intervals.end(), 0.0) / n;
  double var = 0;
  for (double x : r.intervals) var += (x - mean) * (x - mean);
  const double sd = std::max(std::sqrt(var / n), seconds(config_.min_std_deviation));
  const double elapsed = seconds(std::max(now - *r.health.last_heartbeat, Clock::duration(0)));
  return phi_of(elapsed, mean + seconds(config_.acceptable_pause), sd);
}

HealthStatus FailureDetector::status_locked(const Record& r, Clock::time_point now) const {
  const WorkerHealth& h = r.health;
  if (config_.failure_threshold > 0 && h.consecutive_failures >= config_.failure_threshold) {
    return HealthStatus::Failed;
  }
  if (!h.last_heartbeat) return HealthStatus::Unknown;
  if (config_.max_silence.count() > 0 && now - *h.last_heartbeat > config_.max_silence) {
    return HealthStatus::Failed;
  }
  const double p = phi_locked(r, now);
  if (p >= config_.failure_phi) return HealthStatus::Failed;
  if (p >= config_.suspect_phi) return HealthStatus::Suspected;
  return HealthStatus::Healthy;
}

double FailureDetector::phi(WorkerId worker, Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = workers_.find(worker);
  return it == workers_.end() ? 0.0 : phi_locked(it->second, now);
}

HealthStatus FailureDetector::status(WorkerId worker, Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = workers_.find(worker);
  return it == workers_.end() ? HealthStatus::Unknown : status_locked(it->second, now);
}

std::optional<WorkerHealth> FailureDetector::get_health(WorkerId worker,
                                                        Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = workers_.find(worker);
  if (it == workers_.end()) return std::nullopt;
  WorkerHealth h = it->second.health;
  h.status = status_locked(it->second, now);
  h.phi = phi_locked(it->second, now);
  return h;
}

std::vector<FailureDetector::WorkerId> FailureDetector::healthy_workers(
    Clock::time_point now) const {
  std::vector<WorkerId> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, r] : workers_) {
    if (status_locked(r, now) == HealthStatus::Healthy) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<FailureDetector::WorkerId> FailureDetector::failed_workers(
    Clock::time_point now) const {
  std::vector<WorkerId> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, r] : workers_) {
    if (status_locked(r, now) == HealthStatus::Failed) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<FailureDetector::WorkerId> FailureDetector::update_all_statuses(Clock::time_point now) {
  std::vector<WorkerId> newly_failed;
  std::lock_guard lock(mu_);
  for (auto& [id, r] : workers_) {
    const HealthStatus before = r.health.status;
    r.health.status = status_locked(r, now);
    r.health.phi = phi_locked(r, now);
    if (r.health.status == HealthStatus::Failed && before != HealthStatus::Failed) {
      newly_failed.push_back(id);
    }
  }
  std::sort(newly_failed.begin(), newly_failed.end());
  return newly_failed;
}

void FailureDetector::stop() {
  std::lock_guard lock(mu_);
  running_ = false;
}

bool FailureDetector::is_running() const {
  std::lock_guard lock(mu_);
  return running_;
}

}  // namespace pepita::fault
