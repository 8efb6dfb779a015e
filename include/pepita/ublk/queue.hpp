#pragma once
// The transport-independent half of one ublk hardware queue: turns the kernel's I/O descriptor for
// a tag into a blk_mq::Request on the target BlockDevice and collects (tag, result) pairs to
// commit. The kernel transport (server.cpp: FETCH_REQ / COMMIT_AND_FETCH_REQ over io_uring) and the
// host replay harness (bench/ublk) drive the same object, so what the benchmark measures is the
// server's own request handling.
//
//   QueueHandler q(disk, /*queue=*/0, descriptors, buffers, limits);
//   q.on_request(tag);                      // the kernel delivered a request for `tag`
//   q.drain([&](uint16_t tag, int32_t res) { commit_and_fetch(tag, res); });

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "pepita/abi/ublk.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/ublk/request.hpp"

namespace pepita::ublk {

/// Counters of one queue, read after the queue stopped (or racily while it runs).
struct QueueStats {
  uint64_t requests = 0;  // descriptors received
  uint64_t refused = 0;   // descriptors parse_io_desc refused (completed with an errno)
  uint64_t failed = 0;    // requests the target completed with an errno
  uint64_t bytes = 0;     // bytes read + written
};

class QueueHandler {
 public:
  /// `descriptors` is the queue's descriptor array (depth entries: the read-only mmap of
  /// /dev/ublkcN, or a replay harness's array); `buffers` holds depth * limits.max_io_bytes bytes,
  /// tag t owning [t * max_io_bytes, (t + 1) * max_io_bytes). Both outlive the handler.
  QueueHandler(blk_mq::BlockDevice& device, uint32_t queue,
               std::span<const abi::ublk::IoDesc> descriptors, std::span<std::byte> buffers,
               const IoLimits& limits);
  QueueHandler(const QueueHandler&) = delete;
  QueueHandler& operator=(const QueueHandler&) = delete;

  /// Serves the request the kernel placed in descriptor `tag`. A malformed descriptor (or a tag
  /// out of range) completes at once with an errno; the queue keeps going.
  void on_request(uint16_t tag) noexcept;

  /// Completes `tag` with `result` without touching the target (the transport could not move the
  /// request's data, for instance). Counts as a received, failed request.
  void reject(uint16_t tag, int32_t result) noexcept;

  /// Hands every finished request to sink(tag, result) and forgets it; returns how many. Call from
  /// the queue's own thread. `result` is what COMMIT_AND_FETCH_REQ carries: bytes moved or -errno.
  template <typename Sink>
  size_t drain(Sink&& sink) {
    take_remote();
    const size_t n = done_.size();
    for (const Done& d : done_) sink(d.tag, d.result);
    done_.clear();
    return n;
  }

  /// Makes the calling thread the queue's owner: completions on other threads are then handed
  /// over through a locked list and `wake` is called (the server writes an eventfd).
  void bind_to_current_thread(void (*wake)(void*), void* wake_arg) noexcept;

  /// Requests started and not yet drained.
  uint32_t in_flight() const noexcept { return in_flight_; }
  uint16_t depth() const noexcept { return static_cast<uint16_t>(descriptors_.size()); }
  std::byte* buffer(uint16_t tag) const noexcept {
    return buffers_.data() + size_t{tag} * limits_.max_io_bytes;
  }
  const QueueStats& stats() const noexcept { return stats_; }

 private:
  struct Done {
    uint16_t tag;
    int32_t result;
  };
  // One per tag: the request given to the device and the Completion it calls back.
  struct Slot final : blk_mq::Completion {
    QueueHandler* queue = nullptr;
    uint16_t tag = 0;
    blk_mq::Request request;
    void complete(int res) noexcept override { queue->finish(tag, res); }
  };

  void finish(uint16_t tag, int32_t result) noexcept;
  void take_remote() noexcept;

  blk_mq::BlockDevice& device_;
  uint32_t queue_;
  std::span<const abi::ublk::IoDesc> descriptors_;
  std::span<std::byte> buffers_;
  IoLimits limits_;
  std::unique_ptr<Slot[]> slots_;
  std::vector<Done> done_;  // owner thread only
  uint32_t in_flight_ = 0;
  QueueStats stats_;

  // Completions arriving on other threads (an asynchronous target engine).
  std::thread::id owner_;
  void (*wake_)(void*) = nullptr;
  void* wake_arg_ = nullptr;
  std::mutex remote_mutex_;
  std::vector<Done> remote_;
};

}  // namespace pepita::ublk
