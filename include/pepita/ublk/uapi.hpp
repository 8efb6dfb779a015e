#pragma once
// The ublk ABI under the names of Linux's include/uapi/linux/ublk_cmd.h and of the reference crate
// (pepita::ublk::{UblkCtrlCmd, UblkIoDesc, UblkIoCmd, UBLK_U_*, UBLK_F_*, UBLK_IO_*}), over
// pepita/abi/ublk.hpp. Values are the kernel's, checked against the installed 6.12 header in
// tests/ublk/uapi_test.cpp; where the crate's constants differ from the kernel (GET_QUEUE_AFFINITY,
// GET_DEV_INFO, IO_OP_WRITE_ZEROES, IO_F_FUA) the kernel's win, since these reach a real driver.
// The kernel's header defines these names as macros: include either it or this header in a
// translation unit, not both.
//
//   UblkCtrlCmd cmd = UblkCtrlCmd::make(dev_id);          // crate: UblkCtrlCmd::new(dev_id)
//   cmd.set_data(reinterpret_cast<uint64_t>(&info), sizeof info);
//   sqe.cmd_op = UBLK_U_CMD_GET_DEV_INFO;                  // then copy cmd into Sqe128::cmd

#include <cstdint>

#include "pepita/abi/ublk.hpp"

namespace pepita::ublk {

/// 32-byte control command (make/with_queue/set_data/set_extra_data).
using UblkCtrlCmd = abi::ublk::CtrlCmd;
/// 24-byte per-tag I/O descriptor the driver fills (op/flags/is_read/.../byte_offset/byte_len).
using UblkIoDesc = abi::ublk::IoDesc;
/// 16-byte I/O command (make/completed/set_result/set_addr/is_success).
using UblkIoCmd = abi::ublk::IoCmd;

// Control commands, ioctl-encoded (UBLK_F_CMD_IOCTL_ENCODE).
inline constexpr uint32_t UBLK_U_CMD_ADD_DEV = abi::ublk::U_CMD_ADD_DEV;
inline constexpr uint32_t UBLK_U_CMD_DEL_DEV = abi::ublk::U_CMD_DEL_DEV;
inline constexpr uint32_t UBLK_U_CMD_START_DEV = abi::ublk::U_CMD_START_DEV;
inline constexpr uint32_t UBLK_U_CMD_STOP_DEV = abi::ublk::U_CMD_STOP_DEV;
inline constexpr uint32_t UBLK_U_CMD_SET_PARAMS = abi::ublk::U_CMD_SET_PARAMS;
inline constexpr uint32_t UBLK_U_CMD_GET_PARAMS = abi::ublk::U_CMD_GET_PARAMS;
inline constexpr uint32_t UBLK_U_CMD_GET_QUEUE_AFFINITY = abi::ublk::U_CMD_GET_QUEUE_AFFINITY;
inline constexpr uint32_t UBLK_U_CMD_GET_DEV_INFO = abi::ublk::U_CMD_GET_DEV_INFO;
// I/O commands on /dev/ublkcN.
inline constexpr uint32_t UBLK_U_IO_FETCH_REQ = abi::ublk::U_IO_FETCH_REQ;
inline constexpr uint32_t UBLK_U_IO_COMMIT_AND_FETCH_REQ = abi::ublk::U_IO_COMMIT_AND_FETCH_REQ;
inline constexpr uint32_t UBLK_U_IO_NEED_GET_DATA = abi::ublk::U_IO_NEED_GET_DATA;

// Device feature flags (ublksrv_ctrl_dev_info.flags).
inline constexpr uint64_t UBLK_F_SUPPORT_ZERO_COPY = abi::ublk::F_SUPPORT_ZERO_COPY;
inline constexpr uint64_t UBLK_F_URING_CMD_COMP_IN_TASK = abi::ublk::F_URING_CMD_COMP_IN_TASK;
inline constexpr uint64_t UBLK_F_NEED_GET_DATA = abi::ublk::F_NEED_GET_DATA;
inline constexpr uint64_t UBLK_F_USER_COPY = abi::ublk::F_USER_COPY;
inline constexpr uint64_t UBLK_F_CMD_IOCTL_ENCODE = abi::ublk::F_CMD_IOCTL_ENCODE;
inline constexpr uint64_t UBLK_F_UNPRIVILEGED_DEV = abi::ublk::F_UNPRIVILEGED_DEV;

// I/O descriptor ops and flags (ublksrv_io_desc.op_flags).
inline constexpr uint32_t UBLK_IO_OP_READ = abi::ublk::IO_OP_READ;
inline constexpr uint32_t UBLK_IO_OP_WRITE = abi::ublk::IO_OP_WRITE;
inline constexpr uint32_t UBLK_IO_OP_FLUSH = abi::ublk::IO_OP_FLUSH;
inline constexpr uint32_t UBLK_IO_OP_DISCARD = abi::ublk::IO_OP_DISCARD;
inline constexpr uint32_t UBLK_IO_OP_WRITE_ZEROES = abi::ublk::IO_OP_WRITE_ZEROES;
inline constexpr uint32_t UBLK_IO_F_FUA = abi::ublk::IO_F_FUA;

}  // namespace pepita::ublk
