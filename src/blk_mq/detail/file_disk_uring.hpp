#pragma once
// FileDisk's io_uring engine: one pepita::io_uring::Ring per hardware queue. The submitting thread
// fills an SQE and submits; a reaper thread per queue sleeps on the ring's registered eventfd,
// reaps CQEs in a batch and runs the requests' completions. A per-queue mutex serialises the two
// sides' use of the (single-threaded) Ring.

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::blk_mq {

class FileDisk::Uring {
 public:
  /// Unsupported when the kernel refuses io_uring; other errors name the failing step.
  static Result<std::unique_ptr<Uring>> create(int fd, const DeviceInfo& info);
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  /// `req` was validated by FileDisk::submit (range, alignment, tag < depth).
  void submit(uint32_t queue, const Request& req) noexcept;

 private:
  struct Inflight {
    Completion* completion = nullptr;
    Op op = Op::Read;
    uint32_t flags = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::byte* data = nullptr;
  };
  struct Queue {
    std::mutex lock;  // guards ring
    std::optional<io_uring::Ring> ring;
    UniqueFd event;                  // eventfd the kernel signals on each CQE
    std::vector<Inflight> inflight;  // indexed by tag; each entry owned by its request
    std::atomic<uint32_t> pending{0};
    std::thread reaper;
  };
  struct Token {};

 public:
  Uring(Token, int fd) : fd_(fd) {}

 private:
  void reap(Queue& queue) noexcept;
  void finish(Queue& queue, uint32_t tag, int res) noexcept;

  int fd_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Queue>> queues_;
};

}  // namespace pepita::blk_mq
