#pragma once
// Private to the pool module: the pool's shared state (task graph, per-backend ready queues,
// retry-delay heap, counters) and the state-machine steps state.cpp implements. One mutex (`mu`)
// guards it; work that must not run under it is collected in Actions and done by perform().

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pepita/core/sha256.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/pool/cache.hpp"
#include "pepita/pool/function_group.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/scheduler/scheduler.hpp"

namespace pepita::pool {

using Clock = std::chrono::steady_clock;
using task::Backend;

namespace detail {

// Issue 27: the handles' waits share a few mutex + condition-variable pairs, picked by the
// handle's address, instead of one pair per task (88 bytes each, a million of them after a
// submit_all). A wake-up for another handle of the stripe is spurious for the rest: each waiter
// re-checks its own result.
struct HandleSync {
  std::mutex mu;
  std::condition_variable cv;
};
HandleSync& handle_sync(const void* handle) noexcept;  // pool.cpp

struct HandleState {
  // Guarded by sync().mu. Boxed (issue 27), so the handle of a task not yet finished costs a
  // pointer, not an empty ExecutionResult's ~620 bytes.
  std::unique_ptr<ExecutionResult> result;
  // Written under PoolState::mu as the task moves; read by TaskHandle::state() without it.
  std::atomic<task::TaskState> state{task::TaskState::Pending};

  HandleSync& sync() const noexcept { return handle_sync(this); }
  void set(ExecutionResult r) {
    auto boxed = std::make_unique<ExecutionResult>(std::move(r));
    HandleSync& s = sync();
    {
      std::lock_guard lock(s.mu);
      state.store(boxed->state(), std::memory_order_release);
      result = std::move(boxed);
    }
    s.cv.notify_all();
  }
  void moved_to(task::TaskState s) { state.store(s, std::memory_order_release); }
};

enum class Phase : std::uint8_t { Waiting, Ready, Delayed, Running };

// Issue 27: a spec digest (Task::spec_digest, 64 hex digits) kept as its 32 bytes in the node,
// not as a string on the heap per task; hex() gives the journal's spelling back.
class SpecDigest {
 public:
  SpecDigest() = default;
  explicit SpecDigest(std::string_view hex) {
    const auto nibble = [](char c) -> std::uint8_t {
      return static_cast<std::uint8_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    };
    for (std::size_t i = 0; i < bytes_.size() && 2 * i + 1 < hex.size(); ++i) {
      bytes_[i] = static_cast<std::byte>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
    }
  }
  std::string hex() const { return to_hex(bytes_); }

 private:
  Sha256Digest bytes_{};
};

struct Node {
  explicit Node(Task t) : task(std::move(t)) {}
  Task task;
  std::shared_ptr<HandleState> handle;
  std::vector<TaskId> dependents;
  std::uint32_t pending = 0;
  std::uint32_t attempts = 0;
  std::uint32_t lane = 0;  // index into PoolState::lanes of the task's backend
  Phase phase = Phase::Waiting;
  bool cancel_requested = false;
  std::uint64_t seq = 0;
  Clock::time_point submitted;
  SpecDigest digest;  // task.spec_digest() once at submit when journalled, for every record
  std::optional<std::stop_source> stop;  // of the running attempt
  // Issue 22: the request goes through the host Ledger (non-empty, on a lane that does not
  // place resources itself), and what the running attempt was given (boxed, issue 27: most
  // tasks have none, and an empty Allocation is 128 bytes a node).
  bool placed = false;
  std::unique_ptr<task::Allocation> allocation;
};

// Ready tasks of one backend: highest priority first, FIFO within a priority. A FIFO per level
// (not one heap) keeps push/pop O(1) for the common single-priority batch of millions. An entry
// whose task has a resource request the host Ledger must place carries kPlaced; while the queue
// holds none, dispatch pops as before, otherwise it scans (see PoolState::dispatch).
class ReadyQueue {
 public:
  // Task ids count up from 1 and never reach bit 63, so it can mark "placed by the Ledger".
  static constexpr TaskId kPlaced = TaskId{1} << 63;
  enum class Visit : std::uint8_t { Take, Keep };

