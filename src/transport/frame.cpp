// Frame codec: header validation, CRC32C, incomplete-input handling. Pure functions over bytes.
#include "pepita/transport/frame.hpp"

#include <algorithm>
#include <string>

#include "pepita/core/crc32c.hpp"
#include "pepita/core/format.hpp"

namespace pepita::transport {

std::string_view to_string(MessageType type) noexcept {
  switch (type) {
    case MessageType::Hello: return "hello";
    case MessageType::Challenge: return "challenge";
    case MessageType::Auth: return "auth";
    case MessageType::AuthOk: return "auth-ok";
    case MessageType::Register: return "register";
    case MessageType::Submit: return "submit";
    case MessageType::Started: return "started";
    case MessageType::Result: return "result";
    case MessageType::Heartbeat: return "heartbeat";
    case MessageType::Cancel: return "cancel";
    case MessageType::Drain: return "drain";
    case MessageType::Upload: return "upload";
    case MessageType::HaveBlob: return "have-blob";
    case MessageType::Error: return "error";
    case MessageType::FetchBlob: return "fetch-blob";
    case MessageType::BlobChunk: return "blob-chunk";
    case MessageType::OutputChunk: return "output-chunk";
    case MessageType::Log: return "log";
  }
  return "unknown";
}

void put_u16(Bytes& out, std::uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void put_u64(Bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
std::uint16_t get_u16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) |
                                    (std::to_integer<unsigned>(p[1]) << 8));
}
std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}
std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}

Result<FrameHeader> decode_header(ByteSpan h, const DecodeLimits& limits) {
  if (h.size() < kHeaderSize) {
    return fail(ErrorCode::Protocol, "frame header truncated: " + std::to_string(h.size()) +
                                         " of " + std::to_string(kHeaderSize) + " bytes");
  }
  const std::byte* p = h.data();
  if (get_u32(p) != kFrameMagic) {
    return fail(ErrorCode::Protocol,
                "bad frame magic: the peer is not speaking pepita transport (wrong port?)");
  }
  const auto version = std::to_integer<std::uint8_t>(p[4]);
  if (version != kProtocolVersion) {
    return fail(ErrorCode::Protocol, "unsupported protocol version " + std::to_string(version) +
                                         " (this build speaks " + std::to_string(kProtocolVersion) +
                                         "); upgrade one side");
  }
  const auto type = std::to_integer<std::uint8_t>(p[5]);
  if (type == 0 || type > kMaxMessageType) {
    return fail(ErrorCode::Protocol, "unknown message type " + std::to_string(type));
  }
  FrameHeader header;
  header.type = static_cast<MessageType>(type);
  header.flags = get_u16(p + 6);
  if ((header.flags & ~kKnownFlags) != 0) {
    return fail(ErrorCode::Protocol, "unknown frame flags " + std::to_string(header.flags));
  }
  if ((header.flags & kFlagBulk) != 0 &&
      (!may_be_bulk(header.type) || (header.flags & kFlagMac) == 0)) {
    return fail(
        ErrorCode::Protocol,
        pepita::fmt("bulk flag on a{} {} frame: only sealed blob-chunk and output-chunk "
                    "frames may be bulk",
                    (header.flags & kFlagMac) == 0 ? "n unsealed" : "", to_string(header.type)));
  }
  header.request_id = get_u64(p + 8);
  header.sequence = get_u64(p + 16);
  header.payload_len = get_u32(p + 24);
  header.crc = get_u32(p + 28);
  if (header.payload_len > limits.max_payload) {
    return fail(ErrorCode::Protocol, "frame payload of " + std::to_string(header.payload_len) +
                                         " bytes exceeds the limit of " +
                                         std::to_string(limits.max_payload));
  }
  return header;
}

