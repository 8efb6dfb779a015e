// TaskGroup's out-of-line half: waiting, failure capture, and the per-thread task block pool.

#include "pepita/scheduler/task_group.hpp"

#include <cerrno>
#include <cstddef>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>

#include "pepita/scheduler/task.hpp"

namespace pepita::scheduler {

namespace detail {

namespace {

struct alignas(kTaskBlockAlign) Block {
  std::byte bytes[kTaskBlockSize];
};

// Trivially destructible, so each access is a plain TLS load (no init guard). The reaper below
// returns the blocks to the allocator when the thread exits.
constexpr std::size_t kCachedBlocks = 512;
struct BlockCache {
  void* blocks[kCachedBlocks];
  std::size_t count;
  bool reaper_armed;
  bool dead;  // thread is exiting: bypass the cache
};
thread_local BlockCache tls_blocks{};

struct BlockCacheReaper {
  ~BlockCacheReaper() {
    BlockCache& c = tls_blocks;
    for (std::size_t i = 0; i < c.count; ++i)
      std::allocator<Block>().deallocate(static_cast<Block*>(c.blocks[i]), 1);
    c.count = 0;
    c.dead = true;
  }
};
thread_local BlockCacheReaper tls_reaper;

}  // namespace

void* allocate_task_block() {
  BlockCache& c = tls_blocks;
  if (c.count != 0) return c.blocks[--c.count];
  if (!c.reaper_armed && !c.dead) {
    c.reaper_armed = true;
    (void)&tls_reaper;  // odr-use constructs it, registering its destructor for thread exit
  }
  return std::allocator<Block>().allocate(1);
}

void free_task_block(void* block) noexcept {
  BlockCache& c = tls_blocks;
  if (c.count < kCachedBlocks && c.reaper_armed && !c.dead) {
    c.blocks[c.count++] = block;
    return;
  }
  std::allocator<Block>().deallocate(static_cast<Block*>(block), 1);
}

Error error_from_exception(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::bad_alloc& e) {
    return Error(ErrorCode::ResourceExhausted,
                 std::string("task ran out of memory (") + e.what() + ")", ENOMEM);
  } catch (const std::system_error& e) {
    int err = e.code().category() == std::system_category() ||
                      e.code().category() == std::generic_category()
                  ? e.code().value()
                  : 0;
    return Error(err != 0 ? code_from_errno(err) : ErrorCode::Internal,
                 std::string("task threw std::system_error: ") + e.what(), err);
  } catch (const std::invalid_argument& e) {
    return Error(ErrorCode::InvalidArgument,
                 std::string("task threw std::invalid_argument: ") + e.what());
  } catch (const std::exception& e) {
    return Error(ErrorCode::Internal, std::string("task threw ") + typeid(e).name() + ": " +
                                          e.what() + " (TaskGroup::exception() has the original)");
  } catch (...) {
    return Error(ErrorCode::Internal,
                 "task threw a non-std::exception value (TaskGroup::exception() has it)");
  }
}

}  // namespace detail

TaskGroup::~TaskGroup() {
  if (pending_.load(std::memory_order_acquire) != 0) (void)wait();
}

void TaskGroup::record_failure(Error error, std::exception_ptr exception) noexcept {
  bool expected = false;
  if (failed_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
    // Only the winner writes; the waiter reads after pending_ reaches 0 (acquire).
    error_.emplace(std::move(error));
    exception_ = std::move(exception);
  }
  cancelled_.store(true, std::memory_order_relaxed);
}

void TaskGroup::cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }

Result<void> TaskGroup::wait() {
  sched_->wait_until(this, [this] { return pending_.load(std::memory_order_seq_cst) == 0; });
  Result<void> result;
  last_exception_ = nullptr;
  if (failed_.load(std::memory_order_acquire)) {
    result = std::unexpected(std::move(*error_));
    last_exception_ = std::move(exception_);
    error_.reset();
    exception_ = nullptr;
  } else if (cancelled_.load(std::memory_order_relaxed)) {
    result = fail(ErrorCode::Cancelled, "task group was cancelled; skipped tasks did not run");
  }
  failed_.store(false, std::memory_order_relaxed);
  cancelled_.store(false, std::memory_order_relaxed);
  return result;
}

}  // namespace pepita::scheduler
