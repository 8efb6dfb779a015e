#include "pepita/fault/failure_detector.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>

namespace pepita::fault {
namespace {

using namespace std::chrono_literals;
using Clock = FailureDetector::Clock;

// A fixed origin: every test drives time by hand from here.
const Clock::time_point kT0 = Clock::time_point{} + 1000s;

// The header's phi for a silence `y` standard deviations past the mean:
// log10(1 + e^g), g = y (1.5976 + 0.070566 y^2).
double phi_at(double y) { return std::log10(1 + std::exp(y * (1.5976 + 0.070566 * y * y))); }

TEST(FailureDetector, UnknownUntilTheFirstHeartbeatThenHealthy) {
  FailureDetector d;
  EXPECT_TRUE(d.is_running());
  EXPECT_EQ(d.status(1, kT0), HealthStatus::Unknown);  // never registered
  d.register_worker(1);
  EXPECT_EQ(d.status(1, kT0), HealthStatus::Unknown);
  EXPECT_EQ(d.phi(1, kT0), 0.0);
  EXPECT_TRUE(d.is_available(1, kT0));
  d.record_heartbeat(1, kT0);
  EXPECT_EQ(d.status(1, kT0), HealthStatus::Healthy);
  d.record_heartbeat(99, kT0);  // auto-registers
  EXPECT_EQ(d.get_status(99, kT0), HealthStatus::Healthy);
  d.deregister_worker(1);
  EXPECT_EQ(d.status(1, kT0), HealthStatus::Unknown);
  EXPECT_FALSE(d.get_health(1, kT0).has_value());
}

TEST(FailureDetector, RegularWorkerIsFailedSoonAfterItFallsSilent) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 10ms});
  EXPECT_EQ(d.heartbeat_interval(), 100ms);
  auto t = kT0;
  for (int i = 0; i < 50; ++i, t += 100ms) d.record_heartbeat(7, t);
  const auto last = t - 100ms;
  EXPECT_EQ(d.status(7, last + 100ms), HealthStatus::Healthy);  // on time
  EXPECT_LT(d.phi(7, last + 100ms), 1.0);
  EXPECT_EQ(d.status(7, last + 130ms), HealthStatus::Suspected);  // 3 sd late
  EXPECT_EQ(d.status(7, last + 200ms), HealthStatus::Failed);     // a whole beat missing
  EXPECT_GE(d.phi(7, last + 200ms), 8.0);
  EXPECT_EQ(d.failed_workers(last + 200ms), std::vector<FailureDetector::WorkerId>{7});
  EXPECT_TRUE(d.healthy_workers(last + 200ms).empty());
  // Suspicion is revocable: the next heartbeat makes it healthy again.
  d.record_heartbeat(7, last + 250ms);
  EXPECT_EQ(d.status(7, last + 260ms), HealthStatus::Healthy);
}

TEST(FailureDetector, JitteryWorkerGetsMoreSlackThanARegularOne) {
  const DetectorConfig c{.heartbeat_interval = 100ms, .min_std_deviation = 1ms};
  FailureDetector regular(c), jittery(c);
  auto t = kT0;
  for (int i = 0; i < 100; ++i) {
    regular.record_heartbeat(1, kT0 + i * 100ms);
    t += (i % 2 == 0) ? 40ms : 160ms;  // same mean, large spread
    jittery.record_heartbeat(1, t);
  }
  const auto silence = 250ms;
  EXPECT_EQ(regular.status(1, kT0 + 99 * 100ms + silence), HealthStatus::Failed);
  EXPECT_NE(jittery.status(1, t + silence), HealthStatus::Failed);
  EXPECT_LT(jittery.phi(1, t + silence), regular.phi(1, kT0 + 99 * 100ms + silence));
}

