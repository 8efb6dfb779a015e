// ABI fidelity of include/pepita/abi/io_uring.hpp against the kernel's own Linux 6.12 UAPI
// header: size, alignment and offset of every field of every struct, and the value of every
// constant. Everything here is a compile-time check; the test body only reports that it built.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <pepita_test/kernel_uapi.hpp>  // first: its macros must not break our names
#include <type_traits>

#include "pepita/abi/io_uring.hpp"

namespace pepita::abi {
namespace {

#define PEPITA_SAME_LAYOUT(ours, theirs)         \
  static_assert(sizeof(ours) == sizeof(theirs)); \
  static_assert(alignof(ours) == alignof(theirs))

#define PEPITA_SAME_FIELD(ours, theirs, field)                                       \
  static_assert(offsetof(ours, field) == offsetof(theirs, field), #field " offset"); \
  static_assert(sizeof(ours::field) == sizeof(theirs::field), #field " size")

#define PEPITA_SAME_VALUE(ours, theirs)                                                           \
  static_assert(static_cast<unsigned long long>(ours) == static_cast<unsigned long long>(theirs), \
                #theirs)

// --- structs -------------------------------------------------------------------------------
PEPITA_SAME_LAYOUT(KernelTimespec, __kernel_timespec);
PEPITA_SAME_FIELD(KernelTimespec, __kernel_timespec, tv_sec);
PEPITA_SAME_FIELD(KernelTimespec, __kernel_timespec, tv_nsec);

PEPITA_SAME_LAYOUT(Sqe, io_uring_sqe);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, opcode);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, ioprio);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, fd);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, off);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, addr2);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, cmd_op);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, addr);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, splice_off_in);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, level);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, optname);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, len);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, rw_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, fsync_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, poll_events);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, poll32_events);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, sync_range_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, msg_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, timeout_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, accept_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, cancel_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, open_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, statx_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, fadvise_advice);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, splice_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, rename_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, unlink_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, hardlink_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, xattr_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, msg_ring_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, uring_cmd_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, waitid_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, futex_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, install_fd_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, nop_flags);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, user_data);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, buf_index);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, buf_group);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, personality);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, splice_fd_in);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, file_index);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, optlen);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, addr_len);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, addr3);
PEPITA_SAME_FIELD(Sqe, io_uring_sqe, optval);
static_assert(offsetof(Sqe, pad1) == offsetof(io_uring_sqe, __pad1));
static_assert(offsetof(Sqe, pad2) == offsetof(io_uring_sqe, __pad2));
static_assert(sizeof(Sqe::pad2) == sizeof(io_uring_sqe::__pad2));
static_assert(offsetof(Sqe, pad3) == offsetof(io_uring_sqe, __pad3));

// The 128-byte form: head fields where the kernel has them, and the 80-byte command area at the
// offset of io_uring_sqe::cmd (48; a reference implementation once got this wrong).
static_assert(sizeof(Sqe128) == 2 * sizeof(io_uring_sqe));
static_assert(alignof(Sqe128) == alignof(io_uring_sqe));
static_assert(offsetof(Sqe128, cmd) == offsetof(io_uring_sqe, cmd));
static_assert(offsetof(Sqe128, cmd) == 48);
static_assert(sizeof(Sqe128::cmd) == 2 * sizeof(io_uring_sqe) - offsetof(io_uring_sqe, cmd));
static_assert(sizeof(Sqe128::cmd) == URING_CMD_AREA_SIZE);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, opcode);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, flags);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, ioprio);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, fd);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, off);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, addr2);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, cmd_op);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, addr);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, splice_off_in);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, level);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, optname);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, len);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, rw_flags);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, uring_cmd_flags);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, user_data);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, buf_index);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, buf_group);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, personality);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, splice_fd_in);
PEPITA_SAME_FIELD(Sqe128, io_uring_sqe, file_index);
static_assert(offsetof(Sqe128, pad1) == offsetof(io_uring_sqe, __pad1));

PEPITA_SAME_LAYOUT(Cqe, io_uring_cqe);
PEPITA_SAME_FIELD(Cqe, io_uring_cqe, user_data);
PEPITA_SAME_FIELD(Cqe, io_uring_cqe, res);
PEPITA_SAME_FIELD(Cqe, io_uring_cqe, flags);
static_assert(sizeof(Cqe32) == 2 * sizeof(io_uring_cqe));
static_assert(alignof(Cqe32) == alignof(io_uring_cqe));
PEPITA_SAME_FIELD(Cqe32, io_uring_cqe, user_data);
PEPITA_SAME_FIELD(Cqe32, io_uring_cqe, res);
PEPITA_SAME_FIELD(Cqe32, io_uring_cqe, flags);
static_assert(offsetof(Cqe32, big_cqe) == offsetof(io_uring_cqe, big_cqe));

PEPITA_SAME_LAYOUT(SqRingOffsets, io_sqring_offsets);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, head);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, tail);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, ring_mask);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, ring_entries);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, flags);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, dropped);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, array);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, resv1);
PEPITA_SAME_FIELD(SqRingOffsets, io_sqring_offsets, user_addr);

