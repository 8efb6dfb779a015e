// libFuzzer target over virtio-vsock transmit packets. Stage one: Packet::parse on a chain whose
// descriptor lengths and bytes come from the input; a parsed packet must keep its promises
// (payload inside the chain, hdr.len bytes, a valid op). Stage two: the input as a stream of
// packets (header, payload length, payload) sent by a test-played guest to a device whose host
// side has a listener on PATH_1, so connections are made, fed, shut and reset. A packet may be
// refused, never crash the device or break its rings.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "../vsock_guest.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"

using namespace pepita;
using namespace pepita::virtio;
using namespace pepita::virtio::vsock;

namespace {

constexpr uint64_t kCid = 3;

void parse_stage(const uint8_t* data, size_t size) {
  static memory::GuestMemory mem =
      std::move(memory::GuestMemory::anonymous(PhysAddr(0), 128 << 10).value());
  const size_t nseg = 1 + data[0] % 6;
  if (size < 1 + 2 * nseg) return;
  auto ram = mem.backing();
  std::memset(ram.data(), 0, ram.size());
  const size_t body = size - 1 - 2 * nseg;
  std::memcpy(ram.data() + 0x1000, data + 1 + 2 * nseg, std::min<size_t>(body, 0x10000));
  Chain c;
  uint64_t at = 0x1000;
  for (size_t i = 0; i < nseg; ++i) {
    uint16_t len;
    std::memcpy(&len, data + 1 + 2 * i, 2);
    len %= 0x2000;
    c.segments.push_back({PhysAddr(at), len, false});
    c.readable_bytes += len;
    at += len;
  }
  if (at > mem.size()) return;  // Queue::pop only yields chains inside RAM
  auto p = Packet::parse(c, mem, kCid);
  if (!p) return;
  uint64_t total = 0;
  for (const auto& s : p->payload) {
    if (!mem.span(s.gpa, s.len)) std::abort();
    total += s.len;
  }
  if (total != p->hdr.len || p->hdr.len > kMaxPayload) std::abort();
  if (p->hdr.op == OP_INVALID || p->hdr.op > OP_CREDIT_REQUEST) std::abort();
  if (p->hdr.src_cid != kCid || p->hdr.dst_cid != kHostCid) std::abort();
}

std::string socket_base() {
  static const std::string base = [] {
    std::string dir = "/tmp/pepita-vsock-fuzz-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) std::abort();
    static std::string made = dir;
    std::atexit([] {  // the replay under make test leaves nothing behind
      std::error_code ec;
      std::filesystem::remove_all(made, ec);
    });
    return dir + "/v";
  }();
  return base;
}

void device_stage(const uint8_t* data, size_t size) {
  static UniqueFd port1(sys::unix_listen(socket_base() + "_1", 128));
  static const int nonblocking = port1 ? sys::set_nonblocking(port1.get()) : -1;
  if (!port1 || nonblocking != 0) std::abort();
  auto dev = VsockDevice::create({.uds_path = socket_base(), .guest_cid = kCid, .buf_alloc = 4096});
  if (!dev || !(*dev)->activate((*dev)->features())) std::abort();
  testing::GuestDriver guest(**dev, kCid);
  std::vector<UniqueFd> peers;
  for (size_t at = 0; at + sizeof(Header) + 2 <= size;) {
    Header h;
    std::memcpy(&h, data + at, sizeof h);
    at += sizeof h;
    const bool split = (data[at] & 0x80) != 0;
    const size_t len = std::min<size_t>(data[at] & 0x7f, size - at - 1) * 37;
    ++at;
    // Keep some packets well addressed so they reach the connection table.
    if ((h.flags & 0x100) != 0) {
      h.src_cid = kCid;
      h.dst_cid = kHostCid;
      h.type = TYPE_STREAM;
      h.dst_port = 1;
    }
    std::string payload(len, 'p');
    std::memcpy(payload.data(), data + at, std::min(len, size - at));
    at += std::min(len, size - at);
    if (!guest.send_raw(h, payload, split && sizeof(Header) + len > 10)) std::abort();
    if (!guest.poll()) std::abort();
    guest.inbox.clear();
    for (;;) {
      const int fd = sys::accept(port1.get(), nullptr, nullptr, SOCK_NONBLOCK);
      if (fd < 0) break;
      peers.emplace_back(fd);
    }
    for (auto& p : peers) {
      char buf[4096] = {};
      (void)sys::recv(p.get(), buf, sizeof buf, MSG_DONTWAIT);
      (void)sys::send(p.get(), buf, 100, MSG_DONTWAIT);
    }
  }
  if ((*dev)->status_bits() != 0) std::abort();  // packets never break a ring
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 0x80) != 0)
    device_stage(data + 1, size - 1);
  else
    parse_stage(data, size);
  return 0;
}
