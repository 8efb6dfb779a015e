#pragma once
// Signal masks, handlers and synchronous waits (pthread_sigmask(3), sigaction(2), signalfd(2),
// sigtimedwait(2)). pthread_sigmask reports a positive error number; here every call returns 0 /
// a value or a negative errno like the rest of sys.

#include <signal.h>
#include <sys/signalfd.h>

#include <chrono>
#include <initializer_list>

#include "pepita/core/sys/check.hpp"

namespace pepita::sys {

/// A sigset holding exactly `signals`.
sigset_t signal_set(std::initializer_list<int> signals) noexcept;

/// pthread_sigmask(how, set, old) for the calling thread (threads started afterwards inherit it):
/// 0 or -errno.
int set_signal_mask(int how, const sigset_t& set, sigset_t* old = nullptr) noexcept;
/// Blocks / unblocks `signals` in the calling thread: 0 or -errno.
int block_signals(std::initializer_list<int> signals, sigset_t* old = nullptr) noexcept;
int unblock_signals(std::initializer_list<int> signals) noexcept;

/// sigaction(2) installing `handler` for `sig` with `flags` (leave out SA_RESTART when a blocked
/// system call must return EINTR) and an empty sa_mask: 0 or -errno.
int install_handler(int sig, void (*handler)(int), int flags) noexcept;

/// signalfd(2) for `set` with SFD_CLOEXEC added: the fd or -errno. Block `set` first.
int signalfd(const sigset_t& set, int flags = 0) noexcept;

/// Waits up to `limit` for one of `set` (which must be blocked): the signal number, 0 when the
/// limit passed, or -errno. EINTR (another signal's handler ran) returns 0 too.
int wait_signal(const sigset_t& set, std::chrono::milliseconds limit) noexcept;

}  // namespace pepita::sys
