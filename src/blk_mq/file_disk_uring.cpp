// FileDisk's io_uring engine: per-queue ring, eventfd-driven reaper thread, batched completion.
#include "detail/file_disk_uring.hpp"

#include <linux/falloc.h>

#include <cerrno>
#include <cstring>

#include "detail/sys.hpp"
#include "pepita/io_uring/prep.hpp"

namespace pepita::blk_mq {

Result<std::unique_ptr<FileDisk::Uring>> FileDisk::Uring::create(int fd, const DeviceInfo& info) {
  auto engine = std::make_unique<Uring>(Token{}, fd);
  for (uint32_t q = 0; q < info.tag_set.nr_hw_queues; ++q) {
    auto queue = std::make_unique<Queue>();
    // SQ as deep as the queue (at most depth requests are in flight: tags bound them), CQ twice
    // that (the kernel's default), so the CQ can never overflow.
    auto ring = io_uring::Ring::create({.entries = info.tag_set.queue_depth});
    if (!ring) return std::unexpected(std::move(ring.error()));
    queue->ring.emplace(std::move(*ring));
    const int event = sys::eventfd();
    if (event < 0) return fail_errno(event, "eventfd for the FileDisk reaper");
    queue->event.reset(event);
    PEPITA_TRY_VOID(queue->ring->register_eventfd(event));
    queue->inflight.resize(info.tag_set.queue_depth);
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
    (void)sys::eventfd_signal(queue->event.get());
  }
  for (auto& queue : queues_)
    if (queue->reaper.joinable()) queue->reaper.join();
}

void FileDisk::Uring::submit(uint32_t queue_index, const Request& req) noexcept {
  Queue& queue = *queues_[queue_index];
  queue.inflight[req.tag] = {req.completion,    req.op,  req.flags, req.byte_offset(),
                             req.byte_length(), req.data};
  queue.pending.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard guard(queue.lock);
    io_uring::Ring& ring = *queue.ring;
    pepita::abi::Sqe* sqe = ring.get_sqe();
    if (sqe == nullptr) {
      (void)ring.submit();  // SQ full of unsubmitted entries: push them, then retry once
      sqe = ring.get_sqe();
    }
    if (sqe != nullptr) {
      const Inflight& io = queue.inflight[req.tag];
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
      sqe->user_data = req.tag;
      // A failed submit leaves the SQE queued; the next submit on this queue pushes it.
      (void)ring.submit();
      return;
    }
  }
  finish(queue, req.tag, -EAGAIN);  // the kernel would not take the SQE
}

void FileDisk::Uring::finish(Queue& queue, uint32_t tag, int res) noexcept {
  const Inflight io = queue.inflight[tag];
  if (io.op == Op::Read && res >= 0 && static_cast<uint64_t>(res) < io.length) {
    // Short read: finish synchronously; past EOF (file truncated under us) reads as zeros.
    const int64_t more = sys::pread_full(fd_, io.data + res, io.length - static_cast<uint64_t>(res),
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
        sys::pwrite_full(fd_, io.data + res, io.length - static_cast<uint64_t>(res),
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
  std::vector<std::pair<uint32_t, int>> done;
  done.reserve(queue.inflight.size());
  for (;;) {
    if (sys::eventfd_wait(queue.event.get()) < 0) break;  // cannot happen on a valid eventfd
    done.clear();
    {
      std::lock_guard guard(queue.lock);
      queue.ring->for_each_cqe([&](const pepita::abi::Cqe& cqe) {
        done.emplace_back(static_cast<uint32_t>(cqe.user_data), cqe.res);
      });
    }
    // Completions run outside the lock: they may submit the next request on this queue.
    for (const auto& [tag, res] : done) finish(queue, tag, res);
    if (stop_.load(std::memory_order_acquire) && queue.pending.load(std::memory_order_acquire) == 0)
      break;
  }
}

}  // namespace pepita::blk_mq
