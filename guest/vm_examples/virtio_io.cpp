// Uses the VM's virtio devices the way a driver would, with no kernel and no interrupts:
// virtio-console (greets, echoes the task input read from receiveq) and virtio-blk (reads a
// sector the host wrote, writes one the host checks, reads it back). Exit code names the step
// that failed (0 = all passed; no virtio-blk device is not a failure); all output goes through
// the console.
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/virtio.hpp"

namespace vg = pepita::guest::virtio;
namespace vb = pepita::abi::virtio_blk;

namespace {

vg::Device g_con;
vg::Device g_blk;
char g_line[256];

bool con_write(const void* data, uint32_t len) { return vg::console_write(g_con, data, len); }
bool con_print(const char* s) { return vg::console_print(g_con, s); }

void con_print_u64(uint64_t v) {
  char buf[24];
  int i = 23;
  buf[i] = 0;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  con_print(buf + i);
}

// One virtio-blk request: header, optional data, status. Returns the status byte or -1.
int blk_request(uint32_t type, uint64_t sector, void* data, uint32_t len) {
  return vg::blk_request(g_blk, type, sector, data, len);
}

}  // namespace

extern "C" int guest_main() {
  if (vg::device_count() == 0) return 10;
  if (!g_con.probe(pepita::abi::virtio::ID_CONSOLE)) return 11;
  if (!g_con.init(0) || !g_con.setup_queue(0, 8) || !g_con.setup_queue(1, 8) || !g_con.driver_ok())
    return 12;
  if (!con_print("virtio-console: hello from a kernel-less guest\n")) return 13;

  // Drain receiveq: the device fills each posted buffer from the task input inside the notify
  // exit; a buffer it cannot fill stays posted (there is no more input yet).
  uint32_t got = 0;
  for (;;) {
    vg::Buf b{g_line + got,
              static_cast<uint32_t>(sizeof g_line - 1 - got < 16 ? sizeof g_line - 1 - got : 16),
              true};
    if (b.len == 0) break;
    const int64_t n = g_con.queue(0).transfer(&b, 1);
    if (n <= 0) break;
    got += static_cast<uint32_t>(n);
  }
  g_line[got] = 0;
  con_print("input: ");
  con_write(g_line, got);
  con_print("\n");

  if (!g_blk.probe(pepita::abi::virtio::ID_BLOCK)) {
    con_print("virtio-blk: none\n");
    return 0;
  }
  if (!g_blk.init(0) || !g_blk.setup_queue(0, 8) || !g_blk.driver_ok()) return 21;
  const uint64_t capacity = g_blk.config32(0) | uint64_t{g_blk.config32(4)} << 32;
  con_print("virtio-blk: ");
  con_print_u64(capacity);
  con_print(" sectors\n");

  auto* sector = static_cast<char*>(pepita::guest::alloc(512, 512));
  auto* back = static_cast<char*>(pepita::guest::alloc(512, 512));
  if (sector == nullptr || back == nullptr) return 22;
  if (blk_request(vb::T_IN, 0, sector, 512) != vb::S_OK) return 23;
  sector[64] = 0;  // the host wrote a NUL-terminated line at the start of sector 0
  con_print("sector 0: ");
  con_print(sector);
  con_print("\n");

  for (int i = 0; i < 512; ++i) sector[i] = static_cast<char>(i * 13 + 7);
  if (blk_request(vb::T_OUT, 1, sector, 512) != vb::S_OK) return 24;
  if (blk_request(vb::T_IN, 1, back, 512) != vb::S_OK) return 25;
  for (int i = 0; i < 512; ++i)
    if (back[i] != sector[i]) return 26;
  // A request past the end of the disk is refused with IOERR, not a crash.
  if (blk_request(vb::T_IN, capacity, back, 512) != vb::S_IOERR) return 27;
  con_print("sector 1 written and verified\n");
  return 0;
}
