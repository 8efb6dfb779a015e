#pragma once
// Wire frames of pepita's transport (docs/protocol.md): a fixed 32-byte little-endian header with
// magic, version, type, flags, request id, sequence number, payload length and CRC32C (RFC 3720
// polynomial), the payload, then an optional 32-byte HMAC-SHA256 trailer once a session exists.
// The decoder is a pure function over bytes: it never reads past the span it is given.
//
//   auto d = decode_frame(buffer, {.max_payload = kMaxPayload});
//   if (!d) close_connection(d.error());             // garbage, oversize, bad CRC
//   else if (d->frame) handle(*d->frame), buffer.erase(0, d->consumed);
//   else read_more(d->needed);                       // incomplete: need d->needed bytes in all

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::transport {

using Bytes = std::vector<std::byte>;
using ByteSpan = std::span<const std::byte>;

inline constexpr std::uint32_t kFrameMagic = 0x31545050;  // "PPT1" as little-endian bytes
// 2: Result carries cpu, rss, byte counts. 3: Register carries the worker's task::Inventory,
// Submit the attempt's task::Allocation, Result peak memory, memory limit and allocation.
// 4: Submit carries the task's task::SandboxPolicy (the worker raises it to its floor), Result
// the status Sandboxed (10).
// 5: Submit carries declared inputs (path, size, SHA-256) and outputs, Result the outputs sent
// back; FetchBlob, BlobChunk and OutputChunk stage files in chunks (issue 24);
// Log streams a running task's output to the driver (issue 24's live logs).
// 6: bulk frames (kFlagBulk) for BlobChunk and OutputChunk: CRC32C and HMAC cover the header and
// the chunk's metadata; the chunk's bytes are proved by the blob's end-to-end SHA-256, which a
// MAC'd frame names (docs/protocol.md, "Bulk frames").
inline constexpr std::uint8_t kProtocolVersion = 6;
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::size_t kMacSize = 32;
/// Hard ceiling on one frame's payload; a header announcing more is refused before any payload
/// is read, so a peer cannot make us allocate more than this.
inline constexpr std::uint32_t kMaxPayload = 64u << 20;

/// Message kinds. The numbers are the wire values and never change meaning.
enum class MessageType : std::uint8_t {
  Hello = 1,      // client -> worker: version, client nonce, name (cleartext, unauthenticated)
  Challenge = 2,  // worker -> client: worker nonce and proof of the key (cleartext)
  Auth = 3,       // client -> worker: proof of the key (cleartext)
  AuthOk = 4,     // worker -> client: first MAC'd frame; proves both derived the session keys
  Register = 5,   // worker -> client: slots, backends, labels
  Submit = 6,     // client -> worker: run a task (request id = task id)
  Started = 7,    // worker -> client: the task began on a slot
  Result = 8,     // worker -> client: the task finished (or was returned unstarted)
  Heartbeat = 9,  // both ways, every heartbeat interval
  Cancel = 10,    // client -> worker: stop task <request id>
  Drain = 11,     // worker -> client: shutting down, send no more work
  Upload = 12,    // client -> worker: a content-addressed blob (SHA-256)
  HaveBlob = 13,  // both ways: does the worker hold blob X / it does
  Error = 14,     // either way, then close: a reason text
  // Protocol 5 (issue 24): staging of declared files.
  FetchBlob = 15,    // worker -> client: send bytes [offset, offset+length) of input blob X
  BlobChunk = 16,    // client -> worker: those bytes (or why it cannot)
  OutputChunk = 17,  // worker -> client: bytes of a declared output of task <request id>
  Log = 18,          // worker -> client: a chunk of a running task's stdout/stderr (protocol 5)

  // The reference crate's names for the same frames (issue 21). Its Ack and Status have no
  // frame here: Submit is answered by Started and Result, and status travels in Heartbeat.
  TaskSubmit = Submit,
  TaskResult = Result,
  TaskCancel = Cancel,
  Deregister = Drain,  // a worker leaving
  Shutdown = Drain,    // the crate's shutdown signal: the worker stops taking work
};
inline constexpr std::uint8_t kMaxMessageType = 18;

/// "hello", "submit", ...; "unknown" for values outside the enum.
std::string_view to_string(MessageType type) noexcept;

/// Header flag bits.
inline constexpr std::uint16_t kFlagMac = 0x0001;  // a kMacSize HMAC trailer follows the payload
/// Bulk frame (protocol 6): the payload is u32 meta_len, meta_len bytes of metadata (the
/// message's encoding without its data), then the bulk data; the CRC and the MAC cover the
/// header, meta_len and the metadata only. Legal only on sealed BlobChunk and OutputChunk frames,
/// whose data an end-to-end SHA-256 named in a MAC'd frame proves (docs/protocol.md).
inline constexpr std::uint16_t kFlagBulk = 0x0002;
inline constexpr std::uint16_t kKnownFlags = kFlagMac | kFlagBulk;
/// Bytes of a bulk frame's payload before its metadata (the u32 meta_len).
inline constexpr std::size_t kBulkPrefix = 4;

/// True for the message types that may travel as bulk frames.
constexpr bool may_be_bulk(MessageType type) noexcept {
  return type == MessageType::BlobChunk || type == MessageType::OutputChunk;
}

struct FrameHeader {
  MessageType type = MessageType::Heartbeat;
  std::uint16_t flags = 0;
  std::uint64_t request_id = 0;
  std::uint64_t sequence = 0;
  std::uint32_t payload_len = 0;
  std::uint32_t crc = 0;
};

/// One decoded frame. Spans point into the buffer given to decode_frame and die with it.
struct FrameView {
  FrameHeader header;
  ByteSpan header_bytes;  // the 32 raw header bytes (what the MAC covers, with `covered`)
  ByteSpan payload;       // a bulk frame's metadata, else the whole payload
  ByteSpan mac;           // empty unless kFlagMac
  ByteSpan covered{};     // payload bytes the CRC and MAC cover: all, or a bulk frame's prefix+meta
  ByteSpan bulk{};        // a bulk frame's data (not covered: proved end to end), else empty
};

struct DecodeLimits {
  std::uint32_t max_payload = kMaxPayload;
};

/// Outcome of decoding the front of a buffer: a whole frame (consumed > 0) or "incomplete",
/// with `needed` the total buffer size required to make progress.
struct Decoded {
  std::optional<FrameView> frame;
  std::size_t consumed = 0;
  std::size_t needed = 0;
};

/// Decodes the frame at the front of `buffer`. Incomplete input is not an error: it returns no
/// frame and how many bytes are needed. Protocol for a bad magic, version, type, unknown flags or
/// a payload over `limits.max_payload` (checked from the header alone, before the payload
/// arrives); Corrupted for a CRC mismatch. Never reads outside `buffer`.
Result<Decoded> decode_frame(ByteSpan buffer, const DecodeLimits& limits = {});

/// Validates just a 32-byte header (magic, version, type, flags, length). Used by decode_frame
/// and by readers that want to refuse an oversized frame before buffering it.
Result<FrameHeader> decode_header(ByteSpan header, const DecodeLimits& limits = {});

/// Appends the encoded header + payload to `out`; `header.crc` and `header.payload_len` are
/// computed here. With kFlagMac in `header.flags` the caller must append the kMacSize trailer
/// next (Session::seal does). InvalidArgument when the payload exceeds kMaxPayload.
Result<void> encode_frame(FrameHeader header, ByteSpan payload, Bytes& out);

/// Appends a bulk frame's header, meta_len and `meta` to `out` for `bulk_len` bytes of data that
/// the caller sends next, then (with kFlagMac) the MAC trailer; kFlagBulk is set here and the CRC
/// covers the header and the metadata. InvalidArgument when the type may not be bulk or the
/// payload would exceed kMaxPayload.
Result<void> encode_bulk_head(FrameHeader header, ByteSpan meta, std::size_t bulk_len, Bytes& out);

/// Little-endian helpers shared by the codecs.
void put_u16(Bytes& out, std::uint16_t v);
void put_u32(Bytes& out, std::uint32_t v);
void put_u64(Bytes& out, std::uint64_t v);
std::uint16_t get_u16(const std::byte* p) noexcept;
std::uint32_t get_u32(const std::byte* p) noexcept;
std::uint64_t get_u64(const std::byte* p) noexcept;

/// Views text as bytes and back, for payload fields that are text.
inline ByteSpan as_bytes(std::string_view s) noexcept { return std::as_bytes(std::span(s)); }
inline std::string_view as_text(ByteSpan b) noexcept {
  // SAFETY: std::byte and char have the same size and representation; read-only view.
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace pepita::transport