PEPITA_SAME_LAYOUT(CqRingOffsets, io_cqring_offsets);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, head);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, tail);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, ring_mask);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, ring_entries);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, overflow);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, cqes);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, flags);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, resv1);
PEPITA_SAME_FIELD(CqRingOffsets, io_cqring_offsets, user_addr);

PEPITA_SAME_LAYOUT(Params, io_uring_params);
PEPITA_SAME_FIELD(Params, io_uring_params, sq_entries);
PEPITA_SAME_FIELD(Params, io_uring_params, cq_entries);
PEPITA_SAME_FIELD(Params, io_uring_params, flags);
PEPITA_SAME_FIELD(Params, io_uring_params, sq_thread_cpu);
PEPITA_SAME_FIELD(Params, io_uring_params, sq_thread_idle);
PEPITA_SAME_FIELD(Params, io_uring_params, features);
PEPITA_SAME_FIELD(Params, io_uring_params, wq_fd);
PEPITA_SAME_FIELD(Params, io_uring_params, resv);
PEPITA_SAME_FIELD(Params, io_uring_params, sq_off);
PEPITA_SAME_FIELD(Params, io_uring_params, cq_off);

PEPITA_SAME_LAYOUT(FilesUpdate, io_uring_files_update);
PEPITA_SAME_FIELD(FilesUpdate, io_uring_files_update, offset);
PEPITA_SAME_FIELD(FilesUpdate, io_uring_files_update, resv);
PEPITA_SAME_FIELD(FilesUpdate, io_uring_files_update, fds);

PEPITA_SAME_LAYOUT(RsrcRegister, io_uring_rsrc_register);
PEPITA_SAME_FIELD(RsrcRegister, io_uring_rsrc_register, nr);
PEPITA_SAME_FIELD(RsrcRegister, io_uring_rsrc_register, flags);
PEPITA_SAME_FIELD(RsrcRegister, io_uring_rsrc_register, resv2);
PEPITA_SAME_FIELD(RsrcRegister, io_uring_rsrc_register, data);
PEPITA_SAME_FIELD(RsrcRegister, io_uring_rsrc_register, tags);

PEPITA_SAME_LAYOUT(RsrcUpdate, io_uring_rsrc_update);
PEPITA_SAME_FIELD(RsrcUpdate, io_uring_rsrc_update, offset);
PEPITA_SAME_FIELD(RsrcUpdate, io_uring_rsrc_update, resv);
PEPITA_SAME_FIELD(RsrcUpdate, io_uring_rsrc_update, data);

PEPITA_SAME_LAYOUT(RsrcUpdate2, io_uring_rsrc_update2);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, offset);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, resv);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, data);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, tags);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, nr);
PEPITA_SAME_FIELD(RsrcUpdate2, io_uring_rsrc_update2, resv2);

PEPITA_SAME_LAYOUT(ProbeOp, io_uring_probe_op);
PEPITA_SAME_FIELD(ProbeOp, io_uring_probe_op, op);
PEPITA_SAME_FIELD(ProbeOp, io_uring_probe_op, resv);
PEPITA_SAME_FIELD(ProbeOp, io_uring_probe_op, flags);
PEPITA_SAME_FIELD(ProbeOp, io_uring_probe_op, resv2);

PEPITA_SAME_LAYOUT(Probe, io_uring_probe);
PEPITA_SAME_FIELD(Probe, io_uring_probe, last_op);
PEPITA_SAME_FIELD(Probe, io_uring_probe, ops_len);
PEPITA_SAME_FIELD(Probe, io_uring_probe, resv);
PEPITA_SAME_FIELD(Probe, io_uring_probe, resv2);
static_assert(PROBE_OPS_OFFSET == offsetof(io_uring_probe, ops));

PEPITA_SAME_LAYOUT(Restriction, io_uring_restriction);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, opcode);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, register_op);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, sqe_op);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, sqe_flags);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, resv);
PEPITA_SAME_FIELD(Restriction, io_uring_restriction, resv2);

PEPITA_SAME_LAYOUT(ClockRegister, io_uring_clock_register);
PEPITA_SAME_FIELD(ClockRegister, io_uring_clock_register, clockid);
static_assert(offsetof(ClockRegister, resv) == offsetof(io_uring_clock_register, __resv));
static_assert(sizeof(ClockRegister::resv) == sizeof(io_uring_clock_register::__resv));

PEPITA_SAME_LAYOUT(CloneBuffers, io_uring_clone_buffers);
PEPITA_SAME_FIELD(CloneBuffers, io_uring_clone_buffers, src_fd);
PEPITA_SAME_FIELD(CloneBuffers, io_uring_clone_buffers, flags);
PEPITA_SAME_FIELD(CloneBuffers, io_uring_clone_buffers, pad);

PEPITA_SAME_LAYOUT(Buf, io_uring_buf);
PEPITA_SAME_FIELD(Buf, io_uring_buf, addr);
PEPITA_SAME_FIELD(Buf, io_uring_buf, len);
PEPITA_SAME_FIELD(Buf, io_uring_buf, bid);
PEPITA_SAME_FIELD(Buf, io_uring_buf, resv);

