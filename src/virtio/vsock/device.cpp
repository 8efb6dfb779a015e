// virtio-vsock device (virtio 1.2 section 5.10) with Firecracker's Unix-socket host side: the
// connection table, credit-based flow control both ways (5.10.6.3), and the queues. Host sockets
// are non-blocking and polled once per process() call; the guest is never trusted.
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "detail/state_codec.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/virtio/vsock.hpp"

namespace pepita::virtio::vsock {
namespace v = abi::virtio;

namespace {

constexpr size_t kHandshakeMax = 32;  // "CONNECT 4294967295\n" fits with room to spare

// Copies `src` into the writable segments of a receive buffer starting at byte `at`.
Result<void> scatter(const GuestMemory& mem, const std::vector<Segment>& segs, uint64_t at,
                     std::span<const std::byte> src) {
  for (const auto& s : segs) {
    if (src.empty()) return {};
    if (at >= s.len) {
      at -= s.len;
      continue;
    }
    const auto n = static_cast<size_t>(std::min<uint64_t>(s.len - at, src.size()));
    auto dst = PEPITA_TRY(mem.span(PhysAddr(s.gpa.raw() + at), n));
    std::memcpy(dst.data(), src.data(), n);
    src = src.subspan(n);
    at = 0;
  }
  return {};
}

// A non-blocking connect to a Unix listener: the fd or -errno (-EAGAIN: its backlog is full).
int connect_nonblocking(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -ENAMETOOLONG;
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int raw = sys::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  if (raw < 0) return raw;
  UniqueFd fd(raw);
  // SAFETY: sockaddr_un is a sockaddr by the sockets API's contract.
  const int r = sys::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  if (r < 0) return r;
  return fd.release();
}

// A byte FIFO of fixed capacity, allocated on first use: no zero-filling, no per-packet memmove
// (the data moves to the front only when the tail reaches the end).
class Fifo {
 public:
  explicit Fifo(size_t capacity) : cap_(capacity) {}
  size_t size() const noexcept { return tail_ - head_; }
  bool empty() const noexcept { return head_ == tail_; }
  std::span<const std::byte> data() const noexcept { return {buf_.get() + head_, size()}; }
  /// Free space after the data, at most `want` bytes (moves the data to the front when less
  /// than `want` is left after it).
  std::span<std::byte> room(size_t want) {
    if (!buf_) buf_ = std::make_unique_for_overwrite<std::byte[]>(cap_);
    if (head_ == tail_) head_ = tail_ = 0;
    if (cap_ - tail_ < want && head_ > 0) {
      std::memmove(buf_.get(), buf_.get() + head_, size());
      tail_ -= head_;
      head_ = 0;
    }
    return {buf_.get() + tail_, std::min(want, cap_ - tail_)};
  }
  void commit(size_t n) noexcept { tail_ += n; }
  void consume(size_t n) noexcept {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }
  void clear() noexcept { head_ = tail_ = 0; }

