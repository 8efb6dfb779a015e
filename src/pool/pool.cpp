// The pool's state machine. One mutex guards the task graph, the ready queues (one priority
// queue per backend), the retry-delay heap and the counters; executors run attempts outside it
// and report back through on_complete(). Work that must not happen under the lock — starting
// attempts, requesting stops, notifying the observer — is collected in an Actions list and done
// after unlocking.
#include "pepita/pool/pool.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "pepita/executor/cpu.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/task/graph.hpp"

namespace pepita::pool {

using Clock = std::chrono::steady_clock;
using task::Backend;
using task::kBackendCount;

fault::Failure failure_of(const ExecutionResult& r) noexcept {
  switch (r.status) {
    case Status::Succeeded:
    case Status::Failed: return {fault::FailureKind::Exit, r.exit_code};
    case Status::Signaled: return {fault::FailureKind::Signal, r.signal};
    case Status::TimedOut: return {fault::FailureKind::Timeout, r.signal};
    case Status::LaunchFailed: return {fault::FailureKind::Launch, 0};
    case Status::Rejected: return {fault::FailureKind::Rejected, 0};
    case Status::Cancelled:
    case Status::Skipped: return {fault::FailureKind::Cancelled, 0};
  }
  return {fault::FailureKind::Error, 0};
}

namespace detail {

struct HandleState {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ExecutionResult> result;

  void set(ExecutionResult r) {
    {
      std::lock_guard lock(mu);
      result = std::move(r);
    }
    cv.notify_all();
  }
};

namespace {

enum class Phase : std::uint8_t { Waiting, Ready, Delayed, Running };

struct Node {
  explicit Node(Task t) : task(std::move(t)) {}
  Task task;
  std::shared_ptr<HandleState> handle;
  std::vector<TaskId> dependents;
  std::uint32_t pending = 0;
  std::uint32_t attempts = 0;
  Phase phase = Phase::Waiting;
  bool cancel_requested = false;
  std::uint64_t seq = 0;
  Clock::time_point submitted;
  std::optional<std::stop_source> stop;  // of the running attempt
};

// Ready tasks of one backend: highest priority first, FIFO within a priority. A FIFO per level
// (not one heap) keeps push/pop O(1) for the common single-priority batch of millions.
class ReadyQueue {
 public:
  void push(std::int32_t priority, TaskId id) { levels_[priority].push_back(id); }
  bool empty() const { return levels_.empty(); }
  TaskId pop() {
    auto it = levels_.begin();
    const TaskId id = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) levels_.erase(it);
    return id;
  }

 private:
  std::map<std::int32_t, std::deque<TaskId>, std::greater<>> levels_;
};

struct DelayItem {
  Clock::time_point when;
  TaskId id;
  bool operator>(const DelayItem& o) const { return when > o.when; }
};

struct Launch {
  std::shared_ptr<executor::Executor> exec;
  Task task;
  std::stop_token stop;
};

struct PendingEvent {
  Event::Kind kind;
  TaskId id;
  std::string name;
  std::uint32_t attempt;
  std::chrono::nanoseconds delay{0};
  std::optional<ExecutionResult> result;
};

// Deferred until the pool mutex is released.
struct Actions {
  std::vector<Launch> launches;
  std::vector<std::stop_source> stops;
  std::vector<PendingEvent> events;
};

constexpr std::size_t kReservoir = 1 << 16;

}  // namespace

struct PoolState {
  // Configuration, fixed after build().
  fault::RetryPolicy retry;
  std::array<std::shared_ptr<executor::Executor>, kBackendCount> executors{};
  std::array<std::size_t, kBackendCount> limit{};
  std::array<std::unique_ptr<fault::CircuitBreaker>, kBackendCount> breakers{};
  std::unique_ptr<fault::Journal> journal;
  std::unordered_map<std::string, fault::JournalRecord> replay;  // name -> Succeeded record
  std::size_t recovered = 0;
  std::function<void(const Event&)> observer;
  bool retain = true;

  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::condition_variable timer_cv;
  std::unordered_map<TaskId, Node> nodes;
  std::unordered_map<TaskId, bool> finished;  // id -> succeeded
  std::unordered_set<std::string> names;      // enforced unique only with a journal
  std::array<ReadyQueue, kBackendCount> ready;
  std::array<std::size_t, kBackendCount> running{};
  std::priority_queue<DelayItem, std::vector<DelayItem>, std::greater<>> delayed;
  std::vector<TaskHandle> retained;
  std::uint64_t next_seq = 0;
  std::size_t events_in_flight = 0;  // queued for the observer, not yet delivered
  bool accepting = true;
  bool stopping_timer = false;
  bool shut_down = false;
  Stats counters;
  std::vector<float> latencies_ms;
  std::uint64_t latency_seen = 0;
  std::mt19937_64 rng{0x9e3779b97f4a7c15ULL};
  std::optional<Error> journal_err;

