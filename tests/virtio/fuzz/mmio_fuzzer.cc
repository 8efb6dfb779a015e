// libFuzzer target over virtio-mmio register traffic: the input's head becomes guest RAM (rings
// and buffers), the rest a sequence of register reads and writes against a virtio-console behind
// an MmioTransport. Any outcome but a crash or a sanitizer report is fine; at the end a reset and
// a clean bring-up must still work (the device survives whatever the driver did).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/console.hpp"
#include "pepita/virtio/mmio.hpp"

using namespace pepita;
using namespace pepita::virtio;
namespace m = abi::virtio_mmio;
namespace v = abi::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static memory::GuestMemory mem =
      std::move(memory::GuestMemory::anonymous(PhysAddr(0), 64 << 10).value());
  if (size < 2) return 0;
  const size_t ram_len = std::min<size_t>(size, data[0] * 64u);
  auto ram_bytes = mem.backing();
  std::memset(ram_bytes.data(), 0, ram_bytes.size());
  std::memcpy(ram_bytes.data(), data, ram_len);
  auto con = console::ConsoleDevice::create({.output_limit = 4096, .max_queue_size = 16});
  con->feed(std::as_bytes(std::span(data, std::min<size_t>(size, 100))));
  MmioTransport t(std::move(con), mem);
  // Each op: offset (2 bytes; 0x200 and up reach past the register file), width selector,
  // value (4 bytes). Width selector bit 7: read instead of write.
  static constexpr unsigned kWidths[] = {4, 4, 4, 1, 2, 8, 3, 0};
  for (size_t at = ram_len; at + 7 <= size; at += 7) {
    const uint16_t offset = static_cast<uint16_t>(data[at] | (data[at + 1] << 8)) % 0x240;
    const unsigned width = kWidths[data[at + 2] & 7];
    uint32_t value;
    std::memcpy(&value, data + at + 3, 4);
    if ((data[at + 2] & 0x80) != 0)
      (void)t.read(offset, width);
    else
      t.write(offset, width, value);
  }
  // Survival: reset, negotiate, one queue, DRIVER_OK.
  t.write(m::STATUS, 4, 0);
  if (t.status() != 0) std::abort();
  t.write(m::STATUS, 4, v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER);
  t.write(m::DRIVER_FEATURES_SEL, 4, 1);
  t.write(m::DRIVER_FEATURES, 4, 1);  // VERSION_1
  t.write(m::STATUS, 4, v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER | v::STATUS_FEATURES_OK);
  if ((t.status() & v::STATUS_FEATURES_OK) == 0) std::abort();
  return 0;
}