 private:
  std::unique_ptr<std::byte[]> buf_;
  size_t cap_;
  size_t head_ = 0, tail_ = 0;
};

}  // namespace

struct VsockDevice::Conn {
  enum class State : uint8_t { Handshake, Connecting, Established };
  UniqueFd sock;
  State state = State::Handshake;
  uint32_t host_port = 0;
  uint32_t guest_port = 0;
  Credit credit;
  explicit Conn(uint32_t buf_alloc) : to_host(buf_alloc) {}
  Fifo to_host;                // guest data not yet written to the host socket (<= buf_alloc)
  Fifo to_guest{kMaxPayload};  // host data read within the guest's credit, not yet delivered
  uint32_t guest_shut = 0;     // SHUTDOWN flags the guest sent (cumulative)
  bool host_eof = false;       // the host socket reached end of file
  bool shut_wr_done = false;   // shutdown(SHUT_WR) issued on the host socket
  bool shutdown_sent = false;  // SHUTDOWN(SEND) queued for the guest
  bool update_queued = false;  // a CREDIT_UPDATE sits in ctl_
  Key key() const { return {host_port, guest_port}; }
};

VsockDevice::VsockDevice(const VsockOptions& options) : options_(options) {
  config_.guest_cid = options.guest_cid;
}

VsockDevice::~VsockDevice() {
  conns_.clear();
  handshaking_.clear();
  if (listener_) {
    listener_.reset();
    ::unlink(options_.uds_path.c_str());
  }
}

Result<std::unique_ptr<VsockDevice>> VsockDevice::create(const VsockOptions& options) {
  if (options.guest_cid < kMinGuestCid || options.guest_cid >= 0xffffffffull) {
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("vsock guest cid {} is reserved; use 3..4294967294", options.guest_cid));
  }
  if (options.buf_alloc == 0 || options.max_connections == 0) {
    return fail(ErrorCode::InvalidArgument,
                "vsock buf_alloc and max_connections must be at least 1");
  }
  auto dev = std::make_unique<VsockDevice>(options);
  if (!options.uds_path.empty()) {
    const int fd = sys::unix_listen(options.uds_path, 64);
    if (fd < 0) {
      return fail_errno(-fd, std::string("vsock: listen on ")
                                 .append(options.uds_path)
                                 .append(" (choose a free path in a writable directory)"));
    }
    dev->listener_.reset(fd);
    if (const int r = sys::set_nonblocking(fd); r < 0) return fail_errno(-r, "vsock: O_NONBLOCK");
  }
  return dev;
}

uint64_t VsockDevice::features() const noexcept {
  return v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_INDIRECT_DESC) |
         v::feature_bit(v::F_RING_EVENT_IDX) | v::feature_bit(F_STREAM);
}

Result<void> VsockDevice::activate(uint64_t acked) {
  if ((acked & ~features()) != 0 || (acked & v::feature_bit(v::F_VERSION_1)) == 0) {
    return fail(ErrorCode::InvalidArgument,
                "virtio-vsock: acknowledged features must include VERSION_1 and be offered ones");
  }
  clear_needs_reset();
  return {};
}

void VsockDevice::reset() noexcept {
  std::lock_guard lock(mu_);
  conns_.clear();
  handshaking_.clear();
  ctl_.clear();
  rx_bufs_.clear();
  event_bufs_.clear();
  clear_needs_reset();
}

Result<std::vector<std::byte>> VsockDevice::save_state() const {
  std::lock_guard lock(mu_);
  if (!conns_.empty() || !handshaking_.empty()) {
    return fail(ErrorCode::Busy,
                pepita::fmt("virtio-vsock has {} open connection(s) and {} host connection(s) "
                            "mid-handshake; a snapshot cannot carry host sockets: close them "
                            "before the guest's snapshot point (restored VMs start with none)",
                            conns_.size(), handshaking_.size()));
  }
  detail::StateWriter w;
  w.put<uint32_t>(next_host_port_);
  w.put<uint32_t>(static_cast<uint32_t>(ctl_.size()));
  for (const auto& h : ctl_) w.put(h);
  w.put<uint32_t>(static_cast<uint32_t>(rx_bufs_.size()));
  for (const auto& b : rx_bufs_) {
    w.put<uint16_t>(b.head);
    w.put<uint64_t>(b.capacity);
    w.segments(b.writable);
  }
  w.put<uint32_t>(static_cast<uint32_t>(event_bufs_.size()));
  for (uint16_t head : event_bufs_) w.put<uint16_t>(head);
  return w.take();
}

Result<void> VsockDevice::load_state(std::span<const std::byte> state) {
  detail::StateReader r(state);
  uint32_t next_port = 0;
  uint32_t n = 0;
  std::deque<Header> ctl;
  std::deque<Pending> rx;
  std::deque<uint16_t> events;
  bool ok = r.get(next_port) && r.get(n) && n <= 4 * v::MAX_QUEUE_SIZE;
  for (uint32_t i = 0; ok && i < n; ++i) {
    Header h{};
    ok = r.get(h);
    ctl.push_back(h);
  }
  ok = ok && r.get(n) && n <= v::MAX_QUEUE_SIZE;
  for (uint32_t i = 0; ok && i < n; ++i) {
    Pending p{};
    ok = r.get(p.head) && r.get(p.capacity) && r.segments(p.writable, v::MAX_QUEUE_SIZE);
    rx.push_back(std::move(p));
  }
  ok = ok && r.get(n) && n <= v::MAX_QUEUE_SIZE;
  for (uint32_t i = 0; ok && i < n; ++i) {
    uint16_t head = 0;
    ok = r.get(head);
    events.push_back(head);
  }
  if (!ok || !r.done())
    return fail(ErrorCode::InvalidArgument,
                "virtio-vsock snapshot state is malformed; it was not saved by a vsock device");
  std::lock_guard lock(mu_);
  next_host_port_ = next_port;
  ctl_ = std::move(ctl);
  rx_bufs_ = std::move(rx);
  event_bufs_ = std::move(events);
  return {};
}