static_assert(sizeof(BufRing) == sizeof(io_uring_buf_ring));
static_assert(alignof(BufRing) == alignof(io_uring_buf_ring));
PEPITA_SAME_FIELD(BufRing, io_uring_buf_ring, resv1);
PEPITA_SAME_FIELD(BufRing, io_uring_buf_ring, resv2);
PEPITA_SAME_FIELD(BufRing, io_uring_buf_ring, resv3);
PEPITA_SAME_FIELD(BufRing, io_uring_buf_ring, tail);
// The kernel's __DECLARE_FLEX_ARRAY wraps bufs in a struct with an empty member, which is 0
// bytes in C (the ABI) but 1 byte in C++, moving bufs to 8 in the C++ view of the header. The C
// layout, which the kernel uses, has bufs[0] at 0 with the tail overlaying bufs[0].resv.
static_assert(offsetof(BufRing, bufs) == 0);
static_assert(offsetof(BufRing, tail) == offsetof(Buf, resv));

PEPITA_SAME_LAYOUT(BufReg, io_uring_buf_reg);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, ring_addr);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, ring_entries);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, bgid);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, flags);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, min_left);
PEPITA_SAME_FIELD(BufReg, io_uring_buf_reg, resv);

PEPITA_SAME_LAYOUT(BufStatus, io_uring_buf_status);
PEPITA_SAME_FIELD(BufStatus, io_uring_buf_status, buf_group);
PEPITA_SAME_FIELD(BufStatus, io_uring_buf_status, head);
PEPITA_SAME_FIELD(BufStatus, io_uring_buf_status, resv);

PEPITA_SAME_LAYOUT(Napi, io_uring_napi);
PEPITA_SAME_FIELD(Napi, io_uring_napi, busy_poll_to);
PEPITA_SAME_FIELD(Napi, io_uring_napi, prefer_busy_poll);
PEPITA_SAME_FIELD(Napi, io_uring_napi, pad);
PEPITA_SAME_FIELD(Napi, io_uring_napi, resv);

PEPITA_SAME_LAYOUT(GeteventsArg, io_uring_getevents_arg);
PEPITA_SAME_FIELD(GeteventsArg, io_uring_getevents_arg, sigmask);
PEPITA_SAME_FIELD(GeteventsArg, io_uring_getevents_arg, sigmask_sz);
PEPITA_SAME_FIELD(GeteventsArg, io_uring_getevents_arg, min_wait_usec);
PEPITA_SAME_FIELD(GeteventsArg, io_uring_getevents_arg, ts);

PEPITA_SAME_LAYOUT(SyncCancelReg, io_uring_sync_cancel_reg);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, addr);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, fd);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, flags);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, timeout);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, opcode);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, pad);
PEPITA_SAME_FIELD(SyncCancelReg, io_uring_sync_cancel_reg, pad2);

PEPITA_SAME_LAYOUT(FileIndexRange, io_uring_file_index_range);
PEPITA_SAME_FIELD(FileIndexRange, io_uring_file_index_range, off);
PEPITA_SAME_FIELD(FileIndexRange, io_uring_file_index_range, len);
PEPITA_SAME_FIELD(FileIndexRange, io_uring_file_index_range, resv);

PEPITA_SAME_LAYOUT(RecvmsgOut, io_uring_recvmsg_out);
PEPITA_SAME_FIELD(RecvmsgOut, io_uring_recvmsg_out, namelen);
PEPITA_SAME_FIELD(RecvmsgOut, io_uring_recvmsg_out, controllen);
PEPITA_SAME_FIELD(RecvmsgOut, io_uring_recvmsg_out, payloadlen);
PEPITA_SAME_FIELD(RecvmsgOut, io_uring_recvmsg_out, flags);

// --- constants -----------------------------------------------------------------------------
PEPITA_SAME_VALUE(FILE_INDEX_ALLOC, IORING_FILE_INDEX_ALLOC);

PEPITA_SAME_VALUE(sqe_flags::FIXED_FILE_BIT, IOSQE_FIXED_FILE_BIT);
PEPITA_SAME_VALUE(sqe_flags::IO_DRAIN_BIT, IOSQE_IO_DRAIN_BIT);
PEPITA_SAME_VALUE(sqe_flags::IO_LINK_BIT, IOSQE_IO_LINK_BIT);
PEPITA_SAME_VALUE(sqe_flags::IO_HARDLINK_BIT, IOSQE_IO_HARDLINK_BIT);
PEPITA_SAME_VALUE(sqe_flags::ASYNC_BIT, IOSQE_ASYNC_BIT);
PEPITA_SAME_VALUE(sqe_flags::BUFFER_SELECT_BIT, IOSQE_BUFFER_SELECT_BIT);
PEPITA_SAME_VALUE(sqe_flags::CQE_SKIP_SUCCESS_BIT, IOSQE_CQE_SKIP_SUCCESS_BIT);
PEPITA_SAME_VALUE(sqe_flags::FIXED_FILE, IOSQE_FIXED_FILE);
PEPITA_SAME_VALUE(sqe_flags::IO_DRAIN, IOSQE_IO_DRAIN);
PEPITA_SAME_VALUE(sqe_flags::IO_LINK, IOSQE_IO_LINK);
PEPITA_SAME_VALUE(sqe_flags::IO_HARDLINK, IOSQE_IO_HARDLINK);
PEPITA_SAME_VALUE(sqe_flags::ASYNC, IOSQE_ASYNC);
PEPITA_SAME_VALUE(sqe_flags::BUFFER_SELECT, IOSQE_BUFFER_SELECT);
PEPITA_SAME_VALUE(sqe_flags::CQE_SKIP_SUCCESS, IOSQE_CQE_SKIP_SUCCESS);

