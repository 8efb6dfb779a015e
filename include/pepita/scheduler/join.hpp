#pragma once
// join(a, b): two-way fork-join with the work-first, stack-allocated frame of Cilk-5's THE
// protocol (Frigo, Leiserson, Randall, "The Implementation of the Cilk-5 Multithreaded Language",
// PLDI 1998) as Rayon's join and libfork ("libfork: portable continuation-stealing with stackless
// coroutines", Williams & Elliott 2023) use it: `a`'s frame lives on the caller's stack (no heap
// allocation, no task block, no shared counter), is pushed on the worker's Chase–Lev deque, `b`
// runs inline, and the frame is popped back and run inline unless a thief took it. Only a stolen
// frame pays for synchronisation (one exchange on its state word, plus a wake-up if its owner
// sleeps); an unstolen spawn costs a push and a pop. On top of that, lazy task creation (Mohr,
// Kranz, Halstead, "Lazy Task Creation", IEEE TPDS 1991) in its work-requesting form (Tascell,
// Hiraishi et al., PPoPP 2009; Acar et al.'s heartbeat scheduling, PLDI 2018): a join pushes a
// frame only when a worker is looking for work or it is one of the Scheduler::kEagerJoinDepth
// outermost joins on its thread; otherwise it runs `a` then `b` as the serial program would, at
// the cost of a thread-local read and one relaxed load.
//
//   std::uint64_t fib(Scheduler& s, int n) {
//     if (n < 2) return n;
//     std::uint64_t x = 0, y = 0;
//     (void)join(s, [&] { x = fib(s, n - 1); }, [&] { y = fib(s, n - 2); });
//     return x + y;
//   }

#include <atomic>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task.hpp"
#include "pepita/scheduler/task_group.hpp"

namespace pepita::scheduler {

namespace detail {

/// Runs `fn` (returning void or Result<...>) and stores its failure, if any, in `out`: a returned
/// Error as is, an exception as error_from_exception() describes it. Never throws.
template <typename F>
[[gnu::always_inline]] inline void run_capturing(F& fn, std::optional<Error>& out) noexcept {
  try {
    using R = std::invoke_result_t<F&>;
    if constexpr (IsResult<R>::value) {
      R r = std::invoke(fn);
      if (!r) out.emplace(std::move(r).error());
    } else {
      std::invoke(fn);
    }
  } catch (...) {
    try {
      out.emplace(error_from_exception(std::current_exception()));
    } catch (...) {
      // No memory to describe the failure: report it without a message (no allocation).
      out.emplace(ErrorCode::ResourceExhausted, std::string());
    }
  }
}

/// Runs `fn`, storing an escaping exception in `thrown`. Returns what a Result-returning `fn`
/// returned (empty when it threw), or a placeholder for a void one.
struct NoResult {};
template <typename F>
[[gnu::always_inline]] inline auto call_catching(F& fn, std::exception_ptr& thrown) noexcept {
  using R = std::invoke_result_t<F&>;
  if constexpr (IsResult<R>::value) {
    std::optional<R> r;
    try {
      r.emplace(std::invoke(fn));
    } catch (...) {
      thrown = std::current_exception();
    }
    return r;
  } else {
    try {
      std::invoke(fn);
    } catch (...) {
      thrown = std::current_exception();
    }
    return NoResult{};
  }
}
inline std::optional<Error> failure_of(NoResult) noexcept { return std::nullopt; }
template <typename R>
std::optional<Error> failure_of(std::optional<R>& r) noexcept {
  if (r && !*r) return std::move(*r).error();
  return std::nullopt;
}
/// error_from_exception() that cannot throw (no memory for the message: an empty one).
inline Error describe_exception(const std::exception_ptr& e) noexcept {
  try {
    return error_from_exception(e);
  } catch (...) {
    return Error(ErrorCode::ResourceExhausted, std::string());
  }
}

/// Joins in progress on this thread that pushed a frame (the nesting depth join() checks against
/// Scheduler::kEagerJoinDepth). A thief resets it while it runs a stolen frame, so every stolen
/// piece makes its own outermost joins stealable.
inline thread_local unsigned tls_join_depth = 0;

/// The frame of join()'s first callable: lives on the joining thread's stack until join returns.
template <typename F>
struct JoinFrame final : TaskBase {
  static constexpr unsigned kDone = 1;    // the callable ran (by a thief)
  static constexpr unsigned kWaiter = 2;  // the owner may park: the finisher must notify

  JoinFrame(Scheduler* s, F* f) noexcept : TaskBase{&run_stolen}, sched(s), fn(f) {}

  /// Executed by whoever took the frame from the deque other than its owner's pop_local_until.
  static void run_stolen(TaskBase* base) noexcept {
    auto* self = static_cast<JoinFrame*>(base);
    Scheduler* s = self->sched;  // read first: once kDone is seen, *self may be gone
    const unsigned depth = tls_join_depth;
    tls_join_depth = 0;
    run_capturing(*self->fn, self->failure);
    tls_join_depth = depth;
    // acq_rel: the owner's acquire of kDone sees the callable's writes and `failure`; the RMW on
    // the same word as the owner's fetch_or means either it sees kWaiter or the owner sees kDone.
    if ((self->state.exchange(kDone, std::memory_order_acq_rel) & kWaiter) != 0) {
      s->notify_waiters(self);
    }
  }