VsockDevice::Stats VsockDevice::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t VsockDevice::connection_count() const {
  std::lock_guard lock(mu_);
  return conns_.size();
}

std::string VsockDevice::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

// ---- host side ---------------------------------------------------------------------------

uint32_t VsockDevice::free_host_port() {
  for (;;) {
    const uint32_t p = next_host_port_++;
    if (next_host_port_ == 0) next_host_port_ = 1u << 30;
    bool used = false;
    for (const auto& [k, c] : conns_) used = used || k.first == p;
    if (!used) return p;
  }
}

void VsockDevice::accept_host() {
  for (;;) {
    const int fd = sys::accept(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK);
    if (fd < 0) return;  // -EAGAIN: none pending; other errors: try again at the next poll
    auto c = std::make_unique<Conn>(options_.buf_alloc);
    c->sock.reset(fd);
    if (conns_.size() + handshaking_.size() >= options_.max_connections) continue;  // closed
    handshaking_.push_back(std::move(c));
  }
}

void VsockDevice::serve_handshake(Conn& c) {
  char line[kHandshakeMax];
  const long n = sys::recv(c.sock.get(), line, sizeof line, MSG_PEEK);
  if (n == -EAGAIN || n == -EINTR) return;
  if (n <= 0) {
    c.sock.reset();  // closed before a request: dropped by poll_host
    return;
  }
  const auto* nl = static_cast<const char*>(std::memchr(line, '\n', static_cast<size_t>(n)));
  if (nl == nullptr) {
    if (static_cast<size_t>(n) == sizeof line) c.sock.reset();  // no line within the limit
    return;
  }
  const auto len = static_cast<size_t>(nl - line) + 1;
  if (sys::recv(c.sock.get(), line, len) != static_cast<long>(len)) {
    c.sock.reset();
    return;
  }
  std::string_view text(line, len - 1);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  constexpr std::string_view kConnect = "CONNECT ";
  uint32_t port = 0;
  if (!text.starts_with(kConnect)) {
    c.sock.reset();
    return;
  }
  text.remove_prefix(kConnect.size());
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    c.sock.reset();
    return;
  }
  c.state = Conn::State::Connecting;
  c.host_port = free_host_port();
  c.guest_port = port;
  c.credit.buf_alloc = options_.buf_alloc;
}

void VsockDevice::read_host(Conn& c) {
  if (c.state != Conn::State::Established || c.host_eof || (c.guest_shut & SHUTDOWN_RCV) != 0)
    return;
  const uint32_t limit = std::min(c.credit.peer_free(), kMaxPayload);
  if (c.to_guest.size() >= limit) return;
  auto room = c.to_guest.room(limit - c.to_guest.size());
  if (room.empty()) return;
  const long n = sys::recv(c.sock.get(), room.data(), room.size());
  if (n > 0) c.to_guest.commit(static_cast<size_t>(n));
  if (n == -EAGAIN || n == -EINTR) return;
  if (n == 0) {
    c.host_eof = true;
  } else if (n < 0) {  // the host reset the connection: so do we
    queue_rst(c.host_port, c.guest_port);
    c.sock.reset();
  }
}

