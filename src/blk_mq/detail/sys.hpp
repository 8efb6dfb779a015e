#pragma once
// Transition shim: blk_mq's syscall layer is core's pepita::sys (pepita/core/sys.hpp) now. Only
// file_disk_uring.cpp (its owner is moving it onto EventLoop) still names blk_mq::sys; delete this
// file once it includes pepita/core/sys.hpp. Reads no errno itself.

#include <cstdint>

#include "pepita/core/sys.hpp"

namespace pepita::blk_mq::sys {

using namespace pepita::sys;  // NOLINT(google-build-using-namespace): the shim's whole purpose

/// Blocks until the eventfd's counter is non-zero and resets it; 0 or -errno (EINTR retried).
inline int eventfd_wait(int fd) noexcept {
  const int64_t r = pepita::sys::eventfd_drain(fd);
  return r < 0 ? static_cast<int>(r) : 0;
}

}  // namespace pepita::blk_mq::sys
