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
struct open_how;

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

// ---- the rest of the opcode table, in kernel order (Linux 6.18) -------------------------------

/// sync_file_range(2) over [offset, offset + len).
inline void prep_sync_file_range(abi::Sqe& sqe, int fd, std::uint32_t len, std::uint64_t offset,
                                 unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::SyncFileRange, fd, 0, len, offset);
  sqe.sync_range_flags = flags;
}
/// posix_fadvise(2); the 64-bit length goes in addr (liburing's prep_fadvise64).
inline void prep_fadvise(abi::Sqe& sqe, int fd, std::uint64_t offset, std::uint64_t len,
                         int advice) noexcept {
  prep_rw(sqe, abi::Op::Fadvise, fd, len, 0, offset);
  sqe.fadvise_advice = static_cast<std::uint32_t>(advice);
}
/// madvise(2) on [addr, addr + length); the 64-bit length goes in off.
inline void prep_madvise(abi::Sqe& sqe, void* addr, std::uint64_t length, int advice) noexcept {
  prep_rw(sqe, abi::Op::Madvise, -1, ptr_arg(addr), 0, length);
  sqe.fadvise_advice = static_cast<std::uint32_t>(advice);
}
/// openat2(2) with `how` (struct open_how, which must stay valid until submitted).
inline void prep_openat2(abi::Sqe& sqe, int dirfd, const char* path, const open_how* how,
                         std::size_t how_size) noexcept {
  prep_rw(sqe, abi::Op::Openat2, dirfd, ptr_arg(path), static_cast<std::uint32_t>(how_size),
          ptr_arg(how));
}
/// epoll_ctl(2): `op` EPOLL_CTL_ADD/MOD/DEL on `fd` of epoll instance `epfd`.
inline void prep_epoll_ctl(abi::Sqe& sqe, int epfd, int fd, int op, epoll_event* ev) noexcept {
  prep_rw(sqe, abi::Op::EpollCtl, epfd, ptr_arg(ev), static_cast<std::uint32_t>(op),
          static_cast<std::uint64_t>(static_cast<std::uint32_t>(fd)));
}
/// Hands the ring `count` buffers of `len` bytes at `addr` for group `bgid`, ids bid..bid+count-1
/// (the legacy form; BufferRing is the fast one).
inline void prep_provide_buffers(abi::Sqe& sqe, void* addr, std::uint32_t len, std::uint32_t count,
                                 std::uint16_t bgid, std::uint16_t bid) noexcept {
  prep_rw(sqe, abi::Op::ProvideBuffers, static_cast<int>(count), ptr_arg(addr), len, bid);
  sqe.buf_group = bgid;
}
inline void prep_remove_buffers(abi::Sqe& sqe, std::uint32_t count, std::uint16_t bgid) noexcept {
  prep_rw(sqe, abi::Op::RemoveBuffers, static_cast<int>(count), 0, 0, 0);
  sqe.buf_group = bgid;
}
/// tee(2) between two pipes.
inline void prep_tee(abi::Sqe& sqe, int fd_in, int fd_out, unsigned nbytes,
                     unsigned splice_flags) noexcept {
  prep_rw(sqe, abi::Op::Tee, fd_out, 0, nbytes, 0);
  sqe.splice_fd_in = fd_in;
  sqe.splice_flags = splice_flags;
}
/// shutdown(2) with SHUT_RD/SHUT_WR/SHUT_RDWR.
inline void prep_shutdown(abi::Sqe& sqe, int fd, int how) noexcept {
  prep_rw(sqe, abi::Op::Shutdown, fd, 0, static_cast<std::uint32_t>(how), 0);
}
/// renameat2(2).
inline void prep_renameat(abi::Sqe& sqe, int olddirfd, const char* oldpath, int newdirfd,
                          const char* newpath, unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::Renameat, olddirfd, ptr_arg(oldpath), static_cast<std::uint32_t>(newdirfd),
          ptr_arg(newpath));
  sqe.rename_flags = flags;
}
/// unlinkat(2); AT_REMOVEDIR in `flags` removes a directory.
inline void prep_unlinkat(abi::Sqe& sqe, int dirfd, const char* path, int flags) noexcept {
  prep_rw(sqe, abi::Op::Unlinkat, dirfd, ptr_arg(path), 0, 0);
  sqe.unlink_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_mkdirat(abi::Sqe& sqe, int dirfd, const char* path, unsigned mode) noexcept {
  prep_rw(sqe, abi::Op::Mkdirat, dirfd, ptr_arg(path), mode, 0);
}
/// symlinkat(2): creates `linkpath` (relative to newdirfd) pointing at `target`.
inline void prep_symlinkat(abi::Sqe& sqe, const char* target, int newdirfd,
                           const char* linkpath) noexcept {
  prep_rw(sqe, abi::Op::Symlinkat, newdirfd, ptr_arg(target), 0, ptr_arg(linkpath));
}
/// linkat(2).
inline void prep_linkat(abi::Sqe& sqe, int olddirfd, const char* oldpath, int newdirfd,
                        const char* newpath, int flags) noexcept {
  prep_rw(sqe, abi::Op::Linkat, olddirfd, ptr_arg(oldpath), static_cast<std::uint32_t>(newdirfd),
          ptr_arg(newpath));
  sqe.hardlink_flags = static_cast<std::uint32_t>(flags);
}
/// Sends this ring's registered file `source_index` to ring `target_ring_fd`'s slot
/// `target_index` (abi::FILE_INDEX_ALLOC: any free slot), posting `user_data` there.
inline void prep_msg_ring_fd(abi::Sqe& sqe, int target_ring_fd, std::uint32_t source_index,
                             std::uint32_t target_index, std::uint64_t user_data,
                             unsigned flags) noexcept {
  prep_rw(sqe, abi::Op::MsgRing, target_ring_fd, abi::msg_ring::SEND_FD, 0, user_data);
  sqe.addr3 = source_index;
  sqe.file_index = target_index == abi::FILE_INDEX_ALLOC ? target_index : target_index + 1;
  sqe.msg_ring_flags = flags;
}
/// fsetxattr(2): sets `name` to value[0..len).
inline void prep_fsetxattr(abi::Sqe& sqe, int fd, const char* name, const void* value,
                           std::uint32_t len, int flags) noexcept {
  prep_rw(sqe, abi::Op::Fsetxattr, fd, ptr_arg(name), len, ptr_arg(value));
  sqe.xattr_flags = static_cast<std::uint32_t>(flags);
}
inline void prep_setxattr(abi::Sqe& sqe, const char* path, const char* name, const void* value,
                          std::uint32_t len, int flags) noexcept {
  prep_rw(sqe, abi::Op::Setxattr, 0, ptr_arg(name), len, ptr_arg(value));
  sqe.addr3 = ptr_arg(path);
  sqe.xattr_flags = static_cast<std::uint32_t>(flags);
}
/// fgetxattr(2) into value[0..len); completes with the value's size.
inline void prep_fgetxattr(abi::Sqe& sqe, int fd, const char* name, void* value,
                           std::uint32_t len) noexcept {
  prep_rw(sqe, abi::Op::Fgetxattr, fd, ptr_arg(name), len, ptr_arg(value));
}
inline void prep_getxattr(abi::Sqe& sqe, const char* path, const char* name, void* value,
                          std::uint32_t len) noexcept {
  prep_rw(sqe, abi::Op::Getxattr, 0, ptr_arg(name), len, ptr_arg(value));
  sqe.addr3 = ptr_arg(path);
}
/// socket(2); completes with the new fd. SOCK_NONBLOCK/SOCK_CLOEXEC go in `type`.
inline void prep_socket(abi::Sqe& sqe, int domain, int type, int protocol) noexcept {
  prep_rw(sqe, abi::Op::Socket, domain, 0, static_cast<std::uint32_t>(protocol),
          static_cast<std::uint64_t>(static_cast<std::uint32_t>(type)));
}
/// socket(2) into registered-file slot `file_index` (abi::FILE_INDEX_ALLOC: any free slot,
/// which the CQE returns).
inline void prep_socket_direct(abi::Sqe& sqe, int domain, int type, int protocol,
                               std::uint32_t file_index) noexcept {
  prep_socket(sqe, domain, type, protocol);
  sqe.file_index = file_index == abi::FILE_INDEX_ALLOC ? file_index : file_index + 1;
}
/// IORING_OP_URING_CMD on a 64-byte SQE (commands without a payload, or socket commands):
/// `cmd_op` is the driver's command (abi::SocketOp for sockets).
inline void prep_uring_cmd(abi::Sqe& sqe, int fd, std::uint32_t cmd_op) noexcept {
  prep_rw(sqe, abi::Op::UringCmd, fd, 0, 0, 0);
  sqe.cmd_op = cmd_op;
}
/// A socket command (SIOCINQ, SIOCOUTQ, getsockopt, setsockopt) through IORING_OP_URING_CMD.
inline void prep_cmd_sock(abi::Sqe& sqe, abi::SocketOp cmd, int fd, int level, int optname,
                          void* optval, int optlen) noexcept {
  prep_uring_cmd(sqe, fd, static_cast<std::uint32_t>(cmd));
  sqe.level = static_cast<std::uint32_t>(level);
  sqe.optname = static_cast<std::uint32_t>(optname);
  sqe.optval = ptr_arg(optval);
  sqe.optlen = static_cast<std::uint32_t>(optlen);
}
/// Zero-copy send: completes twice, first with the byte count (cqe_flags::MORE set), then with a
/// notification CQE (cqe_flags::NOTIF) once the kernel released `buf`, which must stay valid
/// and unmodified until then. `zc_flags`: abi::recvsend_flags::SEND_ZC_REPORT_USAGE and so on.
inline void prep_send_zc(abi::Sqe& sqe, int sockfd, const void* buf, std::size_t len, int flags,
                         std::uint16_t zc_flags = 0) noexcept {
  prep_rw(sqe, abi::Op::SendZc, sockfd, ptr_arg(buf), static_cast<std::uint32_t>(len), 0);
  sqe.msg_flags = static_cast<std::uint32_t>(flags);
  sqe.ioprio = zc_flags;
}
/// sendmsg(2), zero-copy: the same two completions as prep_send_zc.
inline void prep_sendmsg_zc(abi::Sqe& sqe, int fd, const msghdr* msg, unsigned flags) noexcept {
  prep_sendmsg(sqe, fd, msg, flags);
  sqe.opcode = static_cast<std::uint8_t>(abi::Op::SendmsgZc);
}
/// Multishot read into provided buffers of group `bgid` (a BufferRing): one CQE per read, each
/// naming its buffer in cqe->flags, while cqe_flags::MORE is set. `nbytes` 0: the buffer size.
inline void prep_read_multishot(abi::Sqe& sqe, int fd, std::uint32_t nbytes, std::uint64_t offset,
                                std::uint16_t bgid) noexcept {
  prep_rw(sqe, abi::Op::ReadMultishot, fd, 0, nbytes, offset);
  sqe.buf_group = bgid;
  sqe.flags = abi::sqe_flags::BUFFER_SELECT;
}
/// Multishot recv into provided buffers of group `bgid`: one CQE per received chunk while
/// cqe_flags::MORE is set; -ENOBUFS (without MORE) when the group ran out of buffers: give
/// buffers back and arm it again.
inline void prep_recv_multishot(abi::Sqe& sqe, int sockfd, int flags, std::uint16_t bgid) noexcept {
  prep_recv(sqe, sockfd, nullptr, 0, flags);
  sqe.ioprio = abi::recvsend_flags::RECV_MULTISHOT;
  sqe.buf_group = bgid;
  sqe.flags = abi::sqe_flags::BUFFER_SELECT;
}
/// waitid(2): `idtype` P_PID/P_PGID/P_ALL, `options` WEXITED..., result into *infop.
inline void prep_waitid(abi::Sqe& sqe, int idtype, int id, void* infop, int options,
                        unsigned flags = 0) noexcept {
  prep_rw(sqe, abi::Op::Waitid, id, 0, static_cast<std::uint32_t>(idtype), ptr_arg(infop));
  sqe.waitid_flags = flags;
  sqe.file_index = static_cast<std::uint32_t>(options);
}
/// futex_wait(2) on the futex at `futex` while it holds `val` (masked by `mask`), futex2 flags
/// `futex_flags` (abi::futex2::SIZE_U32 | PRIVATE). Completes with 0 when woken.
inline void prep_futex_wait(abi::Sqe& sqe, const void* futex, std::uint64_t val, std::uint64_t mask,
                            std::uint32_t futex_flags) noexcept {
  prep_rw(sqe, abi::Op::FutexWait, static_cast<int>(futex_flags), ptr_arg(futex), 0, val);
  sqe.addr3 = mask;
}
/// futex_wake(2): wakes up to `nr` waiters matching `mask`; completes with how many woke.
inline void prep_futex_wake(abi::Sqe& sqe, const void* futex, std::uint64_t nr, std::uint64_t mask,
                            std::uint32_t futex_flags) noexcept {
  prep_rw(sqe, abi::Op::FutexWake, static_cast<int>(futex_flags), ptr_arg(futex), 0, nr);
  sqe.addr3 = mask;
}
/// futex_waitv(2) over `count` futexes; completes with the index of the one that woke.
inline void prep_futex_waitv(abi::Sqe& sqe, const abi::FutexWaitv* futexes,
                             std::uint32_t count) noexcept {
  prep_rw(sqe, abi::Op::FutexWaitv, 0, ptr_arg(futexes), count, 0);
}
/// Installs registered file `file_index` as a normal fd (O_CLOEXEC unless
/// abi::FIXED_FD_NO_CLOEXEC); completes with the new fd.
inline void prep_fixed_fd_install(abi::Sqe& sqe, std::uint32_t file_index,
                                  unsigned flags = 0) noexcept {
  prep_rw(sqe, abi::Op::FixedFdInstall, static_cast<int>(file_index), 0, 0, 0);
  sqe.flags = abi::sqe_flags::FIXED_FILE;
  sqe.install_fd_flags = flags;
}
/// ftruncate(2) to `length` bytes.
inline void prep_ftruncate(abi::Sqe& sqe, int fd, std::int64_t length) noexcept {
  prep_rw(sqe, abi::Op::Ftruncate, fd, 0, 0, static_cast<std::uint64_t>(length));
}
/// bind(2).
inline void prep_bind(abi::Sqe& sqe, int fd, const sockaddr* addr, socklen_t addrlen) noexcept {
  prep_rw(sqe, abi::Op::Bind, fd, ptr_arg(addr), 0, addrlen);
}
/// listen(2).
inline void prep_listen(abi::Sqe& sqe, int fd, int backlog) noexcept {
  prep_rw(sqe, abi::Op::Listen, fd, 0, static_cast<std::uint32_t>(backlog), 0);
}
/// Zero-copy receive through registered zcrx interface queue `ifq_index` (multishot; needs a
/// NIC with header split and IORING_REGISTER_ZCRX_IFQ). `len` 0: no byte limit.
inline void prep_recv_zc(abi::Sqe& sqe, int sockfd, std::uint32_t len,
                         std::uint32_t ifq_index) noexcept {
  prep_rw(sqe, abi::Op::RecvZc, sockfd, 0, len, 0);
  sqe.ioprio = abi::recvsend_flags::RECV_MULTISHOT;
  sqe.zcrx_ifq_idx = ifq_index;
}
/// epoll_wait(2) for up to `maxevents` events; completes with how many were stored.
inline void prep_epoll_wait(abi::Sqe& sqe, int epfd, epoll_event* events, int maxevents,
                            unsigned flags = 0) noexcept {
  prep_rw(sqe, abi::Op::EpollWait, epfd, ptr_arg(events), static_cast<std::uint32_t>(maxevents), 0);
  sqe.rw_flags = flags;
}
/// preadv2(2)/pwritev2(2) whose iovecs lie inside registered buffer `buf_index`.
inline void prep_readv_fixed(abi::Sqe& sqe, int fd, const iovec* iov, std::uint32_t count,
                             std::uint64_t off, int rw_flags, std::uint16_t buf_index) noexcept {
  prep_readv(sqe, fd, iov, count, off, rw_flags);
  sqe.opcode = static_cast<std::uint8_t>(abi::Op::ReadvFixed);
  sqe.buf_index = buf_index;
}
inline void prep_writev_fixed(abi::Sqe& sqe, int fd, const iovec* iov, std::uint32_t count,
                              std::uint64_t off, int rw_flags, std::uint16_t buf_index) noexcept {
  prep_writev(sqe, fd, iov, count, off, rw_flags);
  sqe.opcode = static_cast<std::uint8_t>(abi::Op::WritevFixed);
  sqe.buf_index = buf_index;
}
/// pipe2(2) into fds[0] (read end) and fds[1] (write end); `flags` O_CLOEXEC/O_NONBLOCK/...
inline void prep_pipe(abi::Sqe& sqe, int* fds, int flags) noexcept {
  prep_rw(sqe, abi::Op::Pipe, 0, ptr_arg(fds), 0, 0);
  sqe.pipe_flags = static_cast<std::uint32_t>(flags);
}

}  // namespace pepita::io_uring