  void push(std::int32_t priority, TaskId id, bool placed = false) {
    levels_[priority].push_back(placed ? (id | kPlaced) : id);
    ++size_;
    placed_ += placed ? 1 : 0;
  }
  bool empty() const { return levels_.empty(); }
  std::size_t size() const { return size_; }
  // Entries whose task the Ledger places (stale ones included until they are dropped).
  std::size_t placed() const { return placed_; }
  TaskId pop() {
    --size_;
    auto it = levels_.begin();
    const TaskId entry = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) levels_.erase(it);
    if (entry & kPlaced) --placed_;
    return entry & ~kPlaced;
  }
  // Offers entries in queue order to `visit(id)`: Take removes the entry, Keep leaves it in
  // place. Stops when `more()` turns false, after `keep_limit` entries were kept, or after
  // `miss_run` kept in a row (the lookahead that bounds a dispatch's cost when the head cannot
  // start: far enough for small tasks to backfill, not a walk over a queue where nothing fits).
  template <typename More, typename Fn>
  void scan(std::size_t keep_limit, std::size_t miss_run, More&& more, Fn&& visit) {
    std::size_t kept = 0, run = 0;
    for (auto level = levels_.begin(); level != levels_.end() && kept < keep_limit;) {
      auto& fifo = level->second;
      std::size_t i = 0;
      while (i < fifo.size() && kept < keep_limit && more()) {
        const TaskId entry = fifo[i];
        if (visit(entry & ~kPlaced) == Visit::Take) {
          fifo.erase(fifo.begin() + static_cast<std::ptrdiff_t>(i));
          --size_;
          if (entry & kPlaced) --placed_;
          run = 0;
        } else {
          ++i;
          ++kept;
          if (++run == miss_run) kept = keep_limit;
        }
      }
      if (!more()) kept = keep_limit;
      level = fifo.empty() ? levels_.erase(level) : std::next(level);
    }
  }

 private:
  std::map<std::int32_t, std::deque<TaskId>, std::greater<>> levels_;
  std::size_t size_ = 0;
  std::size_t placed_ = 0;
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
  std::uint32_t lane = 0;
  std::uint32_t attempt = 0;  // for the live-log header (issue 24)
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
  bool journal_flush = false;   // records were staged: flush_journal() writes them
  bool journal_commit = false;  // ... and one of them asks for a group commit (a Finished one)
};

inline constexpr std::size_t kReservoir = 1 << 16;

// One backend's executor and state. The set of lanes is fixed at build(); the executor, limit
// and breaker pointer are configuration, `ready` and `running` are guarded by PoolState::mu.
struct Lane {
  Backend backend = Backend::Process;
  std::shared_ptr<executor::Executor> exec;
  std::size_t limit = 0;
  std::unique_ptr<fault::CircuitBreaker> breaker;
  bool ledger = false;  // its attempts run on this host: requests go through the host Ledger
  ReadyQueue ready;
  std::size_t running = 0;
};

struct PoolState {
  // Configuration, fixed after build().
  PoolConfig config;
  fault::RetryPolicy retry;
  // The cpu workers: the Cpu lane's executor and the function groups run on it. Declared before
  // `lanes`, so it is destroyed (drained, joined) after the executor that submits to it.
  std::unique_ptr<scheduler::Scheduler> cpu_sched;
  std::shared_ptr<FunctionLane> functions;             // issue 27: Pool::function_group
  std::vector<Lane> lanes;                             // one per backend with an executor
  std::unordered_map<Backend, std::uint32_t> lane_of;  // backend name -> index into lanes
  std::unique_ptr<fault::Journal> journal;
  std::unordered_map<std::string, fault::JournalRecord> replay;  // name -> Succeeded record
  std::size_t recovered = 0;
  std::shared_ptr<ResultCache> cache;     // issue 24; null without Builder::cache
  std::optional<Error> cache_open_error;  // why the asked-for cache is off
  std::function<void(const Event&)> observer;
  bool retain = true;

  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::condition_variable space_cv;  // nodes shrank (queue_capacity) or the pool stopped accepting
  std::condition_variable timer_cv;
  std::unordered_map<TaskId, Node> nodes;
  std::unordered_map<TaskId, bool> finished;  // id -> succeeded
  std::unordered_set<std::string> names;      // enforced unique only with a journal
  std::priority_queue<DelayItem, std::vector<DelayItem>, std::greater<>> delayed;
  std::vector<TaskHandle> retained;
  std::uint64_t next_seq = 0;
  std::size_t events_in_flight = 0;  // queued for the observer, not yet delivered
  // Issue 27: completion batches (executor::CompletionBatch) this pool put work off to that
  // have not run it yet; the pool is not idle before they have.
  std::size_t batches_open = 0;
  bool accepting = true;
  bool stopping_timer = false;
  bool shut_down = false;
  Stats counters;
  std::vector<float> latencies_ms;
  std::uint64_t latency_seen = 0;
  std::mt19937_64 rng{0x9e3779b97f4a7c15ULL};
  std::optional<Error> journal_err;
  // Issue 22: this host's resources, shared by every lane with `ledger` (created at the first
  // request, from config.resources or Inventory::detect()), and the reserving task: the
  // highest-ordered ready task that did not fit, which holds back every later task that
  // competes with it for what it is short of (0: none).
  std::optional<task::Ledger> ledger;
  TaskId reserver = 0;
  Clock::time_point reserver_since{};  // when `reserver` first did not fit

