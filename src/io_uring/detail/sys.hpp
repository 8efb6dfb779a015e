#pragma once
// The io_uring syscalls, raw: each returns the kernel's result or a negative errno (liburing's
// syscall.h). Built on core's sys::syscall, so nothing in this module reads errno.

#include <sys/syscall.h>

#include <cstddef>

#include "pepita/abi/io_uring.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::io_uring::sys {

/// io_uring_setup(2): returns the ring fd or -errno.
inline int setup(unsigned entries, abi::Params* params) noexcept {
  return static_cast<int>(pepita::sys::syscall(__NR_io_uring_setup, entries, params));
}

/// io_uring_enter(2): returns SQEs consumed or -errno. `arg` is a sigset or, with
/// abi::enter::EXT_ARG, an abi::GeteventsArg of size `argsz`.
inline int enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
                 std::size_t argsz) noexcept {
  return static_cast<int>(
      pepita::sys::syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz));
}

/// io_uring_register(2): returns an opcode-specific count or -errno.
inline int register_(int fd, unsigned opcode, const void* arg, unsigned nr) noexcept {
  return static_cast<int>(pepita::sys::syscall(__NR_io_uring_register, fd, opcode, arg, nr));
}

}  // namespace pepita::io_uring::sys
