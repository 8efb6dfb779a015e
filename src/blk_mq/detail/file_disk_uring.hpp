#pragma once
// FileDisk's io_uring engine: one pepita::io_uring::EventLoop per hardware queue, shared by two
// threads under a per-queue mutex. The submitting thread takes an SQE for the request's
// io_uring::Completion (try_sqe_for) and submits; a reaper thread per queue sleeps on the ring's
// registered eventfd, reaps CQEs in a batch (EventLoop::reap) and, the lock released, delivers
// them: each request's Completion finishes it.

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/io_uring/event_loop.hpp"

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
  struct Queue;
  // One per tag: the request's copy and the io_uring completion its CQE reaches.
  struct Inflight final : io_uring::Completion {
    Inflight() noexcept : io_uring::Completion(&Inflight::on_cqe) {}
    static void on_cqe(io_uring::Completion* self, int res, uint32_t flags) noexcept;
    Uring* engine = nullptr;
    Queue* queue = nullptr;
    blk_mq::Completion* completion = nullptr;
    Op op = Op::Read;
    uint32_t flags = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::byte* data = nullptr;
  };
  struct Queue {
    std::mutex lock;                       // guards loop
    std::unique_ptr<Inflight[]> inflight;  // indexed by tag; each entry owned by its request
    // Declared after inflight, so destroyed first: nothing can reach an Inflight afterwards.
    std::unique_ptr<io_uring::EventLoop> loop;
    UniqueFd event;                                   // eventfd the kernel signals on each CQE
    std::vector<io_uring::EventLoop::Reaped> reaped;  // reaper thread only
    std::atomic<uint32_t> pending{0};
    std::thread reaper;
  };

  struct Token {};

 public:
  Uring(Token, int fd) : fd_(fd) {}

 private:
  void reap(Queue& queue) noexcept;
  void finish(Inflight& io, int res) noexcept;

  int fd_;
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Queue>> queues_;
};

}  // namespace pepita::blk_mq