void VsockDevice::flush_to_host(Conn& c) {
  while (!c.to_host.empty() && c.sock) {
    const long n = sys::send(c.sock.get(), c.to_host.data().data(), c.to_host.size());
    if (n == -EAGAIN || n == -EINTR) break;
    if (n <= 0) {  // EPIPE / ECONNRESET: the host side is gone
      queue_rst(c.host_port, c.guest_port);
      c.sock.reset();
      return;
    }
    c.to_host.consume(static_cast<size_t>(n));
    c.credit.fwd_cnt += static_cast<uint32_t>(n);
    stats_.bytes_to_host += static_cast<uint64_t>(n);
  }
  if (c.credit.update_due() && !c.update_queued) queue_ctl(c, OP_CREDIT_UPDATE);
}

void VsockDevice::poll_host() {
  std::vector<pollfd> fds;
  std::vector<Conn*> who;
  if (listener_) {
    fds.push_back({listener_.get(), POLLIN, 0});
    who.push_back(nullptr);
  }
  for (auto& c : handshaking_) {
    fds.push_back({c->sock.get(), POLLIN, 0});
    who.push_back(c.get());
  }
  for (auto& [k, c] : conns_) {
    if (!c->sock) continue;
    short ev = 0;
    if (!c->to_host.empty()) ev |= POLLOUT;
    if (c->state == Conn::State::Established && !c->host_eof &&
        (c->guest_shut & SHUTDOWN_RCV) == 0 &&
        c->to_guest.size() < std::min(c->credit.peer_free(), kMaxPayload))
      ev |= POLLIN;
    if (ev == 0) continue;
    fds.push_back({c->sock.get(), ev, 0});
    who.push_back(c.get());
  }
  if (fds.empty() || sys::poll(fds.data(), fds.size(), 0) <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents == 0) continue;
    Conn* c = who[i];
    if (c == nullptr) {
      accept_host();
    } else if (c->state == Conn::State::Handshake) {
      serve_handshake(*c);
    } else {
      if ((fds[i].revents & (POLLOUT | POLLERR | POLLHUP)) != 0 && !c->to_host.empty())
        flush_to_host(*c);
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && c->sock) read_host(*c);
    }
  }
  // Handshakes done (or failed) leave the waiting list; done ones ask the guest.
  for (auto it = handshaking_.begin(); it != handshaking_.end();) {
    Conn& c = **it;
    if (!c.sock) {
      it = handshaking_.erase(it);
    } else if (c.state == Conn::State::Connecting) {
      queue_ctl(c, OP_REQUEST);
      conns_.emplace(c.key(), std::move(*it));
      it = handshaking_.erase(it);
    } else {
      ++it;
    }
  }
  // Connections whose host socket died were reset; those done both ways finish.
  std::vector<Key> dead;
  for (auto& [k, c] : conns_) {
    if (!c->sock) {
      dead.push_back(k);
      continue;
    }
    maybe_finish(*c);
    if (!c->sock) dead.push_back(k);
  }
  for (const auto& k : dead) close_conn(k);
}

// ---- connection state --------------------------------------------------------------------

Header VsockDevice::header_for(const Conn& c, uint16_t op, uint32_t len, uint32_t flags) {
  return Header{.src_cid = kHostCid,
                .dst_cid = options_.guest_cid,
                .src_port = c.host_port,
                .dst_port = c.guest_port,
                .len = len,
                .type = TYPE_STREAM,
                .op = op,
                .flags = flags,
                .buf_alloc = c.credit.buf_alloc,
                .fwd_cnt = c.credit.fwd_cnt};
}

void VsockDevice::queue_ctl(Conn& c, uint16_t op, uint32_t flags) {
  // The credit fields are filled again when the packet is delivered (they move meanwhile).
  ctl_.push_back(header_for(c, op, 0, flags));
  if (op == OP_CREDIT_UPDATE) {
    c.update_queued = true;
    ++stats_.credit_updates;
  }
}

void VsockDevice::queue_rst(uint32_t host_port, uint32_t guest_port) {
  Conn none(0);
  none.host_port = host_port;
  none.guest_port = guest_port;
  queue_ctl(none, OP_RST);
  ++stats_.resets_sent;
}

void VsockDevice::close_conn(const Key& key) { conns_.erase(key); }

