#pragma once
// pepita's error type: every fallible public call returns Result<T> = std::expected<T, Error>.
// An Error carries a category code, the errno it came from (if any) and a message that says what
// went wrong and what the user can do about it. No exceptions cross the public API.
//
//   pepita::Result<int> open_device(const char* path) {
//     int fd = ::open(path, O_RDWR);
//     if (fd < 0) return std::unexpected(pepita::Error::from_errno(errno, "open /dev/kvm"));
//     return fd;
//   }

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace pepita {

enum class ErrorCode : std::uint8_t {
  Ok = 0,
  InvalidArgument,    // caller passed something malformed; fix the input
  NotFound,           // file, device, task or key does not exist
  AlreadyExists,      // name or id taken
  PermissionDenied,   // needs root, a capability, or a 0600 key file
  Unsupported,        // the kernel or CPU lacks the feature; see message for the module/flag
  ResourceExhausted,  // out of memory, slots, ring entries, or over a configured limit
  Busy,               // resource in use; retry later
  TimedOut,           // deadline passed
  Cancelled,          // caller or shutdown cancelled the operation
  Interrupted,        // EINTR reached the API edge
  WouldBlock,         // EAGAIN: try again
  Io,                 // the device or file failed the I/O
  Protocol,           // a peer, guest or file broke the wire/ABI contract
  Corrupted,          // checksum or journal mismatch
  Disconnected,       // peer went away
  Internal,           // a pepita bug; please report it
};

/// Name of the code, e.g. "invalid-argument"; stable, used in JSON output.
std::string_view to_string(ErrorCode code) noexcept;

class [[nodiscard]] Error {
 public:
  Error(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), errno_(sys_errno), message_(std::move(message)) {}

  /// Builds an Error from a positive errno value (errno) or a negative one (kernel return style),
  /// naming the operation that failed: "io_uring_setup: Operation not permitted (EPERM) — ...".
  static Error from_errno(int err, std::string_view operation);

  ErrorCode code() const noexcept { return code_; }
  /// The positive errno this error came from, or 0 when it did not come from the kernel.
  int sys_errno() const noexcept { return errno_; }
  const std::string& message() const noexcept { return message_; }

  /// The negative errno to hand back to the kernel (ublk, virtio status), best effort.
  int to_negative_errno() const noexcept;

  /// True when repeating the same operation later may succeed (EAGAIN, EINTR, EBUSY, timeouts,
  /// disconnects, exhausted resources). Retry policies consult this.
  bool is_retriable() const noexcept;

  /// Prepends context: "loading job file: <old message>".
  Error& with_context(std::string_view context);

  /// "code: message", for logs and CLI output.
  std::string to_string() const;

 private:
  ErrorCode code_;
  int errno_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;

/// Shorthand for returning an error: `return pepita::fail(ErrorCode::InvalidArgument, "...")`.
inline std::unexpected<Error> fail(ErrorCode code, std::string message, int sys_errno = 0) {
  return std::unexpected(Error(code, std::move(message), sys_errno));
}
inline std::unexpected<Error> fail_errno(int err, std::string_view operation) {
  return std::unexpected(Error::from_errno(err, operation));
}

/// Maps an errno (either sign) to the closest ErrorCode.
ErrorCode code_from_errno(int err) noexcept;

}  // namespace pepita

/// Propagates an error from a Result-returning expression; evaluates to the value otherwise.
///   auto ring = PEPITA_TRY(Ring::create(64));
#define PEPITA_TRY(expr)                                             \
  __extension__({                                                    \
    auto&& pepita_try_result_ = (expr);                              \
    if (!pepita_try_result_) [[unlikely]]                            \
      return std::unexpected(std::move(pepita_try_result_).error()); \
    std::move(pepita_try_result_).value();                           \
  })

/// Like PEPITA_TRY for Result<void>.
#define PEPITA_TRY_VOID(expr)                                        \
  do {                                                               \
    auto&& pepita_try_result_ = (expr);                              \
    if (!pepita_try_result_) [[unlikely]]                            \
      return std::unexpected(std::move(pepita_try_result_).error()); \
  } while (0)