  Scheduler* sched;
  F* fn;
  std::atomic<unsigned> state{0};
  std::optional<Error> failure;
};

}  // namespace detail

namespace detail {

/// join()'s eager half: `a`'s frame is pushed (or injected) and stays on this stack frame until
/// it has run. Out of line, so the serial path's frame stays small.
template <typename A, typename B>
[[gnu::noinline]] Result<void> join_spawning(Scheduler& sched, A& a, B& b) {
  using Frame = JoinFrame<A>;
  Frame frame(&sched, &a);
  sched.spawn(&frame);
  unsigned& depth = tls_join_depth;
  ++depth;
  std::optional<Error> b_failure;
  run_capturing(b, b_failure);
  const bool mine = sched.pop_local_until(&frame);
  if (mine) run_capturing(a, frame.failure);  // not stolen: no one else saw it run
  --depth;
  if (!mine) {
    sched.wait_until(
        &frame,
        [&frame] { return (frame.state.load(std::memory_order_acquire) & Frame::kDone) != 0; },
        [&frame] {
          return (frame.state.fetch_or(Frame::kWaiter, std::memory_order_acq_rel) & Frame::kDone) !=
                 0;
        });
  }
  if (frame.failure) [[unlikely]]
    return std::unexpected(std::move(*frame.failure));
  if (b_failure) [[unlikely]]
    return std::unexpected(std::move(*b_failure));
  return {};
}

/// The serial elision's handlers, out of line so that its frame stays small: called inside a
/// catch block, they describe the exception being handled; after_a_threw runs `b` first, as
/// join always runs both.
[[gnu::noinline, gnu::cold]] inline Result<void> current_failure() noexcept {
  return std::unexpected(describe_exception(std::current_exception()));
}
template <typename B>
[[gnu::noinline, gnu::cold]] Result<void> after_a_threw(B& b) noexcept {
  Error e = describe_exception(std::current_exception());
  std::optional<Error> b_failure;
  run_capturing(b, b_failure);
  return std::unexpected(std::move(e));
}

/// join_spawning for callables passed as temporaries that are trivially copyable (lambdas
/// capturing by reference): taken by value, so the caller's serial path never needs them in
/// memory and the compiler keeps their captures in registers there; no one can tell the copy
/// from the temporary.
template <typename A, typename B>
[[gnu::noinline]] Result<void> join_spawning_copied(Scheduler& sched, A a, B b) {
  return join_spawning(sched, a, b);
}

}  // namespace detail

/// Runs `a` and `b` (each returning void or Result<...>), possibly in parallel, and returns when
/// both are done. On a worker of `sched`, `a` is offered to thieves while `b` runs on the calling
/// thread, then `a` runs there too unless it was stolen; from any other thread `a` is injected
/// and the caller runs `b`, then waits. When no worker asks for work and the join is nested
/// deeper than Scheduler::kEagerJoinDepth, `a` then `b` simply run on the calling thread. Both
/// always run (there is no cancellation). Returns the failure of `a` if it failed, else that of
/// `b`: a returned Error, or an Error made from an exception (see TaskGroup::wait for the codes).
/// While a stolen `a` is still running, a worker runs other queued tasks, so nested joins cannot
/// deadlock.
template <typename A, typename B>
Result<void> join(Scheduler& sched, A&& a, B&& b) {
  static_assert(std::is_invocable_v<std::remove_reference_t<A>&>,
                "join needs callables taking no arguments");
  static_assert(std::is_invocable_v<std::remove_reference_t<B>&>,
                "join needs callables taking no arguments");
  if (sched.join_should_spawn(detail::tls_join_depth)) [[unlikely]] {
    using AV = std::remove_reference_t<A>;
    using BV = std::remove_reference_t<B>;
    if constexpr (!std::is_lvalue_reference_v<A> && !std::is_lvalue_reference_v<B> &&
                  std::is_trivially_copyable_v<AV> && std::is_trivially_copyable_v<BV> &&
                  !std::is_const_v<AV> && !std::is_const_v<BV>) {
      return detail::join_spawning_copied<AV, BV>(sched, a, b);
    } else {
      return detail::join_spawning(sched, a, b);
    }
  }
  // Nobody asks for work and enough is stealable already: the serial elision. Exceptions are
  // held as exception_ptr (8 bytes) and described only on failure, to keep this frame small.
  if constexpr (std::is_void_v<std::invoke_result_t<std::remove_reference_t<A>&>> &&
                std::is_void_v<std::invoke_result_t<std::remove_reference_t<B>&>>) {
    // Two void callables: nothing to hold on the path that does not throw (no exception_ptr
    // stores and tests per call); a throwing `a` still lets `b` run, as the frame path does.
    try {
      std::invoke(a);
    } catch (...) {
      return detail::after_a_threw(b);
    }
    try {
      std::invoke(b);
    } catch (...) {
      return detail::current_failure();
    }
    return {};
  }
  std::exception_ptr a_thrown, b_thrown;
  auto a_result = detail::call_catching(a, a_thrown);
  auto b_result = detail::call_catching(b, b_thrown);
  if (a_thrown) [[unlikely]]
    return std::unexpected(detail::describe_exception(a_thrown));
  if (auto e = detail::failure_of(a_result)) [[unlikely]]
    return std::unexpected(std::move(*e));
  if (b_thrown) [[unlikely]]
    return std::unexpected(detail::describe_exception(b_thrown));
  if (auto e = detail::failure_of(b_result)) [[unlikely]]
    return std::unexpected(std::move(*e));
  return {};
}

/// join() on Scheduler::default_instance().
template <typename A, typename B>
requires(!std::is_same_v<std::remove_cvref_t<A>, Scheduler>) Result<void> join(A&& a, B&& b) {
  return join(Scheduler::default_instance(), std::forward<A>(a), std::forward<B>(b));
}

}  // namespace pepita::scheduler
