// The reference crate's vsock API over the real device: a guest driver (what Linux's
// virtio_transport.c does, minus interrupts) in front of vsock::VsockDevice.
#include <algorithm>
#include <cstring>

#include "pepita/abi/virtio.hpp"
#include "pepita/core/format.hpp"
#include "pepita/virtio/vsock_crate.hpp"

namespace pepita::virtio {
namespace {
namespace v = abi::virtio;

constexpr uint16_t kQueueSize = 64;
constexpr uint32_t kRxBuf = sizeof(vsock::Header) + 4096;  // Linux's receive buffer size
constexpr uint64_t kRingStride = 0x10000;                  // rings of queue i at i * stride
constexpr uint64_t kRxBufs = 0x100000;
constexpr uint64_t kTxBuf = 0x400000;
constexpr uint64_t kMem = 8ull << 20;

std::string addr_text(VsockAddr a) { return pepita::fmt("{}:{}", a.cid, a.port); }

bool is_wildcard(VsockAddr a) {
  return a.cid == VsockAddr::ANY_CID || a.port == VsockAddr::ANY_PORT;
}
}  // namespace

Result<VsockPacketHeader> VsockPacketHeader::parse(std::span<const std::byte> bytes) {
  if (bytes.size() < SIZE) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("vsock packet header: {} bytes, a header is {}; pass the whole packet",
                            bytes.size(), SIZE));
  }
  VsockPacketHeader h{};
  std::memcpy(static_cast<void*>(&h), bytes.data(), SIZE);
  return h;
}

// ---- VsockConnection ----

VsockConnection::VsockConnection(VsockAddr local, VsockAddr remote, uint32_t buf_alloc)
    : local_(local), remote_(remote) {
  credit_.buf_alloc = buf_alloc;
}

Result<VsockConnection> VsockConnection::make(VsockAddr local, VsockAddr remote,
                                              uint32_t buf_alloc) {
  if (is_wildcard(local) || is_wildcard(remote)) {
    return fail(ErrorCode::InvalidArgument,
                std::string("vsock connection ") + addr_text(local) + " -> " + addr_text(remote) +
                    ": ANY_CID/ANY_PORT bind a listener; a connection needs both ends' CID and "
                    "port");
  }
  if (buf_alloc == 0) {
    return fail(ErrorCode::InvalidArgument,
                "vsock connection: buf_alloc 0 leaves the peer no credit; pass the receive buffer "
                "size (e.g. 65536)");
  }
  return VsockConnection(local, remote, buf_alloc);
}

void VsockConnection::queue_tx(std::span<const std::byte> data) {
  tx_.append(reinterpret_cast<const char*>(data.data()), data.size());
}

Result<void> VsockConnection::acknowledge(uint32_t bytes) {
  if (bytes > pending_rx()) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("vsock {}: acknowledge({}) but only {} received bytes are unconsumed",
                            addr_text(remote_), bytes, pending_rx()));
  }
  rx_read_ += bytes;
  credit_.fwd_cnt += bytes;
  if (rx_read_ == rx_.size()) {
    rx_.clear();
    rx_read_ = 0;
  }
  return {};
}

void VsockConnection::on_packet(const vsock::Header& h, std::span<const std::byte> payload) {
  credit_.peer_buf_alloc = h.buf_alloc;
  credit_.peer_fwd_cnt = h.fwd_cnt;
  switch (h.op) {
    case vsock::OP_RESPONSE:
      if (state_ == VsockConnState::Connecting) state_ = VsockConnState::Connected;
      break;
    case vsock::OP_RW:
      rx_.append(reinterpret_cast<const char*>(payload.data()), payload.size());
      credit_.rx_cnt += static_cast<uint32_t>(payload.size());
      break;
    case vsock::OP_RST:
      state_ = VsockConnState::Disconnected;
      reset_ = true;
      break;
    case vsock::OP_SHUTDOWN:
      // Spec 5.10.6.5: RCV, the peer receives no more; SEND, it sends no more. Permanent once
      // sent: a later SHUTDOWN with a bit clear does not take it back.
      peer_shut_ |= h.flags & (vsock::SHUTDOWN_RCV | vsock::SHUTDOWN_SEND);
      state_ = VsockConnState::Disconnecting;
      break;
    default:  // CREDIT_UPDATE: the credit above is all it says; CREDIT_REQUEST: the caller's
      break;
  }
}

