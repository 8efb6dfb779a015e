// Memory-management system calls (see pepita/core/sys/memory.hpp): errno is read only through
// sys::ret.
#include "pepita/core/sys/memory.hpp"

#include <sys/mman.h>
#include <sys/resource.h>

#include "pepita/core/sys/check.hpp"

namespace pepita::sys {

int mlock(const void* addr, std::size_t len) noexcept {
  return static_cast<int>(ret(::mlock(addr, len)));
}

int munlock(const void* addr, std::size_t len) noexcept {
  return static_cast<int>(ret(::munlock(addr, len)));
}

int mprotect(void* addr, std::size_t len, int prot) noexcept {
  return static_cast<int>(ret(::mprotect(addr, len, prot)));
}

int memlock_limit(uint64_t* soft) noexcept {
  rlimit limit{};
  if (const long rc = ret(::getrlimit(RLIMIT_MEMLOCK, &limit)); rc < 0) return static_cast<int>(rc);
  *soft = limit.rlim_cur == RLIM_INFINITY ? ~uint64_t{0} : static_cast<uint64_t>(limit.rlim_cur);
  return 0;
}

}  // namespace pepita::sys
