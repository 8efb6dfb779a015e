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
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pepita/executor/executor.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {

using Clock = std::chrono::steady_clock;
using task::Backend;

namespace detail {

struct HandleState {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ExecutionResult> result;
  // Written under PoolState::mu as the task moves; read by TaskHandle::state() without it.
  std::atomic<task::TaskState> state{task::TaskState::Pending};

  void set(ExecutionResult r) {
    {
      std::lock_guard lock(mu);
      state.store(r.state(), std::memory_order_release);
      result = std::move(r);
    }
    cv.notify_all();
  }
  void moved_to(task::TaskState s) { state.store(s, std::memory_order_release); }
};

enum class Phase : std::uint8_t { Waiting, Ready, Delayed, Running };

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
  std::optional<std::stop_source> stop;  // of the running attempt
};

// Ready tasks of one backend: highest priority first, FIFO within a priority. A FIFO per level
// (not one heap) keeps push/pop O(1) for the common single-priority batch of millions.
class ReadyQueue {
 public:
  void push(std::int32_t priority, TaskId id) {
    levels_[priority].push_back(id);
    ++size_;
  }
  bool empty() const { return levels_.empty(); }
  std::size_t size() const { return size_; }
  TaskId pop() {
    --size_;
    auto it = levels_.begin();
    const TaskId id = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) levels_.erase(it);
    return id;
  }

 private:
  std::map<std::int32_t, std::deque<TaskId>, std::greater<>> levels_;
  std::size_t size_ = 0;
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

inline constexpr std::size_t kReservoir = 1 << 16;

// One backend's executor and state. The set of lanes is fixed at build(); the executor, limit
// and breaker pointer are configuration, `ready` and `running` are guarded by PoolState::mu.
struct Lane {
  Backend backend = Backend::Process;
  std::shared_ptr<executor::Executor> exec;
  std::size_t limit = 0;
  std::unique_ptr<fault::CircuitBreaker> breaker;
  ReadyQueue ready;
  std::size_t running = 0;
};

struct PoolState {
  // Configuration, fixed after build().
  PoolConfig config;
  fault::RetryPolicy retry;
  std::vector<Lane> lanes;                             // one per backend with an executor
  std::unordered_map<Backend, std::uint32_t> lane_of;  // backend name -> index into lanes
  std::unique_ptr<fault::Journal> journal;
  std::unordered_map<std::string, fault::JournalRecord> replay;  // name -> Succeeded record
  std::size_t recovered = 0;
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
  bool has_room(std::size_t n) const {
    return !config.queue_capacity || nodes.size() + n <= *config.queue_capacity;
  }

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
  void on_complete(TaskId id, std::uint32_t lane, ExecutionResult r);
  void timer_loop();
};

}  // namespace detail
}  // namespace pepita::pool