void VsockDevice::maybe_finish(Conn& c) {
  if (c.state != Conn::State::Established || !c.sock) return;
  // Host finished sending: once its data reached the guest, tell the guest (SHUTDOWN SEND).
  if (c.host_eof && c.to_guest.empty() && !c.shutdown_sent) {
    queue_ctl(c, OP_SHUTDOWN, SHUTDOWN_SEND);
    c.shutdown_sent = true;
  }
  // Guest finished sending: once its data reached the host, half-close the host socket.
  if ((c.guest_shut & SHUTDOWN_SEND) != 0 && c.to_host.empty() && !c.shut_wr_done) {
    ::shutdown(c.sock.get(), SHUT_WR);
    c.shut_wr_done = true;
  }
  const bool guest_done =
      (c.guest_shut & (SHUTDOWN_SEND | SHUTDOWN_RCV)) == (SHUTDOWN_SEND | SHUTDOWN_RCV);
  const bool both_done = c.shut_wr_done && c.shutdown_sent;
  if ((both_done || guest_done) && c.to_host.empty()) {
    // Clean close (5.10.6.5): both sides shut down; the peer of the last SHUTDOWN sends RST.
    queue_rst(c.host_port, c.guest_port);
    c.sock.reset();
  }
}

void VsockDevice::refuse(const Header& h, std::string why) {
  ++stats_.malformed;
  last_error_ = std::move(why);
  // The connection the header names is reset; a stray RST needs no answer.
  if (h.op == OP_RST) return;
  close_conn(Key{uint32_t{h.dst_port}, uint32_t{h.src_port}});
  queue_rst(h.dst_port, h.src_port);
}

void VsockDevice::handle_request(const Header& h) {
  const Key key{uint32_t{h.dst_port}, uint32_t{h.src_port}};
  if (conns_.contains(key)) {
    refuse(h, pepita::fmt("REQUEST for host port {} from guest port {}, already connected",
                          key.first, key.second));
    return;
  }
  if (options_.uds_path.empty() || conns_.size() >= options_.max_connections) {
    queue_rst(h.dst_port, h.src_port);
    return;
  }
  const int fd = connect_nonblocking(pepita::fmt("{}_{}", options_.uds_path, key.first));
  if (fd < 0) {  // nobody listens on PATH_<port>, or its backlog is full: refused
    queue_rst(h.dst_port, h.src_port);
    return;
  }
  auto c = std::make_unique<Conn>(options_.buf_alloc);
  c->sock.reset(fd);
  c->state = Conn::State::Established;
  c->host_port = h.dst_port;
  c->guest_port = h.src_port;
  c->credit.buf_alloc = options_.buf_alloc;
  c->credit.peer_buf_alloc = h.buf_alloc;
  c->credit.peer_fwd_cnt = h.fwd_cnt;
  queue_ctl(*c, OP_RESPONSE);
  ++stats_.connections;
  conns_.emplace(key, std::move(c));
}

