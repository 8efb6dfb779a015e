#pragma once
// The reference crate's virtio-vsock API (virtio.rs: VsockAddr, VsockPacketType,
// VsockPacketHeader, VsockConnState, VsockConnection, VirtioVsock) over pepita's real device.
// The crate's VirtioVsock is the guest's view: a CID that connects to the host, sends and
// receives. Here it is a guest driver (three split rings in its own guest RAM) in front of a real
// vsock::VsockDevice, whose host side is Firecracker's: connecting to host port P reaches the
// Unix socket listening at `uds_path + "_" + P`.
//
//   auto vsock = PEPITA_TRY(VirtioVsock::make(3, {.uds_path = "/run/vm.vsock"}));
//   PEPITA_TRY_VOID(vsock->activate());
//   const auto host = VsockAddr::make(2, 1234);   // reaches /run/vm.vsock_1234
//   PEPITA_TRY(vsock->connect(host));
//   PEPITA_TRY(vsock->send(host, std::as_bytes(std::span(msg))));
//   size_t n = PEPITA_TRY(vsock->recv(host, buffer));   // 0: nothing yet (never blocks)
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/queue.hpp"
#include "pepita/virtio/vsock.hpp"

namespace pepita::virtio {

/// The crate's VsockAddr (HOST_CID, ANY_CID, ANY_PORT, make, host, is_host).
using VsockAddr = vsock::VsockAddr;

/// The crate's VsockPacketType: its values are the virtio-vsock operations (VIRTIO_VSOCK_OP_*).
enum class VsockPacketType : uint16_t {
  Invalid = vsock::OP_INVALID,
  Request = vsock::OP_REQUEST,
  Response = vsock::OP_RESPONSE,
  Rst = vsock::OP_RST,
  Shutdown = vsock::OP_SHUTDOWN,
  Rw = vsock::OP_RW,
  CreditUpdate = vsock::OP_CREDIT_UPDATE,
  CreditRequest = vsock::OP_CREDIT_REQUEST,
};

/// The crate's `From<u16>`: an unknown operation is Invalid.
constexpr VsockPacketType vsock_packet_type(uint16_t op) noexcept {
  return op <= vsock::OP_CREDIT_REQUEST ? static_cast<VsockPacketType>(op)
                                        : VsockPacketType::Invalid;
}

/// The crate's VsockPacketHeader: the 44-byte virtio_vsock_hdr (abi::virtio_vsock::Header), with
/// the crate's constructor and accessors. The crate's packet type is the header's `op`; `type`
/// is the socket type, STREAM (the only one our device serves).
struct VsockPacketHeader : vsock::Header {
  static constexpr size_t SIZE = sizeof(vsock::Header);

  static constexpr VsockPacketHeader make(VsockAddr src, VsockAddr dst,
                                          VsockPacketType type) noexcept {
    VsockPacketHeader h{};
    h.src_cid = src.cid;
    h.dst_cid = dst.cid;
    h.src_port = src.port;
    h.dst_port = dst.port;
    h.type = vsock::TYPE_STREAM;
    h.op = static_cast<uint16_t>(type);
    return h;
  }
  /// Reads a header from the first SIZE bytes of a packet. InvalidArgument for fewer bytes.
  static Result<VsockPacketHeader> parse(std::span<const std::byte> bytes);

  constexpr VsockPacketType get_type() const noexcept { return vsock_packet_type(op); }
  constexpr VsockAddr src() const noexcept { return {src_cid, src_port}; }
  constexpr VsockAddr dst() const noexcept { return {dst_cid, dst_port}; }
};
static_assert(sizeof(VsockPacketHeader) == 44);

/// The crate's VsockConnState.
enum class VsockConnState : uint8_t { Disconnected = 0, Connecting, Connected, Disconnecting };

/// The crate's VsockConnection: one stream of a VirtioVsock, the guest's end. Its credit is the
/// device's spec arithmetic (vsock::Credit, spec 5.10.6.3), updated from every packet the device
/// delivers.
class VsockConnection {
 public:
  /// InvalidArgument for a wildcard CID or port at either end, or a zero buf_alloc.
  static Result<VsockConnection> make(VsockAddr local, VsockAddr remote,
                                      uint32_t buf_alloc = 64 * 1024);

  VsockConnState state() const noexcept { return state_; }
  bool is_connected() const noexcept { return state_ == VsockConnState::Connected; }
  VsockAddr local() const noexcept { return local_; }
  VsockAddr remote() const noexcept { return remote_; }
  /// Bytes we may still send: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), 0 when none.
  uint32_t available_credit() const noexcept { return credit_.peer_free(); }
  /// Bytes queued by queue_tx and not yet given to the device (waiting for credit).
  size_t pending_tx() const noexcept { return tx_.size() - tx_sent_; }
  /// Received bytes the application consumed (our fwd_cnt, advertised to the peer).
  uint32_t forward_count() const noexcept { return credit_.fwd_cnt; }
  /// Received bytes not consumed yet.
  size_t pending_rx() const noexcept { return rx_.size() - rx_read_; }
  /// Queues bytes to send; VirtioVsock::send transmits them within the peer's credit.
  void queue_tx(std::span<const std::byte> data);
  /// Marks `bytes` of the received data consumed (fwd_cnt advances). InvalidArgument for more
  /// than pending_rx().
  Result<void> acknowledge(uint32_t bytes);
  const vsock::Credit& credit() const noexcept { return credit_; }
  /// Applies one packet the device delivered for this connection, as VirtioVsock's receive path
  /// does with each (public so the state machine is testable without a device): the peer's
  /// credit, RESPONSE (connected), RW (`payload` is received), RST (reset), SHUTDOWN (its flags
  /// are kept, see peer_shutdown(); state() is Disconnecting). CREDIT_REQUEST is the caller's
  /// to answer.
  void on_packet(const vsock::Header& h, std::span<const std::byte> payload);
  /// The SHUTDOWN flags the peer sent, cumulative (spec 5.10.6.5: they are permanent once sent):
  /// vsock::SHUTDOWN_RCV, it receives no more; vsock::SHUTDOWN_SEND, it sends no more.
  uint32_t peer_shutdown() const noexcept { return peer_shut_; }
  /// True once the peer sends no more (SHUTDOWN_SEND) and every byte it sent was consumed:
  /// recv() returns 0 from now on, for good.
  bool end_of_stream() const noexcept {
    return (peer_shut_ & vsock::SHUTDOWN_SEND) != 0 && pending_rx() == 0;
  }
  /// Ok while data may be sent: connected, or shut down by a peer that still receives.
  /// Disconnected otherwise, saying why (the peer reset the connection, or receives no more).
  Result<void> check_send() const;