  std::mutex event_mu;  // serialises observer calls
  std::thread timer;

  // The lane of `backend`, or nullptr when no executor serves it. Fixed after build(), so it
  // needs no lock.
  const Lane* lane_for(const Backend& backend) const {
    auto it = lane_of.find(backend);
    return it == lane_of.end() ? nullptr : &lanes[it->second];
  }

  // The lane that runs `task`: its backend's, except that a binary on cpu runs on process and
  // Backend::Any picks by kind — a function: cpu; a binary: process; any other kind (a shader):
  // gpu. Unsupported naming the task, its kind and the candidates when none is registered.
  // Fixed after build(), so it needs no lock.
  Result<std::uint32_t> route(const Task& task) const;
  // Room for `n` more tasks under queue_capacity.
  // Under mu: nothing left to run, report or write.
  bool idle() const { return nodes.empty() && events_in_flight == 0 && batches_open == 0; }
  bool has_room(std::size_t n) const {
    return !config.queue_capacity || nodes.size() + n <= *config.queue_capacity;
  }

  // ---- under mu ----
  Result<TaskHandle> admit(Task task, Actions& act);
  // Issue 22: whether `task`'s request could ever run on lane `lane` (the host Inventory's or
  // the executor's can_ever_fit); creates the Ledger at the first request.
  Result<void> check_fits(const Task& task, std::uint32_t lane);
  void make_ready(Node& n, TaskId id);
  void dispatch(Actions& act);
  // Writes the journal records this section staged (one write(2)); before `mu` is released, so
  // whoever sees the pool's state after it also finds them in the journal file.
  void flush_journal(Actions& act);
  // Deadline check: false (and the task finalized) when it passed before the task could start.
  bool may_start(Node& n, TaskId id, Actions& act);
  void start_attempt(Lane& lane, Node& n, TaskId id, std::optional<task::Allocation> alloc,
                     Actions& act);
  ReadyQueue::Visit offer(Lane& lane, TaskId id, Actions& act);
  void attempt_failed(TaskId id, ExecutionResult r, Actions& act);
  void finalize(TaskId id, ExecutionResult r, Actions& act);
  // Stages `rec` in the journal; perform(act) writes it (and asks for a group commit when
  // `commit`).
  void journal_append(fault::JournalRecord rec, bool commit, Actions& act);
  void event(Actions& act, Event::Kind kind, const Node& n, TaskId id,
             const ExecutionResult* r = nullptr, std::chrono::nanoseconds delay = {});
  TaskHandle make_handle(TaskId id, std::shared_ptr<HandleState> s) { return {id, std::move(s)}; }

  // ---- without mu ----
  void perform(Actions& act);
  void on_complete(TaskId id, std::uint32_t lane, ExecutionResult r);
  // The end of a completion batch on_complete() joined: flushes its journal records, performs
  // its actions.
  void finish_batch(Actions& act) noexcept;
  void timer_loop();
};

}  // namespace detail
}  // namespace pepita::pool