void VsockDevice::handle(const Packet& p, const GuestMemory& mem) {
  const Header& h = p.hdr;
  if (h.op == OP_REQUEST) {
    handle_request(h);
    return;
  }
  const Key key{uint32_t{h.dst_port}, uint32_t{h.src_port}};
  auto it = conns_.find(key);
  if (it == conns_.end()) {
    // No such connection: answer with RST (spec 5.10.6.4), except to an RST.
    if (h.op != OP_RST) queue_rst(h.dst_port, h.src_port);
    return;
  }
  Conn& c = *it->second;
  if (h.op == OP_RST) {
    close_conn(key);
    return;
  }
  c.credit.peer_buf_alloc = h.buf_alloc;
  c.credit.peer_fwd_cnt = h.fwd_cnt;
  switch (h.op) {
    case OP_RESPONSE: {
      if (c.state != Conn::State::Connecting) {
        refuse(h, "RESPONSE on a connection that is not connecting");
        return;
      }
      c.state = Conn::State::Established;
      ++stats_.connections;
      const std::string ok = pepita::fmt("OK {}\n", c.host_port);
      if (sys::send_all(c.sock.get(), ok.data(), ok.size()) != static_cast<int64_t>(ok.size())) {
        queue_rst(c.host_port, c.guest_port);
        close_conn(key);
      }
      return;
    }
    case OP_RW: {
      if (c.state != Conn::State::Established || (c.guest_shut & SHUTDOWN_SEND) != 0) {
        refuse(h, "RW on a connection that is not established or was shut down for sending");
        return;
      }
      if (!c.credit.accepts(h.len)) {
        refuse(h, pepita::fmt("RW of {} bytes beyond the credit ({} of {} buffered)",
                              uint32_t{h.len}, c.credit.buffered(), c.credit.buf_alloc));
        return;
      }
      c.credit.rx_cnt += h.len;
      for (const auto& s : p.payload) {
        auto src = mem.span(s.gpa, s.len);
        if (!src) {
          refuse(h, src.error().message());
          return;
        }
        std::span<const std::byte> rest = *src;
        // Straight from guest RAM to the host socket while nothing waits ahead of it.
        if (c.to_host.empty() && c.sock) {
          const long n = sys::send(c.sock.get(), rest.data(), rest.size());
          if (n > 0) {
            rest = rest.subspan(static_cast<size_t>(n));
            c.credit.fwd_cnt += static_cast<uint32_t>(n);
            stats_.bytes_to_host += static_cast<uint64_t>(n);
          } else if (n != -EAGAIN && n != -EINTR && n != 0) {  // the host side is gone
            queue_rst(c.host_port, c.guest_port);
            c.sock.reset();
            break;
          }
        }
        if (rest.empty()) continue;
        // Credit bounds what is buffered by buf_alloc, the FIFO's capacity: it always fits.
        auto room = c.to_host.room(rest.size());
        if (room.size() < rest.size()) {
          refuse(h, "RW beyond the connection's buffer");
          return;
        }
        std::memcpy(room.data(), rest.data(), rest.size());
        c.to_host.commit(rest.size());
      }
      if (c.sock) flush_to_host(c);
      break;
    }
    case OP_SHUTDOWN:
      c.guest_shut |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
      if ((h.flags & SHUTDOWN_RCV) != 0) c.to_guest.clear();
      break;
    case OP_CREDIT_REQUEST:
      if (!c.update_queued) queue_ctl(c, OP_CREDIT_UPDATE);
      break;
    default:  // CREDIT_UPDATE: the credit fields above were all it carried
      break;
  }
  if (!c.sock) {
    close_conn(key);
    return;
  }
  maybe_finish(c);
  if (!c.sock) close_conn(key);
}

// ---- queues ------------------------------------------------------------------------------

Result<bool> VsockDevice::process(uint16_t index, Queue& queue) {
  std::lock_guard lock(mu_);
  if (index > kEventq)
    return fail(ErrorCode::InvalidArgument, "virtio-vsock has three queues (rx, tx, event)");
  poll_host();
  auto broken = [&](Error e) -> Result<bool> {
    set_needs_reset();
    return std::unexpected(std::move(e));
  };
  if (index == kRxq) {
    auto r = receive(queue);
    if (!r) return broken(std::move(r).error());
    return r;
  }
  bool notify = false;
  for (;;) {
    bool any = false;
    for (;;) {
      auto got = queue.pop(chain_);
      if (!got) return broken(std::move(got).error());
      if (!*got) break;
      any = true;
      if (index == kEventq) {
        if (event_bufs_.size() >= queue.size())
          return broken(Error(ErrorCode::Protocol,
                              "virtio-vsock eventq: more buffers posted "
                              "than the queue holds"));
        event_bufs_.push_back(chain_.head);  // held: no event is sent but on reset
        continue;
      }
      ++stats_.packets_tx;
      std::optional<Header> hdr;
      auto p = Packet::parse(chain_, queue.ram(), options_.guest_cid, &hdr);
      if (p) {
        handle(*p, queue.ram());
      } else if (hdr) {
        refuse(*hdr, p.error().message());
      } else {
        ++stats_.malformed;  // not even a header: nothing to reset
        last_error_ = p.error().message();
      }
      if (auto u = queue.add_used(chain_.head, 0); !u) return broken(std::move(u).error());
    }
    if (any) {
      auto n = queue.should_notify();
      if (!n) return broken(std::move(n).error());
      notify = *n || notify;
    }
    auto more = queue.enable_kicks();
    if (!more) return broken(std::move(more).error());
    if (!*more) return notify;
  }
}

