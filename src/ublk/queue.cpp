// Per-queue request handling shared by the ublk server and the replay benchmark (queue.hpp).
#include "pepita/ublk/queue.hpp"

#include <cerrno>

namespace pepita::ublk {

QueueHandler::QueueHandler(blk_mq::BlockDevice& device, uint32_t queue,
                           std::span<const abi::ublk::IoDesc> descriptors,
                           std::span<std::byte> buffers, const IoLimits& limits)
    : device_(device),
      queue_(queue),
      descriptors_(descriptors),
      buffers_(buffers),
      limits_(limits),
      slots_(std::make_unique<Slot[]>(descriptors.size())),
      owner_(std::this_thread::get_id()) {
  for (size_t t = 0; t < descriptors.size(); ++t) {
    slots_[t].queue = this;
    slots_[t].tag = static_cast<uint16_t>(t);
  }
  done_.reserve(descriptors.size());
  remote_.reserve(descriptors.size());
}

void QueueHandler::bind_to_current_thread(void (*wake)(void*), void* wake_arg) noexcept {
  owner_ = std::this_thread::get_id();
  wake_ = wake;
  wake_arg_ = wake_arg;
}

void QueueHandler::on_request(uint16_t tag) noexcept {
  ++stats_.requests;
  ++in_flight_;
  if (tag >= descriptors_.size() || buffers_.size() < size_t{depth()} * limits_.max_io_bytes) {
    ++stats_.refused;
    finish(tag, -EINVAL);
    return;
  }
  // Copy the descriptor once: the kernel owns the shared array and we must not read a field twice.
  const abi::ublk::IoDesc desc = descriptors_[tag];
  const ParsedIo io = parse_io_desc(desc, limits_);
  if (!io.ok()) {
    ++stats_.refused;
    finish(tag, io.neg_errno);
    return;
  }
  Slot& slot = slots_[tag];
  slot.request.op = io.op;
  slot.request.flags = io.flags;
  slot.request.sector = io.sector;
  slot.request.nr_sectors = io.nr_sectors;
  slot.request.tag = tag;
  slot.request.data = (io.op == Op::Read || io.op == Op::Write) ? buffer(tag) : nullptr;
  slot.request.completion = &slot;
  device_.submit(queue_, slot.request);
}

void QueueHandler::reject(uint16_t tag, int32_t result) noexcept {
  ++stats_.requests;
  ++stats_.refused;
  ++in_flight_;
  finish(tag, result);
}

void QueueHandler::finish(uint16_t tag, int32_t result) noexcept {
  if (std::this_thread::get_id() == owner_) {
    done_.push_back({tag, result});
  } else {
    {
      std::lock_guard lock(remote_mutex_);
      remote_.push_back({tag, result});
    }
    if (wake_ != nullptr) wake_(wake_arg_);
  }
}

void QueueHandler::take_remote() noexcept {
  if (wake_ != nullptr) {
    std::lock_guard lock(remote_mutex_);
    done_.insert(done_.end(), remote_.begin(), remote_.end());
    remote_.clear();
  }
  for (const Done& d : done_) {
    if (d.result < 0) {
      ++stats_.failed;
    } else {
      stats_.bytes += static_cast<uint32_t>(d.result);
    }
  }
  in_flight_ -= static_cast<uint32_t>(done_.size());
}

}  // namespace pepita::ublk
