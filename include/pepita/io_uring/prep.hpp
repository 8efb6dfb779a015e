#pragma once
// SQE preparation helpers: each writes every field of a 64-byte SQE an opcode reads (so stale
// bytes of a reused slot never leak into a request), following the field use of the kernel's
// io_uring/*.c prep functions and liburing's io_uring_prep_*. Set user_data and flags after.
//
//   abi::Sqe* sqe = ring.get_sqe();
//   prep_write(*sqe, fd, data, len, offset);
//   sqe->flags |= abi::sqe_flags::IO_LINK;   // the next SQE runs only if this one succeeds
//   sqe->user_data = 42;

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>

#include "pepita/abi/io_uring.hpp"

struct statx;
struct epoll_event;

namespace pepita::io_uring {

/// Base of every helper: all fields set, `addr` a pointer or integer argument.
inline void prep_rw(abi::Sqe& sqe, abi::Op op, int fd, std::uint64_t addr, std::uint32_t len,
                    std::uint64_t off) noexcept {
  sqe.opcode = static_cast<std::uint8_t>(op);
  sqe.flags = 0;
  sqe.ioprio = 0;
  sqe.fd = fd;
  sqe.off = off;
  sqe.addr = addr;
  sqe.len = len;
  sqe.rw_flags = 0;
  sqe.buf_index = 0;
  sqe.personality = 0;
  sqe.file_index = 0;
  sqe.addr3 = 0;
  sqe.pad2[0] = 0;
}

inline std::uint64_t ptr_arg(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p);  // SAFETY: pointer to integer, the ABI's encoding
}

/// Does nothing; completes with res 0. Measures the ring itself.
inline void prep_nop(abi::Sqe& sqe) noexcept { prep_rw(sqe, abi::Op::Nop, -1, 0, 0, 0); }