TEST(FailureDetector, AcceptablePauseAndMaxSilenceBoundTheVerdict) {
  FailureDetector d({.heartbeat_interval = 100ms,
                     .acceptable_pause = 1s,
                     .min_std_deviation = 10ms,
                     .max_silence = 3s});
  auto t = kT0;
  for (int i = 0; i < 20; ++i, t += 100ms) d.record_heartbeat(1, t);
  const auto last = t - 100ms;
  EXPECT_EQ(d.status(1, last + 1s), HealthStatus::Healthy);  // within the pause
  EXPECT_EQ(d.status(1, last + 1200ms), HealthStatus::Failed);

  // With a huge spread phi alone would wait long; max_silence caps it.
  FailureDetector capped({.heartbeat_interval = 10s, .min_std_deviation = 10s, .max_silence = 2s});
  capped.record_heartbeat(1, kT0);
  EXPECT_LT(capped.phi(1, kT0 + 2500ms), 1.0);
  EXPECT_EQ(capped.status(1, kT0 + 2s), HealthStatus::Healthy);
  EXPECT_EQ(capped.status(1, kT0 + 2500ms), HealthStatus::Failed);
}

TEST(FailureDetector, ConsecutiveTaskFailuresFailAWorkerWhenEnabled) {
  FailureDetector d({.failure_threshold = 2});
  d.register_worker(3);
  d.record_heartbeat(3, kT0);
  d.record_task_result(3, false);
  EXPECT_EQ(d.status(3, kT0), HealthStatus::Healthy);
  d.record_task_result(3, false);
  EXPECT_EQ(d.status(3, kT0), HealthStatus::Failed);
  d.record_heartbeat(3, kT0 + 1ms);  // alive, but still failing its tasks
  EXPECT_EQ(d.status(3, kT0 + 1ms), HealthStatus::Failed);
  d.record_task_result(3, true);
  EXPECT_EQ(d.status(3, kT0 + 1ms), HealthStatus::Healthy);
  const auto h = d.get_health(3, kT0 + 1ms);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->tasks_completed, 1u);
  EXPECT_EQ(h->tasks_failed, 2u);
  EXPECT_EQ(h->heartbeats, 2u);
  EXPECT_NEAR(h->success_rate(), 1.0 / 3.0, 1e-9);

  FailureDetector off({.failure_threshold = 0});
  off.record_heartbeat(3, kT0);
  for (int i = 0; i < 100; ++i) off.record_task_result(3, false);
  EXPECT_EQ(off.status(3, kT0), HealthStatus::Healthy);
}

TEST(FailureDetector, UpdateAllStatusesReportsEachNewFailureOnce) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 10ms});
  d.record_heartbeat(1, kT0);
  d.record_heartbeat(2, kT0);
  d.record_heartbeat(2, kT0 + 100ms);
  d.record_heartbeat(2, kT0 + 200ms);
  d.record_heartbeat(2, kT0 + 300ms);
  d.record_heartbeat(2, kT0 + 400ms);
  EXPECT_TRUE(d.update_all_statuses(kT0 + 200ms).empty());  // 1 is only suspected yet
  EXPECT_EQ(d.update_all_statuses(kT0 + 450ms), std::vector<FailureDetector::WorkerId>{1});
  EXPECT_EQ(d.update_all_statuses(kT0 + 460ms), std::vector<FailureDetector::WorkerId>{});
  EXPECT_EQ(d.get_health(1, kT0 + 460ms)->status, HealthStatus::Failed);
  d.record_heartbeat(2, kT0 + 470ms);
  EXPECT_EQ(d.healthy_workers(kT0 + 470ms), std::vector<FailureDetector::WorkerId>{2});
}

TEST(FailureDetector, StoppedDetectorRecordsNothing) {
  FailureDetector d;
  d.stop();
  EXPECT_FALSE(d.is_running());
  d.record_heartbeat(1, kT0);
  EXPECT_EQ(d.status(1, kT0), HealthStatus::Unknown);
}

