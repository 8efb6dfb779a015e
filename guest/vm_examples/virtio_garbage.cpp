// A hostile virtio driver: garbage in every virtio-mmio register, a queue of bad size, a ring
// aimed at the GDT, then (after showing the device recovers from a reset) a descriptor loop that
// leaves the device in DEVICE_NEEDS_RESET. Reports each status through host calls; exit 0 unless
// the device failed to protect itself.
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/virtio.hpp"

namespace vg = pepita::guest::virtio;
namespace v = pepita::abi::virtio;
namespace m = pepita::abi::virtio_mmio;
namespace vb = pepita::abi::virtio_blk;
using pepita::guest::print;
using pepita::guest::print_u64;

namespace {

void report(const char* step, const vg::Device& d) {
  print(step);
  print(" needs-reset=");
  print_u64((d.status() & v::STATUS_NEEDS_RESET) != 0 ? 1 : 0);
  print(" magic-ok=");
  print_u64(d.read32(m::MAGIC_VALUE) == m::MAGIC ? 1 : 0);
  print("\n");
}

// Queue 0 over raw ring memory the test controls completely.
bool raw_queue(vg::Device& d, uint64_t desc, uint64_t avail, uint64_t used, uint16_t size) {
  if (!d.init(0)) return false;
  d.write32(m::QUEUE_SEL, 0);
  d.write32(m::QUEUE_NUM, size);
  d.write32(m::QUEUE_DESC_LOW, static_cast<uint32_t>(desc));
  d.write32(m::QUEUE_DESC_HIGH, static_cast<uint32_t>(desc >> 32));
  d.write32(m::QUEUE_AVAIL_LOW, static_cast<uint32_t>(avail));
  d.write32(m::QUEUE_AVAIL_HIGH, static_cast<uint32_t>(avail >> 32));
  d.write32(m::QUEUE_USED_LOW, static_cast<uint32_t>(used));
  d.write32(m::QUEUE_USED_HIGH, static_cast<uint32_t>(used >> 32));
  d.write32(m::QUEUE_READY, 1);
  return true;
}

}  // namespace

extern "C" int guest_main() {
  vg::Device d;
  if (!d.probe(v::ID_BLOCK)) return 10;

  // 1. Garbage everywhere: 32-bit writes over the whole register page, then byte writes.
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (uint32_t off = 0; off < 0x200; off += 4) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    d.write32(off, static_cast<uint32_t>(x));
  }
  for (uint32_t off = 0; off < 0x120; off += 7)
    // SAFETY: a mapped virtio-mmio page; the byte store exits and the VMM refuses it.
    *reinterpret_cast<volatile uint8_t*>(d.base() + off) = static_cast<uint8_t>(off);
  report("garbage-registers", d);

  // 2. A queue size that is not a power of two.
  auto* ring = static_cast<char*>(pepita::guest::alloc(8192, 4096));
  if (ring == nullptr) return 11;
  const uint64_t r = reinterpret_cast<uint64_t>(ring);
  raw_queue(d, r, r + 4096, r + 6144, 3);
  report("bad-queue-size", d);

  // 3. A descriptor table in the GDT (supervisor memory the guest cannot touch itself).
  raw_queue(d, pepita::vmm::guest_abi::kGdtGpa, r + 4096, r + 6144, 8);
  report("ring-in-gdt", d);

  // 4. A correct request after a reset: the device recovered.
  if (!d.init(0) || !d.setup_queue(0, 8) || !d.driver_ok()) return 12;
  static vb::RequestHeader hdr{vb::T_IN, 0, 0};
  static char data[512];
  static uint8_t status = 0xff;
  vg::Buf bufs[3] = {{&hdr, sizeof hdr, false}, {data, 512, true}, {&status, 1, true}};
  if (d.queue(0).transfer(bufs, 3) < 0 || status != vb::S_OK) return 13;
  report("recovered", d);

  // 5. A descriptor that chains to itself.
  __builtin_memset(ring, 0, 8192);
  if (!raw_queue(d, r, r + 4096, r + 6144, 8)) return 14;
  d.write32(m::STATUS,
            v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER | v::STATUS_FEATURES_OK | v::STATUS_DRIVER_OK);
  auto* desc = reinterpret_cast<v::Desc*>(ring);
  desc[0] = v::Desc{reinterpret_cast<uint64_t>(data), 16, v::DESC_F_NEXT, 0};
  auto* avail = reinterpret_cast<volatile uint16_t*>(ring + 4096);
  avail[2] = 0;
  avail[1] = 1;
  d.write32(m::QUEUE_NOTIFY, 0);
  report("descriptor-loop", d);
  // Notifies on a device that needs a reset are ignored; the guest keeps running.
  d.write32(m::QUEUE_NOTIFY, 0);
  report("after-loop", d);
  return 0;
}
