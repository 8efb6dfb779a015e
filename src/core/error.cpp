// Error construction and errno mapping; messages name the failing operation and a next step.
#include "pepita/error.hpp"

#include <cerrno>
#include <cstring>

namespace pepita {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Ok: return "ok";
    case ErrorCode::InvalidArgument: return "invalid-argument";
    case ErrorCode::NotFound: return "not-found";
    case ErrorCode::AlreadyExists: return "already-exists";
    case ErrorCode::PermissionDenied: return "permission-denied";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::ResourceExhausted: return "resource-exhausted";
    case ErrorCode::Busy: return "busy";
    case ErrorCode::TimedOut: return "timed-out";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::Interrupted: return "interrupted";
    case ErrorCode::WouldBlock: return "would-block";
    case ErrorCode::Io: return "io";
    case ErrorCode::Protocol: return "protocol";
    case ErrorCode::Corrupted: return "corrupted";
    case ErrorCode::Disconnected: return "disconnected";
    case ErrorCode::Internal: return "internal";
    case ErrorCode::InvalidAddress: return "invalid-address";
    case ErrorCode::AlignmentError: return "alignment-error";
    case ErrorCode::OverlappingRegion: return "overlapping-region";
    case ErrorCode::DeviceNotReady: return "device-not-ready";
    case ErrorCode::UblkQueueFull: return "ublk-queue-full";
    case ErrorCode::UblkInvalidTag: return "ublk-invalid-tag";
    case ErrorCode::UblkDeviceBusy: return "ublk-device-busy";
    case ErrorCode::UblkDeviceNotFound: return "ublk-device-not-found";
    case ErrorCode::UblkInvalidDeviceId: return "ublk-invalid-device-id";
    case ErrorCode::UblkNotPermitted: return "ublk-not-permitted";
    case ErrorCode::IoUringSubmitFull: return "io-uring-submit-full";
    case ErrorCode::IoUringCqOverflow: return "io-uring-cq-overflow";
    case ErrorCode::IoUringInvalidOpcode: return "io-uring-invalid-opcode";
    case ErrorCode::NoTagsAvailable: return "no-tags-available";
    case ErrorCode::InvalidQueueId: return "invalid-queue-id";
  }
  return "unknown";
}

ErrorCode code_from_errno(int err) noexcept {
  switch (err < 0 ? -err : err) {
    case 0: return ErrorCode::Ok;
    case EINVAL:
    case EBADF:
    case EFAULT:
    case ENAMETOOLONG:
    case ERANGE:
    case EDOM:
    case ENOTDIR:
    case EISDIR:
    case ENOEXEC:
    case E2BIG: return ErrorCode::InvalidArgument;
    case ENOENT:
    case ENODEV:
    case ENXIO:
    case ESRCH:
    case ECHILD: return ErrorCode::NotFound;
    case EEXIST:
    case EADDRINUSE: return ErrorCode::AlreadyExists;
    case EPERM:
    case EACCES: return ErrorCode::PermissionDenied;
    case ENOSYS:
    case EOPNOTSUPP:
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT:
    case ENOTTY: return ErrorCode::Unsupported;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EOVERFLOW:
    case EDQUOT:
    case ENOBUFS: return ErrorCode::ResourceExhausted;
    case EBUSY:
    case ETXTBSY: return ErrorCode::Busy;
    case ETIMEDOUT:
    case ETIME: return ErrorCode::TimedOut;
    case ECANCELED: return ErrorCode::Cancelled;
    case EINTR: return ErrorCode::Interrupted;
    case EAGAIN:
    case EINPROGRESS:
    case EALREADY: return ErrorCode::WouldBlock;
    case EIO:
    case EROFS:
    case ESPIPE: return ErrorCode::Io;
    case EPROTO:
    case EBADMSG:
    case EMSGSIZE: return ErrorCode::Protocol;
    case EILSEQ: return ErrorCode::Corrupted;
    case EPIPE:
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ESHUTDOWN: return ErrorCode::Disconnected;
    default: return ErrorCode::Io;
  }
}