  std::mutex event_mu;  // serialises observer calls
  std::thread timer;

  // ---- under mu ----
  Result<TaskHandle> admit(Task task, Actions& act);
  void dispatch(Actions& act);
  void attempt_failed(TaskId id, ExecutionResult r, Actions& act);
  void finalize(TaskId id, ExecutionResult r, Actions& act);
  void journal_append(fault::JournalRecord rec, bool commit);
  void event(Actions& act, Event::Kind kind, const Node& n, TaskId id,
             const ExecutionResult* r = nullptr, std::chrono::nanoseconds delay = {});
  TaskHandle make_handle(TaskId id, std::shared_ptr<HandleState> s) { return {id, std::move(s)}; }

  // ---- without mu ----
  void perform(Actions& act);
  void on_complete(TaskId id, Backend backend, ExecutionResult r);
  void timer_loop();
};

void PoolState::event(Actions& act, Event::Kind kind, const Node& n, TaskId id,
                      const ExecutionResult* r, std::chrono::nanoseconds delay) {
  if (!observer) return;
  PendingEvent e{kind, id, n.task.name(), n.attempts, delay, std::nullopt};
  if (r) e.result = *r;
  act.events.push_back(std::move(e));
  ++events_in_flight;
}

void PoolState::journal_append(fault::JournalRecord rec, bool commit) {
  if (!journal) return;
  if (auto r = journal->append(std::move(rec)); !r) {
    if (!journal_err) journal_err = r.error();
    return;
  }
  if (commit) journal->commit();
}

Result<TaskHandle> PoolState::admit(Task task, Actions& act) {
  const TaskId id = task.id();
  const auto backend_index = static_cast<std::size_t>(task.backend());
  if (!executors[backend_index]) {
    return fail(ErrorCode::Unsupported,
                "task '" + task.name() + "' needs the " + std::string(to_string(task.backend())) +
                    " backend, which this pool has no executor for; register one with "
                    "Pool::Builder::executor()");
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
  const std::string digest = journal ? n.task.spec_digest() : std::string();
  auto& node = nodes.emplace(id, std::move(n)).first->second;

  if (journal) {
    if (auto it = replay.find(name); it != replay.end() && it->second.spec_digest == digest) {
      const fault::JournalRecord& rec = it->second;
      ExecutionResult r;
      r.status = static_cast<Status>(rec.status);
      r.exit_code = rec.exit_code;
      r.signal = rec.signal;
      r.wall = std::chrono::nanoseconds(rec.wall_ns);
      r.cpu = std::chrono::nanoseconds(rec.cpu_ns);
      r.max_rss_kb = rec.max_rss_kb;
      r.stdout_data = rec.stdout_data;
      r.stderr_data = rec.stderr_data;
      r.stdout_bytes = rec.stdout_data.size();
      r.stderr_bytes = rec.stderr_data.size();
      r.error = rec.error;
      r.attempts = rec.attempt;
      r.from_journal = true;
      ++counters.from_journal;
      finalize(id, std::move(r), act);
      return handle;
    }
    fault::JournalRecord rec;
    rec.type = fault::RecordType::Submitted;
    rec.name = name;
    rec.spec_digest = digest;
    journal_append(std::move(rec), false);
  }
  if (!failed_dep.empty()) {
    ExecutionResult r;
    r.status = Status::Skipped;
    r.error = "not run: dependency " + failed_dep + " did not succeed";
    finalize(id, std::move(r), act);
  } else if (node.pending == 0) {
    node.phase = Phase::Ready;
    ready[backend_index].push(node.task.priority(), id);
  }
  return handle;
}

void PoolState::dispatch(Actions& act) {
  for (std::size_t b = 0; b < kBackendCount; ++b) {
    auto& q = ready[b];
    while (!q.empty() && running[b] < limit[b]) {
      const TaskId id = q.pop();
      auto it = nodes.find(id);
      if (it == nodes.end() || it->second.phase != Phase::Ready) continue;  // cancelled
      Node& n = it->second;
      if (n.task.deadline().count() > 0 && Clock::now() >= n.submitted + n.task.deadline()) {
        ExecutionResult r;
        r.status = Status::TimedOut;
        r.error = "deadline of " +
                  std::to_string(std::chrono::duration<double>(n.task.deadline()).count()) +
                  " s passed before the task could start";
        finalize(id, std::move(r), act);
        continue;
      }
      ++n.attempts;
      if (!breakers[b]->allow()) {
        ExecutionResult r;
        r.status = Status::Rejected;
        r.error =
            "not started: the " + std::string(to_string(static_cast<Backend>(b))) +
            " backend's circuit breaker is open after " + std::to_string(breakers[b]->failures()) +
            " consecutive launch failures; it lets a probe through in " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(breakers[b]->retry_after())
                    .count()) +
            " ms";
        attempt_failed(id, std::move(r), act);
        continue;
      }
      n.phase = Phase::Running;
      n.stop.emplace();
      ++running[b];
      if (journal) {
        fault::JournalRecord rec;
        rec.type = fault::RecordType::Started;
        rec.name = n.task.name();
        rec.spec_digest = n.task.spec_digest();
        rec.attempt = n.attempts;
        journal_append(std::move(rec), false);
      }
      event(act, Event::Kind::Started, n, id);
      act.launches.push_back({executors[b], n.task, n.stop->get_token()});
    }
  }
}

void PoolState::attempt_failed(TaskId id, ExecutionResult r, Actions& act) {
  Node& n = nodes.at(id);
  r.attempts = n.attempts;
  if (!n.cancel_requested && accepting &&
      retry.should_retry(n.attempts, failure_of(r), n.task.max_retries())) {
    const auto delay = retry.backoff(n.attempts);
    if (n.task.deadline().count() > 0 && Clock::now() + delay >= n.submitted + n.task.deadline()) {
      r.error += "; not retried: the task's deadline would pass first";
      finalize(id, std::move(r), act);
      return;
    }
    n.phase = Phase::Delayed;
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
    if (journal && !r.from_journal) {
      fault::JournalRecord rec;
      rec.type = fault::RecordType::Finished;
      rec.name = r.name;
      rec.spec_digest = n.task.spec_digest();
      rec.attempt = r.attempts;
      rec.status = static_cast<std::uint8_t>(r.status);
      rec.exit_code = r.exit_code;
      rec.signal = r.signal;
      rec.wall_ns = r.wall.count();
      rec.cpu_ns = r.cpu.count();
      rec.max_rss_kb = r.max_rss_kb;
      rec.stdout_data = r.stdout_data;
      rec.stderr_data = r.stderr_data;
      rec.error = r.error;
      journal_append(std::move(rec), true);
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
        if (--dn.pending == 0 && dn.phase == Phase::Waiting) {
          dn.phase = Phase::Ready;
          ready[static_cast<std::size_t>(dn.task.backend())].push(dn.task.priority(), d);
        }
      } else if (dn.phase == Phase::Waiting) {
        ExecutionResult skip;
        skip.status = Status::Skipped;
        skip.error = "not run: dependency '" + name + "' did not succeed";
        work.emplace_back(d, std::move(skip));
      }
    }
  }
  if (nodes.empty() && events_in_flight == 0) idle_cv.notify_all();
}

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
    if (nodes.empty() && events_in_flight == 0) idle_cv.notify_all();
  }
  for (auto& s : act.stops) s.request_stop();
  for (auto& l : act.launches) {
    const TaskId id = l.task.id();
    const Backend backend = l.task.backend();
    auto started = l.exec->start(l.task, l.stop, [this, id, backend](ExecutionResult r) {
      on_complete(id, backend, std::move(r));
    });
    if (!started) {
      ExecutionResult r;
      r.status =
          started.error().code() == ErrorCode::Cancelled ? Status::Cancelled : Status::LaunchFailed;
      r.error = started.error().to_string();
      on_complete(id, backend, std::move(r));
    }
  }
}

