#pragma once
// LeaseTable: the RemoteDispatcher's bookkeeping as a pure state machine — which task is queued,
// which worker holds a lease on it, heartbeat renewal and expiry, requeue on worker loss,
// cancellation and exactly-once completion. No sockets, threads or clocks: the caller passes the
// time in and serializes the calls (the dispatcher holds its mutex). Leases with a time-out
// follow Gray & Cheriton, "Leases" (SOSP '89); the rest is what remote.cpp used to do inline.
//
//   LeaseTable t({.max_attempts = 3, .lease_ttl = 6s});
//   t.add(7);
//   auto batch = t.lease(/*worker=*/0, /*slots=*/4, now);   // batch.granted = {{7, attempt 1}}
//   t.renew(0, now + 1s);                                     // a frame from worker 0
//   auto v = t.on_result(0, 7, LeaseTable::Report::Final);    // v.action == Complete, once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

namespace pepita::transport {

class LeaseTable {
 public:
  using TaskId = std::uint64_t;
  using WorkerId = std::size_t;
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Options {
    /// Leases a task gets before it is given up (a lease that ends in a Returned report, the
    /// worker handing it back unstarted, does not count).
    std::uint32_t max_attempts = 3;
    /// A lease whose worker was last heard from longer ago than this has expired.
    std::chrono::nanoseconds lease_ttl = std::chrono::seconds(6);
  };

  /// A task leased to a worker: send it, with this attempt number.
  struct Grant {
    TaskId id;
    std::uint32_t attempt;
  };
  /// A task that finished inside the table (given up, cancelled, drained): complete it once.
  struct Finished {
    TaskId id;
    std::uint32_t attempts;
  };
  struct Leased {
    std::vector<Grant> granted;
    std::vector<Finished> exhausted;  // leased max_attempts times already: give up on each
  };
  /// What a lost worker's or an expired lease's release did.
  struct Released {
    std::size_t leases = 0;           // leases the worker held (completed ones included)
    std::vector<TaskId> requeued;     // back at the front of the queue
    std::vector<Finished> cancelled;  // cancel was requested: complete each Cancelled
  };

  /// How a worker's Result frame reads to the table.
  enum class Report : std::uint8_t {
    Final,      // the task ran (or failed to start): a result to deliver
    Returned,   // handed back unstarted (worker draining)
    Cancelled,  // killed on the worker (our cancel, or the worker's own shutdown)
  };
  enum class Action : std::uint8_t {
    Complete,           // deliver this result; the task is done
    CompleteCancelled,  // deliver it as Cancelled (a cancel was requested); the task is done
    Requeued,           // the holder gave it back: it waits for another lease
    Ignored,            // a Returned/Cancelled report from a worker no longer holding it
    Duplicate,          // the task had completed already (or is unknown): drop the result
  };
  struct Verdict {
    Action action;
    std::uint32_t attempts = 0;
  };
  enum class CancelAction : std::uint8_t {
    None,          // unknown or already completed
    Completed,     // it was queued: it completed Cancelled now
    SendToHolder,  // leased: tell `holder` to kill it; it completes when the worker reports
  };
  struct CancelVerdict {
    CancelAction action;
    std::uint32_t attempts = 0;
    WorkerId holder = 0;
  };

  explicit LeaseTable(Options options) : opts_(options) {
    if (opts_.max_attempts == 0) opts_.max_attempts = 1;
  }

  /// Queues a new task at the back. False when `id` is still known (queued, leased, or
  /// completed while a worker still holds a lease on it).
  bool add(TaskId id);

  /// Leases queued tasks, front first, to `worker` until it holds `slots` leases.
  Leased lease(WorkerId worker, std::uint32_t slots, TimePoint now);

  /// What a lease scan's caller says of one queued task (issue 22: resource placement).
  enum class Admit : std::uint8_t {
    Take,  // lease it to this worker (the caller has taken its resources)
    Skip,  // not on this worker now: it keeps its place in the queue
  };
  using AdmitFn = std::function<Admit(TaskId id, std::uint32_t attempt)>;
  /// As lease(), but asks `admit` about each queued task, front first, with the attempt the
  /// lease would be: skipped tasks stay queued in order. A task that used up max_attempts is
  /// reported exhausted without being asked.
  Leased lease(WorkerId worker, std::uint32_t slots, TimePoint now, const AdmitFn& admit);

  /// `worker` was heard from at `now`: its leases are renewed until now + lease_ttl.
  void renew(WorkerId worker, TimePoint now);
  /// True when `worker` was heard from once and not since lease_ttl before `now`.
  bool silent(WorkerId worker, TimePoint now) const;
  /// Requeues every lease that expired by `now` (its worker silent for lease_ttl since it was
  /// granted or last renewed); a lease whose task was asked to cancel completes Cancelled.
  Released expire(TimePoint now);
  /// `worker` is gone (its connection ended): all its leases are released as by expire().
  Released worker_lost(WorkerId worker);

  /// A Result for `id` from `worker`. The first Final result completes the task, wherever it
  /// comes from; anything after it is a Duplicate.
  Verdict on_result(WorkerId worker, TaskId id, Report report);

  /// The user cancels `id`.
  CancelVerdict cancel(TaskId id);

  /// Completes every queued task (no worker will come for them): fail each.
  std::vector<Finished> drain_queue();
  /// Completes every task not yet completed and forgets everything (the dispatcher stops).
  std::vector<Finished> shutdown();

  bool contains(TaskId id) const { return tasks_.contains(id); }
  std::size_t queued() const { return queue_.size(); }
  /// Leases `worker` holds (completed tasks it has not reported yet included).
  std::size_t held(WorkerId worker) const;
  /// The worker holding `id`'s lease, if any.
  std::optional<WorkerId> holder(TaskId id) const;
  bool completed(TaskId id) const;
  std::uint32_t attempts(TaskId id) const;
  /// Results dropped as duplicates so far.
  std::uint64_t duplicates() const { return duplicates_; }

 private:
  struct Task {
    std::uint32_t attempts = 0;
    std::optional<WorkerId> holder;
    TimePoint leased_at{};
    bool completed = false;
    bool cancel_requested = false;
  };
  struct Worker {
    std::set<TaskId> held;
    std::optional<TimePoint> heard;
  };

  void complete(TaskId id, Task& t);
  Released release(WorkerId worker, const std::vector<TaskId>& ids);

  Options opts_;
  std::unordered_map<TaskId, Task> tasks_;
  std::deque<TaskId> queue_;
  std::map<WorkerId, Worker> workers_;
  std::uint64_t duplicates_ = 0;
};

}  // namespace pepita::transport
