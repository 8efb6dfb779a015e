// virtio-vsock transmit packets (virtio 1.2 section 5.10.6): a pure parser over a popped chain,
// checking every field the guest controls before the device acts on it. Fuzzed by
// tests/virtio/fuzz/vsock_fuzzer.cc.
#include <algorithm>
#include <cstring>

#include "pepita/core/format.hpp"
#include "pepita/virtio/vsock.hpp"

namespace pepita::virtio::vsock {
namespace {

std::unexpected<Error> bad(const std::string& what) {
  return fail(ErrorCode::Protocol, std::string("virtio-vsock packet refused: ")
                                       .append(what)
                                       .append("; the connection is reset"));
}

}  // namespace

Result<Packet> Packet::parse(const Chain& chain, const GuestMemory& mem, uint64_t guest_cid,
                             std::optional<Header>* header_out) {
  if (header_out != nullptr) header_out->reset();
  if (chain.readable_bytes < sizeof(Header)) {
    return bad(pepita::fmt("the chain has {} readable bytes, less than the {}-byte header",
                           chain.readable_bytes, sizeof(Header)));
  }
  Packet p;
  // The header may be split over descriptors: gather it, then the payload follows it.
  auto* hdr_bytes = reinterpret_cast<std::byte*>(&p.hdr);  // SAFETY: Header is trivially copyable
  size_t got = 0;
  size_t seg = 0;
  uint32_t seg_off = 0;
  for (; seg < chain.segments.size() && got < sizeof(Header); ++seg) {
    const Segment& s = chain.segments[seg];
    if (s.writable) break;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(s.len, sizeof(Header) - got));
    auto src = PEPITA_TRY(mem.span(s.gpa, n));
    std::memcpy(hdr_bytes + got, src.data(), n);
    got += n;
    if (n < s.len) {
      seg_off = n;
      break;
    }
  }
  if (header_out != nullptr) *header_out = p.hdr;
  const Header h = p.hdr;  // a copy: packed fields cannot bind to fmt's references
  if (h.op == OP_INVALID || h.op > OP_CREDIT_REQUEST)
    return bad(pepita::fmt("unknown op {}", h.op));
  if (h.type != TYPE_STREAM)
    return bad(pepita::fmt("socket type {} (only STREAM, 1, is offered)", h.type));
  if (h.src_cid != guest_cid)
    return bad(pepita::fmt("src_cid {} is not the guest's cid {}", h.src_cid, guest_cid));
  if (h.dst_cid != kHostCid)
    return bad(
        pepita::fmt("dst_cid {} is not the host (2); no other peer is reachable", h.dst_cid));
  if (h.len > kMaxPayload)
    return bad(pepita::fmt("payload length {} beyond the {}-byte maximum", h.len, kMaxPayload));
  if (h.len > chain.readable_bytes - sizeof(Header)) {
    return bad(pepita::fmt("payload length {} beyond the {} readable bytes after the header", h.len,
                           chain.readable_bytes - sizeof(Header)));
  }
  if (h.op != OP_RW && h.len != 0)
    return bad(pepita::fmt("op {} carries a {}-byte payload (only RW may)", h.op, h.len));
  uint32_t left = h.len;
  for (; seg < chain.segments.size() && left > 0; ++seg, seg_off = 0) {
    const Segment& s = chain.segments[seg];
    if (s.writable) break;
    const uint32_t n = std::min(left, s.len - seg_off);
    if (n == 0) continue;
    p.payload.push_back(Segment{PhysAddr(s.gpa.raw() + seg_off), n, false});
    left -= n;
  }
  if (left != 0) return bad("payload runs past the readable descriptors");
  return p;
}

}  // namespace pepita::virtio::vsock