void PoolState::on_complete(TaskId id, Backend backend, ExecutionResult r) {
  Actions act;
  {
    std::lock_guard lock(mu);
    const auto b = static_cast<std::size_t>(backend);
    --running[b];
    if (r.status == Status::LaunchFailed) {
      breakers[b]->record_failure();
    } else if (r.status != Status::Cancelled) {
      breakers[b]->record_success();
    }
    if (auto it = nodes.find(id); it != nodes.end()) {
      it->second.stop.reset();
      if (r.ok()) {
        r.attempts = it->second.attempts;
        finalize(id, std::move(r), act);
      } else {
        attempt_failed(id, std::move(r), act);
      }
    }
    dispatch(act);
  }
  perform(act);
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
      it->second.phase = Phase::Ready;
      ready[static_cast<std::size_t>(it->second.task.backend())].push(it->second.task.priority(),
                                                                      id);
    }
    dispatch(act);
    lock.unlock();
    perform(act);
    lock.lock();
  }
}

}  // namespace detail

// ---- TaskHandle ----

const ExecutionResult& TaskHandle::wait() const {
  std::unique_lock lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->result.has_value(); });
  return *state_->result;
}

bool TaskHandle::wait_for(std::chrono::nanoseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->result.has_value(); });
}

std::optional<ExecutionResult> TaskHandle::try_get() const {
  std::lock_guard lock(state_->mu);
  return state_->result;
}

