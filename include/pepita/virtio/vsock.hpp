#pragma once
// virtio-vsock (virtio 1.2 section 5.10, "Socket Device"), stream sockets, with Firecracker's
// host side: guest ports are reached through a Unix socket (docs/vsock.md of Firecracker). A host
// process connects to PATH and writes "CONNECT <port>\n" (answered "OK <hostport>\n"); a guest
// connecting to host port P reaches the listener at PATH_P. Credit-based flow control both ways.
//
//   auto dev = PEPITA_TRY(vsock::VsockDevice::create({.uds_path = "/run/vm.vsock", .guest_cid =
//   3}));
//   // transport: dev->process(kRxq | kTxq | kEventq, queue) on each kick. The device polls its
//   // host sockets (without blocking) inside every call, and fills receive buffers only inside
//   // process(kRxq): a polling driver kicks rxq to receive, as pepita's micro-VM guests do.
//   dev->stats().resets_sent;   // malformed packets answered with RST, among others

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pepita/abi/virtio_vsock.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/virtio/device.hpp"

namespace pepita::virtio::vsock {

// The wire format is pepita/abi/virtio_vsock.hpp (checked against Linux's UAPI there); these
// names are the device's vocabulary.
using abi::virtio_vsock::Config;
using abi::virtio_vsock::EVENT_TRANSPORT_RESET;
using abi::virtio_vsock::F_SEQPACKET;
using abi::virtio_vsock::Header;
using abi::virtio_vsock::OP_CREDIT_REQUEST;
using abi::virtio_vsock::OP_CREDIT_UPDATE;
using abi::virtio_vsock::OP_INVALID;
using abi::virtio_vsock::OP_REQUEST;
using abi::virtio_vsock::OP_RESPONSE;
using abi::virtio_vsock::OP_RST;
using abi::virtio_vsock::OP_RW;
using abi::virtio_vsock::OP_SHUTDOWN;
using abi::virtio_vsock::SHUTDOWN_RCV;
using abi::virtio_vsock::SHUTDOWN_SEND;
using abi::virtio_vsock::TYPE_SEQPACKET;
using abi::virtio_vsock::TYPE_STREAM;

inline constexpr uint16_t kRxq = 0;
inline constexpr uint16_t kTxq = 1;
inline constexpr uint16_t kEventq = 2;
/// Well-known CIDs (spec 5.10.4): the host is 2; guests get 3 and above.
inline constexpr uint64_t kHostCid = abi::virtio_vsock::CID_HOST;
inline constexpr uint64_t kMinGuestCid = 3;
/// The largest payload one packet may carry (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
inline constexpr uint32_t kMaxPayload = 64 * 1024;
/// VIRTIO_VSOCK_F_STREAM (spec 5.10.3; virtio 1.2 names it, Linux's UAPI does not).
inline constexpr uint32_t F_STREAM = 0;

/// The crate's VsockAddr: one end of a vsock connection. The wildcards are Linux's
/// VMADDR_CID_ANY and VMADDR_PORT_ANY (linux/vm_sockets.h: -1U), not the crate's u64::MAX: a
/// sockaddr_vm carries a 32-bit CID, and these are the values a real socket binds to.
struct VsockAddr {
  uint64_t cid = 0;
  uint32_t port = 0;

  static constexpr uint64_t HOST_CID = kHostCid;
  static constexpr uint64_t ANY_CID = 0xffffffffu;
  static constexpr uint32_t ANY_PORT = 0xffffffffu;

  static constexpr VsockAddr make(uint64_t cid, uint32_t port) noexcept { return {cid, port}; }
  static constexpr VsockAddr host(uint32_t port) noexcept { return {HOST_CID, port}; }
  constexpr bool is_host() const noexcept { return cid == HOST_CID; }
  friend bool operator==(const VsockAddr&, const VsockAddr&) = default;
  friend auto operator<=>(const VsockAddr&, const VsockAddr&) = default;
};

/// A packet the driver put on the transmit queue, parsed and checked (Packet::parse).
struct Packet {
  Header hdr{};
  /// The payload's pieces in guest RAM (hdr.len bytes in total), checked to lie in the chain.
  std::vector<Segment> payload;

  /// Parses a transmit chain: the header is the first 44 readable bytes (split over descriptors
  /// or not), the payload the next hdr.len readable bytes. Protocol error, naming the field, for a
  /// chain shorter than a header, a payload longer than the chain or kMaxPayload, an unknown op,
  /// a type other than STREAM, a src_cid other than `guest_cid` or a dst_cid other than the host.
  /// Once a header was read, `header_out` holds it (a caller resets that connection).
  static Result<Packet> parse(const Chain& chain, const GuestMemory& mem, uint64_t guest_cid,
                              std::optional<Header>* header_out = nullptr);
};

/// Credit accounting of one direction pair of a connection (spec 5.10.6.3), pure arithmetic.
/// "tx" is what we send to the peer, "rx" what the peer sends us.
struct Credit {
  uint32_t buf_alloc = 0;      // our receive buffer, advertised to the peer
  uint32_t fwd_cnt = 0;        // bytes of it we consumed (forwarded on)
  uint32_t rx_cnt = 0;         // bytes the peer sent us
  uint32_t last_fwd_sent = 0;  // the fwd_cnt the peer last heard from us
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  uint32_t tx_cnt = 0;  // bytes we sent the peer

