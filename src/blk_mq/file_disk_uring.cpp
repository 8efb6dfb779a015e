// FileDisk's io_uring engine: per-queue EventLoop, eventfd-driven reaper thread, batched
// completion.
#include "blk_mq/detail/file_disk_uring.hpp"

#include <linux/falloc.h>

#include <cerrno>
#include <cstring>

#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/io_uring/prep.hpp"

namespace pepita::blk_mq {

Result<std::unique_ptr<FileDisk::Uring>> FileDisk::Uring::create(int fd, const DeviceInfo& info) {
  auto engine = std::make_unique<Uring>(Token{}, fd);
  for (uint32_t q = 0; q < info.tag_set.nr_hw_queues; ++q) {
    auto queue = std::make_unique<Queue>();
    // SQ as deep as the queue (at most depth requests are in flight: tags bound them), CQ twice
    // that (the kernel's default), so the CQ can never overflow.
    queue->loop = PEPITA_TRY(io_uring::EventLoop::create({.entries = info.tag_set.queue_depth}));
    auto event = pepita::sys::make_eventfd();
    if (!event)
      return std::unexpected(
          std::move(event.error()).with_context("eventfd for the FileDisk reaper"));
    queue->event = std::move(*event);
    PEPITA_TRY_VOID(queue->loop->ring().register_eventfd(queue->event.get()));
    queue->inflight = std::make_unique<Inflight[]>(info.tag_set.queue_depth);
    for (uint32_t t = 0; t < info.tag_set.queue_depth; ++t) {
      queue->inflight[t].engine = engine.get();
      queue->inflight[t].queue = queue.get();
    }
    queue->reaped.resize(queue->loop->ring().cq_entries());
    engine->queues_.push_back(std::move(queue));
  }
  // Threads start only once every queue exists, so a failure above leaves none to stop.
  for (auto& queue : engine->queues_) {
    Queue* raw = queue.get();
    raw->reaper = std::thread([engine = engine.get(), raw] { engine->reap(*raw); });
  }
  return engine;
}

FileDisk::Uring::~Uring() {
  stop_.store(true, std::memory_order_release);
  for (auto& queue : queues_) {
    // Wake the reaper so it sees stop_; it leaves once its queue has nothing in flight.
    (void)pepita::sys::eventfd_signal(queue->event.get());
  }
  for (auto& queue : queues_)
    if (queue->reaper.joinable()) queue->reaper.join();
}

void FileDisk::Uring::submit(uint32_t queue_index, const Request& req) noexcept {
  Queue& queue = *queues_[queue_index];
  Inflight& io = queue.inflight[req.tag];
  io.completion = req.completion;
  io.op = req.op;
  io.flags = req.flags;
  io.offset = req.byte_offset();
  io.length = req.byte_length();
  io.data = req.data;
  queue.pending.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard guard(queue.lock);
    io_uring::EventLoop& loop = *queue.loop;
    // try_sqe_for: never dispatches, which would run completions under our lock.
    pepita::abi::Sqe* sqe = loop.try_sqe_for(&io);
    if (sqe == nullptr) {
      (void)loop.submit();  // SQ full of unsubmitted entries: push them, then retry once
      sqe = loop.try_sqe_for(&io);
    }
    if (sqe != nullptr) {
      const auto len = static_cast<uint32_t>(io.length);
      switch (req.op) {
        case Op::Read: io_uring::prep_read(*sqe, fd_, io.data, len, io.offset); break;
        case Op::Write:
          io_uring::prep_write(*sqe, fd_, io.data, len, io.offset);
          if ((req.flags & req_flags::kFua) != 0) sqe->rw_flags = RWF_DSYNC;
          break;
        case Op::Flush: io_uring::prep_fsync(*sqe, fd_, pepita::abi::fsync_flags::DATASYNC); break;
        case Op::Discard:
          io_uring::prep_fallocate(*sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, io.offset,
                                   io.length);
          break;
        default: {  // WriteZeroes (check_request let nothing else through)
          const bool keep = (req.flags & req_flags::kNoUnmap) != 0;
          io_uring::prep_fallocate(
              *sqe, fd_, keep ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              io.offset, io.length);
          break;
        }
      }
      // A failed submit leaves the SQE queued; the next submit on this queue pushes it.
      (void)loop.submit();
      return;
    }
  }
  finish(io, -EAGAIN);  // the kernel would not take the SQE
}

void FileDisk::Uring::Inflight::on_cqe(io_uring::Completion* self, int res,
                                       uint32_t /*flags*/) noexcept {
  auto* io = static_cast<Inflight*>(self);
  io->engine->finish(*io, res);
}

void FileDisk::Uring::finish(Inflight& request, int res) noexcept {
  // A copy: once complete() ran, the tag (and its entry) may be reused by the next request.
  const Inflight io = request;
  Queue& queue = *io.queue;
  if (io.op == Op::Read && res >= 0 && static_cast<uint64_t>(res) < io.length) {
    // Short read: finish synchronously; past EOF (file truncated under us) reads as zeros.
    const int64_t more =
        pepita::sys::pread_full(fd_, io.data + res, io.length - static_cast<uint64_t>(res),
                                io.offset + static_cast<uint64_t>(res));
    if (more < 0) {
      res = static_cast<int>(more);
    } else {
      std::memset(io.data + res + more, 0, io.length - static_cast<uint64_t>(res + more));
      res = static_cast<int>(io.length);
    }
  } else if (io.op == Op::Write && res >= 0 && static_cast<uint64_t>(res) < io.length) {
    const int rwf = (io.flags & req_flags::kFua) != 0 ? RWF_DSYNC : 0;
    const int64_t more =
        pepita::sys::pwrite_full(fd_, io.data + res, io.length - static_cast<uint64_t>(res),
                                 io.offset + static_cast<uint64_t>(res), rwf);
    res = more < 0 ? static_cast<int>(more) : static_cast<int>(io.length);
  } else if ((io.op == Op::WriteZeroes || io.op == Op::Discard) && res == -EOPNOTSUPP) {
    // e.g. tmpfs has no ZERO_RANGE: zero by writing, as the sync engine does.
    res = zero_file_range(fd_, io.offset, io.length,
                          io.op == Op::Discard || (io.flags & req_flags::kNoUnmap) == 0);
  } else if (res > 0 && io.op != Op::Read && io.op != Op::Write) {
    res = 0;
  }
  io.completion->complete(res);
  queue.pending.fetch_sub(1, std::memory_order_release);
}

void FileDisk::Uring::reap(Queue& queue) noexcept {
  for (;;) {
    // Blocks until the kernel signalled a CQE (or ~Uring a stop); fails only on a bad fd.
    if (pepita::sys::eventfd_drain(queue.event.get()) < 0) break;
    unsigned n = 0;
    {
      std::lock_guard guard(queue.lock);
      // `reaped` holds a whole CQ: one call takes every ready CQE and advances the CQ once.
      n = queue.loop->reap(queue.reaped);
    }
    // Completions run outside the lock: they may submit the next request on this queue.
    for (unsigned i = 0; i < n; ++i) queue.reaped[i].deliver();
    if (stop_.load(std::memory_order_acquire) && queue.pending.load(std::memory_order_acquire) == 0)
      break;
  }
}

}  // namespace pepita::blk_mq