// ---- Builder ----

Pool::Builder& Pool::Builder::cpu_workers(unsigned n) {
  cpu_workers_ = n;
  return *this;
}
Pool::Builder& Pool::Builder::process_slots(std::size_t n) {
  process_slots_ = n;
  return *this;
}
Pool::Builder& Pool::Builder::kill_grace(std::chrono::nanoseconds d) {
  kill_grace_ = d;
  return *this;
}
Pool::Builder& Pool::Builder::retry_policy(fault::RetryPolicy policy) {
  retry_ = std::move(policy);
  return *this;
}
Pool::Builder& Pool::Builder::circuit_breaker(fault::BreakerConfig config) {
  breaker_ = config;
  return *this;
}
Pool::Builder& Pool::Builder::journal(std::string path, bool resume) {
  journal_path_ = std::move(path);
  resume_ = resume;
  return *this;
}
Pool::Builder& Pool::Builder::executor(std::shared_ptr<executor::Executor> exec) {
  executors_.push_back(std::move(exec));
  return *this;
}
Pool::Builder& Pool::Builder::on_event(std::function<void(const Event&)> observer) {
  observer_ = std::move(observer);
  return *this;
}
Pool::Builder& Pool::Builder::retain_results(bool keep) {
  retain_ = keep;
  return *this;
}

