// The smallest guest: prints one line and exits 0 (one VM exit carries both).
#include "pepita_guest/runtime.hpp"

extern "C" int guest_main() {
  pepita::guest::print("hello from a pepita micro-VM\n");
  return 0;
}
