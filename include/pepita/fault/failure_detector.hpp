#pragma once
// FailureDetector: which workers are alive, judged from when their heartbeats arrive. It is the
// phi-accrual detector of Hayashibara, Défago, Yared & Katayama (SRDS 2004), in the form Akka
// and Cassandra run: a per-worker window of heartbeat inter-arrival times, a normal fit
// (mean, standard deviation), and phi = -log10(P(a heartbeat arrives later than now)). A
// regular worker is declared failed soon after it falls silent; a jittery one gets more slack.
// Status names and task-outcome bookkeeping follow the reference crate (Chandra & Toueg, 1996).
//
//   FailureDetector d({.heartbeat_interval = 1s, .acceptable_pause = 3s});
//   d.record_heartbeat(7, now);                    // every frame from worker 7
//   if (d.status(7, now) == HealthStatus::Failed)  // silent well past its usual rhythm
//     requeue_leases_of(7);

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::fault {

/// What the detector believes about a worker.
enum class HealthStatus : std::uint8_t {
  Healthy,    // heard from within its usual rhythm
  Suspected,  // late: phi passed suspect_phi (lease it nothing new)
  Failed,     // phi passed failure_phi, silent past max_silence, or too many task failures
  Unknown,    // registered, never heard from
};

/// Healthy and Unknown workers may be given work (the crate's HealthStatus::is_available).
constexpr bool is_available(HealthStatus s) noexcept {
  return s == HealthStatus::Healthy || s == HealthStatus::Unknown;
}
/// "healthy", "suspected", "failed", "unknown".
std::string_view to_string(HealthStatus s) noexcept;

struct DetectorConfig {
  /// The expected heartbeat period: a new worker's window starts as if its heartbeats had come
  /// this often (Akka's first-heartbeat-estimate), so phi is meaningful from the first one.
  std::chrono::nanoseconds heartbeat_interval{std::chrono::seconds(1)};
  /// Silence tolerated on top of the usual inter-arrival time before phi starts to climb
  /// (Akka's acceptable-heartbeat-pause: a GC pause, a loaded host).
  std::chrono::nanoseconds acceptable_pause{0};
  /// Floor for the fitted standard deviation, so perfectly regular heartbeats do not make the
  /// smallest delay look like a failure.
  std::chrono::nanoseconds min_std_deviation{std::chrono::milliseconds(100)};
  /// Inter-arrival samples kept per worker (the oldest drops out). At least 2.
  std::size_t window = 200;
  /// phi at or above which a worker is Suspected.
  double suspect_phi = 1.0;
  /// phi at or above which a worker is Failed (Akka and Cassandra use 8: a false verdict about
  /// once in 10^8 heartbeats under the fitted distribution).
  double failure_phi = 8.0;
  /// When non-zero, silence longer than this is Failed whatever phi says (a hard bound).
  std::chrono::nanoseconds max_silence{0};
  /// Consecutive failed tasks that mark a worker Failed (the crate's failure_threshold); 0 turns
  /// this off (a task's own non-zero exit says nothing about its worker).
  std::uint32_t failure_threshold = 3;
};

/// InvalidArgument naming the first bad field: a non-positive heartbeat_interval or
/// min_std_deviation, a negative acceptable_pause or max_silence, window < 2, a phi threshold
/// that is not a positive finite number, or suspect_phi above failure_phi.
Result<void> validate(const DetectorConfig& config);

/// One worker's record: heartbeats and task outcomes (the crate's WorkerHealth). The status it
/// carries is the detector's verdict when the record was read (FailureDetector::get_health).
struct WorkerHealth {
  using Clock = std::chrono::steady_clock;

  std::uint64_t worker_id = 0;
  HealthStatus status = HealthStatus::Unknown;
  std::optional<Clock::time_point> last_heartbeat{};
  std::uint64_t heartbeats = 0;
  std::uint32_t consecutive_failures = 0;
  std::uint64_t tasks_completed = 0;
  std::uint64_t tasks_failed = 0;
  double phi = 0.0;  // suspicion at the time status was computed

  WorkerHealth() = default;
  explicit WorkerHealth(std::uint64_t id) : worker_id(id) {}

  /// A heartbeat at `now`: Healthy. Unlike the crate it keeps consecutive_failures: being alive
  /// does not undo failed tasks.
  void record_heartbeat(Clock::time_point now = Clock::now());
  /// A task finished on this worker.
  void record_task_completion(bool success);
  /// The crate's fixed-timeout rule, for a record kept without a detector: Suspected after
  /// `heartbeat_timeout` of silence, Failed after three times that or after
  /// `failure_threshold` (non-zero) consecutive failed tasks.
  void update_status(std::chrono::nanoseconds heartbeat_timeout, std::uint32_t failure_threshold,
                     Clock::time_point now = Clock::now());
  /// Completed / (completed + failed); 1.0 before any task.
  double success_rate() const noexcept;
};

/// Phi-accrual failure detector over any number of workers. Thread-safe (one mutex); the verdict
/// is computed from the history at the `now` passed in, so tests drive time by hand.
class FailureDetector {
 public:
  using Clock = std::chrono::steady_clock;
  using WorkerId = std::uint64_t;

  /// Out-of-range fields are clamped to the nearest valid value; check with validate() first
  /// where the config comes from a user.
  explicit FailureDetector(DetectorConfig config = {});
  FailureDetector(const FailureDetector&) = delete;
  FailureDetector& operator=(const FailureDetector&) = delete;

  /// Starts (or restarts, forgetting its history) `worker`'s record as Unknown.
  void register_worker(WorkerId worker);
  /// Forgets `worker`; it reads Unknown afterwards.
  void deregister_worker(WorkerId worker);
  /// `worker` was heard from at `now` (registering it if needed). A time earlier than its last
  /// heartbeat counts as that time. Ignored after stop().
  void record_heartbeat(WorkerId worker, Clock::time_point now = Clock::now());
  /// A task on `worker` ended (no-op for an unregistered worker). Ignored after stop().
  void record_task_result(WorkerId worker, bool success);

  /// Suspicion that `worker` has failed, given silence until `now`: 0 for a worker never heard
  /// from; grows without bound (monotonically) as the silence lengthens.
  double phi(WorkerId worker, Clock::time_point now = Clock::now()) const;
  /// The verdict at `now` (see HealthStatus). Unknown for an unregistered worker.
  HealthStatus status(WorkerId worker, Clock::time_point now = Clock::now()) const;
  /// The crate's name for status().
  HealthStatus get_status(WorkerId worker, Clock::time_point now = Clock::now()) const {
    return status(worker, now);
  }
  /// A copy of `worker`'s record with status and phi as of `now`; nullopt when unregistered.
  std::optional<WorkerHealth> get_health(WorkerId worker,
                                         Clock::time_point now = Clock::now()) const;
  /// Workers whose status at `now` is Healthy / Failed, in ascending id order.
  std::vector<WorkerId> healthy_workers(Clock::time_point now = Clock::now()) const;
  std::vector<WorkerId> failed_workers(Clock::time_point now = Clock::now()) const;
  /// Stores each record's status and phi as of `now`; returns the workers that turned Failed
  /// since the previous call (each reported once per failure).
  std::vector<WorkerId> update_all_statuses(Clock::time_point now = Clock::now());
  /// is_available(status(worker, now)).
  bool is_available(WorkerId worker, Clock::time_point now = Clock::now()) const {
    return fault::is_available(status(worker, now));
  }

  std::chrono::nanoseconds heartbeat_interval() const noexcept {
    return config_.heartbeat_interval;
  }
  const DetectorConfig& config() const noexcept { return config_; }
  /// After stop() the detector records nothing more (its owner is shutting down); verdicts
  /// stay readable.
  void stop();
  bool is_running() const;

 private:
  struct Record {
    WorkerHealth health;
    std::deque<double> intervals;  // inter-arrival times, in seconds
  };
  double phi_locked(const Record& r, Clock::time_point now) const;
  HealthStatus status_locked(const Record& r, Clock::time_point now) const;

  DetectorConfig config_;
  mutable std::mutex mu_;
  std::unordered_map<WorkerId, Record> workers_;  // guarded by mu_
  bool running_ = true;                           // guarded by mu_
};

}  // namespace pepita::fault
