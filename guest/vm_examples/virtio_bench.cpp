// Measures the virtio-mmio paths from inside a guest; the host times whole runs. Input: one mode
// byte and a count (decimal). 'r': that many MMIO register reads (one VM exit each). 'c': that
// many 64 KiB virtio-console transmits (one notify exit each). 'b': that many 4 KiB virtio-blk
// writes. '0': set up the devices only (the baseline the others are compared with).
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/virtio.hpp"

namespace vg = pepita::guest::virtio;
namespace v = pepita::abi::virtio;
namespace vb = pepita::abi::virtio_blk;

extern "C" int guest_main() {
  const auto in = pepita::guest::input();
  if (in.size < 1) return 2;
  uint64_t count = 0;
  for (uint64_t i = 1; i < in.size && in.data[i] >= '0' && in.data[i] <= '9'; ++i)
    count = count * 10 + (in.data[i] - '0');
  vg::Device con, blk;
  if (!con.probe(v::ID_CONSOLE) || !con.init(0) || !con.setup_queue(1, 8) || !con.driver_ok())
    return 3;
  if (!blk.probe(v::ID_BLOCK) || !blk.init(0) || !blk.setup_queue(0, 8) || !blk.driver_ok())
    return 4;
  constexpr uint32_t kChunk = 64 << 10;
  auto* buf = static_cast<char*>(pepita::guest::alloc(kChunk, 4096));
  if (buf == nullptr) return 5;
  for (uint32_t i = 0; i < kChunk; ++i) buf[i] = static_cast<char>('a' + i % 26);
  uint64_t sink = 0;
  switch (in.data[0]) {
    case 'r':
      for (uint64_t i = 0; i < count; ++i) sink += con.read32(pepita::abi::virtio_mmio::STATUS);
      break;
    case 'c':
      for (uint64_t i = 0; i < count; ++i) {
        vg::Buf b{buf, kChunk, false};
        if (con.queue(1).transfer(&b, 1) < 0) return 6;
      }
      break;
    case 'b':
      for (uint64_t i = 0; i < count; ++i) {
        if (vg::blk_request(blk, vb::T_OUT, (i % 64) * 8, buf, 4096) != vb::S_OK) return 7;
      }
      break;
    case '0': break;
    default: return 8;
  }
  return sink == 0xffffffff ? 9 : 0;
}