Result<Decoded> decode_frame(ByteSpan buffer, const DecodeLimits& limits) {
  Decoded out;
  if (buffer.size() < kHeaderSize) {
    out.needed = kHeaderSize;
    return out;
  }
  const ByteSpan header_bytes = buffer.first(kHeaderSize);
  auto header = PEPITA_TRY(decode_header(header_bytes, limits));
  // Sizes are bounded by max_payload (<= 4 GiB) + 64, so size_t arithmetic cannot overflow.
  const std::size_t mac_len = (header.flags & kFlagMac) ? kMacSize : 0;
  const std::size_t total = kHeaderSize + std::size_t{header.payload_len} + mac_len;
  if (buffer.size() < total) {
    out.needed = total;
    return out;
  }
  ByteSpan payload = buffer.subspan(kHeaderSize, header.payload_len);
  ByteSpan covered = payload;
  ByteSpan bulk;
  if ((header.flags & kFlagBulk) != 0) {
    const std::uint32_t meta_len =
        payload.size() >= kBulkPrefix ? get_u32(payload.data()) : ~std::uint32_t{0};
    if (meta_len > payload.size() - std::min(payload.size(), kBulkPrefix)) {
      return fail(ErrorCode::Protocol,
                  pepita::fmt("bulk {} frame of {} payload bytes announces {} metadata bytes",
                              to_string(header.type), payload.size(), meta_len));
    }
    covered = payload.first(kBulkPrefix + meta_len);
    bulk = payload.subspan(kBulkPrefix + meta_len);
    payload = covered.subspan(kBulkPrefix);
  }
  std::uint32_t crc = crc32c(header_bytes.first(28));
  crc = crc32c(covered, crc);
  if (crc != header.crc) {
    return fail(ErrorCode::Corrupted, "frame CRC32C mismatch (" +
                                          std::string(to_string(header.type)) +
                                          " frame damaged in transit or tampered with)");
  }
  out.frame = FrameView{header,  header_bytes,
                        payload, buffer.subspan(kHeaderSize + header.payload_len, mac_len),
                        covered, bulk};
  out.consumed = total;
  out.needed = total;
  return out;
}

namespace {

// The header's first 28 bytes (everything before its CRC), appended to `out`.
void put_header_fields(const FrameHeader& header, std::size_t payload_len, Bytes& out) {
  put_u32(out, kFrameMagic);
  out.push_back(std::byte{kProtocolVersion});
  out.push_back(static_cast<std::byte>(header.type));
  put_u16(out, header.flags);
  put_u64(out, header.request_id);
  put_u64(out, header.sequence);
  put_u32(out, static_cast<std::uint32_t>(payload_len));
}

}  // namespace

Result<void> encode_frame(FrameHeader header, ByteSpan payload, Bytes& out) {
  if (payload.size() > kMaxPayload) {
    return fail(ErrorCode::InvalidArgument,
                "payload of " + std::to_string(payload.size()) +
                    " bytes exceeds the transport limit of 64 MiB; ship large inputs as blobs");
  }
  const std::size_t start = out.size();
  out.reserve(start + kHeaderSize + payload.size() + kMacSize);
  put_header_fields(header, payload.size(), out);
  std::uint32_t crc = crc32c(ByteSpan(out).subspan(start, 28));
  crc = crc32c(payload, crc);
  put_u32(out, crc);
  out.insert(out.end(), payload.begin(), payload.end());
  return {};
}

Result<void> encode_bulk_head(FrameHeader header, ByteSpan meta, std::size_t bulk_len, Bytes& out) {
  if (!may_be_bulk(header.type)) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("{} frames cannot be bulk frames", to_string(header.type)));
  }
  if (meta.size() > kMaxPayload || bulk_len > kMaxPayload - kBulkPrefix - meta.size()) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("bulk frame of {} + {} bytes exceeds the transport limit of 64 MiB",
                            meta.size(), bulk_len));
  }
  header.flags |= kFlagBulk;
  const std::size_t start = out.size();
  out.reserve(start + kHeaderSize + kBulkPrefix + meta.size());
  put_header_fields(header, kBulkPrefix + meta.size() + bulk_len, out);
  Bytes prefix;
  put_u32(prefix, static_cast<std::uint32_t>(meta.size()));
  std::uint32_t crc = crc32c(ByteSpan(out).subspan(start, 28));
  crc = crc32c(prefix, crc);
  crc = crc32c(meta, crc);
  put_u32(out, crc);
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), meta.begin(), meta.end());
  return {};
}

}  // namespace pepita::transport
