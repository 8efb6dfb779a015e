#pragma once
// WorkStealingDeque: the growable lock-free Chase–Lev deque, with the C11 memory orderings proved
// correct by Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak
// Memory Models" (PPoPP 2013, Fig. 1). One owner pushes/pops at the bottom, any thread steals at
// the top. Old arrays are retired, never freed while the deque lives, so a thief reading a stale
// array pointer still reads valid memory (no ABA: indices grow monotonically in 64 bits).
//
//   WorkStealingDeque<Task*> dq;           // owner thread:
//   dq.push(t);                            //   LIFO end
//   if (auto t = dq.pop()) run(*t);        // any other thread:
//   if (auto t = dq.steal()) run(*t);      //   FIFO end; nullopt = empty or lost a race
//
// Trivially copyable T lives directly in the atomic slots (the paper's algorithm, no allocation).
// Any other movable T (std::string, std::unique_ptr, std::function...) is boxed: the ring holds an
// owning T* and whoever wins the slot (pop, or the thief whose CAS on top succeeds) takes the box;
// a loser never touches the pointee, so each item is moved out exactly once.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

// ThreadSanitizer does not model std::atomic_thread_fence (GCC 12 warns under -Wtsan), so under
// TSan the paper's fences are folded into the neighbouring accesses (seq_cst stores/loads). This is
// strictly stronger, so the algorithm stays correct and TSan sees every happens-before edge.
#if defined(__SANITIZE_THREAD__)
#define PEPITA_DEQUE_NO_FENCES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PEPITA_DEQUE_NO_FENCES 1
#endif
#endif

namespace pepita::scheduler {

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
class WorkStealingDeque {
  static_assert(std::is_move_constructible_v<T>, "items are moved in and out of the deque");
  // Boxed: the slot holds a heap T* that the deque owns until pop/steal hands the T out.
  static constexpr bool kBoxed = !std::is_trivially_copyable_v<T>;
  using Slot = std::conditional_t<kBoxed, T*, T>;

 public:
  /// `capacity` is rounded up to a power of two (at least 2); the deque grows without bound.
  explicit WorkStealingDeque(std::size_t capacity = 256) {
    std::size_t cap = std::bit_ceil(capacity < 2 ? std::size_t{2} : capacity);
    auto first = std::make_unique<Array>(cap);
    array_.store(first.get(), std::memory_order_relaxed);
    arrays_.push_back(std::move(first));
  }
  WorkStealingDeque(const WorkStealingDeque&) = delete;
  WorkStealingDeque& operator=(const WorkStealingDeque&) = delete;
  /// Destroys the items still queued (no thread may use the deque any more).
  ~WorkStealingDeque() {
    if constexpr (kBoxed) {
      Array* a = array_.load(std::memory_order_relaxed);
      const std::int64_t b = bottom_.load(std::memory_order_relaxed);
      for (std::int64_t i = top_.load(std::memory_order_relaxed); i < b; ++i) delete a->get(i);
    }
  }

  /// Owner only. Never fails: a full array is replaced by one twice as large. (A boxed T
  /// allocates its box; std::bad_alloc is the only exception, and the deque is unchanged then.)
  void push(T item) {
    std::int64_t b = bottom_.load(std::memory_order_relaxed);
    // acquire: pairs with the thieves' CAS on top so the slot we may overwrite has been read.
    std::int64_t t = top_.load(std::memory_order_acquire);
    Array* a = array_.load(std::memory_order_relaxed);
    if (b - t > static_cast<std::int64_t>(a->capacity) - 1) a = grow(a, t, b);
    a->put(b, make_slot(std::move(item)));  // boxed after growing: a throwing grow leaks nothing
#if defined(PEPITA_DEQUE_NO_FENCES)
    bottom_.store(b + 1, std::memory_order_release);
#else
    // release fence: a thief that reads the new bottom also sees the slot (and a grown array).
    std::atomic_thread_fence(std::memory_order_release);
    bottom_.store(b + 1, std::memory_order_relaxed);
#endif
  }

  /// Owner only. Takes the most recently pushed item; nullopt when empty or when the last item
  /// went to a thief.
  std::optional<T> pop() {
    std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    Array* a = array_.load(std::memory_order_relaxed);
#if defined(PEPITA_DEQUE_NO_FENCES)
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
#else
    bottom_.store(b, std::memory_order_relaxed);
    // seq_cst fence: either a concurrent thief sees the decremented bottom, or we see its top.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_relaxed);
#endif
    std::optional<T> item;
    if (t <= b) {
      Slot slot = a->get(b);
      bool won = true;
      if (t == b) {
        // Last item: race the thieves for it through top, like a steal.
        won = top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                           std::memory_order_relaxed);
        bottom_.store(b + 1, std::memory_order_relaxed);
      }
      if (won) item.emplace(take(slot));  // a losing owner leaves the box to the thief that won
    } else {
      bottom_.store(b + 1, std::memory_order_relaxed);  // was empty: undo the reservation
    }
    return item;
  }