TEST(FailureDetector, ValidateNamesTheBadField) {
  EXPECT_TRUE(validate({}).has_value());
  const auto field_of = [](DetectorConfig c) {
    auto r = validate(c);
    return r ? std::string("ok") : r.error().message();
  };
  EXPECT_NE(field_of({.heartbeat_interval = 0ms}).find("heartbeat_interval"), std::string::npos);
  EXPECT_NE(field_of({.acceptable_pause = -1ms}).find("acceptable_pause"), std::string::npos);
  EXPECT_NE(field_of({.min_std_deviation = 0ms}).find("min_std_deviation"), std::string::npos);
  EXPECT_NE(field_of({.window = 1}).find("window"), std::string::npos);
  EXPECT_NE(field_of({.suspect_phi = NAN}).find("suspect_phi"), std::string::npos);
  EXPECT_NE(field_of({.failure_phi = -3}).find("failure_phi"), std::string::npos);
  EXPECT_NE(field_of({.suspect_phi = 9, .failure_phi = 8}).find("suspect_phi"), std::string::npos);
  EXPECT_NE(field_of({.max_silence = -1s}).find("max_silence"), std::string::npos);
  EXPECT_EQ(validate({.window = 0}).error().code(), ErrorCode::InvalidArgument);
  // The constructor clamps what validate() refuses instead of misbehaving.
  FailureDetector d(
      {.heartbeat_interval = -1s, .min_std_deviation = 0ms, .window = 0, .failure_phi = NAN});
  d.record_heartbeat(1, kT0);
  d.record_heartbeat(1, kT0 + 1ms);
  EXPECT_TRUE(std::isfinite(d.phi(1, kT0 + 1s)));
  EXPECT_EQ(d.status(1, kT0 + 1h), HealthStatus::Failed);
}

TEST(FailureDetector, ConstructorClampsEachRefusedFieldToItsFloor) {
  FailureDetector d({.heartbeat_interval = 0ms,
                     .acceptable_pause = -1s,
                     .min_std_deviation = -1ms,
                     .window = 1,
                     .suspect_phi = 9,
                     .failure_phi = 0,
                     .max_silence = -1s});
  const DetectorConfig& c = d.config();
  EXPECT_EQ(d.heartbeat_interval(), 1ns);
  EXPECT_EQ(c.min_std_deviation, 1ns);
  EXPECT_EQ(c.acceptable_pause, 0ns);
  EXPECT_EQ(c.max_silence, 0ns);
  EXPECT_EQ(c.window, 2u);
  EXPECT_EQ(c.failure_phi, 8.0);
  EXPECT_EQ(c.suspect_phi, 8.0);  // capped at failure_phi
  EXPECT_TRUE(validate(c).has_value());
  // The first heartbeat seeds the window with the clamped 1 ns period, so a worker asked about
  // at the very instant of its heartbeat is one sd early: phi = log10(1 + e^-1.668...).
  d.record_heartbeat(1, kT0);
  EXPECT_NEAR(d.phi(1, kT0), phi_at(-1), 1e-6);
  FailureDetector nan_suspect({.suspect_phi = NAN});
  EXPECT_EQ(nan_suspect.config().suspect_phi, 1.0);
}

TEST(FailureDetector, ValidateAcceptsEachBoundaryValueAndRefusesAZeroPhi) {
  EXPECT_TRUE(validate({.acceptable_pause = 0ms, .max_silence = 0ms}).has_value());
  EXPECT_TRUE(validate({.heartbeat_interval = 1ns, .min_std_deviation = 1ns}).has_value());
  EXPECT_TRUE(validate({.window = 2}).has_value());
  EXPECT_TRUE(validate({.suspect_phi = 8, .failure_phi = 8}).has_value());  // equal is allowed
  EXPECT_TRUE(validate({.suspect_phi = 0.5}).has_value());
  EXPECT_FALSE(validate({.suspect_phi = 0}).has_value());
  EXPECT_FALSE(validate({.failure_phi = INFINITY}).has_value());
}

