#pragma once
// The edge between raw kernel results (value >= 0 or negative errno) and pepita::Result: one place
// that turns -errno into an Error whose message names the operation and the next step
// (Error::from_errno). The raw `ret` adapter is the only reader of errno in pepita besides the
// libc calls that document errno as their only error channel.

#include <cerrno>
#include <concepts>
#include <string_view>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::sys {

/// Adapts a libc call that reports failure as -1 + errno to the kernel convention: `r` when
/// non-negative, else -errno. Inline because io_uring_enter sits on the hot path.
inline long ret(long r) noexcept { return r < 0 ? -errno : r; }

/// The errno the last failed libc call left, negated (for calls whose failure value is not -1,
/// e.g. a null FILE* or DIR*). Read it right after the call.
inline int last_error() noexcept { return -errno; }

/// `rc` when >= 0; otherwise an Error naming `what` ("open /dev/kvm: Permission denied (EACCES)
/// — run as root or grant the needed capability").
template <std::integral T>
Result<T> check(T rc, std::string_view what) {
  if (rc < 0) return fail_errno(static_cast<int>(rc), what);
  return rc;
}

/// Result<void> form of check for calls that return 0 or -errno.
inline Result<void> check_void(long rc, std::string_view what) {
  if (rc < 0) return fail_errno(static_cast<int>(rc), what);
  return {};
}

/// Wraps a raw fd result (fd or -errno) in its owner.
inline Result<UniqueFd> check_fd(int rc, std::string_view what) {
  if (rc < 0) return fail_errno(rc, what);
  return UniqueFd(rc);
}

}  // namespace pepita::sys