  /// What we may still send: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), never negative (a peer
  /// that shrank its buffer gets 0 until it consumes).
  uint32_t peer_free() const noexcept {
    const uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }
  /// Bytes received and not yet consumed.
  uint32_t buffered() const noexcept { return rx_cnt - fwd_cnt; }
  /// Whether the peer may send `len` more bytes without overrunning our buffer.
  bool accepts(uint32_t len) const noexcept { return uint64_t{buffered()} + len <= buf_alloc; }
  /// Whether a CREDIT_UPDATE is due: we consumed bytes the peer has not heard of, and the free
  /// space it believes we have (buf_alloc - (rx_cnt - last_fwd_sent)) is under half the buffer,
  /// so it may be about to wait for us. (Linux sends its update on a similar low-water mark; an
  /// update per packet would double the packets of a stream.)
  bool update_due() const noexcept {
    const uint32_t unreported = fwd_cnt - last_fwd_sent;
    const uint32_t believed_used = rx_cnt - last_fwd_sent;
    const uint32_t believed_free = believed_used >= buf_alloc ? 0 : buf_alloc - believed_used;
    return unreported != 0 && believed_free < buf_alloc / 2;
  }
};

struct VsockOptions {
  /// Host side: the Unix socket the device listens on for host-initiated connections; guest
  /// connections to port P go to `uds_path + "_" + P`. Empty: no listener, guest connects refused.
  std::string uds_path{};
  uint64_t guest_cid = kMinGuestCid;  // >= 3, < 0xffffffff
  /// Our receive buffer per connection (what the guest may have in flight to one host socket).
  uint32_t buf_alloc = 256 * 1024;
  uint16_t max_queue_size = 256;
  uint32_t max_connections = 1024;
};

/// The vsock device. process() may be called for different queues from different threads
/// (one lock serialises them). Every host socket is non-blocking; no call blocks.
class VsockDevice final : public VirtioDevice {
 public:
  /// InvalidArgument for a guest_cid below 3 or a reserved one, a zero buf_alloc; the listener's
  /// errors (path too long, a live server already on it) name uds_path.
  static Result<std::unique_ptr<VsockDevice>> create(const VsockOptions& options);
  ~VsockDevice() override;

  uint32_t device_id() const noexcept override { return abi::virtio::ID_VSOCK; }
  uint64_t features() const noexcept override;
  uint16_t num_queues() const noexcept override { return 3; }
  uint16_t max_queue_size() const noexcept override { return options_.max_queue_size; }
  std::span<const std::byte> config() const noexcept override {
    return std::as_bytes(std::span(&config_, 1));
  }
  Result<void> activate(uint64_t acked) override;
  /// Closes every connection (host sockets included) and drops held buffers; the listener stays.
  void reset() noexcept override;
  /// txq: parses and handles every packet (a malformed one resets its connection, the others
  /// are served). rxq: holds the posted buffers and fills them with pending control packets,
  /// then data within each connection's guest credit. eventq: holds the buffers. Each call first
  /// polls the host sockets once without blocking. Protocol error (NEEDS_RESET) for a broken ring.
  Result<bool> process(uint16_t index, Queue& queue) override;
  /// Snapshot state: the receive and event buffers the guest posted, control packets waiting
  /// for one, the next host port. Host sockets cannot be carried into another VM, so a device
  /// with open connections (or host connections mid-handshake) refuses with Busy: the guest
  /// closes its connections before its snapshot point, and a restored VM starts with none.
  Result<std::vector<std::byte>> save_state() const override;
  Result<void> load_state(std::span<const std::byte> state) override;

  struct Stats {
    uint64_t packets_rx = 0;  // delivered into the guest's receive buffers
    uint64_t packets_tx = 0;  // taken from the guest's transmit queue
    uint64_t bytes_to_guest = 0;
    uint64_t bytes_to_host = 0;
    uint64_t malformed = 0;       // transmit packets refused by Packet::parse or by state
    uint64_t resets_sent = 0;     // RST packets queued for the guest
    uint64_t credit_updates = 0;  // CREDIT_UPDATE packets queued for the guest
    uint64_t connections = 0;     // established so far
  };
  Stats stats() const;
  /// Connections open now.
  size_t connection_count() const;
  /// Why the last packet was refused ("" when none was).
  std::string last_error() const;

  explicit VsockDevice(const VsockOptions& options);

 private:
  struct Conn;
  struct Pending {
    uint16_t head;
    std::vector<Segment> writable;
    uint64_t capacity;
  };
  using Key = std::pair<uint32_t, uint32_t>;  // (host port, guest port)

  void poll_host();
  void accept_host();
  void serve_handshake(Conn& c);
  void read_host(Conn& c);
  void flush_to_host(Conn& c);
  void handle(const Packet& p, const GuestMemory& mem);
  void handle_request(const Header& h);
  void refuse(const Header& h, std::string why);
  void queue_ctl(Conn& c, uint16_t op, uint32_t flags = 0);
  void queue_rst(uint32_t host_port, uint32_t guest_port);
  void maybe_finish(Conn& c);
  void close_conn(const Key& key);
  Header header_for(const Conn& c, uint16_t op, uint32_t len, uint32_t flags);
  Result<bool> receive(Queue& queue);
  Result<bool> deliver(Queue& queue, Pending& buf, bool& delivered);
  uint32_t free_host_port();

  VsockOptions options_;
  Config config_{};
  // Destruction order: connections (their sockets) before the listener, both after nothing else.
  UniqueFd listener_;
  std::map<Key, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> handshaking_;  // host connections before "CONNECT <port>"

  mutable std::mutex mu_;   // guards everything below and the connection table
  std::deque<Header> ctl_;  // control packets (no payload) waiting for a receive buffer
  std::deque<Pending> rx_bufs_;
  std::deque<uint16_t> event_bufs_;
  Chain chain_;
  uint32_t next_host_port_ = 1u << 30;  // Firecracker's local port range starts here
  Key rr_last_{0, 0};                   // the connection deliver() served last
  Stats stats_;
  std::string last_error_;
};

}  // namespace pepita::virtio::vsock
