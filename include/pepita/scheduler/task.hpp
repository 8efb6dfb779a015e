#pragma once
// The unit of work the scheduler moves between deques: a type-erased callable in one pooled block.
// Internal to the scheduler module (namespace detail); users go through Scheduler::submit,
// TaskGroup::run and the parallel_* algorithms.

#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace pepita::scheduler::detail {

/// Every queued task starts with this header. `execute` runs the callable (unless its group was
/// cancelled), destroys it, frees the block and signals completion; it never throws.
struct TaskBase {
  using ExecuteFn = void (*)(TaskBase*) noexcept;
  ExecuteFn execute;
};

/// Size of the pooled blocks; larger callables fall back to the global allocator.
inline constexpr std::size_t kTaskBlockSize = 128;
inline constexpr std::size_t kTaskBlockAlign = 64;

/// Per-thread free list of kTaskBlockSize blocks. A block freed on another thread (the task was
/// stolen) joins that thread's list, so blocks migrate but are never shared at once.
void* allocate_task_block();
void free_task_block(void* block) noexcept;

template <typename T>
inline constexpr bool kFitsTaskBlock = sizeof(T) <= kTaskBlockSize && alignof(T) <= kTaskBlockAlign;

/// Constructs a T (a TaskBase subclass) in a pooled block or, when too big, in memory from
/// std::allocator; destroy_task<T> is the matching release.
template <typename T, typename... Args>
T* make_task(Args&&... args) {
  if constexpr (kFitsTaskBlock<T>) {
    void* mem = allocate_task_block();
    return std::construct_at(static_cast<T*>(mem), std::forward<Args>(args)...);
  } else {
    std::allocator<T> alloc;
    T* mem = alloc.allocate(1);
    return std::construct_at(mem, std::forward<Args>(args)...);
  }
}

template <typename T>
void destroy_task(T* task) noexcept {
  std::destroy_at(task);
  if constexpr (kFitsTaskBlock<T>) {
    free_task_block(task);
  } else {
    std::allocator<T>().deallocate(task, 1);
  }
}

}  // namespace pepita::scheduler::detail