PEPITA_SAME_VALUE(setup::IOPOLL, IORING_SETUP_IOPOLL);
PEPITA_SAME_VALUE(setup::SQPOLL, IORING_SETUP_SQPOLL);
PEPITA_SAME_VALUE(setup::SQ_AFF, IORING_SETUP_SQ_AFF);
PEPITA_SAME_VALUE(setup::CQSIZE, IORING_SETUP_CQSIZE);
PEPITA_SAME_VALUE(setup::CLAMP, IORING_SETUP_CLAMP);
PEPITA_SAME_VALUE(setup::ATTACH_WQ, IORING_SETUP_ATTACH_WQ);
PEPITA_SAME_VALUE(setup::R_DISABLED, IORING_SETUP_R_DISABLED);
PEPITA_SAME_VALUE(setup::SUBMIT_ALL, IORING_SETUP_SUBMIT_ALL);
PEPITA_SAME_VALUE(setup::COOP_TASKRUN, IORING_SETUP_COOP_TASKRUN);
PEPITA_SAME_VALUE(setup::TASKRUN_FLAG, IORING_SETUP_TASKRUN_FLAG);
PEPITA_SAME_VALUE(setup::SQE128, IORING_SETUP_SQE128);
PEPITA_SAME_VALUE(setup::CQE32, IORING_SETUP_CQE32);
PEPITA_SAME_VALUE(setup::SINGLE_ISSUER, IORING_SETUP_SINGLE_ISSUER);
PEPITA_SAME_VALUE(setup::DEFER_TASKRUN, IORING_SETUP_DEFER_TASKRUN);
PEPITA_SAME_VALUE(setup::NO_MMAP, IORING_SETUP_NO_MMAP);
PEPITA_SAME_VALUE(setup::REGISTERED_FD_ONLY, IORING_SETUP_REGISTERED_FD_ONLY);
PEPITA_SAME_VALUE(setup::NO_SQARRAY, IORING_SETUP_NO_SQARRAY);

