// TaskGroup's out-of-line half: waiting, failure capture, and the per-thread task block pool.

#include "pepita/scheduler/task_group.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <vector>

#include "pepita/scheduler/task.hpp"

namespace pepita::scheduler {

namespace detail {

namespace {

struct alignas(kTaskBlockAlign) Block {
  std::byte bytes[kTaskBlockSize];
};

// Blocks come from slabs that are never returned to the system: the pool grows to the peak number
// of live tasks and then recycles. Threads keep a private cache and trade half of it with the
// global pool, under its mutex, only when the cache runs empty or full, so a lock is taken once
// per kBatch allocations in steady state (stolen tasks free their blocks on the thief's thread).
constexpr std::size_t kCachedBlocks = 1024;
constexpr std::size_t kBatch = kCachedBlocks / 2;
constexpr std::size_t kSlabBlocks = 256;

struct GlobalPool {
  std::mutex mu;
  std::vector<void*> free;    // guarded by mu
  std::vector<Block*> slabs;  // guarded by mu; kept so leak checkers see the memory as reachable
};

GlobalPool& global_pool() {
  // Deliberately never destroyed: tasks may be freed by workers of a static Scheduler during
  // static destruction, after a destroyed pool would be gone.
  alignas(GlobalPool) static std::byte storage[sizeof(GlobalPool)];
  // SAFETY: storage is suitably aligned and sized for GlobalPool and constructed exactly once
  // (function-local static initialization is thread-safe).
  static GlobalPool* pool = std::construct_at(reinterpret_cast<GlobalPool*>(storage));
  return *pool;
}

// Trivially destructible, so each access is a plain TLS load (no init guard). The reaper below
// hands the blocks back to the global pool when the thread exits.
struct BlockCache {
  void* blocks[kCachedBlocks];
  std::size_t count;
  bool reaper_armed;
  bool dead;  // the reaper ran (thread exiting): bypass the cache
};
thread_local BlockCache tls_blocks{};

struct BlockCacheReaper {
  ~BlockCacheReaper() {
    BlockCache& c = tls_blocks;
    GlobalPool& pool = global_pool();
    std::lock_guard lock(pool.mu);
    pool.free.insert(pool.free.end(), c.blocks, c.blocks + c.count);
    c.count = 0;
    c.dead = true;
    c.reaper_armed = true;  // never re-arm a destroyed reaper
  }
};
thread_local BlockCacheReaper tls_reaper;

void refill(BlockCache& c) {
  GlobalPool& pool = global_pool();
  std::lock_guard lock(pool.mu);
  std::size_t take = std::min(kBatch, pool.free.size());
  if (take != 0) {
    std::copy(pool.free.end() - static_cast<std::ptrdiff_t>(take), pool.free.end(),
              c.blocks + c.count);
    pool.free.resize(pool.free.size() - take);
    c.count += take;
    return;
  }
  Block* slab = std::allocator<Block>().allocate(kSlabBlocks);
  pool.slabs.push_back(slab);
  for (std::size_t i = 0; i < kSlabBlocks; ++i) c.blocks[c.count++] = slab + i;
}

void spill(BlockCache& c) {
  GlobalPool& pool = global_pool();
  std::lock_guard lock(pool.mu);
  pool.free.insert(pool.free.end(), c.blocks + c.count - kBatch, c.blocks + c.count);
  c.count -= kBatch;
}

}  // namespace

static void arm_reaper(BlockCache& c) {
  c.reaper_armed = true;
  (void)&tls_reaper;  // odr-use constructs it, registering its destructor for thread exit
}

void* allocate_task_block() {
  BlockCache& c = tls_blocks;
  if (c.count == 0) [[unlikely]] {
    if (!c.reaper_armed) arm_reaper(c);
    refill(c);
  }
  return c.blocks[--c.count];
}

void free_task_block(void* block) noexcept {
  BlockCache& c = tls_blocks;
  if (c.dead) [[unlikely]] {
    // Thread teardown, after the reaper ran: hand the block straight to the global pool.
    GlobalPool& pool = global_pool();
    std::lock_guard lock(pool.mu);
    try {
      pool.free.push_back(block);
    } catch (...) {
      // Out of memory for bookkeeping: the block stays inside its (reachable) slab, unused.
    }
    return;
  }
  if (!c.reaper_armed) [[unlikely]] {
    try {
      arm_reaper(c);
    } catch (...) {
      // Could not register the thread-exit hook: blocks cached here are recycled by this thread
      // only.
    }
  }
  if (c.count == kCachedBlocks) [[unlikely]] {
    try {
      spill(c);
    } catch (...) {
      return;  // pool bookkeeping out of memory: drop the block (slab memory stays reachable)
    }
  }
  c.blocks[c.count++] = block;
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
  if ((pending_.load(std::memory_order_acquire) & ~kWaiterBit) != 0) (void)wait();
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
  sched_->wait_until(
      this, [this] { return (pending_.load(std::memory_order_seq_cst) & ~kWaiterBit) == 0; },
      [this] {
        return (pending_.fetch_or(kWaiterBit, std::memory_order_seq_cst) & ~kWaiterBit) == 0;
      });
  pending_.fetch_and(~kWaiterBit, std::memory_order_relaxed);
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
