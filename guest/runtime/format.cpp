// Integer printing shared by both runtimes.
#include "pepita_guest/runtime.hpp"

namespace pepita::guest {

void print(const char* text) {
  uint64_t n = 0;
  while (text[n] != '\0') ++n;
  write(1, text, n);
}

void print_u64(uint64_t value) {
  char buf[24];
  int i = 24;
  do {
    buf[--i] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  write(1, buf + i, static_cast<uint64_t>(24 - i));
}

void print_i64(int64_t value) {
  if (value < 0) {
    write(1, "-", 1);
    print_u64(~static_cast<uint64_t>(value) + 1);
  } else {
    print_u64(static_cast<uint64_t>(value));
  }
}

}  // namespace pepita::guest