PEPITA_SAME_VALUE(Op::Nop, IORING_OP_NOP);
PEPITA_SAME_VALUE(Op::Readv, IORING_OP_READV);
PEPITA_SAME_VALUE(Op::Writev, IORING_OP_WRITEV);
PEPITA_SAME_VALUE(Op::Fsync, IORING_OP_FSYNC);
PEPITA_SAME_VALUE(Op::ReadFixed, IORING_OP_READ_FIXED);
PEPITA_SAME_VALUE(Op::WriteFixed, IORING_OP_WRITE_FIXED);
PEPITA_SAME_VALUE(Op::PollAdd, IORING_OP_POLL_ADD);
PEPITA_SAME_VALUE(Op::PollRemove, IORING_OP_POLL_REMOVE);
PEPITA_SAME_VALUE(Op::SyncFileRange, IORING_OP_SYNC_FILE_RANGE);
PEPITA_SAME_VALUE(Op::Sendmsg, IORING_OP_SENDMSG);
PEPITA_SAME_VALUE(Op::Recvmsg, IORING_OP_RECVMSG);
PEPITA_SAME_VALUE(Op::Timeout, IORING_OP_TIMEOUT);
PEPITA_SAME_VALUE(Op::TimeoutRemove, IORING_OP_TIMEOUT_REMOVE);
PEPITA_SAME_VALUE(Op::Accept, IORING_OP_ACCEPT);
PEPITA_SAME_VALUE(Op::AsyncCancel, IORING_OP_ASYNC_CANCEL);
PEPITA_SAME_VALUE(Op::LinkTimeout, IORING_OP_LINK_TIMEOUT);
PEPITA_SAME_VALUE(Op::Connect, IORING_OP_CONNECT);
PEPITA_SAME_VALUE(Op::Fallocate, IORING_OP_FALLOCATE);
PEPITA_SAME_VALUE(Op::Openat, IORING_OP_OPENAT);
PEPITA_SAME_VALUE(Op::Close, IORING_OP_CLOSE);
PEPITA_SAME_VALUE(Op::FilesUpdate, IORING_OP_FILES_UPDATE);
PEPITA_SAME_VALUE(Op::Statx, IORING_OP_STATX);
PEPITA_SAME_VALUE(Op::Read, IORING_OP_READ);
PEPITA_SAME_VALUE(Op::Write, IORING_OP_WRITE);
PEPITA_SAME_VALUE(Op::Fadvise, IORING_OP_FADVISE);
PEPITA_SAME_VALUE(Op::Madvise, IORING_OP_MADVISE);
PEPITA_SAME_VALUE(Op::Send, IORING_OP_SEND);
PEPITA_SAME_VALUE(Op::Recv, IORING_OP_RECV);
PEPITA_SAME_VALUE(Op::Openat2, IORING_OP_OPENAT2);
PEPITA_SAME_VALUE(Op::EpollCtl, IORING_OP_EPOLL_CTL);
PEPITA_SAME_VALUE(Op::Splice, IORING_OP_SPLICE);
PEPITA_SAME_VALUE(Op::ProvideBuffers, IORING_OP_PROVIDE_BUFFERS);
PEPITA_SAME_VALUE(Op::RemoveBuffers, IORING_OP_REMOVE_BUFFERS);
PEPITA_SAME_VALUE(Op::Tee, IORING_OP_TEE);
PEPITA_SAME_VALUE(Op::Shutdown, IORING_OP_SHUTDOWN);
PEPITA_SAME_VALUE(Op::Renameat, IORING_OP_RENAMEAT);
PEPITA_SAME_VALUE(Op::Unlinkat, IORING_OP_UNLINKAT);
PEPITA_SAME_VALUE(Op::Mkdirat, IORING_OP_MKDIRAT);
PEPITA_SAME_VALUE(Op::Symlinkat, IORING_OP_SYMLINKAT);
PEPITA_SAME_VALUE(Op::Linkat, IORING_OP_LINKAT);
PEPITA_SAME_VALUE(Op::MsgRing, IORING_OP_MSG_RING);
PEPITA_SAME_VALUE(Op::Fsetxattr, IORING_OP_FSETXATTR);
PEPITA_SAME_VALUE(Op::Setxattr, IORING_OP_SETXATTR);
PEPITA_SAME_VALUE(Op::Fgetxattr, IORING_OP_FGETXATTR);
PEPITA_SAME_VALUE(Op::Getxattr, IORING_OP_GETXATTR);
PEPITA_SAME_VALUE(Op::Socket, IORING_OP_SOCKET);
PEPITA_SAME_VALUE(Op::UringCmd, IORING_OP_URING_CMD);
PEPITA_SAME_VALUE(Op::SendZc, IORING_OP_SEND_ZC);
PEPITA_SAME_VALUE(Op::SendmsgZc, IORING_OP_SENDMSG_ZC);
PEPITA_SAME_VALUE(Op::ReadMultishot, IORING_OP_READ_MULTISHOT);
PEPITA_SAME_VALUE(Op::Waitid, IORING_OP_WAITID);
PEPITA_SAME_VALUE(Op::FutexWait, IORING_OP_FUTEX_WAIT);
PEPITA_SAME_VALUE(Op::FutexWake, IORING_OP_FUTEX_WAKE);
PEPITA_SAME_VALUE(Op::FutexWaitv, IORING_OP_FUTEX_WAITV);
PEPITA_SAME_VALUE(Op::FixedFdInstall, IORING_OP_FIXED_FD_INSTALL);
PEPITA_SAME_VALUE(Op::Ftruncate, IORING_OP_FTRUNCATE);
PEPITA_SAME_VALUE(Op::Bind, IORING_OP_BIND);
PEPITA_SAME_VALUE(Op::Listen, IORING_OP_LISTEN);
// The 6.12 header ends where Linux 6.15 added RECV_ZC; abi::Op goes on to 6.18's LAST, checked
// against the running kernel's probe in tests/io_uring (KernelOps, PrepTable).
PEPITA_SAME_VALUE(Op::RecvZc, IORING_OP_LAST);
static_assert(std::is_same_v<std::underlying_type_t<Op>, decltype(io_uring_sqe::opcode)>);

PEPITA_SAME_VALUE(uring_cmd_flags::FIXED, IORING_URING_CMD_FIXED);
PEPITA_SAME_VALUE(uring_cmd_flags::MASK, IORING_URING_CMD_MASK);
PEPITA_SAME_VALUE(fsync_flags::DATASYNC, IORING_FSYNC_DATASYNC);

PEPITA_SAME_VALUE(timeout_flags::ABS, IORING_TIMEOUT_ABS);
PEPITA_SAME_VALUE(timeout_flags::UPDATE, IORING_TIMEOUT_UPDATE);
PEPITA_SAME_VALUE(timeout_flags::BOOTTIME, IORING_TIMEOUT_BOOTTIME);
PEPITA_SAME_VALUE(timeout_flags::REALTIME, IORING_TIMEOUT_REALTIME);
PEPITA_SAME_VALUE(timeout_flags::LINK_TIMEOUT_UPDATE, IORING_LINK_TIMEOUT_UPDATE);
PEPITA_SAME_VALUE(timeout_flags::ETIME_SUCCESS, IORING_TIMEOUT_ETIME_SUCCESS);
PEPITA_SAME_VALUE(timeout_flags::MULTISHOT, IORING_TIMEOUT_MULTISHOT);
PEPITA_SAME_VALUE(timeout_flags::CLOCK_MASK, IORING_TIMEOUT_CLOCK_MASK);
PEPITA_SAME_VALUE(timeout_flags::UPDATE_MASK, IORING_TIMEOUT_UPDATE_MASK);
PEPITA_SAME_VALUE(SPLICE_FD_IN_FIXED, SPLICE_F_FD_IN_FIXED);

