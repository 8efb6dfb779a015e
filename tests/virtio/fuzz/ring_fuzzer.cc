// libFuzzer target over ring contents: the input becomes guest RAM holding a descriptor table,
// avail ring and buffers; the device side pops every chain and parses it as a virtio-blk request.
// Any outcome but a crash or a sanitizer report is fine: malformed rings must end in an error.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/queue.hpp"

using namespace pepita;
using namespace pepita::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static memory::GuestMemory mem =
      std::move(memory::GuestMemory::anonymous(PhysAddr(0), 64 << 10).value());
  if (size < 4) return 0;
  const uint16_t qsize = static_cast<uint16_t>(1u << (data[0] % 6));  // 1..32
  const bool indirect = (data[1] & 1) != 0, event_idx = (data[1] & 2) != 0;
  const uint16_t start = static_cast<uint16_t>(data[2] | (data[3] << 8));
  auto ram_bytes = mem.backing();
  std::memset(ram_bytes.data(), 0, ram_bytes.size());
  std::memcpy(ram_bytes.data(), data + 4, std::min(size - 4, ram_bytes.size()));
  // desc at 0, avail at 0x1000, used at 0x2000: the input decides every field in them.
  auto q = Queue::activate({qsize, PhysAddr(0), PhysAddr(0x1000), PhysAddr(0x2000)}, mem,
                           {.event_idx = event_idx, .indirect = indirect}, start);
  if (!q) return 0;
  blk::Limits limits{.capacity_sectors = 100,
                     .max_data_bytes = 1 << 16,
                     .logical_block_size = 512,
                     .read_only = false,
                     .discard = true,
                     .write_zeroes = true};
  Chain chain;
  for (int i = 0; i < 64; ++i) {
    auto got = q->pop(chain);
    if (!got || !*got) break;
    auto req = blk::Request::parse(chain, mem, limits);
    if (req && req->status == 0) (void)q->add_used(chain.head, req->data_bytes + 1);
  }
  (void)q->should_notify();
  (void)q->enable_kicks();
  return 0;
}
