#pragma once
// eventfd(2): the wake-up counter every pepita reactor, ring reaper and device thread uses to be
// woken from another thread. Raw calls return a value >= 0 or a negative errno; make_eventfd
// returns the owned fd as Result.
//
//   auto wake = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
//   (void)sys::eventfd_signal(wake.get());       // from any thread
//   const int64_t n = sys::eventfd_drain(wake.get());  // in the woken thread: count or -EAGAIN

#include <sys/eventfd.h>

#include <cstdint>

#include "pepita/core/sys/check.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::sys {

/// eventfd(2) with EFD_CLOEXEC added to `flags` (EFD_NONBLOCK, EFD_SEMAPHORE): the fd or -errno.
int eventfd(unsigned initval = 0, int flags = 0) noexcept;

/// The same, owned; the error tells the user to raise the open-file limit when fds ran out.
Result<UniqueFd> make_eventfd(int flags = 0);

/// Adds `n` to the counter, waking a reader: 0 or -errno. A full counter (EAGAIN on a
/// non-blocking eventfd) already wakes the reader, so it returns 0 too. EINTR is retried.
int eventfd_signal(int fd, uint64_t n = 1) noexcept;

/// Reads and resets the counter: its value (> 0), -EAGAIN when it is zero on a non-blocking
/// eventfd, or -errno. On a blocking eventfd it waits until the counter is non-zero. EINTR is
/// retried.
int64_t eventfd_drain(int fd) noexcept;

}  // namespace pepita::sys