TEST(FailureDetector, FirstHeartbeatSeedsAMeanOfTheIntervalAndASpreadOfAQuarter) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 1ms});
  d.record_heartbeat(1, kT0);
  // mean 100 ms, sd 25 ms: 150 ms of silence is 2 sd late, 50 ms is 2 sd early.
  EXPECT_NEAR(d.phi(1, kT0 + 150ms), phi_at(2), 1e-9);
  EXPECT_NEAR(d.phi(1, kT0 + 50ms), phi_at(-2), 1e-9);
  EXPECT_NEAR(d.phi(1, kT0 + 100ms), std::log10(2.0), 1e-9);
}

TEST(FailureDetector, WindowKeepsOnlyTheNewestIntervals) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 1ms, .window = 2});
  d.record_heartbeat(1, kT0);
  d.record_heartbeat(1, kT0 + 100ms);
  d.record_heartbeat(1, kT0 + 200ms);
  d.record_heartbeat(1, kT0 + 500ms);
  // The window holds the last two gaps, 100 and 300 ms: mean 200 ms, sd 100 ms.
  EXPECT_NEAR(d.phi(1, kT0 + 900ms), phi_at(2), 1e-9);
}

TEST(FailureDetector, AnEarlierHeartbeatIsAZeroGapAtTheLastTime) {
  FailureDetector d({.heartbeat_interval = 4ns, .min_std_deviation = 1ns, .window = 2});
  d.record_heartbeat(1, kT0);
  d.record_heartbeat(1, kT0 - 1s);
  const auto h = d.get_health(1, kT0);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->last_heartbeat, kT0);
  EXPECT_EQ(h->heartbeats, 2u);
  // Window {5 ns (seed), 0 ns}: mean 2.5 ns, sd 2.5 ns, so 10 ns of silence is 3 sd late.
  EXPECT_NEAR(d.phi(1, kT0 + 10ns), phi_at(3), 1e-6);
}

TEST(FailureDetector, APhiExactlyAtAThresholdReachesIt) {
  const DetectorConfig c{.heartbeat_interval = 100ms, .min_std_deviation = 10ms};
  FailureDetector probe(c);
  probe.record_heartbeat(1, kT0);
  const auto at = kT0 + 160ms;
  const double p = probe.phi(1, at);
  ASSERT_GT(p, 1.0);
  FailureDetector fails({.heartbeat_interval = 100ms,
                         .min_std_deviation = 10ms,
                         .suspect_phi = 1.0,
                         .failure_phi = p});
  fails.record_heartbeat(1, kT0);
  EXPECT_EQ(fails.status(1, at), HealthStatus::Failed);
  FailureDetector suspects(
      {.heartbeat_interval = 100ms, .min_std_deviation = 10ms, .suspect_phi = p});
  suspects.record_heartbeat(1, kT0);
  EXPECT_EQ(suspects.status(1, at), HealthStatus::Suspected);
}

TEST(FailureDetector, OneNanosecondMaxSilenceAndAThresholdOfOneFailure) {
  FailureDetector d({.max_silence = 1ns, .failure_threshold = 1});
  d.record_heartbeat(1, kT0);
  EXPECT_EQ(d.status(1, kT0 + 1ns), HealthStatus::Healthy);
  EXPECT_EQ(d.status(1, kT0 + 2ns), HealthStatus::Failed);
  d.record_heartbeat(2, kT0);
  d.record_task_result(2, false);
  EXPECT_EQ(d.status(2, kT0), HealthStatus::Failed);
  d.record_task_result(7, false);  // never registered: still unknown
  EXPECT_EQ(d.status(7, kT0), HealthStatus::Unknown);
  EXPECT_FALSE(d.get_health(7, kT0).has_value());
}

TEST(FailureDetector, GetHealthCarriesPhiAsOfNow) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 1ms});
  d.record_heartbeat(1, kT0);
  const auto h = d.get_health(1, kT0 + 150ms);
  ASSERT_TRUE(h.has_value());
  EXPECT_NEAR(h->phi, phi_at(2), 1e-9);
  EXPECT_EQ(h->phi, d.phi(1, kT0 + 150ms));
  EXPECT_EQ(h->status, HealthStatus::Suspected);
  EXPECT_EQ(h->worker_id, 1u);
}