PEPITA_SAME_VALUE(poll_flags::ADD_MULTI, IORING_POLL_ADD_MULTI);
PEPITA_SAME_VALUE(poll_flags::UPDATE_EVENTS, IORING_POLL_UPDATE_EVENTS);
PEPITA_SAME_VALUE(poll_flags::UPDATE_USER_DATA, IORING_POLL_UPDATE_USER_DATA);
PEPITA_SAME_VALUE(poll_flags::ADD_LEVEL, IORING_POLL_ADD_LEVEL);

PEPITA_SAME_VALUE(cancel_flags::ALL, IORING_ASYNC_CANCEL_ALL);
PEPITA_SAME_VALUE(cancel_flags::FD, IORING_ASYNC_CANCEL_FD);
PEPITA_SAME_VALUE(cancel_flags::ANY, IORING_ASYNC_CANCEL_ANY);
PEPITA_SAME_VALUE(cancel_flags::FD_FIXED, IORING_ASYNC_CANCEL_FD_FIXED);
PEPITA_SAME_VALUE(cancel_flags::USERDATA, IORING_ASYNC_CANCEL_USERDATA);
PEPITA_SAME_VALUE(cancel_flags::OP, IORING_ASYNC_CANCEL_OP);

PEPITA_SAME_VALUE(recvsend_flags::POLL_FIRST, IORING_RECVSEND_POLL_FIRST);
PEPITA_SAME_VALUE(recvsend_flags::RECV_MULTISHOT, IORING_RECV_MULTISHOT);
PEPITA_SAME_VALUE(recvsend_flags::FIXED_BUF, IORING_RECVSEND_FIXED_BUF);
PEPITA_SAME_VALUE(recvsend_flags::SEND_ZC_REPORT_USAGE, IORING_SEND_ZC_REPORT_USAGE);
PEPITA_SAME_VALUE(recvsend_flags::BUNDLE, IORING_RECVSEND_BUNDLE);
PEPITA_SAME_VALUE(NOTIF_USAGE_ZC_COPIED, IORING_NOTIF_USAGE_ZC_COPIED);

PEPITA_SAME_VALUE(accept_flags::MULTISHOT, IORING_ACCEPT_MULTISHOT);
PEPITA_SAME_VALUE(accept_flags::DONTWAIT, IORING_ACCEPT_DONTWAIT);
PEPITA_SAME_VALUE(accept_flags::POLL_FIRST, IORING_ACCEPT_POLL_FIRST);

PEPITA_SAME_VALUE(msg_ring::DATA, IORING_MSG_DATA);
PEPITA_SAME_VALUE(msg_ring::SEND_FD, IORING_MSG_SEND_FD);
PEPITA_SAME_VALUE(msg_ring::CQE_SKIP, IORING_MSG_RING_CQE_SKIP);
PEPITA_SAME_VALUE(msg_ring::FLAGS_PASS, IORING_MSG_RING_FLAGS_PASS);
PEPITA_SAME_VALUE(FIXED_FD_NO_CLOEXEC, IORING_FIXED_FD_NO_CLOEXEC);
PEPITA_SAME_VALUE(NOP_INJECT_RESULT, IORING_NOP_INJECT_RESULT);

PEPITA_SAME_VALUE(cqe_flags::BUFFER, IORING_CQE_F_BUFFER);
PEPITA_SAME_VALUE(cqe_flags::MORE, IORING_CQE_F_MORE);
PEPITA_SAME_VALUE(cqe_flags::SOCK_NONEMPTY, IORING_CQE_F_SOCK_NONEMPTY);
PEPITA_SAME_VALUE(cqe_flags::NOTIF, IORING_CQE_F_NOTIF);
PEPITA_SAME_VALUE(cqe_flags::BUF_MORE, IORING_CQE_F_BUF_MORE);
PEPITA_SAME_VALUE(cqe_flags::BUFFER_SHIFT, IORING_CQE_BUFFER_SHIFT);

PEPITA_SAME_VALUE(mmap_off::SQ_RING, IORING_OFF_SQ_RING);
PEPITA_SAME_VALUE(mmap_off::CQ_RING, IORING_OFF_CQ_RING);
PEPITA_SAME_VALUE(mmap_off::SQES, IORING_OFF_SQES);
PEPITA_SAME_VALUE(mmap_off::PBUF_RING, IORING_OFF_PBUF_RING);
PEPITA_SAME_VALUE(mmap_off::PBUF_SHIFT, IORING_OFF_PBUF_SHIFT);
PEPITA_SAME_VALUE(mmap_off::MMAP_MASK, IORING_OFF_MMAP_MASK);

