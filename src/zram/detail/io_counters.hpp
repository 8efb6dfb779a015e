#pragma once
// Per-store I/O counters (the kernel zram's io_stat plus read/write counts). Reads and writes
// are counted on the hot path, so they live in cache-line-sized shards picked per thread: a read
// bumps a line that (almost always) only its own thread touches, and stats() sums the shards.
// Failures are rare and use one shared atomic each.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pepita::zram::detail {

class IoCounters {
 public:
  static constexpr std::size_t kShards = 64;

  void count_read() noexcept { shard().reads.fetch_add(1, std::memory_order_relaxed); }
  void count_write() noexcept { shard().writes.fetch_add(1, std::memory_order_relaxed); }
  void count_failed_read() noexcept { failed_reads_.fetch_add(1, std::memory_order_relaxed); }
  void count_failed_write() noexcept { failed_writes_.fetch_add(1, std::memory_order_relaxed); }
  void count_invalid_io() noexcept { invalid_io_.fetch_add(1, std::memory_order_relaxed); }

  std::uint64_t reads() const noexcept { return sum(&Shard::reads); }
  std::uint64_t writes() const noexcept { return sum(&Shard::writes); }
  std::uint64_t failed_reads() const noexcept {
    return failed_reads_.load(std::memory_order_relaxed);
  }
  std::uint64_t failed_writes() const noexcept {
    return failed_writes_.load(std::memory_order_relaxed);
  }
  std::uint64_t invalid_io() const noexcept { return invalid_io_.load(std::memory_order_relaxed); }

  /// Zeroes every counter; only exact when no I/O runs concurrently (ZramStore::reset's rule).
  void clear() noexcept {
    for (Shard& s : shards_) {
      s.reads.store(0, std::memory_order_relaxed);
      s.writes.store(0, std::memory_order_relaxed);
    }
    failed_reads_.store(0, std::memory_order_relaxed);
    failed_writes_.store(0, std::memory_order_relaxed);
    invalid_io_.store(0, std::memory_order_relaxed);
  }

 private:
  struct alignas(64) Shard {
    std::atomic<std::uint64_t> reads{0};
    std::atomic<std::uint64_t> writes{0};
  };

  /// The calling thread's shard: threads are numbered round-robin on first use, so up to kShards
  /// threads never share a line. Two threads sharing one stay correct (fetch_add), only slower.
  Shard& shard() noexcept {
    static std::atomic<std::size_t> next{0};
    thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % kShards;
    return shards_[mine];
  }

  std::uint64_t sum(std::atomic<std::uint64_t> Shard::*field) const noexcept {
    std::uint64_t total = 0;
    for (const Shard& s : shards_) total += (s.*field).load(std::memory_order_relaxed);
    return total;
  }

  std::array<Shard, kShards> shards_{};
  alignas(64) std::atomic<std::uint64_t> failed_reads_{0};
  std::atomic<std::uint64_t> failed_writes_{0};
  std::atomic<std::uint64_t> invalid_io_{0};
};

}  // namespace pepita::zram::detail