namespace {

std::string_view hint_for(int err) {
  switch (err) {
    case EPERM:
    case EACCES: return "run as root or grant the needed capability";
    case ENOSYS: return "the running kernel lacks this system call";
    case EOPNOTSUPP: return "the kernel or device does not support this operation";
    case ENOMEM: return "free memory or lower the configured size";
    case ENOSPC: return "the device or limit is full; discard data or raise the limit";
    case EMFILE:
    case ENFILE: return "raise the open-file limit (ulimit -n)";
    case ENOENT: return "check that the path exists";
    case ENODEV: return "the device or driver is missing; load the kernel module";
    case EBUSY:
    case EAGAIN:
    case EINTR: return "try again";
    case EINVAL: return "check the arguments against the documented limits";
    default: return {};
  }
}

const char* errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ETIME: return "ETIME";
    case ECANCELED: return "ECANCELED";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    default: return nullptr;
  }
}

}  // namespace

Error Error::from_errno(int err, std::string_view operation) {
  const int positive = err < 0 ? -err : err;
  std::string message(operation);
  message += ": ";
  message += std::strerror(positive);
  if (const char* name = errno_name(positive)) {
    message += " (";
    message += name;
    message += ')';
  }
  if (auto hint = hint_for(positive); !hint.empty()) {
    message += " — ";
    message += hint;
  }
  return Error(code_from_errno(positive), std::move(message), positive);
}

int to_errno(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Ok: return 0;
    case ErrorCode::InvalidArgument: return -EINVAL;
    case ErrorCode::NotFound: return -ENOENT;
    case ErrorCode::AlreadyExists: return -EEXIST;
    case ErrorCode::PermissionDenied: return -EPERM;
    case ErrorCode::Unsupported: return -EOPNOTSUPP;
    case ErrorCode::ResourceExhausted: return -ENOSPC;
    case ErrorCode::Busy: return -EBUSY;
    case ErrorCode::TimedOut: return -ETIMEDOUT;
    case ErrorCode::Cancelled: return -ECANCELED;
    case ErrorCode::Interrupted: return -EINTR;
    case ErrorCode::WouldBlock: return -EAGAIN;
    case ErrorCode::Io: return -EIO;
    case ErrorCode::Protocol: return -EPROTO;
    case ErrorCode::Corrupted: return -EILSEQ;
    case ErrorCode::Disconnected: return -ECONNRESET;
    case ErrorCode::Internal: return -EIO;
    case ErrorCode::InvalidAddress: return -EFAULT;
    case ErrorCode::AlignmentError:
    case ErrorCode::OverlappingRegion:
    case ErrorCode::UblkInvalidTag:
    case ErrorCode::UblkInvalidDeviceId:
    case ErrorCode::IoUringInvalidOpcode:
    case ErrorCode::InvalidQueueId: return -EINVAL;
    case ErrorCode::DeviceNotReady:
    case ErrorCode::UblkDeviceNotFound: return -ENODEV;
    case ErrorCode::UblkQueueFull:
    case ErrorCode::IoUringSubmitFull:
    case ErrorCode::NoTagsAvailable: return -EAGAIN;
    case ErrorCode::UblkDeviceBusy: return -EBUSY;
    case ErrorCode::UblkNotPermitted: return -EPERM;
    case ErrorCode::IoUringCqOverflow: return -EOVERFLOW;
  }
  return -EIO;
}

bool is_retriable(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Busy:
    case ErrorCode::TimedOut:
    case ErrorCode::Interrupted:
    case ErrorCode::WouldBlock:
    case ErrorCode::Disconnected:
    case ErrorCode::UblkQueueFull:
    case ErrorCode::UblkDeviceBusy:
    case ErrorCode::IoUringSubmitFull:
    case ErrorCode::NoTagsAvailable: return true;
    default: return false;
  }
}

bool is_resource_error(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::ResourceExhausted:
    case ErrorCode::UblkQueueFull:
    case ErrorCode::IoUringSubmitFull:
    case ErrorCode::NoTagsAvailable: return true;
    default: return false;
  }
}

int Error::to_negative_errno() const noexcept {
  if (errno_ != 0) return -errno_;
  return to_errno(code_);
}

bool Error::is_retriable() const noexcept {
  if (code_ == ErrorCode::ResourceExhausted) {
    // Transient exhaustion (memory, buffers, descriptors) may clear; a full device does not.
    return errno_ == ENOMEM || errno_ == ENOBUFS || errno_ == EMFILE || errno_ == ENFILE;
  }
  return pepita::is_retriable(code_);
}

Error& Error::with_context(std::string_view context) {
  std::string combined(context);
  combined += ": ";
  combined += message_;
  message_ = std::move(combined);
  return *this;
}

std::string Error::to_string() const {
  std::string out(pepita::to_string(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace pepita