PEPITA_SAME_VALUE(sq_flags::NEED_WAKEUP, IORING_SQ_NEED_WAKEUP);
PEPITA_SAME_VALUE(sq_flags::CQ_OVERFLOW, IORING_SQ_CQ_OVERFLOW);
PEPITA_SAME_VALUE(sq_flags::TASKRUN, IORING_SQ_TASKRUN);
PEPITA_SAME_VALUE(CQ_EVENTFD_DISABLED, IORING_CQ_EVENTFD_DISABLED);

PEPITA_SAME_VALUE(enter::GETEVENTS, IORING_ENTER_GETEVENTS);
PEPITA_SAME_VALUE(enter::SQ_WAKEUP, IORING_ENTER_SQ_WAKEUP);
PEPITA_SAME_VALUE(enter::SQ_WAIT, IORING_ENTER_SQ_WAIT);
PEPITA_SAME_VALUE(enter::EXT_ARG, IORING_ENTER_EXT_ARG);
PEPITA_SAME_VALUE(enter::REGISTERED_RING, IORING_ENTER_REGISTERED_RING);
PEPITA_SAME_VALUE(enter::ABS_TIMER, IORING_ENTER_ABS_TIMER);

PEPITA_SAME_VALUE(feat::SINGLE_MMAP, IORING_FEAT_SINGLE_MMAP);
PEPITA_SAME_VALUE(feat::NODROP, IORING_FEAT_NODROP);
PEPITA_SAME_VALUE(feat::SUBMIT_STABLE, IORING_FEAT_SUBMIT_STABLE);
PEPITA_SAME_VALUE(feat::RW_CUR_POS, IORING_FEAT_RW_CUR_POS);
PEPITA_SAME_VALUE(feat::CUR_PERSONALITY, IORING_FEAT_CUR_PERSONALITY);
PEPITA_SAME_VALUE(feat::FAST_POLL, IORING_FEAT_FAST_POLL);
PEPITA_SAME_VALUE(feat::POLL_32BITS, IORING_FEAT_POLL_32BITS);
PEPITA_SAME_VALUE(feat::SQPOLL_NONFIXED, IORING_FEAT_SQPOLL_NONFIXED);
PEPITA_SAME_VALUE(feat::EXT_ARG, IORING_FEAT_EXT_ARG);
PEPITA_SAME_VALUE(feat::NATIVE_WORKERS, IORING_FEAT_NATIVE_WORKERS);
PEPITA_SAME_VALUE(feat::RSRC_TAGS, IORING_FEAT_RSRC_TAGS);
PEPITA_SAME_VALUE(feat::CQE_SKIP, IORING_FEAT_CQE_SKIP);
PEPITA_SAME_VALUE(feat::LINKED_FILE, IORING_FEAT_LINKED_FILE);
PEPITA_SAME_VALUE(feat::REG_REG_RING, IORING_FEAT_REG_REG_RING);
PEPITA_SAME_VALUE(feat::RECVSEND_BUNDLE, IORING_FEAT_RECVSEND_BUNDLE);
PEPITA_SAME_VALUE(feat::MIN_TIMEOUT, IORING_FEAT_MIN_TIMEOUT);

