// Host-call benchmark guest: input is two little-endian uint32 (rounds, batch); it performs
// `rounds` ring submissions of `batch` no-op host calls each, then exits 0.
#include "pepita_guest/runtime.hpp"

extern "C" int guest_main() {
  using namespace pepita::guest;
  Bytes in = input();
  uint32_t rounds = 0, batch = 1;
  if (in.size >= 8) {
    __builtin_memcpy(&rounds, in.data, 4);
    __builtin_memcpy(&batch, in.data + 4, 4);
  }
  for (uint32_t i = 0; i < rounds; ++i)
    if (nop_roundtrip(batch) != 0) return 1;
  return 0;
}
