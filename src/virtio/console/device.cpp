// virtio-console, one port: receiveq fills posted buffers from host input, transmitq collects
// guest output (virtio 1.2 section 5.3.6).
#include <algorithm>
#include <string>
#include <utility>

#include "detail/state_codec.hpp"
#include "pepita/virtio/console.hpp"

namespace pepita::virtio::console {
namespace v = abi::virtio;

ConsoleDevice::ConsoleDevice(const ConsoleOptions& options) : options_(options) {
  config_.cols = options.cols;
  config_.rows = options.rows;
  config_.max_nr_ports = 1;  // meaningful only with MULTIPORT, which is not offered
}

uint64_t ConsoleDevice::features() const noexcept {
  return v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_INDIRECT_DESC) |
         v::feature_bit(v::F_RING_EVENT_IDX) | v::feature_bit(F_SIZE);
}

Result<void> ConsoleDevice::activate(uint64_t acked) {
  if ((acked & ~features()) != 0 || (acked & v::feature_bit(v::F_VERSION_1)) == 0) {
    return fail(ErrorCode::InvalidArgument,
                "virtio-console: acknowledged features must include VERSION_1 and be offered ones");
  }
  clear_needs_reset();
  return {};
}

void ConsoleDevice::reset() noexcept {
  std::lock_guard lock(in_mu_);
  waiting_.clear();
  clear_needs_reset();
}

Result<std::vector<std::byte>> ConsoleDevice::save_state() const {
  std::lock_guard lock(in_mu_);
  detail::StateWriter w;
  const std::vector<std::byte> input(input_.begin(), input_.end());
  w.bytes(input);
  w.put<uint32_t>(static_cast<uint32_t>(waiting_.size()));
  for (const auto& b : waiting_) {
    w.put<uint16_t>(b.head);
    w.segments(b.writable);
  }
  return w.take();
}

Result<void> ConsoleDevice::load_state(std::span<const std::byte> state) {
  detail::StateReader r(state);
  std::vector<std::byte> input;
  uint32_t count = 0;
  std::deque<Waiting> waiting;
  bool ok = r.bytes(input) && r.get(count) && count <= v::MAX_QUEUE_SIZE;
  for (uint32_t i = 0; ok && i < count; ++i) {
    Waiting b{};
    ok = r.get(b.head) && r.segments(b.writable, v::MAX_QUEUE_SIZE);
    waiting.push_back(std::move(b));
  }
  if (!ok || !r.done())
    return fail(ErrorCode::InvalidArgument,
                "virtio-console snapshot state is malformed; it was not saved by a console");
  std::lock_guard lock(in_mu_);
  input_.assign(input.begin(), input.end());
  waiting_ = std::move(waiting);
  return {};
}

Result<bool> ConsoleDevice::process(uint16_t index, Queue& queue) {
  if (index == kReceiveq) return receive(queue);
  if (index == kTransmitq) return transmit(queue);
  return fail(ErrorCode::InvalidArgument, "virtio-console has two queues (receiveq, transmitq)");
}

Result<bool> ConsoleDevice::receive(Queue& queue) {
  std::lock_guard lock(in_mu_);
  // Take every posted buffer first: the split ring has no way to look at a chain without
  // consuming it, so buffers wait here for input.
  for (;;) {
    for (;;) {
      auto got = queue.pop(rx_chain_);
      if (!got) {
        set_needs_reset();
        return std::unexpected(std::move(got).error());
      }
      if (!*got) break;
      if (waiting_.size() >= queue.size()) {
        // More buffers outstanding than the ring has entries: the driver re-posted heads.
        set_needs_reset();
        return fail(ErrorCode::Protocol, "virtio-console receiveq: more buffers posted (" +
                                             std::to_string(waiting_.size() + 1) +
                                             ") than the queue holds");
      }
      Waiting w{rx_chain_.head, {}};
      for (const auto& s : rx_chain_.segments)
        if (s.writable && s.len > 0) w.writable.push_back(s);
      waiting_.push_back(std::move(w));
    }
    // Tell an EVENT_IDX driver to kick at the next post; re-check what arrived meanwhile.
    auto more = queue.enable_kicks();
    if (!more) {
      set_needs_reset();
      return std::unexpected(std::move(more).error());
    }
    if (!*more) break;
  }
  bool used = false;
  while (!waiting_.empty() && !input_.empty()) {
    Waiting& w = waiting_.front();
    uint32_t written = 0;
    for (const auto& s : w.writable) {
      if (input_.empty()) break;
      const auto n = static_cast<uint32_t>(std::min<size_t>(s.len, input_.size()));
      auto dst = queue.ram().span(s.gpa, n);
      if (!dst) {
        set_needs_reset();
        return std::unexpected(std::move(dst).error());
      }
      std::copy_n(input_.begin(), n, dst->begin());
      input_.erase(input_.begin(), input_.begin() + n);
      written += n;
    }
    // A chain with no writable bytes gets a used length of 0 (it carried nothing to fill).
    PEPITA_TRY_VOID(queue.add_used(w.head, written));
    waiting_.pop_front();
    used = true;
  }
  return used ? queue.should_notify() : Result<bool>(false);
}

Result<bool> ConsoleDevice::transmit(Queue& queue) {
  bool notify = false;
  for (;;) {
    bool any = false;
    for (;;) {
      auto got = queue.pop(tx_chain_);
      if (!got) {
        set_needs_reset();
        return std::unexpected(std::move(got).error());
      }
      if (!*got) break;
      any = true;
      {
        std::lock_guard lock(out_mu_);
        for (const auto& s : tx_chain_.segments) {
          if (s.writable) continue;  // transmit buffers are device-readable; ignore the rest
          auto src = queue.ram().span(s.gpa, s.len);
          if (!src) {
            set_needs_reset();
            return std::unexpected(std::move(src).error());
          }
          const uint64_t room =
              options_.output_limit - std::min<uint64_t>(output_.size(), options_.output_limit);
          const auto keep = static_cast<size_t>(std::min<uint64_t>(room, src->size()));
          // SAFETY: std::byte and char have the same size; the bytes are only copied.
          output_.append(reinterpret_cast<const char*>(src->data()), keep);
          dropped_ += src->size() - keep;
        }
      }
      PEPITA_TRY_VOID(queue.add_used(tx_chain_.head, 0));
    }
    if (any) notify = PEPITA_TRY(queue.should_notify()) || notify;
    if (!PEPITA_TRY(queue.enable_kicks())) return notify;
  }
}

void ConsoleDevice::feed(std::span<const std::byte> input) {
  std::lock_guard lock(in_mu_);
  input_.insert(input_.end(), input.begin(), input.end());
}

size_t ConsoleDevice::pending_input() const {
  std::lock_guard lock(in_mu_);
  return input_.size();
}

size_t ConsoleDevice::waiting_buffers() const {
  std::lock_guard lock(in_mu_);
  return waiting_.size();
}

std::string ConsoleDevice::output() const {
  std::lock_guard lock(out_mu_);
  return output_;
}

std::string ConsoleDevice::take_output() {
  std::lock_guard lock(out_mu_);
  return std::exchange(output_, {});
}

uint64_t ConsoleDevice::dropped_output() const {
  std::lock_guard lock(out_mu_);
  return dropped_;
}

}  // namespace pepita::virtio::console
