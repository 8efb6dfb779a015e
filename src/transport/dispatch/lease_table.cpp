// LeaseTable: queue, leases, renewal/expiry, requeue and exactly-once completion; pure.
#include "pepita/transport/lease_table.hpp"

#include <algorithm>

namespace pepita::transport {

bool LeaseTable::add(TaskId id) {
  if (tasks_.contains(id)) return false;
  tasks_.emplace(id, Task{});
  queue_.push_back(id);
  return true;
}

// A completed task is forgotten unless a worker still holds its lease: that worker's report
// must then be recognised as a duplicate (and forgets it).
void LeaseTable::complete(TaskId id, Task& t) {
  t.completed = true;
  if (!t.holder) tasks_.erase(id);
}

LeaseTable::Leased LeaseTable::lease(WorkerId worker, std::uint32_t slots, TimePoint now) {
  return lease(worker, slots, now, nullptr);
}

LeaseTable::Leased LeaseTable::lease(WorkerId worker, std::uint32_t slots, TimePoint now,
                                     const AdmitFn& admit) {
  Leased out;
  Worker& w = workers_[worker];
  std::size_t i = 0;  // skipped tasks stay in front of it
  while (w.held.size() < slots && i < queue_.size()) {
    const TaskId id = queue_[i];
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.completed) {
      queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    Task& t = it->second;
    if (t.attempts >= opts_.max_attempts) {
      queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
      out.exhausted.push_back({id, t.attempts});
      complete(id, t);
      continue;
    }
    if (admit && admit(id, t.attempts + 1) == Admit::Skip) {
      ++i;
      continue;
    }
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
    ++t.attempts;
    t.holder = worker;
    t.leased_at = now;
    w.held.insert(id);
    out.granted.push_back({id, t.attempts});
  }
  return out;
}

void LeaseTable::renew(WorkerId worker, TimePoint now) {
  Worker& w = workers_[worker];
  if (!w.heard || *w.heard < now) w.heard = now;
}

bool LeaseTable::silent(WorkerId worker, TimePoint now) const {
  auto it = workers_.find(worker);
  if (it == workers_.end() || !it->second.heard) return false;
  return now - *it->second.heard > opts_.lease_ttl;
}

LeaseTable::Released LeaseTable::expire(TimePoint now) {
  Released all;
  for (auto& [wid, w] : workers_) {
    std::vector<TaskId> expired;
    for (TaskId id : w.held) {
      auto it = tasks_.find(id);
      TimePoint since = it == tasks_.end() ? TimePoint{} : it->second.leased_at;
      if (w.heard) since = std::max(since, *w.heard);
      if (now - since > opts_.lease_ttl) expired.push_back(id);
    }
    if (expired.empty()) continue;
    Released r = release(wid, expired);
    all.leases += r.leases;
    all.requeued.insert(all.requeued.end(), r.requeued.begin(), r.requeued.end());
    all.cancelled.insert(all.cancelled.end(), r.cancelled.begin(), r.cancelled.end());
  }
  return all;
}

LeaseTable::Released LeaseTable::worker_lost(WorkerId worker) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) return {};
  const std::vector<TaskId> ids(it->second.held.begin(), it->second.held.end());
  Released r = release(worker, ids);
  it->second.heard.reset();  // a reconnect starts its silence clock afresh
  return r;
}

// Releases `ids` (ascending, all held by `worker`). Walked backwards and pushed to the front, so
// the requeued tasks run next, in id order. A task asked to cancel completes Cancelled instead:
// its worker will not report it, and running it elsewhere is the opposite of what was asked.
LeaseTable::Released LeaseTable::release(WorkerId worker, const std::vector<TaskId>& ids) {
  Released r;
  r.leases = ids.size();
  Worker& w = workers_[worker];
  for (auto id = ids.rbegin(); id != ids.rend(); ++id) {
    w.held.erase(*id);
    auto it = tasks_.find(*id);
    if (it == tasks_.end()) continue;
    Task& t = it->second;
    if (t.holder != worker) continue;
    t.holder.reset();
    if (t.completed) {
      tasks_.erase(it);
      continue;
    }
    if (t.cancel_requested) {
      r.cancelled.push_back({*id, t.attempts});
      complete(*id, t);
      continue;
    }
    queue_.push_front(*id);
    r.requeued.push_back(*id);
  }
  return r;
}

LeaseTable::Verdict LeaseTable::on_result(WorkerId worker, TaskId id, Report report) {
  workers_[worker].held.erase(id);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || (it->second.completed && it->second.holder != worker)) {
    ++duplicates_;
    return {Action::Duplicate};
  }
  Task& t = it->second;
  if (t.completed) {  // the holder's late report of a task completed elsewhere
    ++duplicates_;
    tasks_.erase(it);
    return {Action::Duplicate};
  }
  const bool from_holder = t.holder == worker;
  if (from_holder) t.holder.reset();
  const std::uint32_t attempts = t.attempts;
  if (report != Report::Final) {
    if (t.cancel_requested) {
      // Ours to stop, however it came back: it completes Cancelled, never runs elsewhere.
      complete(id, t);
      return {Action::CompleteCancelled, attempts};
    }
    // Handed back unstarted, or killed by the worker's own shutdown rather than by our
    // cancel(): run it elsewhere. Only the former is not a failed attempt.
    if (!from_holder) return {Action::Ignored, attempts};
    if (report == Report::Returned && t.attempts > 0) --t.attempts;
    queue_.push_front(id);
    return {Action::Requeued, t.attempts};
  }
  // A late result of a lease that expired or was requeued still completes the task if nothing
  // else did first (the work ran); the queue entry goes, a newer holder's report will be a
  // duplicate.
  if (!from_holder && !t.holder) std::erase(queue_, id);
  complete(id, t);
  return {Action::Complete, attempts};
}

LeaseTable::CancelVerdict LeaseTable::cancel(TaskId id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second.completed) return {CancelAction::None};
  Task& t = it->second;
  const std::uint32_t attempts = t.attempts;
  if (!t.holder) {
    std::erase(queue_, id);
    complete(id, t);
    return {CancelAction::Completed, attempts};
  }
  t.cancel_requested = true;
  return {CancelAction::SendToHolder, attempts, *t.holder};
}

std::vector<LeaseTable::Finished> LeaseTable::drain_queue() {
  std::vector<Finished> out;
  while (!queue_.empty()) {
    const TaskId id = queue_.front();
    queue_.pop_front();
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second.completed) continue;
    out.push_back({id, it->second.attempts});
    complete(id, it->second);
  }
  return out;
}

std::vector<LeaseTable::Finished> LeaseTable::shutdown() {
  std::vector<Finished> out;
  for (auto& [id, t] : tasks_) {
    if (!t.completed) out.push_back({id, t.attempts});
  }
  tasks_.clear();
  queue_.clear();
  workers_.clear();
  return out;
}

std::size_t LeaseTable::held(WorkerId worker) const {
  auto it = workers_.find(worker);
  return it == workers_.end() ? 0 : it->second.held.size();
}

std::optional<LeaseTable::WorkerId> LeaseTable::holder(TaskId id) const {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return std::nullopt;
  return it->second.holder;
}

bool LeaseTable::completed(TaskId id) const {
  auto it = tasks_.find(id);
  return it != tasks_.end() && it->second.completed;
}

std::uint32_t LeaseTable::attempts(TaskId id) const {
  auto it = tasks_.find(id);
  return it == tasks_.end() ? 0 : it->second.attempts;
}

}  // namespace pepita::transport