 private:
  friend class VirtioVsock;
  VsockConnection(VsockAddr local, VsockAddr remote, uint32_t buf_alloc);

  VsockAddr local_;
  VsockAddr remote_;
  VsockConnState state_ = VsockConnState::Disconnected;
  vsock::Credit credit_;
  std::string rx_;  // received, rx_read_ bytes of it consumed
  size_t rx_read_ = 0;
  std::string tx_;  // queued, tx_sent_ bytes of it given to the device
  size_t tx_sent_ = 0;
  uint32_t peer_shut_ = 0;  // SHUTDOWN flags the peer sent (it will not send / receive more)
  bool reset_ = false;      // the peer answered RST
  bool may_send() const noexcept {
    return state_ == VsockConnState::Connected ||
           (state_ == VsockConnState::Disconnecting && (peer_shut_ & vsock::SHUTDOWN_RCV) == 0);
  }
};

struct VirtioVsockOptions {
  /// The device's host side (vsock::VsockOptions::uds_path): host port P is `uds_path_P`.
  std::string uds_path{};
  /// Our receive buffer per connection, advertised to the device.
  uint32_t buf_alloc = 64 * 1024;
};

/// The crate's VirtioVsock: a guest (CID `cid`) with a virtio-vsock device. Every call drives the
/// real device through its queues and never blocks: the device polls its host sockets once per
/// queue kick. One thread at a time.
class VirtioVsock {
 public:
  /// InvalidArgument for a CID below 3 or reserved (the device's rules), a zero buf_alloc.
  static Result<std::unique_ptr<VirtioVsock>> make(uint64_t cid,
                                                   const VirtioVsockOptions& options = {});
  ~VirtioVsock();
  VirtioVsock(const VirtioVsock&) = delete;
  VirtioVsock& operator=(const VirtioVsock&) = delete;

  uint64_t cid() const noexcept { return cid_; }
  bool is_ready() const noexcept { return ready_; }
  /// Negotiates features (VERSION_1, STREAM), sets up the three queues and posts receive buffers.
  Result<void> activate();
  /// Resets the device: every connection (and its host socket) is closed.
  void deactivate() noexcept;
  /// Connects from a fresh local port to `remote` (the host, CID 2) and waits for the device's
  /// answer. DeviceNotReady before activate(); InvalidArgument for another CID or a wildcard
  /// port; AlreadyExists when connected to `remote`; Disconnected when nobody listens there.
  Result<VsockAddr> connect(VsockAddr remote);
  size_t connection_count() const noexcept { return conns_.size(); }
  /// Queues `data` on the connection to `remote` and transmits what the peer's credit allows
  /// (the rest goes out on later send/recv calls: connection()->pending_tx()). Returns
  /// data.size(). DeviceNotReady, NotFound (connect first), Disconnected (the peer reset or
  /// will receive no more: its SHUTDOWN had SHUTDOWN_RCV).
  Result<size_t> send(VsockAddr remote, std::span<const std::byte> data);
  /// Collects what the device delivered and copies up to buffer.size() received bytes; 0 when
  /// none arrived yet, or at end of stream (connection()->end_of_stream(): the host sends no
  /// more and all it sent was read). Errors as send().
  Result<size_t> recv(VsockAddr remote, std::span<std::byte> buffer);
  /// The connection to `remote`, or nullptr.
  const VsockConnection* connection(VsockAddr remote) const;
  vsock::VsockDevice& device() noexcept { return *dev_; }

 private:
  struct Ring {
    QueueLayout layout;
    uint16_t avail_idx = 0;
    uint16_t last_used = 0;
  };
  VirtioVsock(uint64_t cid, uint32_t buf_alloc, std::unique_ptr<vsock::VsockDevice> dev,
              memory::GuestMemory mem);

  Result<VsockConnection*> find(VsockAddr remote, std::string_view what);
  Result<void> transmit(const vsock::Header& h, std::span<const std::byte> payload);
  Result<void> poll();
  Result<void> flush(VsockConnection& c);
  Result<void> post_rx(uint16_t d);
  Result<void> desc(uint16_t q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags);
  Result<void> publish(uint16_t q, uint16_t head);
  vsock::Header header_for(const VsockConnection& c, uint16_t op, uint32_t len) const;

  uint64_t cid_;
  uint32_t buf_alloc_;
  bool ready_ = false;
  uint32_t next_port_ = 1024;
  std::unique_ptr<vsock::VsockDevice> dev_;
  memory::GuestMemory mem_;
  Ring rings_[3];
  Queue queues_[3];
  std::map<VsockAddr, VsockConnection> conns_;  // by remote address
};

}  // namespace pepita::virtio
