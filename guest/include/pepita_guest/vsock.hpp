#pragma once
// A small freestanding virtio-vsock driver for pepita micro-VM guests (virtio 1.2 section 5.10),
// stream sockets to the host (cid 2) only. Polling, no interrupts: poll() kicks the receive queue,
// and the VMM serves its host sockets and fills receive buffers inside that exit. Credit-based
// flow control both ways: send() never puts more in flight than the host's buf_alloc allows, and
// recv() tells the host (CREDIT_UPDATE) once half of our buffer was consumed.
//
//   pepita::guest::vsock::Vsock vs;
//   if (!vs.init()) exit(1);
//   int c = vs.accept(1234);            // the host connected to PATH and wrote "CONNECT 1234\n"
//   char buf[256]; int64_t n = vs.recv(c, buf, sizeof buf);   // 0: the host shut down sending
//   vs.send(c, buf, n); vs.close(c);

#include <stddef.h>
#include <stdint.h>

#include "pepita_guest/virtio.hpp"

namespace pepita::guest::vsock {

class Vsock {
 public:
  static constexpr int kMaxConns = 4;
  static constexpr uint32_t kBufAlloc = 16 * 1024;  // our receive buffer per connection

  /// Probes the vsock device, sets up its three queues and posts receive buffers. False when
  /// there is none or it refused the setup.
  bool init();
  uint64_t cid() const { return cid_; }

  /// Waits for the host to connect to guest port `port`; answers RESPONSE and returns the
  /// connection (>= 0), or -1 when the table is full or the device broke.
  int accept(uint32_t port);
  /// Connects to host port `port` (the host's PATH_<port> listener): the connection or -1 when
  /// refused (RST).
  int connect(uint32_t port);
  /// Sends all `len` bytes within the host's credit, waiting for credit when it runs out: `len`,
  /// or -1 when the connection was reset or shut for sending.
  int64_t send(int c, const void* data, uint32_t len);
  /// Waits for data: the bytes copied (> 0), 0 once the host shut down sending and everything was
  /// read, -1 after a reset.
  int64_t recv(int c, void* data, uint32_t len);
  /// SHUTDOWN (RCV|SEND) and waits for the host's RST; the slot is free afterwards.
  void close(int c);
  /// One kick of the receive queue and dispatch of what arrived. False when the device broke.
  bool poll();

 private:
  struct Conn {
    bool used = false;
    bool established = false;
    bool reset = false;
    bool peer_shut_send = false;
    uint32_t local_port = 0;
    uint32_t peer_port = 0;
    uint32_t peer_buf_alloc = 0;
    uint32_t peer_fwd_cnt = 0;
    uint32_t tx_cnt = 0;
    uint32_t fwd_cnt = 0;  // bytes our application consumed
    uint32_t last_fwd_sent = 0;
    uint8_t* ring = nullptr;  // kBufAlloc bytes of received data
    uint32_t head = 0, size = 0;
  };
  struct Pending {
    uint32_t port;  // a REQUEST waiting for accept()
    uint32_t peer_port;
    uint32_t buf_alloc, fwd_cnt;
    bool used;
  };
  bool send_ctl(Conn& c, uint16_t op, uint32_t flags);
  bool send_packet(Conn& c, uint16_t op, uint32_t flags, const void* data, uint32_t len);
  void dispatch(const uint8_t* pkt, uint32_t len);
  void post(uint16_t i);
  int find(uint32_t local, uint32_t peer) const;
  /// A free slot made a fresh connection between the two ports (its ring kept); -1 when none.
  int open_slot(uint32_t local_port, uint32_t peer_port);

  virtio::Device dev_;
  uint64_t cid_ = 0;
  Conn conns_[kMaxConns];
  Pending pending_[kMaxConns] = {};
  uint8_t* rx_bufs_ = nullptr;
  uint16_t rx_count_ = 0;
  uint8_t* tx_hdr_ = nullptr;
  uint32_t next_port_ = 49152;
  bool broken_ = false;
};

}  // namespace pepita::guest::vsock