Result<void> VsockConnection::check_send() const {
  if (may_send()) return {};
  const std::string to = "VirtioVsock::send to " + addr_text(remote_);
  if (reset_) {
    return fail(ErrorCode::Disconnected, to + ": the host reset the connection; connect() again");
  }
  if ((peer_shut_ & vsock::SHUTDOWN_RCV) != 0) {
    return fail(ErrorCode::Disconnected,
                to + ": the host receives no more on this connection (its SHUTDOWN had "
                     "SHUTDOWN_RCV); recv() still reads what it sends");
  }
  return fail(ErrorCode::Disconnected, to + ": the connection is not established");
}

// ---- VirtioVsock ----

VirtioVsock::VirtioVsock(uint64_t cid, uint32_t buf_alloc, std::unique_ptr<vsock::VsockDevice> dev,
                         memory::GuestMemory mem)
    : cid_(cid), buf_alloc_(buf_alloc), dev_(std::move(dev)), mem_(std::move(mem)) {
  for (uint16_t i = 0; i < 3; ++i) {
    const uint64_t base = kRingStride * i;
    rings_[i].layout =
        QueueLayout{kQueueSize, PhysAddr(base), PhysAddr(base + 0x1000), PhysAddr(base + 0x2000)};
  }
}

VirtioVsock::~VirtioVsock() { deactivate(); }

Result<std::unique_ptr<VirtioVsock>> VirtioVsock::make(uint64_t cid,
                                                       const VirtioVsockOptions& options) {
  if (options.buf_alloc == 0) {
    return fail(ErrorCode::InvalidArgument,
                "VirtioVsock: buf_alloc 0 leaves the host no credit; pass the receive buffer size");
  }
  auto dev =
      PEPITA_TRY(vsock::VsockDevice::create({.uds_path = options.uds_path, .guest_cid = cid}));
  auto mem = PEPITA_TRY(memory::GuestMemory::anonymous(PhysAddr(0), kMem));
  return std::unique_ptr<VirtioVsock>(
      new VirtioVsock(cid, options.buf_alloc, std::move(dev), std::move(mem)));
}

Result<void> VirtioVsock::activate() {
  if (ready_) return {};
  // Fresh rings, as a driver sets them up after a reset.
  auto rings = PEPITA_TRY(mem_.span(PhysAddr(0), 3 * kRingStride));
  std::memset(rings.data(), 0, rings.size());
  PEPITA_TRY_VOID(dev_->activate(v::feature_bit(v::F_VERSION_1) | v::feature_bit(vsock::F_STREAM)));
  for (uint16_t i = 0; i < 3; ++i) {
    rings_[i].avail_idx = 0;
    rings_[i].last_used = 0;
    queues_[i] = PEPITA_TRY(Queue::activate(rings_[i].layout, mem_, {}));
  }
  for (uint16_t d = 0; d < kQueueSize; ++d) PEPITA_TRY_VOID(post_rx(d));
  ready_ = true;
  return {};
}

void VirtioVsock::deactivate() noexcept {
  if (!ready_) return;
  dev_->reset();
  conns_.clear();
  ready_ = false;
}

const VsockConnection* VirtioVsock::connection(VsockAddr remote) const {
  auto it = conns_.find(remote);
  return it == conns_.end() ? nullptr : &it->second;
}

Result<VsockConnection*> VirtioVsock::find(VsockAddr remote, std::string_view what) {
  if (!ready_) {
    return fail(ErrorCode::DeviceNotReady,
                std::string("VirtioVsock::") + std::string(what) + ": call activate() first");
  }
  auto it = conns_.find(remote);
  if (it == conns_.end()) {
    return fail(ErrorCode::NotFound, std::string("VirtioVsock::") + std::string(what) + " to " +
                                         addr_text(remote) + ": not connected; connect() first");
  }
  return &it->second;
}