Result<Pool> Pool::Builder::build() {
  auto s = std::make_unique<detail::PoolState>();
  s->retry = retry_;
  s->observer = observer_;
  s->retain = retain_;
  if (kill_grace_.count() < 0) {
    return fail(ErrorCode::InvalidArgument, "kill_grace must not be negative");
  }
  auto cpu = PEPITA_TRY(executor::CpuExecutor::create({.workers = cpu_workers_}));
  auto proc = PEPITA_TRY(
      executor::ProcessExecutor::create({.slots = process_slots_, .kill_grace = kill_grace_}));
  s->executors[static_cast<std::size_t>(Backend::Cpu)] = std::move(cpu);
  s->executors[static_cast<std::size_t>(Backend::Process)] = std::move(proc);
  for (auto& e : executors_) {
    if (!e) return fail(ErrorCode::InvalidArgument, "Pool::Builder::executor got a null executor");
    s->executors[static_cast<std::size_t>(e->backend())] = e;
  }
  for (std::size_t b = 0; b < kBackendCount; ++b) {
    if (!s->executors[b]) continue;
    // Function tasks are cheap to queue: keep a few per worker in the scheduler so workers
    // never idle between completions. Other backends get exactly their slots.
    const std::size_t slots = std::max<std::size_t>(s->executors[b]->slots(), 1);
    s->limit[b] = static_cast<Backend>(b) == Backend::Cpu ? slots * 4 : slots;
    s->breakers[b] = std::make_unique<fault::CircuitBreaker>(breaker_);
  }
  if (!journal_path_.empty()) {
    auto j = PEPITA_TRY(fault::Journal::open(
        journal_path_, resume_ ? fault::Journal::Mode::Resume : fault::Journal::Mode::Truncate));
    s->recovered = j->recovered().size();
    for (const auto& rec : j->recovered()) {
      if (rec.type != fault::RecordType::Finished) continue;
      if (rec.status == static_cast<std::uint8_t>(Status::Succeeded)) {
        s->replay[rec.name] = rec;
      } else {
        s->replay.erase(rec.name);  // a later failure supersedes an earlier success
      }
    }
    s->journal = std::move(j);
  }
  detail::PoolState* raw = s.get();
  try {
    s->timer = std::thread([raw] { raw->timer_loop(); });
  } catch (const std::system_error& e) {
    return fail(ErrorCode::ResourceExhausted,
                std::string("cannot start the pool timer thread: ") + e.what());
  }
  return Pool(std::move(s));
}

// ---- Pool ----

Pool::Pool(std::unique_ptr<detail::PoolState> state) noexcept : state_(std::move(state)) {}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&& other) noexcept {
  if (this != &other) {
    if (state_) shutdown(ShutdownMode::Immediate);
    state_ = std::move(other.state_);
  }
  return *this;
}
Pool::~Pool() {
  if (state_) shutdown(ShutdownMode::Immediate);
}

Result<TaskHandle> Pool::submit(Task task) {
  auto& s = *state_;
  detail::Actions act;
  TaskHandle handle{0, nullptr};
  {
    std::lock_guard lock(s.mu);
    if (!s.accepting) {
      return fail(ErrorCode::Cancelled,
                  "pool is shut down; task '" + task.name() + "' was not submitted");
    }
    for (TaskId dep : task.dependencies()) {
      if (!s.nodes.contains(dep) && !s.finished.contains(dep)) {
        return fail(ErrorCode::NotFound, "task '" + task.name() + "' depends on unknown task id " +
                                             std::to_string(dep) +
                                             "; submit dependencies first (or use submit_all)");
      }
    }
    handle = PEPITA_TRY(s.admit(std::move(task), act));
    s.dispatch(act);
  }
  s.perform(act);
  return handle;
}

Result<std::vector<TaskHandle>> Pool::submit_all(std::vector<Task> tasks) {
  auto& s = *state_;
  detail::Actions act;
  std::vector<TaskHandle> handles;
  {
    std::lock_guard lock(s.mu);
    if (!s.accepting) return fail(ErrorCode::Cancelled, "pool is shut down; batch not submitted");
    const auto order = PEPITA_TRY(task::topological_order(
        tasks, [&](TaskId id) { return s.nodes.contains(id) || s.finished.contains(id); }));
    for (const auto& t : tasks) {
      if (s.nodes.contains(t.id()) || s.finished.contains(t.id())) {
        return fail(ErrorCode::InvalidArgument, "task '" + t.name() + "' was already submitted");
      }
      if (!s.executors[static_cast<std::size_t>(t.backend())]) {
        return fail(ErrorCode::Unsupported, "task '" + t.name() + "' needs the " +
                                                std::string(to_string(t.backend())) +
                                                " backend, which this pool has no executor for");
      }
    }
    if (s.journal) {
      std::unordered_set<std::string> batch;
      for (const auto& t : tasks) {
        if (s.names.contains(t.name()) || !batch.insert(t.name()).second) {
          return fail(ErrorCode::InvalidArgument,
                      "task name '" + t.name() +
                          "' is used twice; with a journal every task needs a unique name");
        }
      }
    }
    std::unordered_map<TaskId, std::size_t> index;
    for (std::size_t i = 0; i < tasks.size(); ++i) index.emplace(tasks[i].id(), i);
    handles.assign(tasks.size(), TaskHandle(0, nullptr));
    for (TaskId id : order) {
      const std::size_t i = index.at(id);
      // Checked above, so admit cannot fail part-way through the batch.
      handles[i] = PEPITA_TRY(s.admit(std::move(tasks[i]), act));
    }
    if (s.retain) {
      // admit() retained them in dependency order; wait_all() reports submission order.
      s.retained.resize(s.retained.size() - handles.size(), TaskHandle(0, nullptr));
      s.retained.insert(s.retained.end(), handles.begin(), handles.end());
    }
    s.dispatch(act);
  }
  s.perform(act);
  return handles;
}

