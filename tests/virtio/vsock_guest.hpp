#pragma once
// Test-played vsock guest driver (what Linux's virtio_transport.c does, minus interrupts): three
// split rings in one guest RAM, receive buffers kept posted, packets sent one chain each, and
// a per-connection credit ledger. Used by vsock_test.cpp and bench/virtio/vsock_stream.cpp.
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/abi/virtio.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/vsock.hpp"

namespace pepita::virtio::vsock::testing {

struct RxPacket {
  Header hdr{};
  std::string data;
};

class GuestDriver {
 public:
  static constexpr uint16_t kQueue = 64;
  static constexpr uint32_t kRxBuf = sizeof(Header) + 4096;  // Linux's receive buffer size
  static constexpr uint64_t kMem = 8ull << 20;

  /// `split_rx`: each receive buffer is two descriptors, the header's and the payload's (half as
  /// many buffers), as a driver may post them.
  GuestDriver(VsockDevice& dev, uint64_t cid, bool split_rx = false)
      : dev_(dev),
        cid_(cid),
        split_rx_(split_rx),
        mem_(memory::GuestMemory::anonymous(PhysAddr(0), kMem).value()) {
    for (uint16_t i = 0; i < 3; ++i) {
      const uint64_t base = 0x10000ull * i;
      rings_[i].layout =
          QueueLayout{kQueue, PhysAddr(base), PhysAddr(base + 0x1000), PhysAddr(base + 0x2000)};
      queues_[i] = Queue::activate(rings_[i].layout, mem_, {.event_idx = true}).value();
    }
    for (uint16_t d = 0; d < kQueue; d = static_cast<uint16_t>(d + (split_rx ? 2 : 1))) post_rx(d);
  }

  /// Sends one packet as a single readable chain; a `split` header spans two descriptors.
  bool send_raw(Header h, std::string_view payload, bool split = false) {
    const uint64_t buf = kTxBuf;
    // Header and payload written once, straight into the transmit buffer (as a driver does).
    write(buf, &h, sizeof h);
    if (!payload.empty()) write(buf + sizeof h, payload.data(), payload.size());
    const auto len = static_cast<uint32_t>(sizeof h + payload.size());
    if (split) {
      desc(kTxq, 0, buf, 10, abi::virtio::DESC_F_NEXT, 1);
      desc(kTxq, 1, buf + 10, len - 10, 0);
    } else {
      desc(kTxq, 0, buf, len, 0);
    }
    publish(kTxq, 0);
    return dev_.process(kTxq, queues_[kTxq]).has_value();
  }

  /// A well-formed packet from guest port `gport` to host port `hport`, with our credit.
  bool send(uint32_t gport, uint32_t hport, uint16_t op, std::string_view payload = {},
            uint32_t flags = 0) {
    Header h{.src_cid = cid_,
             .dst_cid = kHostCid,
             .src_port = gport,
             .dst_port = hport,
             .len = static_cast<uint32_t>(payload.size()),
             .type = TYPE_STREAM,
             .op = op,
             .flags = flags,
             .buf_alloc = buf_alloc,
             .fwd_cnt = fwd_cnt};
    if (op == OP_RW) tx_cnt += h.len;
    return send_raw(h, payload);
  }

  /// Kicks rxq and collects every packet the device delivered into `inbox`; the application
  /// consumes data at once (fwd_cnt advances). True when the device accepted the kick.
  bool poll() {
    auto r = dev_.process(kRxq, queues_[kRxq]);
    if (!r) return false;
    Ring& ring = rings_[kRxq];
    const uint16_t used = mem_.read<uint16_t>(PhysAddr(ring.layout.used.raw() + 2)).value();
    while (ring.last_used != used) {
      const auto e = mem_.read<abi::virtio::UsedElem>(PhysAddr(ring.layout.used.raw() + 4 +
                                                               8ull * (ring.last_used % kQueue)))
                         .value();
      ++ring.last_used;
      RxPacket p;
      const uint64_t buf = kRxBufs + uint64_t{kRxBuf} * e.id;
      std::memcpy(&p.hdr, mem_.span(PhysAddr(buf), sizeof(Header)).value().data(), sizeof p.hdr);
      if (e.len > sizeof(Header)) {
        auto s = mem_.span(PhysAddr(buf + sizeof(Header)), e.len - sizeof(Header)).value();
        p.data.assign(reinterpret_cast<const char*>(s.data()), s.size());
      }
      if (p.hdr.op == OP_RW) fwd_cnt += static_cast<uint32_t>(p.data.size());
      peer_buf_alloc = p.hdr.buf_alloc;
      peer_fwd_cnt = p.hdr.fwd_cnt;
      inbox.push_back(std::move(p));
      post_rx(static_cast<uint16_t>(e.id));
    }
    return true;
  }

  /// Bytes we may still send to the host (its buf_alloc minus what is in flight).
  uint32_t peer_free() const {
    const uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }

  /// Writes descriptor `i` of queue `q` (for chains the helpers above do not build).
  void desc(uint16_t q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
            uint16_t next = 0) {
    (void)mem_.write(PhysAddr(rings_[q].layout.desc.raw() + 16ull * i),
                     abi::virtio::Desc{addr, len, flags, next});
  }
  /// Makes the chain at `head` available on queue `q` (no kick: process() is the kick).
  void publish(uint16_t q, uint16_t head) {
    Ring& r = rings_[q];
    (void)mem_.write(PhysAddr(r.layout.avail.raw() + 4 + 2ull * (r.avail_idx % kQueue)), head);
    ++r.avail_idx;
    (void)mem_.write(PhysAddr(r.layout.avail.raw() + 2), r.avail_idx);
  }

  VsockDevice& device() { return dev_; }
  Queue& queue(uint16_t i) { return queues_[i]; }
  memory::GuestMemory& mem() { return mem_; }

  std::deque<RxPacket> inbox;
  uint32_t buf_alloc = 64 * 1024;  // our receive buffer, advertised to the device
  uint32_t fwd_cnt = 0;            // what our application consumed
  uint32_t tx_cnt = 0;             // RW bytes we sent
  uint32_t peer_buf_alloc = 0;     // the device's, from its last packet
  uint32_t peer_fwd_cnt = 0;

 private:
  struct Ring {
    QueueLayout layout;
    uint16_t avail_idx = 0;
    uint16_t last_used = 0;
  };
  static constexpr uint64_t kRxBufs = 0x100000;
  static constexpr uint64_t kTxBuf = 0x400000;

  void write(uint64_t gpa, const void* src, size_t len) {
    std::memcpy(mem_.span(PhysAddr(gpa), len).value().data(), src, len);
  }
  void post_rx(uint16_t d) {
    const uint64_t buf = kRxBufs + uint64_t{kRxBuf} * d;
    if (split_rx_) {  // head d holds the header, d + 1 the payload (contiguous after it)
      desc(kRxq, d, buf, sizeof(Header), abi::virtio::DESC_F_WRITE | abi::virtio::DESC_F_NEXT,
           static_cast<uint16_t>(d + 1));
      desc(kRxq, static_cast<uint16_t>(d + 1), buf + sizeof(Header), kRxBuf - sizeof(Header),
           abi::virtio::DESC_F_WRITE);
    } else {
      desc(kRxq, d, buf, kRxBuf, abi::virtio::DESC_F_WRITE);
    }
    publish(kRxq, d);
  }

  VsockDevice& dev_;
  uint64_t cid_;
  bool split_rx_;
  memory::GuestMemory mem_;
  Ring rings_[3];
  Queue queues_[3];
};

}  // namespace pepita::virtio::vsock::testing
