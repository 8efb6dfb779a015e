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

  // ---- the reference crate's KernelError cases (error.rs) that no category above covers ----
  // Used where our memory/blk_mq/ublk/io_uring code reports exactly that case; to_errno() gives
  // the errno the crate gives, is_retriable()/is_resource_error() its classification.
  InvalidAddress,        // EFAULT: an address outside any mapping or guest region
  AlignmentError,        // EINVAL: an address or length not aligned as the interface requires
  OverlappingRegion,     // EINVAL: a memory region overlaps one already registered
  DeviceNotReady,        // ENODEV: the device exists but is not started / configured yet
  UblkQueueFull,         // EAGAIN: every ublk I/O slot of the queue is in flight; retry
  UblkInvalidTag,        // EINVAL: a ublk tag outside the queue depth
  UblkDeviceBusy,        // EBUSY: the ublk device is in use (mounted, opened); retry later
  UblkDeviceNotFound,    // ENODEV: no /dev/ublkcN with that id
  UblkInvalidDeviceId,   // EINVAL: a ublk device id out of range
  UblkNotPermitted,      // EPERM: ublk control needs CAP_SYS_ADMIN (or unprivileged ublk)
  IoUringSubmitFull,     // EAGAIN: the submission queue has no free entry; reap, then retry
  IoUringCqOverflow,     // EOVERFLOW: completions were dropped; the CQ is too small
  IoUringInvalidOpcode,  // EINVAL: the kernel does not know the opcode
  NoTagsAvailable,       // EAGAIN: every blk-mq tag is in flight; retry when one completes
  InvalidQueueId,        // EINVAL: a hardware queue index the device does not have

  // The crate's names for cases that are one of our categories (same value, so a switch handles
  // them once): KernelError::OutOfMemory is ResourceExhausted, and so on. Their errno is the
  // category's (OutOfMemory gives -ENOSPC, not the crate's -ENOMEM, unless the Error carries
  // ENOMEM itself, which Error::from_errno(ENOMEM) does).
  OutOfMemory = ResourceExhausted,
  IoTimeout = TimedOut,
  InvalidRequest = InvalidArgument,
  BlockError = Io,
  NotSupported = Unsupported,
  ResourceBusy = Busy,
};

/// The crate's `KernelError` is our ErrorCode: its variants are enumerators above (the crate's
/// generic ones as synonyms of our categories). The message and errno an API returns travel in
/// Error; a KernelError alone is the bare code, as in the crate.
using KernelError = ErrorCode;

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

/// Maps an errno (either sign) to the closest ErrorCode (the crate's `KernelError::from_errno`).
/// An errno alone does not say which subsystem raised it, so EBUSY is Busy, not the crate's
/// UblkDeviceBusy, EPERM PermissionDenied, ENODEV NotFound, EFAULT InvalidArgument and
/// EOVERFLOW ResourceExhausted, where the crate names its ublk/io_uring/memory case.
ErrorCode code_from_errno(int err) noexcept;

/// The negative errno for a code, as the crate's `KernelError::to_errno` (ublk completes an I/O
/// with it; Error::to_negative_errno falls back to it when the error has no errno of its own).
int to_errno(ErrorCode code) noexcept;

/// True for the codes where repeating the operation later may succeed: Busy, TimedOut,
/// Interrupted, WouldBlock, Disconnected and the crate's UblkQueueFull, UblkDeviceBusy,
/// IoUringSubmitFull, NoTagsAvailable (the crate's `is_retriable`).
bool is_retriable(ErrorCode code) noexcept;

/// True for out-of-resource codes: ResourceExhausted (OutOfMemory), UblkQueueFull,
/// NoTagsAvailable, IoUringSubmitFull (the crate's `is_resource_error`).
bool is_resource_error(ErrorCode code) noexcept;

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
