#pragma once
// The io_uring ABI under the names of Linux's include/uapi/linux/io_uring.h and of the reference
// crate (pepita::io_uring::{IoUringSqe, IoUringCqe, IORING_OP_*, IOSQE_*, IORING_CQE_F_*}), over
// pepita/abi/io_uring.hpp. Values are the kernel's, checked against the installed 6.12 header in
// tests/io_uring/uapi_test.cpp. The kernel's header defines IOSQE_* and IORING_CQE_F_* as macros:
// a translation unit includes either it (or liburing.h) or this header, not both.
//
//   Ring ring = PEPITA_TRY(Ring::create(8));
//   *ring.get_sqe() = IoUringSqe::read(fd, reinterpret_cast<uint64_t>(buf), 4096, 0, 1);
//   ring.submit_and_wait(1);
//   const IoUringCqe& cqe = *ring.peek_cqe();   // cqe.is_success(), cqe_result(cqe) == 4096

#include <cstdint>
#include <optional>

#include "pepita/abi/io_uring.hpp"

namespace pepita::io_uring {

/// A 64-byte submission entry with the crate's factories (nop/read/write/uring_cmd) and flag
/// setters; `IoUringSqe{}` is its new().
using IoUringSqe = abi::Sqe;
/// A 16-byte completion with is_success/is_error/error_number/has_more.
using IoUringCqe = abi::Cqe;

/// The crate's IoUringCqe::result(): the non-negative result, or nullopt for a failed operation.
constexpr std::optional<uint32_t> cqe_result(const IoUringCqe& cqe) noexcept {
  if (cqe.res < 0) return std::nullopt;
  return static_cast<uint32_t>(cqe.res);
}

namespace detail {
constexpr uint8_t op_code(abi::Op op) noexcept { return static_cast<uint8_t>(op); }
}  // namespace detail

// enum io_uring_op.
inline constexpr uint8_t IORING_OP_NOP = detail::op_code(abi::Op::Nop);
inline constexpr uint8_t IORING_OP_READV = detail::op_code(abi::Op::Readv);
inline constexpr uint8_t IORING_OP_WRITEV = detail::op_code(abi::Op::Writev);
inline constexpr uint8_t IORING_OP_FSYNC = detail::op_code(abi::Op::Fsync);
inline constexpr uint8_t IORING_OP_READ_FIXED = detail::op_code(abi::Op::ReadFixed);
inline constexpr uint8_t IORING_OP_WRITE_FIXED = detail::op_code(abi::Op::WriteFixed);
inline constexpr uint8_t IORING_OP_POLL_ADD = detail::op_code(abi::Op::PollAdd);
inline constexpr uint8_t IORING_OP_POLL_REMOVE = detail::op_code(abi::Op::PollRemove);
inline constexpr uint8_t IORING_OP_SYNC_FILE_RANGE = detail::op_code(abi::Op::SyncFileRange);
inline constexpr uint8_t IORING_OP_SENDMSG = detail::op_code(abi::Op::Sendmsg);
inline constexpr uint8_t IORING_OP_RECVMSG = detail::op_code(abi::Op::Recvmsg);
inline constexpr uint8_t IORING_OP_TIMEOUT = detail::op_code(abi::Op::Timeout);
inline constexpr uint8_t IORING_OP_TIMEOUT_REMOVE = detail::op_code(abi::Op::TimeoutRemove);
inline constexpr uint8_t IORING_OP_ACCEPT = detail::op_code(abi::Op::Accept);
inline constexpr uint8_t IORING_OP_ASYNC_CANCEL = detail::op_code(abi::Op::AsyncCancel);
inline constexpr uint8_t IORING_OP_LINK_TIMEOUT = detail::op_code(abi::Op::LinkTimeout);
inline constexpr uint8_t IORING_OP_CONNECT = detail::op_code(abi::Op::Connect);
inline constexpr uint8_t IORING_OP_FALLOCATE = detail::op_code(abi::Op::Fallocate);
inline constexpr uint8_t IORING_OP_OPENAT = detail::op_code(abi::Op::Openat);
inline constexpr uint8_t IORING_OP_CLOSE = detail::op_code(abi::Op::Close);
inline constexpr uint8_t IORING_OP_FILES_UPDATE = detail::op_code(abi::Op::FilesUpdate);
inline constexpr uint8_t IORING_OP_STATX = detail::op_code(abi::Op::Statx);
inline constexpr uint8_t IORING_OP_READ = detail::op_code(abi::Op::Read);
inline constexpr uint8_t IORING_OP_WRITE = detail::op_code(abi::Op::Write);
inline constexpr uint8_t IORING_OP_FADVISE = detail::op_code(abi::Op::Fadvise);
inline constexpr uint8_t IORING_OP_MADVISE = detail::op_code(abi::Op::Madvise);
inline constexpr uint8_t IORING_OP_SEND = detail::op_code(abi::Op::Send);
inline constexpr uint8_t IORING_OP_RECV = detail::op_code(abi::Op::Recv);
inline constexpr uint8_t IORING_OP_OPENAT2 = detail::op_code(abi::Op::Openat2);
inline constexpr uint8_t IORING_OP_EPOLL_CTL = detail::op_code(abi::Op::EpollCtl);
inline constexpr uint8_t IORING_OP_SPLICE = detail::op_code(abi::Op::Splice);
inline constexpr uint8_t IORING_OP_PROVIDE_BUFFERS = detail::op_code(abi::Op::ProvideBuffers);
inline constexpr uint8_t IORING_OP_REMOVE_BUFFERS = detail::op_code(abi::Op::RemoveBuffers);
inline constexpr uint8_t IORING_OP_TEE = detail::op_code(abi::Op::Tee);
inline constexpr uint8_t IORING_OP_SHUTDOWN = detail::op_code(abi::Op::Shutdown);
inline constexpr uint8_t IORING_OP_RENAMEAT = detail::op_code(abi::Op::Renameat);
inline constexpr uint8_t IORING_OP_UNLINKAT = detail::op_code(abi::Op::Unlinkat);
inline constexpr uint8_t IORING_OP_MKDIRAT = detail::op_code(abi::Op::Mkdirat);
inline constexpr uint8_t IORING_OP_SYMLINKAT = detail::op_code(abi::Op::Symlinkat);
inline constexpr uint8_t IORING_OP_LINKAT = detail::op_code(abi::Op::Linkat);
inline constexpr uint8_t IORING_OP_MSG_RING = detail::op_code(abi::Op::MsgRing);
inline constexpr uint8_t IORING_OP_FSETXATTR = detail::op_code(abi::Op::Fsetxattr);
inline constexpr uint8_t IORING_OP_SETXATTR = detail::op_code(abi::Op::Setxattr);
inline constexpr uint8_t IORING_OP_FGETXATTR = detail::op_code(abi::Op::Fgetxattr);
inline constexpr uint8_t IORING_OP_GETXATTR = detail::op_code(abi::Op::Getxattr);
inline constexpr uint8_t IORING_OP_SOCKET = detail::op_code(abi::Op::Socket);
inline constexpr uint8_t IORING_OP_URING_CMD = detail::op_code(abi::Op::UringCmd);
inline constexpr uint8_t IORING_OP_SEND_ZC = detail::op_code(abi::Op::SendZc);
inline constexpr uint8_t IORING_OP_SENDMSG_ZC = detail::op_code(abi::Op::SendmsgZc);
inline constexpr uint8_t IORING_OP_READ_MULTISHOT = detail::op_code(abi::Op::ReadMultishot);
inline constexpr uint8_t IORING_OP_WAITID = detail::op_code(abi::Op::Waitid);
inline constexpr uint8_t IORING_OP_FUTEX_WAIT = detail::op_code(abi::Op::FutexWait);
inline constexpr uint8_t IORING_OP_FUTEX_WAKE = detail::op_code(abi::Op::FutexWake);
inline constexpr uint8_t IORING_OP_FUTEX_WAITV = detail::op_code(abi::Op::FutexWaitv);
inline constexpr uint8_t IORING_OP_FIXED_FD_INSTALL = detail::op_code(abi::Op::FixedFdInstall);
inline constexpr uint8_t IORING_OP_FTRUNCATE = detail::op_code(abi::Op::Ftruncate);
inline constexpr uint8_t IORING_OP_BIND = detail::op_code(abi::Op::Bind);
inline constexpr uint8_t IORING_OP_LISTEN = detail::op_code(abi::Op::Listen);
// Linux 6.15 .. 6.18 (after the installed 6.12 header's IORING_OP_LAST).
inline constexpr uint8_t IORING_OP_RECV_ZC = detail::op_code(abi::Op::RecvZc);
inline constexpr uint8_t IORING_OP_EPOLL_WAIT = detail::op_code(abi::Op::EpollWait);
inline constexpr uint8_t IORING_OP_READV_FIXED = detail::op_code(abi::Op::ReadvFixed);
inline constexpr uint8_t IORING_OP_WRITEV_FIXED = detail::op_code(abi::Op::WritevFixed);
inline constexpr uint8_t IORING_OP_PIPE = detail::op_code(abi::Op::Pipe);
/// One past the highest opcode of the 6.18 ABI (the crate's value, 49, predates READ_MULTISHOT
/// .. PIPE; the kernel's is used).
inline constexpr uint8_t IORING_OP_LAST = detail::op_code(abi::Op::Last);

// sqe->flags (IOSQE_*).
inline constexpr uint8_t IOSQE_FIXED_FILE = abi::sqe_flags::FIXED_FILE;
inline constexpr uint8_t IOSQE_IO_DRAIN = abi::sqe_flags::IO_DRAIN;
inline constexpr uint8_t IOSQE_IO_LINK = abi::sqe_flags::IO_LINK;
inline constexpr uint8_t IOSQE_IO_HARDLINK = abi::sqe_flags::IO_HARDLINK;
inline constexpr uint8_t IOSQE_ASYNC = abi::sqe_flags::ASYNC;
inline constexpr uint8_t IOSQE_BUFFER_SELECT = abi::sqe_flags::BUFFER_SELECT;
inline constexpr uint8_t IOSQE_CQE_SKIP_SUCCESS = abi::sqe_flags::CQE_SKIP_SUCCESS;

// cqe->flags (IORING_CQE_F_*).
inline constexpr uint32_t IORING_CQE_F_BUFFER = abi::cqe_flags::BUFFER;
inline constexpr uint32_t IORING_CQE_F_MORE = abi::cqe_flags::MORE;
inline constexpr uint32_t IORING_CQE_F_SOCK_NONEMPTY = abi::cqe_flags::SOCK_NONEMPTY;
inline constexpr uint32_t IORING_CQE_F_NOTIF = abi::cqe_flags::NOTIF;

}  // namespace pepita::io_uring