PEPITA_SAME_VALUE(RegisterOp::RegisterBuffers, IORING_REGISTER_BUFFERS);
PEPITA_SAME_VALUE(RegisterOp::UnregisterBuffers, IORING_UNREGISTER_BUFFERS);
PEPITA_SAME_VALUE(RegisterOp::RegisterFiles, IORING_REGISTER_FILES);
PEPITA_SAME_VALUE(RegisterOp::UnregisterFiles, IORING_UNREGISTER_FILES);
PEPITA_SAME_VALUE(RegisterOp::RegisterEventfd, IORING_REGISTER_EVENTFD);
PEPITA_SAME_VALUE(RegisterOp::UnregisterEventfd, IORING_UNREGISTER_EVENTFD);
PEPITA_SAME_VALUE(RegisterOp::RegisterFilesUpdate, IORING_REGISTER_FILES_UPDATE);
PEPITA_SAME_VALUE(RegisterOp::RegisterEventfdAsync, IORING_REGISTER_EVENTFD_ASYNC);
PEPITA_SAME_VALUE(RegisterOp::RegisterProbe, IORING_REGISTER_PROBE);
PEPITA_SAME_VALUE(RegisterOp::RegisterPersonality, IORING_REGISTER_PERSONALITY);
PEPITA_SAME_VALUE(RegisterOp::UnregisterPersonality, IORING_UNREGISTER_PERSONALITY);
PEPITA_SAME_VALUE(RegisterOp::RegisterRestrictions, IORING_REGISTER_RESTRICTIONS);
PEPITA_SAME_VALUE(RegisterOp::RegisterEnableRings, IORING_REGISTER_ENABLE_RINGS);
PEPITA_SAME_VALUE(RegisterOp::RegisterFiles2, IORING_REGISTER_FILES2);
PEPITA_SAME_VALUE(RegisterOp::RegisterFilesUpdate2, IORING_REGISTER_FILES_UPDATE2);
PEPITA_SAME_VALUE(RegisterOp::RegisterBuffers2, IORING_REGISTER_BUFFERS2);
PEPITA_SAME_VALUE(RegisterOp::RegisterBuffersUpdate, IORING_REGISTER_BUFFERS_UPDATE);
PEPITA_SAME_VALUE(RegisterOp::RegisterIowqAff, IORING_REGISTER_IOWQ_AFF);
PEPITA_SAME_VALUE(RegisterOp::UnregisterIowqAff, IORING_UNREGISTER_IOWQ_AFF);
PEPITA_SAME_VALUE(RegisterOp::RegisterIowqMaxWorkers, IORING_REGISTER_IOWQ_MAX_WORKERS);
PEPITA_SAME_VALUE(RegisterOp::RegisterRingFds, IORING_REGISTER_RING_FDS);
PEPITA_SAME_VALUE(RegisterOp::UnregisterRingFds, IORING_UNREGISTER_RING_FDS);
PEPITA_SAME_VALUE(RegisterOp::RegisterPbufRing, IORING_REGISTER_PBUF_RING);
PEPITA_SAME_VALUE(RegisterOp::UnregisterPbufRing, IORING_UNREGISTER_PBUF_RING);
PEPITA_SAME_VALUE(RegisterOp::RegisterSyncCancel, IORING_REGISTER_SYNC_CANCEL);
PEPITA_SAME_VALUE(RegisterOp::RegisterFileAllocRange, IORING_REGISTER_FILE_ALLOC_RANGE);
PEPITA_SAME_VALUE(RegisterOp::RegisterPbufStatus, IORING_REGISTER_PBUF_STATUS);
PEPITA_SAME_VALUE(RegisterOp::RegisterNapi, IORING_REGISTER_NAPI);
PEPITA_SAME_VALUE(RegisterOp::UnregisterNapi, IORING_UNREGISTER_NAPI);
PEPITA_SAME_VALUE(RegisterOp::RegisterClock, IORING_REGISTER_CLOCK);
PEPITA_SAME_VALUE(RegisterOp::RegisterCloneBuffers, IORING_REGISTER_CLONE_BUFFERS);
PEPITA_SAME_VALUE(RegisterOp::RegisterLast, IORING_REGISTER_LAST);
PEPITA_SAME_VALUE(RegisterOp::UseRegisteredRing, IORING_REGISTER_USE_REGISTERED_RING);

PEPITA_SAME_VALUE(IoWqType::Bound, IO_WQ_BOUND);
PEPITA_SAME_VALUE(IoWqType::Unbound, IO_WQ_UNBOUND);
PEPITA_SAME_VALUE(RSRC_REGISTER_SPARSE, IORING_RSRC_REGISTER_SPARSE);
static_assert(REGISTER_FILES_SKIP == IORING_REGISTER_FILES_SKIP);
PEPITA_SAME_VALUE(PROBE_OP_SUPPORTED, IO_URING_OP_SUPPORTED);
PEPITA_SAME_VALUE(REGISTER_SRC_REGISTERED, IORING_REGISTER_SRC_REGISTERED);
PEPITA_SAME_VALUE(pbuf_ring::MMAP, IOU_PBUF_RING_MMAP);
PEPITA_SAME_VALUE(pbuf_ring::INC, IOU_PBUF_RING_INC);

PEPITA_SAME_VALUE(RestrictionOp::RegisterOp, IORING_RESTRICTION_REGISTER_OP);
PEPITA_SAME_VALUE(RestrictionOp::SqeOp, IORING_RESTRICTION_SQE_OP);
PEPITA_SAME_VALUE(RestrictionOp::SqeFlagsAllowed, IORING_RESTRICTION_SQE_FLAGS_ALLOWED);
PEPITA_SAME_VALUE(RestrictionOp::SqeFlagsRequired, IORING_RESTRICTION_SQE_FLAGS_REQUIRED);
PEPITA_SAME_VALUE(RestrictionOp::Last, IORING_RESTRICTION_LAST);

PEPITA_SAME_VALUE(SocketOp::Siocinq, SOCKET_URING_OP_SIOCINQ);
PEPITA_SAME_VALUE(SocketOp::Siocoutq, SOCKET_URING_OP_SIOCOUTQ);
PEPITA_SAME_VALUE(SocketOp::Getsockopt, SOCKET_URING_OP_GETSOCKOPT);
PEPITA_SAME_VALUE(SocketOp::Setsockopt, SOCKET_URING_OP_SETSOCKOPT);

TEST(IoUringAbi, LayoutMatchesKernelUapi612) {
  // The static_asserts above are the test; at run time, check that a byte the kernel reads as
  // cmd[0] of a 128-byte SQE is what our Sqe128::cmd[0] holds.
  unsigned char slot[2 * sizeof(io_uring_sqe)] = {};
  slot[offsetof(io_uring_sqe, cmd)] = 0xab;
  slot[offsetof(io_uring_sqe, user_data)] = 0x42;
  Sqe128 ours{};
  std::memcpy(&ours, slot, sizeof(ours));
  EXPECT_EQ(ours.cmd[0], 0xab);
  EXPECT_EQ(ours.user_data, 0x42u);
}

}  // namespace
}  // namespace pepita::abi