TEST(FailureDetector, WorkerListsAreInAscendingIdOrder) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 10ms});
  const std::vector<FailureDetector::WorkerId> ids{5, 3, 9, 1, 7, 2};
  for (auto id : ids) d.record_heartbeat(id, kT0);
  const std::vector<FailureDetector::WorkerId> sorted{1, 2, 3, 5, 7, 9};
  EXPECT_EQ(d.healthy_workers(kT0), sorted);
  EXPECT_EQ(d.failed_workers(kT0 + 10s), sorted);
  EXPECT_EQ(d.update_all_statuses(kT0 + 10s), sorted);
}

TEST(WorkerHealth, CrateFixedTimeoutRuleAndSuccessRate) {
  WorkerHealth h(4);
  EXPECT_EQ(h.status, HealthStatus::Unknown);
  EXPECT_EQ(h.success_rate(), 1.0);
  h.record_heartbeat(kT0);
  EXPECT_EQ(h.status, HealthStatus::Healthy);
  h.update_status(1s, 3, kT0 + 500ms);
  EXPECT_EQ(h.status, HealthStatus::Healthy);
  h.update_status(1s, 3, kT0 + 2s);
  EXPECT_EQ(h.status, HealthStatus::Suspected);
  EXPECT_FALSE(is_available(h.status));
  h.update_status(1s, 3, kT0 + 4s);
  EXPECT_EQ(h.status, HealthStatus::Failed);
  h.record_heartbeat(kT0 + 5s);
  h.record_task_completion(true);
  h.record_task_completion(true);
  h.record_task_completion(false);
  EXPECT_NEAR(h.success_rate(), 2.0 / 3.0, 1e-9);
  EXPECT_EQ(to_string(HealthStatus::Suspected), "suspected");
  EXPECT_TRUE(is_available(HealthStatus::Unknown));
  EXPECT_FALSE(is_available(HealthStatus::Failed));
}

TEST(WorkerHealth, TimeoutBoundariesSaturatedFailuresAndASingleTask) {
  WorkerHealth h(5);
  h.record_heartbeat(kT0);
  h.update_status(1s, 3, kT0 + 1s);  // silent exactly the timeout: not yet late
  EXPECT_EQ(h.status, HealthStatus::Healthy);
  h.update_status(1s, 3, kT0 + 3s);  // exactly three timeouts: suspected, not failed
  EXPECT_EQ(h.status, HealthStatus::Suspected);
  h.update_status(1s, 3, kT0 + 3s + 1ns);
  EXPECT_EQ(h.status, HealthStatus::Failed);
  h.record_heartbeat(kT0 - 1s);  // earlier than the last: counts, keeps the later time
  EXPECT_EQ(h.last_heartbeat, kT0);
  EXPECT_EQ(h.heartbeats, 2u);
  EXPECT_EQ(h.status, HealthStatus::Healthy);

  // A threshold of one fails the worker at its first failed task; a success clears the count.
  h.record_task_completion(false);
  EXPECT_DOUBLE_EQ(h.success_rate(), 0.0);
  h.update_status(1s, 1, kT0);
  EXPECT_EQ(h.status, HealthStatus::Failed);
  h.record_task_completion(true);
  EXPECT_EQ(h.consecutive_failures, 0u);
  EXPECT_DOUBLE_EQ(h.success_rate(), 0.5);
  WorkerHealth one(6);
  one.record_task_completion(true);
  EXPECT_DOUBLE_EQ(one.success_rate(), 1.0);
  EXPECT_EQ(one.tasks_completed, 1u);

  // The consecutive count saturates instead of wrapping to 0.
  WorkerHealth worn(7);
  worn.consecutive_failures = UINT32_MAX;
  worn.record_task_completion(false);
  EXPECT_EQ(worn.consecutive_failures, UINT32_MAX);
  EXPECT_EQ(worn.tasks_failed, 1u);
}