Result<VsockAddr> VirtioVsock::connect(VsockAddr remote) {
  if (!ready_)
    return fail(ErrorCode::DeviceNotReady, "VirtioVsock::connect: call activate() first");
  if (!remote.is_host() || remote.port == VsockAddr::ANY_PORT) {
    return fail(ErrorCode::InvalidArgument,
                std::string("VirtioVsock::connect to ") + addr_text(remote) +
                    ": this device reaches the host only; pass VsockAddr::host(port) with a port");
  }
  if (conns_.contains(remote)) {
    return fail(ErrorCode::AlreadyExists,
                std::string("VirtioVsock::connect: already connected to ") + addr_text(remote) +
                    "; send/recv on it");
  }
  const VsockAddr local{cid_, next_port_++};
  auto conn = PEPITA_TRY(VsockConnection::make(local, remote, buf_alloc_));
  conn.state_ = VsockConnState::Connecting;
  auto& c = conns_.emplace(remote, std::move(conn)).first->second;
  if (auto t = transmit(header_for(c, vsock::OP_REQUEST, 0), {}); !t) {
    conns_.erase(remote);
    return std::unexpected(std::move(t).error());
  }
  // The device answers a request at once (RESPONSE, or RST when nobody listens).
  for (int i = 0; i < 3 && c.state_ == VsockConnState::Connecting; ++i) PEPITA_TRY_VOID(poll());
  if (c.state_ != VsockConnState::Connected) {
    conns_.erase(remote);
    return fail(ErrorCode::Disconnected,
                std::string("VirtioVsock::connect to ") + addr_text(remote) +
                    ": refused by the host (nobody listens on the device's uds_path_" +
                    std::to_string(remote.port) + ")");
  }
  return local;
}

Result<size_t> VirtioVsock::send(VsockAddr remote, std::span<const std::byte> data) {
  VsockConnection* c = PEPITA_TRY(find(remote, "send"));
  if (auto ok = c->check_send(); !ok) {
    if (c->reset_) conns_.erase(remote);
    return std::unexpected(std::move(ok).error());
  }
  c->queue_tx(data);
  PEPITA_TRY_VOID(flush(*c));
  PEPITA_TRY_VOID(poll());  // the device's credit updates, then what they allow
  PEPITA_TRY_VOID(flush(*c));
  return data.size();
}

Result<size_t> VirtioVsock::recv(VsockAddr remote, std::span<std::byte> buffer) {
  VsockConnection* c = PEPITA_TRY(find(remote, "recv"));
  PEPITA_TRY_VOID(poll());
  PEPITA_TRY_VOID(flush(*c));
  const size_t n = std::min(buffer.size(), c->pending_rx());
  if (n == 0 && c->reset_) {
    conns_.erase(remote);
    return fail(ErrorCode::Disconnected, std::string("VirtioVsock::recv from ") +
                                             addr_text(remote) +
                                             ": the host reset the connection; connect() again");
  }
  if (n == 0) return size_t{0};
  std::memcpy(buffer.data(), c->rx_.data() + c->rx_read_, n);
  PEPITA_TRY_VOID(c->acknowledge(static_cast<uint32_t>(n)));
  if (c->is_connected() && c->credit_.update_due()) {
    PEPITA_TRY_VOID(transmit(header_for(*c, vsock::OP_CREDIT_UPDATE, 0), {}));
  }
  return n;
}

vsock::Header VirtioVsock::header_for(const VsockConnection& c, uint16_t op, uint32_t len) const {
  return vsock::Header{.src_cid = c.local_.cid,
                       .dst_cid = c.remote_.cid,
                       .src_port = c.local_.port,
                       .dst_port = c.remote_.port,
                       .len = len,
                       .type = vsock::TYPE_STREAM,
                       .op = op,
                       .flags = 0,
                       .buf_alloc = c.credit_.buf_alloc,
                       .fwd_cnt = c.credit_.fwd_cnt};
}

Result<void> VirtioVsock::flush(VsockConnection& c) {
  while (c.may_send() && c.pending_tx() > 0 && c.available_credit() > 0) {
    const auto n = static_cast<uint32_t>(
        std::min<size_t>({c.pending_tx(), c.available_credit(), vsock::kMaxPayload}));
    const auto* p = reinterpret_cast<const std::byte*>(c.tx_.data() + c.tx_sent_);
    PEPITA_TRY_VOID(transmit(header_for(c, vsock::OP_RW, n), std::span(p, n)));
    c.credit_.tx_cnt += n;
    c.tx_sent_ += n;
  }
  if (c.tx_sent_ == c.tx_.size()) {
    c.tx_.clear();
    c.tx_sent_ = 0;
  }
  return {};
}

