#pragma once
// TaskGroup: fork-join over the work-stealing Scheduler, shaped like oneTBB's task_group. Tasks
// run in any order on any worker; wait() returns when all have finished, running other queued
// tasks meanwhile (a waiting worker never blocks while work is pending, so nested waits cannot
// deadlock). The first failure (an exception or a returned Error) cancels the group and is what
// wait() reports.
//
//   pepita::scheduler::TaskGroup g;                 // on Scheduler::default_instance()
//   g.run([&] { a = left(); });
//   g.run([&] { b = right(); });
//   if (auto r = g.wait(); !r) log(r.error().to_string());

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task.hpp"

namespace pepita::scheduler {

namespace detail {
template <typename T>
struct IsResult : std::false_type {};
template <typename T>
struct IsResult<std::expected<T, Error>> : std::true_type {};

/// Error that wait() reports for an exception: the code follows the exception type
/// (bad_alloc → ResourceExhausted, invalid_argument → InvalidArgument, system_error → its errno,
/// anything else → Internal) and the message quotes what().
Error error_from_exception(const std::exception_ptr& error);
}  // namespace detail

class TaskGroup {
 public:
  /// A group on `sched`, which must outlive the group.
  explicit TaskGroup(Scheduler& sched = Scheduler::default_instance()) noexcept : sched_(&sched) {}

  /// Waits for tasks still running (discarding their error: call wait() to see it).
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  /// Queues `fn` (returning void or Result<...>) to run on the scheduler. Callable from any
  /// thread, including from tasks of this group. If the group is cancelled when the task is
  /// picked up, `fn` is destroyed without running.
  template <typename F>
  void run(F&& fn);

  /// Runs `fn` on the calling thread (with the same error capture as run()), then wait()s.
  template <typename F>
  Result<void> run_and_wait(F&& fn);

  /// Blocks until every task run() so far has finished, executing queued tasks meanwhile when
  /// called on a worker. Returns the first failure: the Error a task returned, an Error made from
  /// a task's exception (see exception()), or Cancelled when cancel() was called. Afterwards the
  /// group is reset (not cancelled, no error) and may be reused. Only one thread may wait on a
  /// group at a time, and never from one of the group's own tasks (it would wait for itself).
  Result<void> wait();

  /// Tasks not yet started are skipped; running tasks finish (they may poll is_cancelled()).
  void cancel() noexcept;
  bool is_cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

  /// The exception behind the failure wait() last reported, if it was an exception (to rethrow
  /// it with its original type); null otherwise.
  std::exception_ptr exception() const noexcept { return last_exception_; }

  Scheduler& scheduler() const noexcept { return *sched_; }

  // ---- internal, used by the task wrapper ----
  void record_failure(Error error, std::exception_ptr exception) noexcept;
  void finish_one() noexcept {
    Scheduler* s = sched_;  // read before the decrement: afterwards *this may be gone
    // Only the last task of a group whose waiter may be asleep goes to the waiter list.
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == (kWaiterBit | 1)) {
      s->notify_waiters(this);
    }
  }
  template <typename F>
  void invoke_captured(F& fn) noexcept;

 private:
  // pending_ = tasks not finished, plus kWaiterBit while wait() may park: set and tested with
  // RMWs on the same word, so either the last finisher sees the bit or the waiter sees 0.
  static constexpr std::int64_t kWaiterBit = std::int64_t{1} << 62;
  Scheduler* sched_;
  std::atomic<std::int64_t> pending_{0};
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> failed_{false};  // first failure claims the slot below
  std::optional<Error> error_;
  std::exception_ptr exception_;
  std::exception_ptr last_exception_;
};

namespace detail {

template <typename F>
struct GroupTask final : TaskBase {
  template <typename G>
  GroupTask(TaskGroup* g, G&& f) : TaskBase{&run}, group(g), fn(std::forward<G>(f)) {}

  static void run(TaskBase* base) noexcept {
    auto* self = static_cast<GroupTask*>(base);
    TaskGroup* g = self->group;
    if (!g->is_cancelled()) g->invoke_captured(self->fn);
    destroy_task(self);  // captures die before the waiter can return
    g->finish_one();
  }

  TaskGroup* group;
  F fn;
};

}  // namespace detail

template <typename F>
void TaskGroup::invoke_captured(F& fn) noexcept {
  try {
    using R = std::invoke_result_t<F&>;
    if constexpr (detail::IsResult<R>::value) {
      R r = std::invoke(fn);
      if (!r) record_failure(std::move(r).error(), nullptr);
    } else {
      std::invoke(fn);
    }
  } catch (...) {
    std::exception_ptr e = std::current_exception();
    try {
      record_failure(detail::error_from_exception(e), e);
    } catch (...) {
      // No memory to describe the failure: report it without a message (no allocation).
      record_failure(Error(ErrorCode::ResourceExhausted, std::string()), e);
    }
  }
}

template <typename F>
void TaskGroup::run(F&& fn) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_invocable_v<Fn&>, "TaskGroup::run needs a callable taking no arguments");
  pending_.fetch_add(1, std::memory_order_relaxed);  // published to waiters by the spawn
  sched_->spawn(detail::make_task<detail::GroupTask<Fn>>(this, std::forward<F>(fn)));
}

template <typename F>
Result<void> TaskGroup::run_and_wait(F&& fn) {
  if (!is_cancelled()) invoke_captured(fn);
  return wait();
}

}  // namespace pepita::scheduler
