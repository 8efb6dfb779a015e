#pragma once
// Parallel algorithms over the Scheduler: parallel_invoke, parallel_for, parallel_reduce. Ranges
// are split by lazy binary splitting (Tzannes, Caragea, Barua, Vishkin, PPoPP 2010): a worker
// runs its range in grain-sized chunks and halves what remains only when its own deque has been
// emptied by thieves, so the automatic grain adapts to load without tuning.
//
//   std::vector<float> v(n);
//   auto ok = pepita::scheduler::parallel_for(0, n, [&](std::size_t i) { v[i] *= 2; });
//   auto sum = pepita::scheduler::parallel_reduce(0, n, 0.0,
//       [&](IndexRange r, double acc) { for (auto i = r.begin; i < r.end; ++i) acc += v[i]; return
//       acc; }, std::plus<>{});

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "pepita/error.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task_group.hpp"

namespace pepita::scheduler {

/// Half-open index range [begin, end).
struct IndexRange {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t size() const noexcept { return end > begin ? end - begin : 0; }
};

/// Runs every callable, possibly in parallel (the first on the calling thread), and returns when
/// all are done: the first failure (exception or returned Error) as in TaskGroup::wait().
template <typename F0, typename... Fs>
Result<void> parallel_invoke(Scheduler& sched, F0&& f0, Fs&&... fs) {
  TaskGroup g(sched);
  (g.run([&fs] { return std::invoke(fs); }), ...);
  return g.run_and_wait(f0);
}

template <typename F0, typename... Fs>
requires(!std::is_same_v<std::remove_cvref_t<F0>, Scheduler>) Result<void> parallel_invoke(
    F0&& f0, Fs&&... fs) {
  return parallel_invoke(Scheduler::default_instance(), std::forward<F0>(f0),
                         std::forward<Fs>(fs)...);
}

namespace detail {

/// Chunk size used when the caller passes grain 0: ~256 chunks per worker keeps the per-chunk
/// check negligible while leaving enough pieces to balance uneven bodies.
inline std::size_t auto_grain(std::size_t n, unsigned workers) noexcept {
  std::size_t pieces = std::size_t{256} * (workers == 0 ? 1 : workers);
  return std::max<std::size_t>(1, n / pieces);
}

/// Runs the body over [b, e). A body returning Result<...> that fails records the failure in the
/// group (which cancels the rest of the loop) and stops this chunk.
template <typename Body>
void call_body(TaskGroup& g, Body& body, std::size_t b, std::size_t e) {
  if constexpr (std::is_invocable_v<Body&, IndexRange>) {
    using R = std::invoke_result_t<Body&, IndexRange>;
    if constexpr (IsResult<R>::value) {
      R r = std::invoke(body, IndexRange{b, e});
      if (!r) g.record_failure(std::move(r).error(), nullptr);
    } else {
      std::invoke(body, IndexRange{b, e});
    }
  } else {
    using R = std::invoke_result_t<Body&, std::size_t>;
    for (std::size_t i = b; i < e; ++i) {
      if constexpr (IsResult<R>::value) {
        R r = std::invoke(body, i);
        if (!r) {
          g.record_failure(std::move(r).error(), nullptr);
          return;
        }
      } else {
        std::invoke(body, i);
      }
    }
  }
}

template <typename Body>
void for_range(TaskGroup& g, std::size_t b, std::size_t e, std::size_t grain, Body& body) {
  Scheduler& s = g.scheduler();
  while (e - b > grain) {
    if (g.is_cancelled()) return;
    if (s.local_queue_empty()) {
      std::size_t mid = b + (e - b) / 2;
      g.run([&g, mid, e, grain, &body] { for_range(g, mid, e, grain, body); });
      e = mid;
    } else {
      call_body(g, body, b, b + grain);
      b += grain;
    }
  }
  if (!g.is_cancelled()) call_body(g, body, b, e);
}

/// Out of line on purpose: inlined into reduce_range, GCC keeps the accumulator in its stack slot
/// (its address escapes into the split bookkeeping) and the user's loop runs ~4x slower. As a
/// separate function the accumulator is a by-value argument and lives in a register.
template <typename T, typename Map>
[[gnu::noinline]] T apply_map(Map& map, std::size_t b, std::size_t e, T acc) {
  return std::invoke(map, IndexRange{b, e}, std::move(acc));
}

/// Reduces [b, e) into a value; stolen right halves reduce in their own frames and are combined
/// in index order, so `combine` need only be associative (not commutative).
template <typename T, typename Map, typename Combine>
Result<T> reduce_range(TaskGroup& root, std::size_t b, std::size_t e, std::size_t grain,
                       const T& identity, Map& map, Combine& combine) {
  Scheduler& s = root.scheduler();
  constexpr std::size_t kMaxSplits = 64;  // halving a size_t range more than 64 times is moot
  std::array<std::optional<Result<T>>, kMaxSplits> rights;
  std::size_t splits = 0;
  TaskGroup children(s);
  T acc = identity;
  while (e - b > grain && !root.is_cancelled()) {
    if (splits < kMaxSplits && s.local_queue_empty()) {
      std::size_t mid = b + (e - b) / 2;
      auto* slot = &rights[splits++];
      children.run([&root, slot, mid, e, grain, &identity, &map, &combine] {
        slot->emplace(reduce_range(root, mid, e, grain, identity, map, combine));
      });
      e = mid;
    } else {
      acc = apply_map<T>(map, b, b + grain, std::move(acc));
      b += grain;
    }
  }
  if (!root.is_cancelled()) acc = apply_map<T>(map, b, e, std::move(acc));
  if (auto waited = children.wait(); !waited) {
    if (children.exception()) std::rethrow_exception(children.exception());  // keep its type
    return std::unexpected(std::move(waited).error());
  }
  for (std::size_t i = splits; i-- > 0;) {  // innermost split holds the leftmost right half
    if (!rights[i] || !*rights[i]) {
      if (rights[i]) return std::unexpected(std::move(*rights[i]).error());
      return fail(ErrorCode::Cancelled, "parallel_reduce: cancelled");
    }
    acc = std::invoke(combine, std::move(acc), std::move(**rights[i]));
  }
  return acc;
}

}  // namespace detail

/// Calls body(i) for every i in [begin, end) — or body(IndexRange) per chunk when the body takes
/// an IndexRange — exactly once each, in parallel. grain 0 picks the chunk size automatically;
/// otherwise chunks hold at most `grain` indices. The body may return void or Result<...>.
/// Returns the first failure (an exception thrown or an Error returned by body); the chunks not
/// yet started are then skipped.
template <typename Body>
Result<void> parallel_for(Scheduler& sched, std::size_t begin, std::size_t end, Body&& body,
                          std::size_t grain = 0) {
  if (end <= begin) return {};
  if (grain == 0) grain = detail::auto_grain(end - begin, sched.worker_count());
  TaskGroup g(sched);
  g.run([&g, begin, end, grain, &body] { detail::for_range(g, begin, end, grain, body); });
  return g.wait();
}

template <typename Body>
Result<void> parallel_for(std::size_t begin, std::size_t end, Body&& body, std::size_t grain = 0) {
  return parallel_for(Scheduler::default_instance(), begin, end, std::forward<Body>(body), grain);
}

/// Folds [begin, end) into a T: map(IndexRange, T acc) -> T folds one chunk into acc, and
/// combine(T left, T right) -> T joins neighbouring results (must be associative; identity must
/// be its neutral element). Equals the sequential fold up to reassociation.
template <typename T, typename Map, typename Combine>
Result<T> parallel_reduce(Scheduler& sched, std::size_t begin, std::size_t end, T identity,
                          Map&& map, Combine&& combine, std::size_t grain = 0) {
  if (end <= begin) return identity;
  if (grain == 0) grain = detail::auto_grain(end - begin, sched.worker_count());
  TaskGroup g(sched);
  std::optional<Result<T>> out;
  g.run([&] { out.emplace(detail::reduce_range(g, begin, end, grain, identity, map, combine)); });
  PEPITA_TRY_VOID(g.wait());
  if (!out) return fail(ErrorCode::Cancelled, "parallel_reduce: cancelled before it started");
  return std::move(*out);
}

template <typename T, typename Map, typename Combine>
Result<T> parallel_reduce(std::size_t begin, std::size_t end, T identity, Map&& map,
                          Combine&& combine, std::size_t grain = 0) {
  return parallel_reduce(Scheduler::default_instance(), begin, end, std::move(identity),
                         std::forward<Map>(map), std::forward<Combine>(combine), grain);
}

}  // namespace pepita::scheduler
