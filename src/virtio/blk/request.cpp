// virtio-blk request parsing: a pure function of the chain, guest RAM and the device limits, so
// every check on guest input is unit-tested and fuzzed without a VM.
#include <cstring>

#include "pepita/virtio/blk.hpp"

namespace pepita::virtio::blk {
namespace vb = abi::virtio_blk;
namespace {

// Copies `out.size()` bytes starting `skip` bytes into the chain's readable segments.
Result<void> gather_readable(const Chain& chain, const GuestMemory& ram, uint64_t skip,
                             std::span<std::byte> out) {
  size_t done = 0;
  for (const auto& s : chain.segments) {
    if (s.writable || done == out.size()) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(s.len - skip, out.size() - done);
    auto src = PEPITA_TRY(ram.span(PhysAddr(s.gpa.raw() + skip), n));
    std::memcpy(out.data() + done, src.data(), n);
    done += n;
    skip = 0;
  }
  if (done != out.size()) return fail(ErrorCode::Protocol, "chain shorter than its header");
  return {};
}

Request refuse(Request r, uint8_t status, std::string_view why) {
  r.status = status;
  r.reason = why;
  r.data.clear();
  return r;
}

// sector + nr within capacity, with no overflow.
bool in_range(uint64_t sector, uint64_t nr, uint64_t capacity) {
  return sector <= capacity && nr <= capacity - sector;
}

}  // namespace

Result<Request> Request::parse(const Chain& chain, const GuestMemory& ram, const Limits& limits) {
  Request r;
  // --- structure: header and status byte must exist, or no status can even be reported ---
  if (chain.readable_bytes < sizeof(vb::RequestHeader)) {
    return fail(ErrorCode::Protocol, "virtio-blk request without a 16-byte header");
  }
  if (chain.writable_bytes < 1 || chain.segments.empty() || !chain.segments.back().writable ||
      chain.segments.back().len == 0) {
    return fail(ErrorCode::Protocol,
                "virtio-blk request without a status byte (the last descriptor must be writable "
                "and non-empty)");
  }
  const Segment& last = chain.segments.back();
  r.status_gpa = PhysAddr(last.gpa.raw() + last.len - 1);

  vb::RequestHeader hdr;
  PEPITA_TRY_VOID(gather_readable(chain, ram, 0, std::as_writable_bytes(std::span(&hdr, 1))));
  r.type = hdr.type;
  r.sector = hdr.sector;

  const uint64_t out_bytes = chain.readable_bytes - sizeof(vb::RequestHeader);
  const uint64_t in_bytes = chain.writable_bytes - 1;
  const bool is_read = hdr.type == vb::T_IN || hdr.type == vb::T_GET_ID;

  // --- payload segments: readable after the header (OUT), writable before the status (IN) ---
  if (hdr.type == vb::T_IN || hdr.type == vb::T_OUT || hdr.type == vb::T_GET_ID) {
    uint64_t skip = sizeof(vb::RequestHeader);
    uint64_t left = is_read ? in_bytes : out_bytes;
    for (const auto& s : chain.segments) {
      if (s.writable != is_read) continue;
      uint64_t off = 0;
      uint64_t n = s.len;
      if (!is_read && skip > 0) {
        off = std::min<uint64_t>(skip, n);
        skip -= off;
        n -= off;
      }
      n = std::min(n, left);
      if (n > 0)
        r.data.push_back(
            Segment{PhysAddr(s.gpa.raw() + off), static_cast<uint32_t>(n), s.writable});
      left -= n;
    }
  }

  switch (hdr.type) {
    case vb::T_IN:
    case vb::T_OUT: {
      const uint64_t len = hdr.type == vb::T_IN ? in_bytes : out_bytes;
      const uint64_t wrong = hdr.type == vb::T_IN ? out_bytes : in_bytes;
      if (wrong != 0) return refuse(r, vb::S_IOERR, "data buffer in the wrong direction");
      if (len == 0) return refuse(r, vb::S_IOERR, "read or write of zero bytes");
      if (len > limits.max_data_bytes)
        return refuse(r, vb::S_IOERR, "request larger than size_max x seg_max");
      if (len % limits.logical_block_size != 0 ||
          hdr.sector % (limits.logical_block_size / 512) != 0) {
        return refuse(r, vb::S_IOERR, "range not aligned to the logical block size");
      }
      if (!in_range(hdr.sector, len / 512, limits.capacity_sectors)) {
        return refuse(r, vb::S_IOERR, "sector range past the end of the device");
      }
      if (hdr.type == vb::T_OUT && limits.read_only) {
        return refuse(r, vb::S_IOERR, "write to a read-only device");
      }
      r.data_bytes = static_cast<uint32_t>(len);
      r.nr_sectors = static_cast<uint32_t>(len / 512);
      return r;
    }
    case vb::T_FLUSH: r.data.clear(); return r;
    case vb::T_GET_ID:
      if (in_bytes == 0 || out_bytes != 0)
        return refuse(r, vb::S_IOERR, "GET_ID without a writable id buffer");
      r.data_bytes = static_cast<uint32_t>(std::min<uint64_t>(in_bytes, vb::ID_BYTES));
      return r;
    case vb::T_DISCARD:
    case vb::T_WRITE_ZEROES: {
      const bool wz = hdr.type == vb::T_WRITE_ZEROES;
      if (wz ? !limits.write_zeroes : !limits.discard)
        return refuse(r, vb::S_UNSUPP, "discard or write-zeroes not offered");
      if (limits.read_only)
        return refuse(r, vb::S_IOERR, "discard or write-zeroes on a read-only device");
      // We offer max_discard_seg = max_write_zeroes_seg = 1.
      if (out_bytes != sizeof(vb::DiscardWriteZeroes) || in_bytes != 0) {
        return refuse(r, vb::S_IOERR, "discard/write-zeroes needs exactly one 16-byte segment");
      }
      vb::DiscardWriteZeroes seg;
      PEPITA_TRY_VOID(gather_readable(chain, ram, sizeof(vb::RequestHeader),
                                      std::as_writable_bytes(std::span(&seg, 1))));
      const uint32_t allowed = wz ? vb::WRITE_ZEROES_FLAG_UNMAP : 0;
      if ((seg.flags & ~allowed) != 0)
        return refuse(r, vb::S_UNSUPP, "unknown discard/write-zeroes flags");
      if (seg.num_sectors == 0)
        return refuse(r, vb::S_IOERR, "discard/write-zeroes of zero sectors");
      const uint32_t lbs_sectors = limits.logical_block_size / 512;
      if (seg.sector % lbs_sectors != 0 || seg.num_sectors % lbs_sectors != 0) {
        return refuse(r, vb::S_IOERR, "discard/write-zeroes not aligned to the logical block size");
      }
      if (!in_range(seg.sector, seg.num_sectors, limits.capacity_sectors)) {
        return refuse(r, vb::S_IOERR, "discard/write-zeroes past the end of the device");
      }
      r.sector = seg.sector;
      r.nr_sectors = seg.num_sectors;
      r.unmap = (seg.flags & vb::WRITE_ZEROES_FLAG_UNMAP) != 0;
      r.data.clear();
      return r;
    }
    default: return refuse(r, vb::S_UNSUPP, "request type not supported");
  }
}

}  // namespace pepita::virtio::blk
