// mmap wrapper that returns Result instead of MAP_FAILED + errno.
#include "pepita/core/mapping.hpp"

#include <cerrno>
#include <string>

namespace pepita {

Result<Mapping> Mapping::map(std::size_t length, int prot, int flags, int fd, off_t offset,
                             const char* what) {
  if (length == 0)
    return fail(ErrorCode::InvalidArgument, std::string("mmap ") + what + ": length is 0");
  void* addr = ::mmap(nullptr, length, prot, flags, fd, offset);
  if (addr == MAP_FAILED) return fail_errno(errno, std::string("mmap ") + what);
  return Mapping(addr, length);
}

}  // namespace pepita