Result<void> VirtioVsock::transmit(const vsock::Header& h, std::span<const std::byte> payload) {
  PEPITA_TRY_VOID(mem_.write(PhysAddr(kTxBuf), h));
  if (!payload.empty()) PEPITA_TRY_VOID(mem_.write_bytes(PhysAddr(kTxBuf + sizeof h), payload));
  PEPITA_TRY_VOID(
      desc(vsock::kTxq, 0, kTxBuf, static_cast<uint32_t>(sizeof h + payload.size()), 0));
  PEPITA_TRY_VOID(publish(vsock::kTxq, 0));
  PEPITA_TRY_VOID(dev_->process(vsock::kTxq, queues_[vsock::kTxq]));
  // Our header carried fwd_cnt: the device has heard of everything consumed so far.
  for (auto& [remote, c] : conns_) {
    if (c.local_.port == h.src_port && remote.port == h.dst_port) {
      c.credit_.last_fwd_sent = h.fwd_cnt;
    }
  }
  return {};
}

Result<void> VirtioVsock::poll() {
  PEPITA_TRY_VOID(dev_->process(vsock::kRxq, queues_[vsock::kRxq]));
  Ring& ring = rings_[vsock::kRxq];
  const uint16_t used = PEPITA_TRY(mem_.read<uint16_t>(PhysAddr(ring.layout.used.raw() + 2)));
  std::vector<VsockConnection*> credit_requests;
  while (ring.last_used != used) {
    const auto e = PEPITA_TRY(mem_.read<v::UsedElem>(
        PhysAddr(ring.layout.used.raw() + 4 + 8ull * (ring.last_used % kQueueSize))));
    ++ring.last_used;
    if (e.id >= kQueueSize || e.len < sizeof(vsock::Header) || e.len > kRxBuf) {
      return fail(ErrorCode::Protocol,
                  pepita::fmt("virtio-vsock receive queue: used element id {} len {} outside the "
                              "posted buffers; the device broke the ring",
                              e.id, e.len));
    }
    const uint64_t buf = kRxBufs + uint64_t{kRxBuf} * e.id;
    const auto h = PEPITA_TRY(mem_.read<vsock::Header>(PhysAddr(buf)));
    const uint32_t data_len = std::min<uint32_t>(h.len, e.len - sizeof(vsock::Header));
    for (auto& [remote, c] : conns_) {
      if (c.local_.port != h.dst_port || remote.port != h.src_port) continue;
      std::span<const std::byte> payload;
      if (h.op == vsock::OP_RW) {
        payload = PEPITA_TRY(mem_.span(PhysAddr(buf + sizeof(vsock::Header)), data_len));
      }
      c.on_packet(h, payload);
      if (h.op == vsock::OP_CREDIT_REQUEST) credit_requests.push_back(&c);
    }
    PEPITA_TRY_VOID(post_rx(static_cast<uint16_t>(e.id)));
  }
  for (VsockConnection* c : credit_requests) {
    PEPITA_TRY_VOID(transmit(header_for(*c, vsock::OP_CREDIT_UPDATE, 0), {}));
  }
  return {};
}

Result<void> VirtioVsock::desc(uint16_t q, uint16_t i, uint64_t addr, uint32_t len,
                               uint16_t flags) {
  return mem_.write(PhysAddr(rings_[q].layout.desc.raw() + 16ull * i),
                    v::Desc{addr, len, flags, 0});
}

Result<void> VirtioVsock::publish(uint16_t q, uint16_t head) {
  Ring& r = rings_[q];
  PEPITA_TRY_VOID(
      mem_.write(PhysAddr(r.layout.avail.raw() + 4 + 2ull * (r.avail_idx % kQueueSize)), head));
  ++r.avail_idx;
  return mem_.write(PhysAddr(r.layout.avail.raw() + 2), r.avail_idx);
}

Result<void> VirtioVsock::post_rx(uint16_t d) {
  PEPITA_TRY_VOID(
      desc(vsock::kRxq, d, kRxBufs + uint64_t{kRxBuf} * d, kRxBuf, abi::virtio::DESC_F_WRITE));
  return publish(vsock::kRxq, d);
}

}  // namespace pepita::virtio