  /// Any thread. Takes the oldest item; nullopt when empty or when another thread won the race
  /// (callers treat both the same: look elsewhere).
  std::optional<T> steal() {
#if defined(PEPITA_DEQUE_NO_FENCES)
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    std::int64_t b = bottom_.load(std::memory_order_seq_cst);
#else
    std::int64_t t = top_.load(std::memory_order_acquire);
    // seq_cst fence: orders our top read before the bottom read against the owner's pop.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // acquire: pairs with push's release fence, making the slot and array visible.
    std::int64_t b = bottom_.load(std::memory_order_acquire);
#endif
    if (t >= b) return std::nullopt;
    // acquire (the paper's consume): the array a grown push published before bumping bottom.
    Array* a = array_.load(std::memory_order_acquire);
    Slot slot = a->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return std::nullopt;  // the winner owns the slot (and its box); we never dereference it
    }
    return take(slot);
  }

  /// Any thread. Steals up to `max` of the oldest items into `out` (one CAS each, so every item
  /// goes to exactly one thread) and returns how many it took; stops early when the deque is
  /// empty or a race is lost. The crate's `steal_batch`.
  std::size_t steal_batch(std::size_t max, std::vector<T>& out) {
    std::size_t taken = 0;
    while (taken < max) {
      std::optional<T> item = steal();
      if (!item) break;
      out.push_back(std::move(*item));
      ++taken;
    }
    return taken;
  }

  /// Any thread. Steals half of the items seen (rounded up, so a single item can be stolen);
  /// the crate's `steal_half`. Empty when there was nothing to take or a race was lost.
  std::vector<T> steal_half() {
    std::vector<T> out;
    const std::size_t n = size_hint();
    if (n == 0) return out;
    out.reserve((n + 1) / 2);
    steal_batch((n + 1) / 2, out);
    return out;
  }

  /// Approximate number of items (exact when only the owner is active).
  std::size_t size_hint() const noexcept {
    std::int64_t b = bottom_.load(std::memory_order_relaxed);
    std::int64_t t = top_.load(std::memory_order_relaxed);
    return b > t ? static_cast<std::size_t>(b - t) : 0;
  }
  bool empty_hint() const noexcept { return size_hint() == 0; }
  /// The crate's spellings of size_hint()/empty_hint().
  std::size_t len() const noexcept { return size_hint(); }
  bool is_empty() const noexcept { return empty_hint(); }

  /// Current array capacity (owner only; for tests).
  std::size_t capacity() const noexcept { return array_.load(std::memory_order_relaxed)->capacity; }

 private:
  struct Array {
    explicit Array(std::size_t cap)
        : capacity(cap), mask(cap - 1), slots(std::make_unique<std::atomic<Slot>[]>(cap)) {}
    // Relaxed slot accesses: ordering comes from bottom/top, exactly as in the paper. A boxed
    // T's construction happens-before the thief's read of it through the same edges (push's
    // release on bottom, the thief's acquire).
    void put(std::int64_t i, Slot v) noexcept {
      slots[static_cast<std::size_t>(i) & mask].store(v, std::memory_order_relaxed);
    }
    Slot get(std::int64_t i) const noexcept {
      return slots[static_cast<std::size_t>(i) & mask].load(std::memory_order_relaxed);
    }
    std::size_t capacity;
    std::size_t mask;
    std::unique_ptr<std::atomic<Slot>[]> slots;
  };

  static Slot make_slot(T&& item) {
    if constexpr (kBoxed) {
      return new T(std::move(item));
    } else {
      return item;
    }
  }
  // Turns a won slot into the item: unboxes (moves out, frees the box) for a boxed T.
  static T take(Slot slot) {
    if constexpr (kBoxed) {
      std::unique_ptr<T> box(slot);
      return std::move(*box);
    } else {
      return slot;
    }
  }

  Array* grow(Array* old, std::int64_t t, std::int64_t b) {
    auto bigger = std::make_unique<Array>(old->capacity * 2);
    for (std::int64_t i = t; i < b; ++i) bigger->put(i, old->get(i));
    Array* raw = bigger.get();
    // The old array stays alive in arrays_ (a thief may still be reading it); the owner is the
    // only writer of arrays_. Memory is bounded by 2x the peak array.
    arrays_.push_back(std::move(bigger));
#if defined(PEPITA_DEQUE_NO_FENCES)
    array_.store(raw, std::memory_order_release);
#else
    array_.store(raw, std::memory_order_relaxed);  // published by push's release fence
#endif
    return raw;
  }

  // Thieves hammer top_; the owner writes bottom_ on every push/pop: separate lines so stealing
  // does not slow the owner's fast path.
  alignas(kCacheLine) std::atomic<std::int64_t> top_{0};
  alignas(kCacheLine) std::atomic<std::int64_t> bottom_{0};
  alignas(kCacheLine) std::atomic<Array*> array_{nullptr};
  std::vector<std::unique_ptr<Array>> arrays_;  // owner-only: current + retired arrays
};

}  // namespace pepita::scheduler