Result<bool> VsockDevice::deliver(Queue& queue, Pending& buf, bool& delivered) {
  delivered = false;
  const GuestMemory& mem = queue.ram();
  if (buf.capacity < sizeof(Header)) {  // cannot hold a packet: returned empty
    PEPITA_TRY_VOID(queue.add_used(buf.head, 0));
    delivered = true;
    return true;
  }
  if (!ctl_.empty()) {
    Header h = ctl_.front();
    ctl_.pop_front();
    auto it = conns_.find(Key{uint32_t{h.src_port}, uint32_t{h.dst_port}});
    if (it != conns_.end()) {  // fresh credit fields
      Conn& c = *it->second;
      h.buf_alloc = c.credit.buf_alloc;
      h.fwd_cnt = c.credit.fwd_cnt;
      c.credit.last_fwd_sent = c.credit.fwd_cnt;
      if (h.op == OP_CREDIT_UPDATE) c.update_queued = false;
    }
    PEPITA_TRY_VOID(scatter(mem, buf.writable, 0, std::as_bytes(std::span(&h, 1))));
    PEPITA_TRY_VOID(queue.add_used(buf.head, sizeof(Header)));
    delivered = true;
    ++stats_.packets_rx;
    return true;
  }
  // Round robin: start after the connection served last, so one busy stream cannot starve others.
  auto it = conns_.upper_bound(rr_last_);
  for (size_t seen = 0; seen < conns_.size(); ++seen, ++it) {
    if (it == conns_.end()) it = conns_.begin();
    const Key k = it->first;
    Conn& c = *it->second;
    if (c.to_guest.empty() || (c.guest_shut & SHUTDOWN_RCV) != 0) continue;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(
        {c.to_guest.size(), buf.capacity - sizeof(Header), c.credit.peer_free(), kMaxPayload}));
    if (n == 0) continue;
    Header h = header_for(c, OP_RW, n, 0);
    c.credit.last_fwd_sent = c.credit.fwd_cnt;
    PEPITA_TRY_VOID(scatter(mem, buf.writable, 0, std::as_bytes(std::span(&h, 1))));
    PEPITA_TRY_VOID(scatter(mem, buf.writable, sizeof(Header), c.to_guest.data().first(n)));
    PEPITA_TRY_VOID(queue.add_used(buf.head, static_cast<uint32_t>(sizeof(Header) + n)));
    c.to_guest.consume(n);
    c.credit.tx_cnt += n;
    stats_.bytes_to_guest += n;
    ++stats_.packets_rx;
    delivered = true;
    rr_last_ = k;
    maybe_finish(c);  // host EOF after its last byte: SHUTDOWN follows
    if (!c.sock) close_conn(k);
    return true;
  }
  return false;
}

Result<bool> VsockDevice::receive(Queue& queue) {
  for (;;) {
    for (;;) {
      if (!PEPITA_TRY(queue.pop(chain_))) break;
      if (rx_bufs_.size() >= queue.size()) {
        return fail(ErrorCode::Protocol,
                    pepita::fmt("virtio-vsock rxq: more buffers posted ({}) than the queue holds",
                                rx_bufs_.size() + 1));
      }
      Pending p{chain_.head, {}, chain_.writable_bytes};
      for (const auto& s : chain_.segments)
        if (s.writable && s.len > 0) p.writable.push_back(s);
      rx_bufs_.push_back(std::move(p));
    }
    if (!PEPITA_TRY(queue.enable_kicks())) break;
  }
  bool used = false;
  // Deliver, and read more from the host while that made room in a connection's window.
  for (int round = 0; round < 64 && !rx_bufs_.empty(); ++round) {
    bool progress = false;
    while (!rx_bufs_.empty()) {
      bool delivered = false;
      if (!PEPITA_TRY(deliver(queue, rx_bufs_.front(), delivered))) break;
      rx_bufs_.pop_front();
      used = used || delivered;
      progress = true;
    }
    if (!progress) break;
    poll_host();
  }
  return used ? queue.should_notify() : Result<bool>(false);
}

}  // namespace pepita::virtio::vsock
