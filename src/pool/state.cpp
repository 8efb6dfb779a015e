// The pool's state machine: admission, dispatch to executors (consulting each backend's
// circuit breaker), retry with backoff, finalisation (journal, handles, releasing or skipping
// dependents) and the retry timer. Runs under PoolState::mu except perform() and on_complete()'s
// tail.
#include "detail/state.hpp"

#include <algorithm>

#include "pepita/executor/completion_batch.hpp"
#include "pepita/fault/result_record.hpp"
#include "pepita/pool/log_files.hpp"

namespace pepita::pool {

fault::Failure failure_of(const ExecutionResult& r) noexcept {
  switch (r.status) {
    case Status::Succeeded:
    case Status::Failed: return {fault::FailureKind::Exit, r.exit_code};
    case Status::Signaled: return {fault::FailureKind::Signal, r.signal};
    case Status::TimedOut: return {fault::FailureKind::Timeout, r.signal};
    case Status::LaunchFailed: return {fault::FailureKind::Launch, 0};
    case Status::Rejected: return {fault::FailureKind::Rejected, 0};
    case Status::OutOfMemory: return {fault::FailureKind::Oom, r.signal};
    case Status::Sandboxed: return {fault::FailureKind::Sandbox, r.signal};
    case Status::Cancelled:
    case Status::Skipped: return {fault::FailureKind::Cancelled, 0};
  }
  return {fault::FailureKind::Error, 0};
}

namespace detail {

void PoolState::event(Actions& act, Event::Kind kind, const Node& n, TaskId id,
                      const ExecutionResult* r, std::chrono::nanoseconds delay) {
  if (!observer) return;
  PendingEvent e{kind, id, n.task.name(), n.attempts, delay, std::nullopt};
  if (r) e.result = *r;
  act.events.push_back(std::move(e));
  ++events_in_flight;
}

void PoolState::journal_append(fault::JournalRecord rec, bool commit, Actions& act) {
  if (!journal) return;
  // Staged, in the order made under `mu`; flush_journal() writes what this section staged with
  // one write(2) before it releases `mu` (issue 27: a completion's Finished record and the next
  // task's Started one were two system calls, a submitted batch one per task).
  if (auto r = journal->stage(std::move(rec)); !r) {
    if (!journal_err) journal_err = r.error();
    return;
  }
  act.journal_flush = true;
  act.journal_commit = act.journal_commit || commit;
}

Result<std::uint32_t> PoolState::route(const Task& task) const {
  const Backend asked = task.backend();
  const task::TaskKind k = task.kind();
  const bool function = k == task::TaskKind::Callable;
  const bool processes = k == task::TaskKind::Binary || k == task::TaskKind::Pipeline;
  const char* kind = function                      ? "function"
                     : k == task::TaskKind::Binary ? "binary"
                     : processes                   ? "pipeline"
                                                   : "shader";
  Backend target = asked;
  if (asked == Backend::Any) {
    // A fixed preference by kind: each kind has exactly one local backend that runs it.
    target = function ? Backend::Cpu : processes ? Backend::Process : Backend::Gpu;
  } else if (asked == Backend::Cpu && processes) {
    target = Backend::Process;  // the crate's CpuExecutor runs binaries as child processes
  }
  if (auto it = lane_of.find(target); it != lane_of.end()) return it->second;
  std::string have;
  for (const Lane& l : lanes) {
    if (!have.empty()) have.append(", ");
    have.append(l.backend.name());
  }
  if (asked == Backend::Any) {
    return fail(ErrorCode::Unsupported, std::string("task '")
                                            .append(task.name())
                                            .append("' has backend any; a ")
                                            .append(kind)
                                            .append(" task runs on the ")
                                            .append(target.name())
                                            .append(" backend, which this pool has no executor "
                                                    "for (it has: ")
                                            .append(have)
                                            .append("); register one with "
                                                    "Pool::Builder::executor()"));
  }
  return fail(ErrorCode::Unsupported, std::string("task '")
                                          .append(task.name())
                                          .append("' needs the ")
                                          .append(target.name())
                                          .append(" backend, which this pool has no executor for "
                                                  "(it has: ")
                                          .append(have)
                                          .append("); register one with "
                                                  "Pool::Builder::executor()"));
}

Result<TaskHandle> PoolState::admit(Task task, Actions& act) {
  const TaskId id = task.id();
  const std::uint32_t lane = PEPITA_TRY(route(task));
  PEPITA_TRY(check_fits(task, lane));
  if (config.default_timeout && task.timeout().count() == 0) {
    task = task.with_timeout(*config.default_timeout);
  }
  if (nodes.contains(id) || finished.contains(id)) {
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() + "' (id " + std::to_string(id) + ") was already submitted");
  }
  if (journal && !names.insert(task.name()).second) {
    return fail(ErrorCode::InvalidArgument, "task name '" + task.name() +
                                                "' is used twice; with a journal every task "
                                                "needs a unique name");
  }
  Node n(std::move(task));
  n.lane = lane;
  n.placed = lanes[lane].ledger && !n.task.resources().empty();
  n.seq = next_seq++;
  n.submitted = Clock::now();
  n.handle = std::make_shared<HandleState>();
  TaskHandle handle = make_handle(id, n.handle);
  std::string failed_dep;
  for (TaskId dep : n.task.dependencies()) {
    if (auto it = nodes.find(dep); it != nodes.end()) {
      ++n.pending;
      it->second.dependents.push_back(id);
    } else if (auto f = finished.find(dep); f != finished.end()) {
      if (!f->second && failed_dep.empty()) failed_dep = "id " + std::to_string(dep);
    }
  }
  if (retain) retained.push_back(handle);
  ++counters.submitted;
  const std::string name = n.task.name();
  std::string digest;
  if (journal) {
    digest = n.task.spec_digest();
    n.digest = detail::SpecDigest(digest);
  }
  auto& node = nodes.emplace(id, std::move(n)).first->second;