TEST(WorkerHealth, ConsecutiveFailedTasksFailAHeartbeatingWorkerAndEveryStatusHasAName) {
  WorkerHealth h(9);
  h.record_heartbeat(kT0);
  h.record_task_completion(false);
  h.record_task_completion(false);
  h.update_status(1s, 3, kT0);  // heard from just now, 2 failures of 3
  EXPECT_EQ(h.status, HealthStatus::Healthy);
  h.record_task_completion(false);
  h.update_status(1s, 3, kT0);  // the third failure fails it, however fresh the heartbeat
  EXPECT_EQ(h.status, HealthStatus::Failed);
  EXPECT_EQ(h.consecutive_failures, 3u);
  // A zero threshold switches the failure rule off.
  WorkerHealth lenient(10);
  lenient.record_heartbeat(kT0);
  for (int i = 0; i < 100; ++i) lenient.record_task_completion(false);
  lenient.update_status(1s, 0, kT0);
  EXPECT_EQ(lenient.status, HealthStatus::Healthy);
  EXPECT_EQ(to_string(HealthStatus::Healthy), "healthy");
  EXPECT_EQ(to_string(HealthStatus::Failed), "failed");
  EXPECT_EQ(to_string(HealthStatus::Unknown), "unknown");
}

// phi never decreases while the silence lengthens, whatever the heartbeat history was.
RC_GTEST_PROP(FailureDetector, PhiIsMonotoneInElapsedTime, ()) {
  FailureDetector d({.heartbeat_interval = 100ms, .min_std_deviation = 1ms});
  const auto gaps = *rc::gen::container<std::vector<int>>(rc::gen::inRange(1, 5000));
  auto t = kT0;
  d.record_heartbeat(1, t);
  for (int g : gaps) d.record_heartbeat(1, t += std::chrono::milliseconds(g));
  auto steps = *rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 100000));
  double prev = d.phi(1, t);
  auto now = t;
  for (int s : steps) {
    now += std::chrono::milliseconds(s);
    const double p = d.phi(1, now);
    RC_ASSERT(std::isfinite(p));
    RC_ASSERT(p >= prev);
    prev = p;
  }
}

// Heartbeats that keep their rhythm (within +-5%) never make a worker suspected.
RC_GTEST_PROP(FailureDetector, RegularHeartbeatsStayHealthy, ()) {
  const int period = *rc::gen::inRange(10, 2000);
  FailureDetector d({.heartbeat_interval = std::chrono::milliseconds(period),
                     .min_std_deviation = std::chrono::milliseconds(period / 10 + 1)});
  const int n = *rc::gen::inRange(1, 300);
  auto t = kT0;
  for (int i = 0; i < n; ++i) {
    const int jitter = *rc::gen::inRange(-period / 20, period / 20 + 1);
    t += std::chrono::milliseconds(period + jitter);
    // Checked just before the beat arrives, at its latest.
    RC_ASSERT(i == 0 || d.status(1, t) == HealthStatus::Healthy);
    d.record_heartbeat(1, t);
  }
}

// Whatever came before, silence long enough is always Failed.
RC_GTEST_PROP(FailureDetector, SilenceEndsInFailed, ()) {
  FailureDetector d({.heartbeat_interval = 100ms});
  const auto gaps = *rc::gen::container<std::vector<int>>(rc::gen::inRange(1, 10000));
  auto t = kT0;
  d.record_heartbeat(1, t);
  for (int g : gaps) d.record_heartbeat(1, t += std::chrono::milliseconds(g));
  // 10 s of usual gap + 40 sd at most: phi passes 8 long before this.
  RC_ASSERT(d.status(1, t + 1000s) == HealthStatus::Failed);
  RC_ASSERT(d.failed_workers(t + 1000s) == std::vector<FailureDetector::WorkerId>{1});
}

}  // namespace
}  // namespace pepita::fault
