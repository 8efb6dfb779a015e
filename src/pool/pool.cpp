// Pool's public face: the builder (creates the Cpu and Process executors, registers custom ones,
// opens the journal), submission with graph checks, waiting, cancellation, shutdown and stats.
// The state machine behind it is in state.cpp.
#include "pepita/pool/pool.hpp"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "detail/cache_executor.hpp"
#include "detail/state.hpp"
#include "pepita/executor/cpu.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/pool/log_files.hpp"
#include "pepita/task/graph.hpp"

namespace pepita::pool {

// ---- TaskHandle ----

namespace detail {
HandleSync& handle_sync(const void* handle) noexcept {
  constexpr std::size_t kStripes = 64;
  // Never destroyed: a pool thread may finish a task while the program exits.
  static HandleSync* const stripes = new HandleSync[kStripes];
  // SAFETY: only the address's bits pick a stripe; nothing is read through it.
  const auto a = reinterpret_cast<std::uintptr_t>(handle);
  return stripes[((a >> 4) ^ (a >> 10)) % kStripes];
}
}  // namespace detail

ExecutionResult TaskHandle::wait() const {
  auto& sync = state_->sync();
  std::unique_lock lock(sync.mu);
  sync.cv.wait(lock, [&] { return state_->result != nullptr; });
  return *state_->result;
}

TaskState TaskHandle::state() const noexcept {
  return state_->state.load(std::memory_order_acquire);
}

bool TaskHandle::wait_for(std::chrono::nanoseconds timeout) const {
  auto& sync = state_->sync();
  std::unique_lock lock(sync.mu);
  return sync.cv.wait_for(lock, timeout, [&] { return state_->result != nullptr; });
}

std::optional<ExecutionResult> TaskHandle::try_get() const {
  std::lock_guard lock(state_->sync().mu);
  if (!state_->result) return std::nullopt;
  return *state_->result;
}

// ---- Builder ----

Pool::Builder& Pool::Builder::cpu_workers(unsigned n) {
  config_.cpu_workers = n;
  return *this;
}
Pool::Builder& Pool::Builder::process_slots(std::size_t n) {
  config_.process_slots = n;
  return *this;
}
Pool::Builder& Pool::Builder::kill_grace(std::chrono::nanoseconds d) {
  config_.kill_grace = d;
  return *this;
}
Pool::Builder& Pool::Builder::retry_policy(fault::RetryPolicy policy) {
  config_.retry_policy = std::move(policy);
  return *this;
}
Pool::Builder& Pool::Builder::circuit_breaker(fault::BreakerConfig config) {
  config_.circuit_breaker = config;
  return *this;
}
Pool::Builder& Pool::Builder::journal(std::string path, bool resume) {
  config_.journal_path = std::move(path);
  config_.resume = resume;
  return *this;
}
Pool::Builder& Pool::Builder::journal_key(std::string path) {
  config_.journal_key_path = std::move(path);
  return *this;
}
Pool::Builder& Pool::Builder::log_dir(std::string dir) {
  config_.log_dir = std::move(dir);
  return *this;
}
Pool::Builder& Pool::Builder::executor(std::shared_ptr<executor::Executor> exec) {
  return executor(
      [exec = std::move(exec)]() -> Result<std::shared_ptr<executor::Executor>> { return exec; });
}
Pool::Builder& Pool::Builder::executor(ExecutorFactory make) {
  executors_.push_back(std::move(make));
  return *this;
}
Pool::Builder& Pool::Builder::on_event(std::function<void(const Event&)> observer) {
  observer_ = std::move(observer);
  return *this;
}
Pool::Builder& Pool::Builder::retain_results(bool keep) {
  config_.retain_results = keep;
  return *this;
}

// ---- issue 21: the crate's PoolBuilder settings ----

Pool::Builder& Pool::Builder::queue_capacity(std::size_t n) {
  config_.queue_capacity = n;
  return *this;
}
Pool::Builder& Pool::Builder::default_timeout(std::chrono::nanoseconds d) {
  config_.default_timeout = d;
  return *this;
}
Pool::Builder& Pool::Builder::registry(executor::Registry registry) {
  registry_ = std::move(registry);
  return *this;
}
Pool::Builder& Pool::Builder::enable_gpu(bool enable) {
  config_.enable_gpu = enable;
  return *this;
}
Pool::Builder& Pool::Builder::remote_workers(std::vector<std::string> addresses) {
  config_.remote_workers = std::move(addresses);
  return *this;
}
Pool::Builder& Pool::Builder::resources(task::Inventory inventory) {
  config_.resources = std::move(inventory);
  return *this;
}
Pool::Builder& Pool::Builder::reserve_after(std::chrono::nanoseconds wait) {
  config_.reserve_after = wait;
  return *this;
}
Pool::Builder& Pool::Builder::cache(std::string dir, StatPolicy stats) {
  config_.cache_dir = std::move(dir);
  config_.cache_stats = stats;
  return *this;
}
Pool::Builder& Pool::Builder::remote_options(executor::BackendOptions options) {
  remote_options_ = std::move(options);
  return *this;
}

namespace {

// enable_gpu / remote_workers: the backend's factory from the registry the program filled, or
// Unsupported saying how to get one there.
Result<std::shared_ptr<executor::Executor>> registered(
    const std::optional<executor::Registry>& registry, const Backend& backend,
    const executor::BackendOptions& options, std::string_view setting, std::string_view how) {
  if (!registry || !registry->contains(backend)) {
    return fail(ErrorCode::Unsupported,
                std::string(setting)
                    .append(" needs the ")
                    .append(backend.name())
                    .append(" backend, which is not registered: link ")
                    .append(how)
                    .append(" and pass the registry with Pool::Builder::registry()"));
  }
  return registry->create(backend, options);
}

}  // namespace

Result<Pool> Pool::Builder::build() {
  auto s = std::make_unique<detail::PoolState>();
  const PoolConfig& c = config_;
  s->config = c;
  s->retry = c.retry_policy;
  s->observer = observer_;
  s->retain = c.retain_results;
  if (c.kill_grace.count() < 0) {
    return fail(ErrorCode::InvalidArgument, "kill_grace must not be negative");
  }
  if (c.queue_capacity && *c.queue_capacity == 0) {
    return fail(ErrorCode::InvalidArgument,
                "queue_capacity must be at least 1 (leave it unset for an unbounded queue)");
  }
  if (c.reserve_after.count() < 0) {
    return fail(ErrorCode::InvalidArgument,
                "reserve_after must not be negative (0 means reserve at once)");
  }
  if (c.default_timeout && c.default_timeout->count() < 0) {
    return fail(ErrorCode::InvalidArgument,
                "default_timeout must not be negative (0 means no timeout)");
  }
  {
    scheduler::Scheduler::Options so;
    so.workers = c.cpu_workers;
    so.name = "pepita-cpu";
    s->cpu_sched = PEPITA_TRY(scheduler::Scheduler::create(std::move(so)));
  }
  s->functions = std::make_shared<detail::FunctionLane>();
  s->functions->sched = s->cpu_sched.get();
  std::shared_ptr<executor::Executor> cpu = PEPITA_TRY(executor::CpuExecutor::on(*s->cpu_sched));
  // Unless process_slots was set, cpu_workers bounds processes too (0: one per CPU either way).
  const std::size_t proc_slots = c.process_slots.value_or(c.cpu_workers);
  auto proc = PEPITA_TRY(
      executor::ProcessExecutor::create({.slots = proc_slots, .kill_grace = c.kill_grace}));
  // Later registrations replace earlier ones for the same backend name.
  std::vector<std::shared_ptr<executor::Executor>> execs{std::move(cpu), std::move(proc)};
  if (c.enable_gpu) {
    execs.push_back(
        PEPITA_TRY(registered(registry_, Backend::Gpu, {}, "enable_gpu(true)",
                              "pepita_gpu_executor, call gpu::register_gpu(registry)")));
  }
  if (!c.remote_workers.empty()) {
    executor::BackendOptions options = remote_options_;
    std::string joined;
    for (const auto& a : c.remote_workers) {
      if (a.empty() || a.find(',') != std::string::npos) {
        return fail(ErrorCode::InvalidArgument,
                    std::string("remote_workers: address '")
                        .append(a)
                        .append("' is not a host:port (empty or holds a comma)"));
      }
      if (!joined.empty()) joined.push_back(',');
      joined.append(a);
    }
    options.set("workers", std::move(joined));
    execs.push_back(
        PEPITA_TRY(registered(registry_, Backend::Remote, options, "remote_workers",
                              "pepita_transport, call transport::register_remote(registry)")));
  }
  for (auto& make : executors_) {
    auto e = make ? PEPITA_TRY(make()) : nullptr;
    if (!e) return fail(ErrorCode::InvalidArgument, "Pool::Builder::executor got a null executor");
    execs.push_back(std::move(e));
  }
  for (auto& e : execs) {
    const Backend backend = e->backend();
    auto [it, added] = s->lane_of.try_emplace(backend, static_cast<std::uint32_t>(s->lanes.size()));
    if (added) s->lanes.emplace_back().backend = backend;
    s->lanes[it->second].exec = std::move(e);
  }
  if (!c.cache_dir.empty()) {
    // Every lane that runs processes goes through the cache (functions have no files); a cache
    // that cannot open leaves the pool uncached, with the reason kept for cache_warning().
    if (auto cache = ResultCache::open(c.cache_dir, {.stats = c.cache_stats})) {
      s->cache = std::move(*cache);
      const unsigned threads = std::max(2u, std::thread::hardware_concurrency());
      for (auto& lane : s->lanes) {
        if (lane.backend == Backend::Cpu) continue;
        lane.exec = std::make_shared<detail::CachingExecutor>(lane.exec, s->cache, threads);
      }
    } else {
      s->cache_open_error = cache.error();
    }
  }
  for (auto& lane : s->lanes) {
    // Function tasks are cheap to queue: keep a few per worker in the scheduler so workers
    // never idle between completions. Other backends get exactly their slots.
    const std::size_t slots = std::max<std::size_t>(lane.exec->slots(), 1);
    lane.limit = lane.backend == Backend::Cpu ? slots * 4 : slots;
    lane.breaker = std::make_unique<fault::CircuitBreaker>(c.circuit_breaker);
    lane.ledger = !lane.exec->places_resources();
  }
  if (!c.log_dir.empty()) PEPITA_TRY_VOID(create_log_dir(c.log_dir));
  if (!c.journal_path.empty()) {
    std::optional<std::string> key;
    if (!c.journal_key_path.empty()) key = PEPITA_TRY(fault::load_journal_key(c.journal_key_path));
    auto j = PEPITA_TRY(fault::Journal::open(
        c.journal_path, c.resume ? fault::Journal::Mode::Resume : fault::Journal::Mode::Truncate,
        std::move(key)));
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
    release();
    state_ = std::move(other.state_);
  }
  return *this;
}
Pool::~Pool() { release(); }

void Pool::release() noexcept {
  if (!state_) return;
  shutdown(ShutdownMode::Immediate);
  std::shared_ptr<detail::FunctionLane> functions = state_->functions;
  state_.reset();  // the scheduler drains: cancelled groups' queued callables are destroyed unrun
  if (functions) functions->gone.store(true, std::memory_order_release);
}

Result<FunctionGroup> Pool::function_group() {
  if (!state_) {
    return fail(ErrorCode::InvalidArgument,
                "function_group() on a moved-from Pool; call it on the pool you moved to");
  }
  const std::shared_ptr<detail::FunctionLane>& lane = state_->functions;
  if (lane->closed.load(std::memory_order_acquire)) {
    return fail(ErrorCode::Cancelled,
                "function_group(): the pool is shut down; build a new pool to run functions");
  }
  auto g = std::make_unique<detail::FnGroupState>();
  g->lane = lane;
  g->sched = lane->sched;
  {
    std::lock_guard lock(lane->mu);
    g->next = lane->groups;
    if (g->next != nullptr) g->next->prev = g.get();
    lane->groups = g.get();
  }
  return FunctionGroup(std::move(g));
}

Result<TaskHandle> Pool::submit(Task task) { return submit_one(std::move(task), true); }

Result<TaskHandle> Pool::try_submit(Task task) { return submit_one(std::move(task), false); }

Result<TaskHandle> Pool::submit_one(Task task, bool block) {
  auto& s = *state_;
  detail::Actions act;
  TaskHandle handle{0, nullptr};
  {
    std::unique_lock lock(s.mu);
    if (block) {
      s.space_cv.wait(lock, [&] { return !s.accepting || s.has_room(1); });
    } else if (s.accepting && !s.has_room(1)) {
      return fail(ErrorCode::WouldBlock,
                  std::string("queue_capacity (")
                      .append(std::to_string(*s.config.queue_capacity))
                      .append(") tasks are pending; task '")
                      .append(task.name())
                      .append("' was not submitted: retry after one finishes, or use submit()"));
    }
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
    s.flush_journal(act);
  }
  s.perform(act);
  return handle;
}

Result<std::vector<TaskHandle>> Pool::submit_all(std::vector<Task> tasks) {
  auto& s = *state_;
  detail::Actions act;
  std::vector<TaskHandle> handles;
  {
    std::unique_lock lock(s.mu);
    if (s.config.queue_capacity && tasks.size() > *s.config.queue_capacity) {
      return fail(ErrorCode::InvalidArgument,
                  std::string("a batch of ")
                      .append(std::to_string(tasks.size()))
                      .append(" tasks cannot fit queue_capacity (")
                      .append(std::to_string(*s.config.queue_capacity))
                      .append("); submit it in parts or raise queue_capacity"));
    }
    s.space_cv.wait(lock, [&] { return !s.accepting || s.has_room(tasks.size()); });
    if (!s.accepting) return fail(ErrorCode::Cancelled, "pool is shut down; batch not submitted");
    const auto order = PEPITA_TRY(task::topological_order(
        tasks, [&](TaskId id) { return s.nodes.contains(id) || s.finished.contains(id); }));
    for (const auto& t : tasks) {
      if (s.nodes.contains(t.id()) || s.finished.contains(t.id())) {
        return fail(ErrorCode::InvalidArgument, "task '" + t.name() + "' was already submitted");
      }
      auto routed = s.route(t);
      if (!routed) return std::unexpected(std::move(routed).error());
      if (auto fits = s.check_fits(t, *routed); !fits) return std::unexpected(fits.error());
    }
    if (s.journal) {
      // Views of the batch's own names (issue 27: not a copy of a million names).
      std::unordered_set<std::string_view> batch;
      batch.reserve(tasks.size());
      for (const auto& t : tasks) {
        if (s.names.contains(t.name()) || !batch.insert(t.name()).second) {
          return fail(ErrorCode::InvalidArgument,
                      "task name '" + t.name() +
                          "' is used twice; with a journal every task needs a unique name");
        }
      }
    }
    // Issue 27: a batch already in dependency order (a job file's tasks without dependencies)
    // is admitted by position, with no map of a million ids.
    bool in_order = order.size() == tasks.size();
    for (std::size_t i = 0; in_order && i < tasks.size(); ++i) in_order = order[i] == tasks[i].id();
    std::unordered_map<TaskId, std::size_t> index;
    if (!in_order) {
      for (std::size_t i = 0; i < tasks.size(); ++i) index.emplace(tasks[i].id(), i);
    }
    handles.assign(tasks.size(), TaskHandle(0, nullptr));
    for (std::size_t k = 0; k < order.size(); ++k) {
      const std::size_t i = in_order ? k : index.at(order[k]);
      // Checked above, so admit cannot fail part-way through the batch.
      handles[i] = PEPITA_TRY(s.admit(std::move(tasks[i]), act));
    }
    if (s.retain) {
      // admit() retained them in dependency order; wait_all() reports submission order.
      s.retained.resize(s.retained.size() - handles.size(), TaskHandle(0, nullptr));
      s.retained.insert(s.retained.end(), handles.begin(), handles.end());
    }
    s.dispatch(act);
    s.flush_journal(act);
  }
  s.perform(act);
  return handles;
}

void Pool::wait_idle() {
  auto& s = *state_;
  std::unique_lock lock(s.mu);
  s.idle_cv.wait(lock, [&] { return s.idle(); });
}

std::vector<ExecutionResult> Pool::wait_all() {
  auto& s = *state_;
  std::vector<TaskHandle> handles;
  {
    std::unique_lock lock(s.mu);
    s.idle_cv.wait(lock, [&] { return s.idle(); });
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
    s.flush_journal(act);
  }
  s.perform(act);
  return found;
}

void Pool::cancel_all() {
  // One pass under the lock, and no dispatch: cancelling one queued task must not start another
  // in the slot it leaves (one cancel() per id did), and a task cannot slip between the snapshot
  // and its cancel.
  auto& s = *state_;
  if (s.functions) s.functions->cancel_all();
  detail::Actions act;
  {
    std::lock_guard lock(s.mu);
    std::vector<TaskId> queued;
    for (auto& [id, n] : s.nodes) {
      n.cancel_requested = true;
      if (n.phase == detail::Phase::Running) {
        if (n.stop) act.stops.push_back(*n.stop);
      } else {
        queued.push_back(id);
      }
    }
    for (TaskId id : queued) {
      if (!s.nodes.contains(id)) continue;  // already skipped: a dependency was cancelled
      ExecutionResult r;
      r.status = Status::Cancelled;
      r.error = "cancelled before it ran";
      s.finalize(id, std::move(r), act);
    }
    s.flush_journal(act);
  }
  s.perform(act);
}

void Pool::shutdown(ShutdownMode mode) {
  auto& s = *state_;
  {
    std::lock_guard lock(s.mu);
    if (s.shut_down) return;
    s.accepting = false;
  }
  s.space_cv.notify_all();  // submitters blocked on queue_capacity return Cancelled
  if (s.functions) s.functions->closed.store(true, std::memory_order_release);
  if (mode == ShutdownMode::Immediate) cancel_all();
  wait_idle();
  {
    std::lock_guard lock(s.mu);
    s.stopping_timer = true;
    s.shut_down = true;
  }
  s.timer_cv.notify_all();
  if (s.timer.joinable()) s.timer.join();
  for (auto& lane : s.lanes) lane.exec->shutdown();
  if (s.journal) {
    if (auto r = s.journal->sync(); !r) {
      std::lock_guard lock(s.mu);
      if (!s.journal_err) s.journal_err = r.error();
    }
  }
}

std::vector<std::string> Pool::unfinished(std::size_t limit) const {
  auto& s = *state_;
  std::vector<std::string> running, queued;
  std::lock_guard lock(s.mu);
  for (const auto& [id, n] : s.nodes) {
    auto& to = n.phase == detail::Phase::Running ? running : queued;
    if (running.size() + queued.size() < limit) to.push_back(n.task.name());
  }
  std::sort(running.begin(), running.end());
  std::sort(queued.begin(), queued.end());
  running.insert(running.end(), queued.begin(), queued.end());
  return running;
}

void Pool::abandon() noexcept {
  auto& s = *state_;
  for (auto& lane : s.lanes) lane.exec->abandon();
  // Not under mu: a thread stuck holding it must not stop the journal reaching the disk.
  if (s.journal) (void)s.journal->sync();
}

Stats Pool::stats() const {
  auto& s = *state_;
  std::vector<float> lat;
  Stats out;
  {
    std::lock_guard lock(s.mu);
    out = s.counters;
    for (const auto& lane : s.lanes) out.running += lane.running;
    out.queued = s.nodes.size() - out.running;
    if (s.functions) {
      std::uint64_t fn_sub = 0;
      s.functions->add_counts(fn_sub, out.done, out.succeeded, out.failed);
      out.submitted += fn_sub;
      out.functions = fn_sub;
    }
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

std::optional<Error> Pool::cache_warning() const {
  if (state_->cache_open_error) return state_->cache_open_error;
  if (state_->cache) return state_->cache->warning();
  return std::nullopt;
}

std::vector<std::string> Pool::cache_notices() const {
  return state_->cache ? state_->cache->notices() : std::vector<std::string>{};
}

// ---- issue 21: the crate's submission and introspection ----

Result<ExecutionResult> Pool::run(Task task) {
  const TaskHandle handle = PEPITA_TRY(submit(std::move(task)));
  return handle.wait();
}

std::size_t Pool::num_workers() const {
  std::size_t n = 0;
  for (const auto& lane : state_->lanes) n += lane.exec->slots();
  return n;
}

std::size_t Pool::pending_tasks() const {
  std::lock_guard lock(state_->mu);
  return state_->nodes.size();
}

bool Pool::is_running() const {
  std::lock_guard lock(state_->mu);
  return state_->accepting;
}

std::vector<WorkerLoad> Pool::worker_loads() const {
  auto& s = *state_;
  std::vector<WorkerLoad> out;
  out.reserve(s.lanes.size());
  std::lock_guard lock(s.mu);
  for (const auto& lane : s.lanes) {
    out.push_back({lane.backend, lane.running, lane.exec->slots(), lane.ready.size()});
  }
  return out;
}

const PoolConfig& Pool::config() const { return state_->config; }

}  // namespace pepita::pool