  if (journal) {
    // A shader task's output buffers are not journalled (executor::ExecutionResult), so its
    // recorded success cannot stand in for a run: it always runs again.
    if (auto it = replay.find(name);
        it != replay.end() && it->second.spec_digest == digest && !node.task.is_shader()) {
      ExecutionResult r = fault::replayed_result(it->second);
      ++counters.from_journal;
      finalize(id, std::move(r), act);
      return handle;
    }
    fault::JournalRecord rec;
    rec.type = fault::RecordType::Submitted;
    rec.name = name;
    rec.spec_digest = std::move(digest);
    journal_append(std::move(rec), false, act);
  }
  if (!failed_dep.empty()) {
    ExecutionResult r;
    r.status = Status::Skipped;
    r.error = "not run: dependency " + failed_dep + " did not succeed";
    finalize(id, std::move(r), act);
  } else if (node.pending == 0) {
    make_ready(node, id);
  }
  return handle;
}

void PoolState::make_ready(Node& n, TaskId id) {
  n.phase = Phase::Ready;
  n.handle->moved_to(task::TaskState::Queued);
  lanes[n.lane].ready.push(n.task.priority(), id, n.placed);
}

namespace {

// The host every pool shares unless Pool::Builder::resources() names one: detected once per
// process (nvidia-smi is slow to start, and the host does not change under a run).
const Result<task::Inventory>& detected_host() {
  static const Result<task::Inventory> host = task::Inventory::detect();
  return host;
}

}  // namespace

Result<void> PoolState::check_fits(const Task& task, std::uint32_t lane) {
  const task::ResourceRequest& req = task.resources();
  if (req.empty()) return {};
  const Lane& l = lanes[lane];
  auto refuse = [&](const Error& e) {
    return fail(e.code(), std::string("task '")
                              .append(task.name())
                              .append("' can never run: ")
                              .append(e.message())
                              .append(" (asked: ")
                              .append(req.to_string())
                              .append(")"));
  };
  if (!l.ledger) {
    if (auto ok = l.exec->can_ever_fit(req); !ok) return refuse(ok.error());
    return {};
  }
  if (!ledger) {
    if (config.resources) {
      ledger.emplace(*config.resources);
    } else {
      const auto& host = detected_host();
      if (!host) {
        return fail(host.error().code(),
                    std::string("cannot detect this host's resources for task '")
                        .append(task.name())
                        .append("': ")
                        .append(host.error().message())
                        .append("; give them with Pool::Builder::resources()"));
      }
      ledger.emplace(*host);
    }
  }
  if (auto ok = ledger->inventory().can_ever_fit(req); !ok) return refuse(ok.error());
  return {};
}

// Lookahead past tasks that cannot start yet, per lane and dispatch: bounds the cost of a pass
// when the head of a queue waits for resources: at most kLookahead waiting tasks, and no more
// than kMissRun in a row. A lookahead of 8 left the mixed bench job 1.10x the greedy bound (small
// tasks further back could not backfill), 32 gives 1.03x; the run limit keeps a queue where
// nothing fits (every GPU taken) from costing 32 failed placements per completion.
inline constexpr std::size_t kLookahead = 32;
inline constexpr std::size_t kMissRun = 8;

bool PoolState::may_start(Node& n, TaskId id, Actions& act) {
  if (n.task.deadline().count() > 0 && Clock::now() >= n.submitted + n.task.deadline()) {
    ExecutionResult r;
    r.status = Status::TimedOut;
    r.error = "deadline of " +
              std::to_string(std::chrono::duration<double>(n.task.deadline()).count()) +
              " s passed before the task could start";
    finalize(id, std::move(r), act);
    return false;
  }
  return true;
}

void PoolState::start_attempt(Lane& lane, Node& n, TaskId id, std::optional<task::Allocation> alloc,
                              Actions& act) {
  ++n.attempts;
  if (!lane.breaker->allow()) {
    if (alloc) ledger->give_back(*alloc);
    ExecutionResult r;
    r.status = Status::Rejected;
    r.error = "not started: the " + std::string(to_string(lane.backend)) +
              " backend's circuit breaker is open after " +
              std::to_string(lane.breaker->failures()) +
              " consecutive launch failures; it lets a probe through in " +
              std::to_string(
                  std::chrono::duration_cast<std::chrono::milliseconds>(lane.breaker->retry_after())
                      .count()) +
              " ms";
    attempt_failed(id, std::move(r), act);
    return;
  }
  n.phase = Phase::Running;
  n.handle->moved_to(task::TaskState::Running);
  n.stop.emplace();
  ++lane.running;
  if (journal) {
    fault::JournalRecord rec;
    rec.type = fault::RecordType::Started;
    rec.name = n.task.name();
    rec.spec_digest = n.digest.hex();
    rec.attempt = n.attempts;
    journal_append(std::move(rec), false, act);
  }
  event(act, Event::Kind::Started, n, id);
  if (alloc) {
    act.launches.push_back(
        {lane.exec, n.task.with_allocation(*alloc), n.stop->get_token(), n.lane});
    n.allocation = std::make_unique<task::Allocation>(std::move(*alloc));
  } else if (!lane.ledger && !n.task.resources().empty()) {
    // An executor that places requests itself (remote workers, Slurm) picks the Allocation; it
    // learns the attempt from this one, so Growth::PerAttempt grows there too.
    task::Allocation attempt_only;
    attempt_only.attempt = n.attempts;
    act.launches.push_back(
        {lane.exec, n.task.with_allocation(std::move(attempt_only)), n.stop->get_token(), n.lane});
  } else {
    act.launches.push_back({lane.exec, n.task, n.stop->get_token(), n.lane});
  }
  act.launches.back().attempt = n.attempts;
}

// One ready task offered to start (a lane in scan mode). Reservation: `reserver` is the
// highest-ordered (priority, then submission) ready task that did not fit; once it has waited
// config.reserve_after, a task ordered after it that competes for what it is short of waits, so a
// stream of small tasks cannot starve it (before that, they backfill around it).
ReadyQueue::Visit PoolState::offer(Lane& lane, TaskId id, Actions& act) {
  auto it = nodes.find(id);
  if (it == nodes.end() || it->second.phase != Phase::Ready) return ReadyQueue::Visit::Take;
  Node& n = it->second;
  if (!may_start(n, id, act)) {
    if (reserver == id) reserver = 0;
    return ReadyQueue::Visit::Take;
  }
  if (!n.placed) {
    start_attempt(lane, n, id, std::nullopt, act);
    return ReadyQueue::Visit::Take;
  }
  const task::ResourceRequest& req = n.task.resources();
  const std::uint32_t attempt = n.attempts + 1;
  bool ahead = true;  // of the reserver
  if (reserver != 0 && reserver != id) {
    const Node& w = nodes.at(reserver);
    const int p = n.task.priority(), wp = w.task.priority();
    ahead = p > wp || (p == wp && n.seq < w.seq);
    if (!ahead && Clock::now() - reserver_since >= config.reserve_after &&
        ledger->competes(req, attempt, w.task.resources(), w.attempts + 1)) {
      return ReadyQueue::Visit::Keep;
    }
  }
  if (auto a = ledger->try_take(req, attempt)) {
    if (reserver == id) reserver = 0;
    start_attempt(lane, n, id, std::move(a), act);
    return ReadyQueue::Visit::Take;
  }
  if (ahead && reserver != id) {
    reserver = id;
    reserver_since = Clock::now();
  }
  return ReadyQueue::Visit::Keep;
}

void PoolState::dispatch(Actions& act) {
  if (reserver != 0) {
    auto it = nodes.find(reserver);
    if (it == nodes.end() || it->second.phase != Phase::Ready) reserver = 0;
  }
  for (Lane& lane : lanes) {
    auto& q = lane.ready;
    if (q.placed() > 0) {
      // Some queued task needs the Ledger: offer tasks in order, skipping those that must wait.
      q.scan(
          kLookahead, kMissRun, [&] { return lane.running < lane.limit; },
          [&](TaskId id) { return offer(lane, id, act); });
      continue;
    }
    // The fast path: no requests queued here, a slot is all a task needs.
    while (!q.empty() && lane.running < lane.limit) {
      const TaskId id = q.pop();
      auto it = nodes.find(id);
      if (it == nodes.end() || it->second.phase != Phase::Ready) continue;  // cancelled
      Node& n = it->second;
      if (!may_start(n, id, act)) continue;
      start_attempt(lane, n, id, std::nullopt, act);
    }
  }
}

// Whether a failed attempt is one of the failures a task's retry_on list names.
static bool retry_matches(const std::vector<task::RetryOn>& kinds, const ExecutionResult& r) {
  using K = task::RetryOn::Kind;
  for (const task::RetryOn& on : kinds) {
    switch (on.kind) {
      case K::Any: return true;
      case K::Oom:
        if (r.status == Status::OutOfMemory) return true;
        break;
      case K::Timeout:
        if (r.status == Status::TimedOut) return true;
        break;
      case K::Launch:
        if (r.status == Status::LaunchFailed) return true;
        break;
      case K::Exit:
        if (r.status == Status::Failed && (on.code < 0 || r.exit_code == on.code)) return true;
        break;
      case K::Signal:
        if (r.status == Status::Signaled && (on.code < 0 || r.signal == on.code)) return true;
        break;
    }
  }
  return false;
}

void PoolState::attempt_failed(TaskId id, ExecutionResult r, Actions& act) {
  Node& n = nodes.at(id);
  r.attempts = n.attempts;
  // Not `accepting`: a graceful shutdown still lets submitted tasks use their retries.
  bool again = !n.cancel_requested;
  if (again && !n.task.retry_on().empty()) {
    // Only the failures it names, within its max_retries or the policy's max_attempts.
    const std::uint32_t bound =
        n.task.max_retries() ? *n.task.max_retries() + 1 : retry.max_attempts();
    again = n.attempts < bound && retry_matches(n.task.retry_on(), r);
  } else if (again) {
    again = retry.should_retry(n.attempts, failure_of(r), n.task.max_retries());
  }
  if (again && !n.task.resources().empty()) {
    // A request that grows per attempt may outgrow the host: fail now rather than wait forever.
    task::ResourceRequest next = n.task.resources().at_attempt(n.attempts + 1);
    next.cpus_growth = next.memory_growth = next.gpus_growth = task::Growth::Fixed;
    const Lane& lane = lanes[n.lane];
    auto fits =
        lane.ledger ? ledger->inventory().can_ever_fit(next) : lane.exec->can_ever_fit(next);
    if (!fits) {
      r.error +=
          "; not retried: attempt " + std::to_string(n.attempts + 1) + " " + fits.error().message();
      finalize(id, std::move(r), act);
      return;
    }
  }
  if (again) {
    const auto delay = retry.backoff(n.attempts);
    if (n.task.deadline().count() > 0 && Clock::now() + delay >= n.submitted + n.task.deadline()) {
      r.error += "; not retried: the task's deadline would pass first";
      finalize(id, std::move(r), act);
      return;
    }
    n.phase = Phase::Delayed;
    n.handle->moved_to(task::TaskState::Queued);
    n.stop.reset();
    delayed.push({Clock::now() + delay, id});
    ++counters.retries;
    r.id = id;
    r.name = n.task.name();
    event(act, Event::Kind::Retrying, n, id, &r, delay);
    timer_cv.notify_one();
    return;
  }
  finalize(id, std::move(r), act);
}

void PoolState::finalize(TaskId first, ExecutionResult first_result, Actions& act) {
  // A failure skips the whole subtree below it; a worklist keeps deep chains off the stack.
  std::vector<std::pair<TaskId, ExecutionResult>> work;
  work.emplace_back(first, std::move(first_result));
  while (!work.empty()) {
    auto [id, r] = std::move(work.back());
    work.pop_back();
    auto it = nodes.find(id);
    if (it == nodes.end()) continue;
    Node& n = it->second;
    r.id = id;
    r.name = n.task.name();
    r.metadata = n.task.metadata();
    if (r.attempts == 0) r.attempts = n.attempts;
    const bool ok = r.ok();
    ++counters.done;
    if (ok) {
      ++counters.succeeded;
    } else {
      ++counters.failed;
      if (r.status == Status::Skipped) ++counters.skipped;
    }
    const float latency =
        std::chrono::duration<float, std::milli>(Clock::now() - n.submitted).count();
    if (latencies_ms.size() < kReservoir) {
      latencies_ms.push_back(latency);
    } else if (const auto slot = rng() % (latency_seen + 1); slot < kReservoir) {
      latencies_ms[slot] = latency;
    }
    ++latency_seen;
    if (ok && r.from_cache) ++counters.from_cache;
    if (journal && !r.from_journal) {
      journal_append(fault::finished_record(r, n.digest.hex()), true, act);
    }
    event(act, Event::Kind::Finished, n, id, &r);
    std::vector<TaskId> dependents = std::move(n.dependents);
    const std::string name = r.name;
    n.handle->set(std::move(r));
    finished.emplace(id, ok);
    nodes.erase(it);
    for (TaskId d : dependents) {
      auto dit = nodes.find(d);
      if (dit == nodes.end()) continue;
      Node& dn = dit->second;
      if (ok) {
        if (--dn.pending == 0 && dn.phase == Phase::Waiting) make_ready(dn, d);
      } else if (dn.phase == Phase::Waiting) {
        ExecutionResult skip;
        skip.status = Status::Skipped;
        skip.error = "not run: dependency '" + name + "' did not succeed";
        work.emplace_back(d, std::move(skip));
      }
    }
  }
  if (idle()) idle_cv.notify_all();
  if (config.queue_capacity) space_cv.notify_all();
}

void PoolState::flush_journal(Actions& act) {
  if (!act.journal_flush) return;
  act.journal_flush = false;
  if (auto r = journal->flush(); !r) {
    if (!journal_err) journal_err = r.error();
  } else if (act.journal_commit) {
    journal->commit();
  }
  act.journal_commit = false;
}

namespace {
// A launch's completion carries (task id, lane) in one word when both fit: ids below 2^48 (they
// count up from 1), lanes below 2^15.
constexpr unsigned kLaneShift = 48;
constexpr std::uint64_t kLaneKeyLimit = std::uint64_t{1} << kLaneShift;
constexpr std::uint32_t kLaneKeyLanes = 1u << 15;
}  // namespace

void PoolState::perform(Actions& act) {
  // Events first: a Started event must reach the observer before the attempt can finish.
  if (!act.events.empty()) {
    {
      std::lock_guard lock(event_mu);
      for (const auto& e : act.events) {
        Event ev{e.kind, e.id, e.name, e.attempt, e.delay, e.result ? &*e.result : nullptr};
        observer(ev);
      }
    }
    std::lock_guard lock(mu);
    events_in_flight -= act.events.size();
    if (idle()) idle_cv.notify_all();
  }
  for (auto& s : act.stops) s.request_stop();
  for (auto& l : act.launches) {
    const TaskId id = l.task.id();
    if (!config.log_dir.empty() && l.exec->streams_output())
      attach_log_files(l.task, config.log_dir, l.attempt);
    const std::uint32_t lane = l.lane;
    executor::Completion done;
    if (id < kLaneKeyLimit && lane < kLaneKeyLanes) {
      // Two words, stored inside the std::function: no heap allocation per attempt (issue 27).
      const std::uint64_t key = id | (std::uint64_t{lane} << kLaneShift);
      done = [this, key](ExecutionResult r) {
        on_complete(key & (kLaneKeyLimit - 1), static_cast<std::uint32_t>(key >> kLaneShift),
                    std::move(r));
      };
    } else {
      done = [this, id, lane](ExecutionResult r) { on_complete(id, lane, std::move(r)); };
    }
    auto started = l.exec->start(l.task, l.stop, std::move(done));
    if (!started) {
      ExecutionResult r;
      r.status =
          started.error().code() == ErrorCode::Cancelled ? Status::Cancelled : Status::LaunchFailed;
      r.error = started.error().to_string();
      on_complete(id, lane, std::move(r));
    }
  }
}

namespace {
// What on_complete() put off to the end of a completion batch (issue 27): one journal write and
// one perform() for every completion of the batch.
struct BatchActions final : executor::CompletionBatch::Deferred {
  explicit BatchActions(PoolState& s) : state(s) {}
  void run() noexcept override { state.finish_batch(act); }
  PoolState& state;
  Actions act;
};
}  // namespace

void PoolState::finish_batch(Actions& act) noexcept {
  {
    std::lock_guard lock(mu);
    flush_journal(act);
  }
  perform(act);
  std::lock_guard lock(mu);
  --batches_open;
  if (idle()) idle_cv.notify_all();
}

void PoolState::on_complete(TaskId id, std::uint32_t lane_index, ExecutionResult r) {
  // Inside an executor's completion batch, this completion's journal records and actions join
  // the batch's (written and performed once at its end); otherwise they are done here.
  executor::CompletionBatch* batch = executor::CompletionBatch::current();
  Actions local;
  Actions* act = &local;
  if (batch != nullptr) {
    if (auto* joined = static_cast<BatchActions*>(batch->find(this))) act = &joined->act;
  }
  {
    std::lock_guard lock(mu);
    if (batch != nullptr && act == &local) {
      auto joined = std::make_unique<BatchActions>(*this);
      act = &joined->act;
      batch->join(this, std::move(joined));
      ++batches_open;
    }
    Lane& lane = lanes[lane_index];
    --lane.running;
    if (r.status == Status::LaunchFailed) {
      lane.breaker->record_failure();
    } else if (r.status != Status::Cancelled) {
      lane.breaker->record_success();
    }
    if (auto it = nodes.find(id); it != nodes.end()) {
      it->second.stop.reset();
      if (auto& alloc = it->second.allocation) {
        // Every way an attempt ends comes here (success, failure, cancel, launch failure).
        ledger->give_back(*alloc);
        if (!r.allocation) r.allocation = std::move(*alloc);
        alloc.reset();
      }
      if (r.ok()) {
        r.attempts = it->second.attempts;
        finalize(id, std::move(r), *act);
      } else {
        attempt_failed(id, std::move(r), *act);
      }
    }
    dispatch(*act);
    if (act == &local) flush_journal(local);
  }
  if (act == &local) perform(local);
}

void PoolState::timer_loop() {
  std::unique_lock lock(mu);
  while (!stopping_timer) {
    if (delayed.empty()) {
      timer_cv.wait(lock);
      continue;
    }
    const auto when = delayed.top().when;
    if (Clock::now() < when) {
      timer_cv.wait_until(lock, when);
      continue;
    }
    Actions act;
    while (!delayed.empty() && delayed.top().when <= Clock::now()) {
      const TaskId id = delayed.top().id;
      delayed.pop();
      auto it = nodes.find(id);
      if (it == nodes.end() || it->second.phase != Phase::Delayed) continue;
      make_ready(it->second, id);
    }
    dispatch(act);
    flush_journal(act);
    lock.unlock();
    perform(act);
    lock.lock();
  }
}

}  // namespace detail

}  // namespace pepita::pool
