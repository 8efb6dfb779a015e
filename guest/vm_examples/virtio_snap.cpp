// Snapshots with devices: sets up virtio-console and virtio-blk before the snapshot point
// (guest_init), so every VM restored from the snapshot drives already-initialised queues. Before
// kReady it posts one receive buffer on the console (the device holds it: no input yet) and reads
// sector 0 of the capture's disk. After it (guest_main): one notify makes the console fill the held
// buffer with the run's input; the guest writes sector 1 with a pattern seeded by the input's
// first byte, reads it back, and reads sector 0 of the disk the restored VM serves. Exit code
// names the failed step (0 = all passed). A disk of exactly 8 sectors asks the guest to leave a
// virtio-blk request made available but not notified at kReady (in flight across the snapshot,
// which the host must refuse).
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/virtio.hpp"

namespace vg = pepita::guest::virtio;
namespace vb = pepita::abi::virtio_blk;

namespace {

vg::Device g_con;
vg::Device g_blk;
int g_init_error = 0;  // step of guest_init that failed, reported by guest_main
bool g_have_blk = false;
char g_rx[64];  // the receive buffer posted before kReady
char g_sector0_at_init[65];
char* g_sector = nullptr;
char* g_back = nullptr;

bool con_print(const char* s) { return vg::console_print(g_con, s); }

int blk_request(uint32_t type, uint64_t sector, void* data, uint32_t len) {
  return vg::blk_request(g_blk, type, sector, data, len);
}

int init() {
  if (!g_con.probe(pepita::abi::virtio::ID_CONSOLE)) return 11;
  if (!g_con.init(0) || !g_con.setup_queue(0, 8) || !g_con.setup_queue(1, 8) || !g_con.driver_ok())
    return 12;
  if (!con_print("before the snapshot point\n")) return 13;
  // Post a receive buffer and notify: with no input yet the device holds it.
  vg::Buf rx{g_rx, sizeof g_rx, true};
  if (g_con.queue(0).submit(&rx, 1) < 0) return 14;
  g_con.write32(pepita::abi::virtio_mmio::QUEUE_NOTIFY, 0);

  if (!g_blk.probe(pepita::abi::virtio::ID_BLOCK)) return 0;
  g_have_blk = true;
  if (!g_blk.init(0) || !g_blk.setup_queue(0, 8) || !g_blk.driver_ok()) return 21;
  g_sector = static_cast<char*>(pepita::guest::alloc(512, 512));
  g_back = static_cast<char*>(pepita::guest::alloc(512, 512));
  if (g_sector == nullptr || g_back == nullptr) return 22;
  if (blk_request(vb::T_IN, 0, g_sector, 512) != vb::S_OK) return 23;
  for (int i = 0; i < 64; ++i) g_sector0_at_init[i] = g_sector[i];
  g_sector0_at_init[64] = 0;
  const uint64_t capacity = g_blk.config32(0) | uint64_t{g_blk.config32(4)} << 32;
  if (capacity == 8) {
    // In flight at kReady: made available, never notified.
    static vb::RequestHeader hdr{vb::T_IN, 0, 0};
    static uint8_t status = 0xff;
    vg::Buf bufs[3] = {{&hdr, sizeof hdr, false}, {g_back, 512, true}, {&status, 1, true}};
    if (g_blk.queue(0).submit(bufs, 3) < 0) return 24;
  }
  return 0;
}

}  // namespace

extern "C" void guest_init() { g_init_error = init(); }

extern "C" int guest_main() {
  if (g_init_error != 0) return g_init_error;
  // The device fills the held buffer from this run's input inside this notify exit.
  g_con.write32(pepita::abi::virtio_mmio::QUEUE_NOTIFY, 0);
  uint16_t head = 0;
  uint32_t got = 0;
  if (!g_con.queue(0).poll(&head, &got)) return 31;
  if (got >= sizeof g_rx) got = sizeof g_rx - 1;
  g_rx[got] = 0;
  con_print("input: ");
  con_print(g_rx);
  con_print("\n");
  if (!g_have_blk) return 0;
  con_print("sector 0 at init: ");
  con_print(g_sector0_at_init);
  con_print("\n");
  const char seed = got > 0 ? g_rx[0] : '?';
  for (int i = 0; i < 512; ++i) g_sector[i] = static_cast<char>(seed + i * 7);
  if (blk_request(vb::T_OUT, 1, g_sector, 512) != vb::S_OK) return 32;
  if (blk_request(vb::T_IN, 1, g_back, 512) != vb::S_OK) return 33;
  for (int i = 0; i < 512; ++i)
    if (g_back[i] != g_sector[i]) return 34;
  if (blk_request(vb::T_IN, 0, g_back, 512) != vb::S_OK) return 35;
  g_back[64] = 0;
  con_print("sector 0 now: ");
  con_print(g_back);
  con_print("\n");
  return 0;
}
