// libFuzzer target for the transport's untrusted-input parsers: the frame decoder, the message
// payload decoders and the session's MAC/sequence check. Built by src/transport/CMakeLists.txt
// through cmake/PepitaFuzz.cmake (`make fuzz`; a seed replay under CTest otherwise; it is a .cc
// file so the module's *.cpp test glob leaves it out).
//   build-fuzz/fuzz/fuzz_transport_frame tests/transport/fuzz/corpus/fuzz_transport_frame
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pepita/transport/frame.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/session.hpp"

using namespace pepita::transport;

namespace {

Session& fixed_session() {
  static Session s = [] {
    static const char kKey[] = "fuzzing key, thirty-two bytes ok";
    auto key = Key::from_bytes(as_bytes(kKey)).value();
    Bytes cn(kNonceSize, std::byte{1}), sn(kNonceSize, std::byte{2});
    return Session::derive(key, cn, sn, false);
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // SAFETY: the fuzzer's buffer is `size` readable bytes; viewed as std::byte, read-only.
  ByteSpan in(reinterpret_cast<const std::byte*>(data), size);
  // Inputs starting with 0xFF are payloads: wrap them in a valid frame (right CRC) so the
  // message decoders and the MAC check get deep inputs without the fuzzer solving CRC32C.
  Bytes wrapped;
  if (size >= 2 && data[0] == 0xFF) {
    FrameHeader h{
        .type = static_cast<MessageType>(1 + data[1] % kMaxMessageType),
        .flags = static_cast<std::uint16_t>(size > 40 && (data[1] & 0x80) ? kFlagMac : 0)};
    if (!encode_frame(h, in.subspan(2), wrapped)) return 0;
    if (h.flags & kFlagMac) wrapped.resize(wrapped.size() + kMacSize, std::byte{0x5A});
    in = wrapped;
    size = wrapped.size();
  }
  std::size_t off = 0;
  for (int frames = 0; frames < 64 && off <= in.size(); ++frames) {
    auto d = decode_frame(in.subspan(off), {.max_payload = 1 << 20});
    if (!d || !d->frame) break;
    const FrameView& f = *d->frame;
    // The decoder must only hand out views inside the input.
    if (d->consumed == 0 || d->consumed > in.size() - off) __builtin_trap();
    if (f.payload.data() < in.data() ||
        f.payload.data() + f.payload.size() > in.data() + in.size()) {
      __builtin_trap();
    }
    // A bulk frame's data too (protocol 6), and the bytes its CRC and MAC cover.
    for (ByteSpan v : {f.bulk, f.covered}) {
      if (!v.empty() && (v.data() < in.data() || v.data() + v.size() > in.data() + in.size())) {
        __builtin_trap();
      }
    }
    (void)decode_submit(f.payload);
    (void)decode_result(f.payload);
    (void)decode_register(f.payload);
    (void)decode_upload(f.payload);
    (void)decode_heartbeat(f.payload);
    (void)decode_have_blob(f.payload);
    (void)decode_error(f.payload);
    (void)decode_fetch_blob(f.payload);
    (void)decode_blob_chunk(f.payload);
    (void)decode_output_chunk(f.payload);
    (void)fixed_session().open(f);
    off += d->consumed;
  }
  return 0;
}
