// Guest-side virtio-vsock driver (virtio 1.2 section 5.10): receive buffers kept posted on rxq,
// one chain (header + payload) per packet on txq, a small connection table with credit-based
// flow control both ways. Polling only: every wait is a loop of poll() calls (VM exits).
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/abi/virtio_vsock.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/vsock.hpp"

namespace m = pepita::abi::virtio_mmio;
namespace v = pepita::abi::virtio;
namespace w = pepita::abi::virtio_vsock;

namespace pepita::guest::vsock {
namespace {

// Queue indices (spec 5.10.2).
constexpr uint16_t kRxq = 0;
constexpr uint16_t kTxq = 1;
constexpr uint16_t kEventq = 2;
constexpr uint16_t kRxQueueSize = 16;
constexpr uint32_t kRxBufBytes = sizeof(w::Header) + 4096;
constexpr uint32_t kTxChunk = 4096;  // payload bytes per RW packet

uint8_t* g_rx_of_desc[kRxQueueSize];

void copy(void* dst, const void* src, uint64_t n) { __builtin_memcpy(dst, src, n); }

}  // namespace

bool Vsock::init() {
  if (!dev_.probe(v::ID_VSOCK) || !dev_.init(0)) return false;
  if (!dev_.setup_queue(kRxq, kRxQueueSize) || !dev_.setup_queue(kTxq, 8) ||
      !dev_.setup_queue(kEventq, 4) || !dev_.driver_ok())
    return false;
  cid_ = dev_.config32(0) | uint64_t{dev_.config32(4)} << 32;
  rx_count_ = dev_.queue(kRxq).size();
  rx_bufs_ = static_cast<uint8_t*>(alloc(uint64_t{kRxBufBytes} * rx_count_, 16));
  tx_hdr_ = static_cast<uint8_t*>(alloc(sizeof(w::Header), 16));
  if (rx_bufs_ == nullptr || tx_hdr_ == nullptr) return false;
  for (int i = 0; i < kMaxConns; ++i) {
    conns_[i].ring = static_cast<uint8_t*>(alloc(kBufAlloc, 16));
    if (conns_[i].ring == nullptr) return false;
  }
  for (uint16_t i = 0; i < rx_count_; ++i) post(i);
  // The event queue gets its buffers too (spec 5.10.6.1); the device holds them for a
  // TRANSPORT_RESET, which this driver would see only as RSTs on its connections.
  auto* events = static_cast<w::Event*>(alloc(sizeof(w::Event) * 4, 4));
  if (events == nullptr) return false;
  for (int i = 0; i < 4; ++i) {
    virtio::Buf b{&events[i], sizeof(w::Event), true};
    if (dev_.queue(kEventq).submit(&b, 1) < 0) return false;
  }
  dev_.write32(m::QUEUE_NOTIFY, kEventq);
  return poll();
}

void Vsock::post(uint16_t i) {
  uint8_t* buf = rx_bufs_ + uint64_t{kRxBufBytes} * i;
  virtio::Buf b{buf, kRxBufBytes, true};
  const int head = dev_.queue(kRxq).submit(&b, 1);
  if (head >= 0 && head < kRxQueueSize) g_rx_of_desc[head] = buf;
}

bool Vsock::poll() {
  if (broken_) return false;
  // The device serves its host sockets and fills our posted buffers inside this exit.
  dev_.write32(m::QUEUE_NOTIFY, kRxq);
  if ((dev_.status() & v::STATUS_NEEDS_RESET) != 0) {
    broken_ = true;
    return false;
  }
  uint16_t head = 0;
  uint32_t len = 0;
  while (dev_.queue(kRxq).poll(&head, &len)) {
    if (head >= kRxQueueSize || g_rx_of_desc[head] == nullptr) continue;
    uint8_t* buf = g_rx_of_desc[head];
    if (len >= sizeof(w::Header) && len <= kRxBufBytes) dispatch(buf, len);
    post(static_cast<uint16_t>((buf - rx_bufs_) / kRxBufBytes));
  }
  return true;
}

int Vsock::find(uint32_t local, uint32_t peer) const {
  for (int i = 0; i < kMaxConns; ++i)
    if (conns_[i].used && conns_[i].local_port == local && conns_[i].peer_port == peer) return i;
  return -1;
}

int Vsock::open_slot(uint32_t local_port, uint32_t peer_port) {
  for (int i = 0; i < kMaxConns; ++i) {
    if (conns_[i].used) continue;
    Conn& c = conns_[i];
    uint8_t* ring = c.ring;  // the receive buffer stays with its slot
    c = Conn{};
    c.ring = ring;
    c.used = true;
    c.local_port = local_port;
    c.peer_port = peer_port;
    return i;
  }
  return -1;
}

void Vsock::dispatch(const uint8_t* pkt, uint32_t len) {
  w::Header h;
  copy(&h, pkt, sizeof h);
  if (h.src_cid != w::CID_HOST || h.dst_cid != cid_ || h.type != w::TYPE_STREAM) return;
  if (h.len > len - sizeof h) return;  // the device never does this; ignore rather than trust
  const int i = find(h.dst_port, h.src_port);
  if (i < 0) {
    if (h.op == w::OP_REQUEST) {
      for (auto& p : pending_) {
        if (!p.used) {
          p = Pending{h.dst_port, h.src_port, h.buf_alloc, h.fwd_cnt, true};
          return;
        }
      }
    }
    return;  // no room for a request: the host's CONNECT waits until it gives up
  }
  Conn& c = conns_[i];
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  switch (h.op) {
    case w::OP_RESPONSE: c.established = true; break;
    case w::OP_RST:
      c.reset = true;
      c.established = false;
      break;
    case w::OP_SHUTDOWN:
      if ((h.flags & w::SHUTDOWN_SEND) != 0) c.peer_shut_send = true;
      break;
    case w::OP_RW: {
      // The device keeps within our credit, so the data fits; a device that did not is cut off.
      if (h.len > kBufAlloc - c.size) {
        c.reset = true;
        send_ctl(c, w::OP_RST, 0);
        break;
      }
      const uint8_t* data = pkt + sizeof h;
      for (uint32_t k = 0; k < h.len; ++k) c.ring[(c.head + c.size + k) % kBufAlloc] = data[k];
      c.size += h.len;
      break;
    }
    case w::OP_CREDIT_REQUEST: send_ctl(c, w::OP_CREDIT_UPDATE, 0); break;
    default:  // CREDIT_UPDATE carried only the credit fields read above
      break;
  }
}

bool Vsock::send_packet(Conn& c, uint16_t op, uint32_t flags, const void* data, uint32_t len) {
  const w::Header h{.src_cid = cid_,
                    .dst_cid = w::CID_HOST,
                    .src_port = c.local_port,
                    .dst_port = c.peer_port,
                    .len = len,
                    .type = w::TYPE_STREAM,
                    .op = op,
                    .flags = flags,
                    .buf_alloc = kBufAlloc,
                    .fwd_cnt = c.fwd_cnt};
  copy(tx_hdr_, &h, sizeof h);
  c.last_fwd_sent = c.fwd_cnt;
  virtio::Buf bufs[2] = {{tx_hdr_, sizeof h, false}, {const_cast<void*>(data), len, false}};
  return dev_.queue(kTxq).transfer(bufs, len > 0 ? 2 : 1) >= 0;
}

bool Vsock::send_ctl(Conn& c, uint16_t op, uint32_t flags) {
  return send_packet(c, op, flags, nullptr, 0);
}

int Vsock::accept(uint32_t port) {
  for (;;) {
    for (auto& p : pending_) {
      if (!p.used || p.port != port) continue;
      p.used = false;
      const int i = open_slot(port, p.peer_port);
      if (i < 0) return -1;
      Conn& c = conns_[i];
      c.peer_buf_alloc = p.buf_alloc;
      c.peer_fwd_cnt = p.fwd_cnt;
      c.established = true;
      if (!send_ctl(c, w::OP_RESPONSE, 0)) return -1;
      return i;
    }
    if (!poll()) return -1;
  }
}

int Vsock::connect(uint32_t port) {
  const int i = open_slot(next_port_, port);
  if (i < 0) return -1;
  ++next_port_;
  Conn& c = conns_[i];
  if (!send_ctl(c, w::OP_REQUEST, 0)) {
    c.used = false;
    return -1;
  }
  while (!c.established && !c.reset)
    if (!poll()) return -1;
  if (c.reset) {
    c.used = false;
    return -1;
  }
  return i;
}

int64_t Vsock::send(int i, const void* data, uint32_t len) {
  if (i < 0 || i >= kMaxConns || !conns_[i].used) return -1;
  Conn& c = conns_[i];
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t sent = 0;
  while (sent < len) {
    if (c.reset || !c.established) return -1;
    const uint32_t in_flight = c.tx_cnt - c.peer_fwd_cnt;
    const uint32_t credit = in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
    uint32_t n = len - sent;
    if (n > credit) n = credit;
    if (n > kTxChunk) n = kTxChunk;
    if (n == 0) {  // out of credit: wait for the host to consume (its CREDIT_UPDATE)
      if (!poll()) return -1;
      continue;
    }
    if (!send_packet(c, w::OP_RW, 0, p + sent, n)) return -1;
    c.tx_cnt += n;
    sent += n;
  }
  return sent;
}

int64_t Vsock::recv(int i, void* data, uint32_t len) {
  if (i < 0 || i >= kMaxConns || !conns_[i].used) return -1;
  Conn& c = conns_[i];
  while (c.size == 0) {
    if (c.reset) return -1;
    if (c.peer_shut_send) return 0;
    if (!poll()) return -1;
  }
  uint32_t n = len < c.size ? len : c.size;
  auto* out = static_cast<uint8_t*>(data);
  for (uint32_t k = 0; k < n; ++k) out[k] = c.ring[(c.head + k) % kBufAlloc];
  c.head = (c.head + n) % kBufAlloc;
  c.size -= n;
  c.fwd_cnt += n;
  // Tell the host about the room once it could be waiting for it (half the buffer freed).
  if (c.fwd_cnt - c.last_fwd_sent >= kBufAlloc / 2) send_ctl(c, w::OP_CREDIT_UPDATE, 0);
  return n;
}

void Vsock::close(int i) {
  if (i < 0 || i >= kMaxConns || !conns_[i].used) return;
  Conn& c = conns_[i];
  if (!c.reset && send_ctl(c, w::OP_SHUTDOWN, w::SHUTDOWN_RCV | w::SHUTDOWN_SEND)) {
    for (int tries = 0; tries < 1000 && !c.reset; ++tries)
      if (!poll()) break;
  }
  c.used = false;
}

}  // namespace pepita::guest::vsock
