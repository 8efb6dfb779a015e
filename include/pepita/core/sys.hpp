#pragma once
// pepita's one kernel boundary: the generic Linux system calls every module repeats (fd I/O,
// eventfd, pidfd and processes, sockets, signals, threads). Raw calls return the result or a
// negative errno and nothing above this layer reads errno (liburing's syscall.h); `sys::check`
// turns a raw result into Result<T> with a message that tells the user what to do.
// Module-specific calls (io_uring_setup/enter/register, ublk and KVM ioctls) stay in their modules,
// built on `sys::syscall` / `sys::ioctl`.
//
//   auto efd = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
//   (void)sys::eventfd_signal(efd.get());
//   const int64_t n = sys::pread_full(fd, buf, len, offset);   // bytes or -errno
//   if (n < 0) return fail_errno(static_cast<int>(n), "read the image");

#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/process.hpp"
#include "pepita/core/sys/signal.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/sys/thread.hpp"
