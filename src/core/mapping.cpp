// mmap wrapper that returns Result instead of MAP_FAILED + errno.
#include "pepita/core/mapping.hpp"

#include <string>

#include "pepita/core/sys/fd.hpp"

namespace pepita {

Result<Mapping> Mapping::map(std::size_t length, int prot, int flags, int fd, off_t offset,
                             const char* what) {
  if (length == 0)
    return fail(ErrorCode::InvalidArgument, std::string("mmap ") + what + ": length is 0");
  void* addr = nullptr;
  if (const int rc = sys::mmap(&addr, length, prot, flags, fd, offset); rc < 0)
    return fail_errno(rc, std::string("mmap ") + what);
  return Mapping(addr, length);
}

}  // namespace pepita