/// read(2)/pread(2): off = ~0ull reads at the file position (FEAT_RW_CUR_POS).
inline void prep_read(abi::Sqe& sqe, int fd, void* buf, std::uint32_t len,
                      std::uint64_t off) noexcept {
  prep_rw(sqe, abi::Op::Read, fd, ptr_arg(buf), len, off);
}
inline void prep_write(abi::Sqe& sqe, int fd, const void* buf, std::uint32_t len,
                       std::uint64_t off) noexcept {
  prep_rw(sqe, abi::Op::Write, fd, ptr_arg(buf), len, off);
}
/// preadv2(2)/pwritev2(2); the iovec array must stay valid until submitted (FEAT_SUBMIT_STABLE).
inline void prep_readv(abi::Sqe& sqe, int fd, const iovec* iov, std::uint32_t count,
                       std::uint64_t off, int rw_flags = 0) noexcept {
  prep_rw(sqe, abi::Op::Readv, fd, ptr_arg(iov), count, off);
  sqe.rw_flags = static_cast<std::uint32_t>(rw_flags);
}
inline void prep_writev(abi::Sqe& sqe, int fd, const iovec* iov, std::uint32_t count,
                        std::uint64_t off, int rw_flags = 0) noexcept {
  prep_rw(sqe, abi::Op::Writev, fd, ptr_arg(iov), count, off);
  sqe.rw_flags = static_cast<std::uint32_t>(rw_flags);
}
/// Read/write into registered buffer `buf_index`; [buf, buf+len) must lie inside that buffer.
inline void prep_read_fixed(abi::Sqe& sqe, int fd, void* buf, std::uint32_t len, std::uint64_t off,
                            std::uint16_t buf_index) noexcept {
  prep_rw(sqe, abi::Op::ReadFixed, fd, ptr_arg(buf), len, off);
  sqe.buf_index = buf_index;
}
inline void prep_write_fixed(abi::Sqe& sqe, int fd, const void* buf, std::uint32_t len,
                             std::uint64_t off, std::uint16_t buf_index) noexcept {
  prep_rw(sqe, abi::Op::WriteFixed, fd, ptr_arg(buf), len, off);
  sqe.buf_index = buf_index;
}
/// fsync(2), or fdatasync(2) with abi::fsync_flags::DATASYNC.
inline void prep_fsync(abi::Sqe& sqe, int fd, std::uint32_t fsync_flags = 0) noexcept {
  prep_rw(sqe, abi::Op::Fsync, fd, 0, 0, 0);
  sqe.fsync_flags = fsync_flags;
}
/// fallocate(2): the kernel takes the length in addr and the mode in len.
inline void prep_fallocate(abi::Sqe& sqe, int fd, int mode, std::uint64_t offset,
                           std::uint64_t length) noexcept {
  prep_rw(sqe, abi::Op::Fallocate, fd, length, static_cast<std::uint32_t>(mode), offset);
}
/// openat(2); completes with the new fd.
inline void prep_openat(abi::Sqe& sqe, int dirfd, const char* path, int flags,
                        unsigned mode) noexcept {
  prep_rw(sqe, abi::Op::Openat, dirfd, ptr_arg(path), mode, 0);
  sqe.open_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_close(abi::Sqe& sqe, int fd) noexcept {
  prep_rw(sqe, abi::Op::Close, fd, 0, 0, 0);
}
/// Closes registered-file slot `file_index`.
inline void prep_close_direct(abi::Sqe& sqe, std::uint32_t file_index) noexcept {
  prep_close(sqe, 0);
  sqe.file_index = file_index + 1;  // the kernel's encoding: 0 means "not a direct close"
}
/// statx(2) into `out`.
inline void prep_statx(abi::Sqe& sqe, int dirfd, const char* path, int flags, unsigned mask,
                       struct statx* out) noexcept {
  prep_rw(sqe, abi::Op::Statx, dirfd, ptr_arg(path), mask, ptr_arg(out));
  sqe.statx_flags = static_cast<std::uint32_t>(flags);
}
/// accept4(2); completes with the connected fd. `addr`/`addrlen` may be null.
inline void prep_accept(abi::Sqe& sqe, int fd, sockaddr* addr, socklen_t* addrlen,
                        int flags) noexcept {
  prep_rw(sqe, abi::Op::Accept, fd, ptr_arg(addr), 0, ptr_arg(addrlen));
  sqe.accept_flags = static_cast<std::uint32_t>(flags);
}
/// One SQE, one CQE per accepted connection (each with cqe_flags::MORE while it stays armed).
inline void prep_multishot_accept(abi::Sqe& sqe, int fd, sockaddr* addr, socklen_t* addrlen,
                                  int flags) noexcept {
  prep_accept(sqe, fd, addr, addrlen, flags);
  sqe.ioprio |= abi::accept_flags::MULTISHOT;
}
inline void prep_connect(abi::Sqe& sqe, int fd, const sockaddr* addr, socklen_t addrlen) noexcept {
  prep_rw(sqe, abi::Op::Connect, fd, ptr_arg(addr), 0, addrlen);
}
inline void prep_send(abi::Sqe& sqe, int sockfd, const void* buf, std::size_t len,
                      int flags) noexcept {
  prep_rw(sqe, abi::Op::Send, sockfd, ptr_arg(buf), static_cast<std::uint32_t>(len), 0);
  sqe.msg_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_recv(abi::Sqe& sqe, int sockfd, void* buf, std::size_t len, int flags) noexcept {
  prep_rw(sqe, abi::Op::Recv, sockfd, ptr_arg(buf), static_cast<std::uint32_t>(len), 0);
  sqe.msg_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_sendmsg(abi::Sqe& sqe, int fd, const msghdr* msg, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::Sendmsg, fd, ptr_arg(msg), 1, 0);
  sqe.msg_flags = flags;
}
inline void prep_recvmsg(abi::Sqe& sqe, int fd, msghdr* msg, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::Recvmsg, fd, ptr_arg(msg), 1, 0);
  sqe.msg_flags = flags;
}
/// Completes with -ETIME after `ts` (relative unless timeout_flags::ABS), or with 0 once `count`
/// other CQEs were posted (count 0: pure timer). `ts` must stay valid until submitted.
inline void prep_timeout(abi::Sqe& sqe, const abi::KernelTimespec* ts, unsigned count,
                         unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::Timeout, -1, ptr_arg(ts), 1, count);
  sqe.timeout_flags = flags;
}
/// Removes the timeout whose user_data is `user_data`.
inline void prep_timeout_remove(abi::Sqe& sqe, std::uint64_t user_data, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::TimeoutRemove, -1, user_data, 0, 0);
  sqe.timeout_flags = flags;
}
/// Cancels the previous (IO_LINK-ed) SQE if it has not completed within `ts`.
inline void prep_link_timeout(abi::Sqe& sqe, const abi::KernelTimespec* ts,
                              unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::LinkTimeout, -1, ptr_arg(ts), 1, 0);
  sqe.timeout_flags = flags;
}
/// Cancels the request with `user_data` (or per cancel_flags: by fd, all, any). Completes with
/// 0 (found and cancelled), -ENOENT (not found) or -EALREADY (already running).
inline void prep_cancel(abi::Sqe& sqe, std::uint64_t user_data, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::AsyncCancel, -1, user_data, 0, 0);
  sqe.cancel_flags = flags;
}
inline void prep_cancel_fd(abi::Sqe& sqe, int fd, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::AsyncCancel, fd, 0, 0, 0);
  sqe.cancel_flags = flags | abi::cancel_flags::FD;
}
/// One-shot poll for `poll_mask` (POLLIN...); completes with the ready mask.
inline void prep_poll_add(abi::Sqe& sqe, int fd, unsigned poll_mask) noexcept {
  prep_rw(sqe, abi::Op::PollAdd, fd, 0, 0, 0);
  sqe.poll32_events = poll_mask;  // little-endian: no word swap
}
inline void prep_poll_multishot(abi::Sqe& sqe, int fd, unsigned poll_mask) noexcept {
  prep_poll_add(sqe, fd, poll_mask);
  sqe.len = abi::poll_flags::ADD_MULTI;
}
inline void prep_poll_remove(abi::Sqe& sqe, std::uint64_t user_data) noexcept {
  prep_rw(sqe, abi::Op::PollRemove, -1, user_data, 0, 0);
}
/// splice(2); an offset of -1 means "use the file position / a pipe".
inline void prep_splice(abi::Sqe& sqe, int fd_in, std::int64_t off_in, int fd_out,
                        std::int64_t off_out, unsigned nbytes, unsigned splice_flags) noexcept {
  prep_rw(sqe, abi::Op::Splice, fd_out, static_cast<std::uint64_t>(off_in), nbytes,
          static_cast<std::uint64_t>(off_out));
  sqe.splice_fd_in = fd_in;
  sqe.splice_flags = splice_flags;
}
/// Posts a CQE {user_data, res = `res`} on the ring `target_ring_fd` (IORING_MSG_DATA).
inline void prep_msg_ring(abi::Sqe& sqe, int target_ring_fd, std::uint32_t res,
                          std::uint64_t user_data, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::MsgRing, target_ring_fd, abi::msg_ring::DATA, res, user_data);
  sqe.msg_ring_flags = flags;
}
/// Updates registered files from inside the ring (fds[i] into slot offset + i).
inline void prep_files_update(abi::Sqe& sqe, int* fds, unsigned count, int offset) noexcept {
  prep_rw(sqe, abi::Op::FilesUpdate, -1, ptr_arg(fds), count, static_cast<std::uint64_t>(offset));
}
/// IORING_OP_URING_CMD on a 128-byte SQE: `cmd_op` and up to 80 bytes of driver command (ublk,
/// NVMe passthrough), copied into the command area at byte 48.
inline void prep_uring_cmd(abi::Sqe128& sqe, int fd, std::uint32_t cmd_op, const void* cmd,
                           std::size_t cmd_len) noexcept {
  std::memset(&sqe, 0, sizeof(sqe));
  sqe.opcode = static_cast<std::uint8_t>(abi::Op::UringCmd);
  sqe.fd = fd;
  sqe.cmd_op = cmd_op;
  if (cmd_len > abi::URING_CMD_AREA_SIZE) cmd_len = abi::URING_CMD_AREA_SIZE;
  if (cmd_len != 0) std::memcpy(sqe.cmd, cmd, cmd_len);
}

}  // namespace pepita::io_uring