void Pool::wait_idle() {
  auto& s = *state_;
  std::unique_lock lock(s.mu);
  s.idle_cv.wait(lock, [&] { return s.nodes.empty() && s.events_in_flight == 0; });
}

std::vector<ExecutionResult> Pool::wait_all() {
  auto& s = *state_;
  std::vector<TaskHandle> handles;
  {
    std::unique_lock lock(s.mu);
    s.idle_cv.wait(lock, [&] { return s.nodes.empty() && s.events_in_flight == 0; });
    handles.swap(s.retained);
  }
  std::vector<ExecutionResult> results;
  results.reserve(handles.size());
  for (const auto& h : handles) results.push_back(h.wait());
  if (s.journal) {
    if (auto r = s.journal->sync(); !r) {
      std::lock_guard lock(s.mu);
      if (!s.journal_err) s.journal_err = r.error();
    }
  }
  return results;
}

bool Pool::cancel(TaskId id) {
  auto& s = *state_;
  detail::Actions act;
  bool found = false;
  {
    std::lock_guard lock(s.mu);
    auto it = s.nodes.find(id);
    if (it != s.nodes.end()) {
      found = true;
      auto& n = it->second;
      n.cancel_requested = true;
      if (n.phase == detail::Phase::Running) {
        if (n.stop) act.stops.push_back(*n.stop);
      } else {
        ExecutionResult r;
        r.status = Status::Cancelled;
        r.error = "cancelled before it ran";
        s.finalize(id, std::move(r), act);
        s.dispatch(act);
      }
    }
  }
  s.perform(act);
  return found;
}

void Pool::cancel_all() {
  auto& s = *state_;
  std::vector<TaskId> ids;
  {
    std::lock_guard lock(s.mu);
    ids.reserve(s.nodes.size());
    for (const auto& [id, n] : s.nodes) ids.push_back(id);
  }
  for (TaskId id : ids) cancel(id);
}

void Pool::shutdown(ShutdownMode mode) {
  auto& s = *state_;
  {
    std::lock_guard lock(s.mu);
    if (s.shut_down) return;
    s.accepting = false;
  }
  if (mode == ShutdownMode::Immediate) cancel_all();
  wait_idle();
  {
    std::lock_guard lock(s.mu);
    s.stopping_timer = true;
    s.shut_down = true;
  }
  s.timer_cv.notify_all();
  if (s.timer.joinable()) s.timer.join();
  for (auto& e : s.executors) {
    if (e) e->shutdown();
  }
  if (s.journal) {
    if (auto r = s.journal->sync(); !r) {
      std::lock_guard lock(s.mu);
      if (!s.journal_err) s.journal_err = r.error();
    }
  }
}

Stats Pool::stats() const {
  auto& s = *state_;
  std::vector<float> lat;
  Stats out;
  {
    std::lock_guard lock(s.mu);
    out = s.counters;
    for (std::size_t b = 0; b < kBackendCount; ++b) out.running += s.running[b];
    out.queued = s.nodes.size() - out.running;
    lat = s.latencies_ms;
  }
  auto pct = [&](double p) -> double {
    if (lat.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(lat.size() - 1));
    std::nth_element(lat.begin(), lat.begin() + static_cast<std::ptrdiff_t>(k), lat.end());
    return lat[k];
  };
  out.latency_p50_ms = pct(0.50);
  out.latency_p90_ms = pct(0.90);
  out.latency_p99_ms = pct(0.99);
  return out;
}

std::optional<Error> Pool::journal_error() const {
  std::lock_guard lock(state_->mu);
  return state_->journal_err;
}

std::size_t Pool::journal_recovered() const { return state_->recovered; }

}  // namespace pepita::pool
