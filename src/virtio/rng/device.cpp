// virtio-rng: fills device-writable buffers from getrandom(2).
#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "pepita/core/sys/check.hpp"
#include "pepita/virtio/rng.hpp"

namespace pepita::virtio::rng {
namespace v = abi::virtio;

uint64_t RngDevice::features() const noexcept {
  return v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_INDIRECT_DESC) |
         v::feature_bit(v::F_RING_EVENT_IDX);
}

Result<void> RngDevice::activate(uint64_t acked) {
  if ((acked & ~features()) != 0 || (acked & v::feature_bit(v::F_VERSION_1)) == 0) {
    return fail(ErrorCode::InvalidArgument,
                "virtio-rng: acknowledged features must include VERSION_1 and be offered ones");
  }
  clear_needs_reset();
  return {};
}

Result<bool> RngDevice::process(uint16_t index, Queue& queue) {
  if (index != 0) return fail(ErrorCode::InvalidArgument, "virtio-rng has one queue");
  bool notify = false;
  for (;;) {
    bool any = false;
    for (;;) {
      auto got = queue.pop(chain_);
      if (!got) {
        set_needs_reset();
        return std::unexpected(std::move(got).error());
      }
      if (!*got) break;
      any = true;
      uint32_t written = 0;
      for (const auto& s : chain_.segments) {
        if (!s.writable || written >= kMaxBytesPerChain) continue;
        const uint32_t n = std::min(s.len, kMaxBytesPerChain - written);
        auto dst = PEPITA_TRY(queue.ram().span(s.gpa, n));
        size_t done = 0;
        while (done < n) {
          const long r = sys::ret(::getrandom(dst.data() + done, n - done, 0));
          if (r == -EINTR) continue;
          if (r < 0) return fail_errno(static_cast<int>(r), "getrandom");
          done += static_cast<size_t>(r);
        }
        written += n;
      }
      bytes_ += written;
      PEPITA_TRY_VOID(queue.add_used(chain_.head, written));
    }
    if (any) notify = PEPITA_TRY(queue.should_notify()) || notify;
    if (!PEPITA_TRY(queue.enable_kicks())) return notify;
  }
}

}  // namespace pepita::virtio::rng
