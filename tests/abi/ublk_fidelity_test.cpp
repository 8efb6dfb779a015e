// ublk ABI fidelity: every struct field and constant of pepita/abi/ublk.hpp against the kernel's
// <linux/ublk_cmd.h> (6.12). The build fails on any mismatch.
#include <gtest/gtest.h>

#include <pepita_test/kernel_uapi.hpp>

#include "fidelity.hpp"
#include "pepita/abi/ublk.hpp"

namespace u = pepita::abi::ublk;

PEPITA_SAME_LAYOUT(u::CtrlCmd, ublksrv_ctrl_cmd);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, dev_id, dev_id);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, queue_id, queue_id);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, len, len);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, addr, addr);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, data, data);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, dev_path_len, dev_path_len);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, pad, pad);
PEPITA_SAME_FIELD(u::CtrlCmd, ublksrv_ctrl_cmd, reserved, reserved);

PEPITA_SAME_LAYOUT(u::CtrlDevInfo, ublksrv_ctrl_dev_info);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, nr_hw_queues, nr_hw_queues);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, queue_depth, queue_depth);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, state, state);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, pad0, pad0);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, max_io_buf_bytes, max_io_buf_bytes);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, dev_id, dev_id);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, ublksrv_pid, ublksrv_pid);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, pad1, pad1);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, flags, flags);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, ublksrv_flags, ublksrv_flags);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, owner_uid, owner_uid);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, owner_gid, owner_gid);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, reserved1, reserved1);
PEPITA_SAME_FIELD(u::CtrlDevInfo, ublksrv_ctrl_dev_info, reserved2, reserved2);

PEPITA_SAME_LAYOUT(u::IoDesc, ublksrv_io_desc);
PEPITA_SAME_FIELD(u::IoDesc, ublksrv_io_desc, op_flags, op_flags);
PEPITA_SAME_FIELD(u::IoDesc, ublksrv_io_desc, nr_sectors, nr_sectors);
PEPITA_SAME_FIELD(u::IoDesc, ublksrv_io_desc, nr_zones, nr_zones);
PEPITA_SAME_FIELD(u::IoDesc, ublksrv_io_desc, start_sector, start_sector);
PEPITA_SAME_FIELD(u::IoDesc, ublksrv_io_desc, addr, addr);

PEPITA_SAME_LAYOUT(u::IoCmd, ublksrv_io_cmd);
PEPITA_SAME_FIELD(u::IoCmd, ublksrv_io_cmd, q_id, q_id);
PEPITA_SAME_FIELD(u::IoCmd, ublksrv_io_cmd, tag, tag);
PEPITA_SAME_FIELD(u::IoCmd, ublksrv_io_cmd, result, result);
PEPITA_SAME_FIELD(u::IoCmd, ublksrv_io_cmd, addr, addr);
PEPITA_SAME_FIELD(u::IoCmd, ublksrv_io_cmd, zone_append_lba, zone_append_lba);

PEPITA_SAME_LAYOUT(u::ParamBasic, ublk_param_basic);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, attrs, attrs);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, logical_bs_shift, logical_bs_shift);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, physical_bs_shift, physical_bs_shift);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, io_opt_shift, io_opt_shift);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, io_min_shift, io_min_shift);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, max_sectors, max_sectors);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, chunk_sectors, chunk_sectors);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, dev_sectors, dev_sectors);
PEPITA_SAME_FIELD(u::ParamBasic, ublk_param_basic, virt_boundary_mask, virt_boundary_mask);

PEPITA_SAME_LAYOUT(u::ParamDiscard, ublk_param_discard);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, discard_alignment, discard_alignment);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, discard_granularity, discard_granularity);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, max_discard_sectors, max_discard_sectors);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, max_write_zeroes_sectors,
                  max_write_zeroes_sectors);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, max_discard_segments, max_discard_segments);
PEPITA_SAME_FIELD(u::ParamDiscard, ublk_param_discard, reserved0, reserved0);

PEPITA_SAME_LAYOUT(u::ParamDevt, ublk_param_devt);
PEPITA_SAME_FIELD(u::ParamDevt, ublk_param_devt, char_major, char_major);
PEPITA_SAME_FIELD(u::ParamDevt, ublk_param_devt, char_minor, char_minor);
PEPITA_SAME_FIELD(u::ParamDevt, ublk_param_devt, disk_major, disk_major);
PEPITA_SAME_FIELD(u::ParamDevt, ublk_param_devt, disk_minor, disk_minor);

PEPITA_SAME_LAYOUT(u::ParamZoned, ublk_param_zoned);
PEPITA_SAME_FIELD(u::ParamZoned, ublk_param_zoned, max_open_zones, max_open_zones);
PEPITA_SAME_FIELD(u::ParamZoned, ublk_param_zoned, max_active_zones, max_active_zones);
PEPITA_SAME_FIELD(u::ParamZoned, ublk_param_zoned, max_zone_append_sectors,
                  max_zone_append_sectors);
PEPITA_SAME_FIELD(u::ParamZoned, ublk_param_zoned, reserved, reserved);

PEPITA_SAME_LAYOUT(u::Params, ublk_params);
PEPITA_SAME_FIELD(u::Params, ublk_params, len, len);
PEPITA_SAME_FIELD(u::Params, ublk_params, types, types);
PEPITA_SAME_FIELD(u::Params, ublk_params, basic, basic);
PEPITA_SAME_FIELD(u::Params, ublk_params, discard, discard);
PEPITA_SAME_FIELD(u::Params, ublk_params, devt, devt);
PEPITA_SAME_FIELD(u::Params, ublk_params, zoned, zoned);

PEPITA_SAME_CONSTANT(u::CMD_GET_QUEUE_AFFINITY, UBLK_CMD_GET_QUEUE_AFFINITY);
PEPITA_SAME_CONSTANT(u::CMD_GET_DEV_INFO, UBLK_CMD_GET_DEV_INFO);
PEPITA_SAME_CONSTANT(u::CMD_ADD_DEV, UBLK_CMD_ADD_DEV);
PEPITA_SAME_CONSTANT(u::CMD_DEL_DEV, UBLK_CMD_DEL_DEV);
PEPITA_SAME_CONSTANT(u::CMD_START_DEV, UBLK_CMD_START_DEV);
PEPITA_SAME_CONSTANT(u::CMD_STOP_DEV, UBLK_CMD_STOP_DEV);
PEPITA_SAME_CONSTANT(u::CMD_SET_PARAMS, UBLK_CMD_SET_PARAMS);
PEPITA_SAME_CONSTANT(u::CMD_GET_PARAMS, UBLK_CMD_GET_PARAMS);
PEPITA_SAME_CONSTANT(u::CMD_START_USER_RECOVERY, UBLK_CMD_START_USER_RECOVERY);
PEPITA_SAME_CONSTANT(u::CMD_END_USER_RECOVERY, UBLK_CMD_END_USER_RECOVERY);
PEPITA_SAME_CONSTANT(u::CMD_GET_DEV_INFO2, UBLK_CMD_GET_DEV_INFO2);
PEPITA_SAME_CONSTANT(u::U_CMD_GET_QUEUE_AFFINITY, UBLK_U_CMD_GET_QUEUE_AFFINITY);
PEPITA_SAME_CONSTANT(u::U_CMD_GET_DEV_INFO, UBLK_U_CMD_GET_DEV_INFO);
PEPITA_SAME_CONSTANT(u::U_CMD_ADD_DEV, UBLK_U_CMD_ADD_DEV);
PEPITA_SAME_CONSTANT(u::U_CMD_DEL_DEV, UBLK_U_CMD_DEL_DEV);
PEPITA_SAME_CONSTANT(u::U_CMD_START_DEV, UBLK_U_CMD_START_DEV);
PEPITA_SAME_CONSTANT(u::U_CMD_STOP_DEV, UBLK_U_CMD_STOP_DEV);
PEPITA_SAME_CONSTANT(u::U_CMD_SET_PARAMS, UBLK_U_CMD_SET_PARAMS);
PEPITA_SAME_CONSTANT(u::U_CMD_GET_PARAMS, UBLK_U_CMD_GET_PARAMS);
PEPITA_SAME_CONSTANT(u::U_CMD_START_USER_RECOVERY, UBLK_U_CMD_START_USER_RECOVERY);
PEPITA_SAME_CONSTANT(u::U_CMD_END_USER_RECOVERY, UBLK_U_CMD_END_USER_RECOVERY);
PEPITA_SAME_CONSTANT(u::U_CMD_GET_DEV_INFO2, UBLK_U_CMD_GET_DEV_INFO2);
PEPITA_SAME_CONSTANT(u::U_CMD_GET_FEATURES, UBLK_U_CMD_GET_FEATURES);
PEPITA_SAME_CONSTANT(u::U_CMD_DEL_DEV_ASYNC, UBLK_U_CMD_DEL_DEV_ASYNC);
PEPITA_SAME_CONSTANT(u::FEATURES_LEN, UBLK_FEATURES_LEN);
PEPITA_SAME_CONSTANT(u::IO_FETCH_REQ, UBLK_IO_FETCH_REQ);
PEPITA_SAME_CONSTANT(u::IO_COMMIT_AND_FETCH_REQ, UBLK_IO_COMMIT_AND_FETCH_REQ);
PEPITA_SAME_CONSTANT(u::IO_NEED_GET_DATA, UBLK_IO_NEED_GET_DATA);
PEPITA_SAME_CONSTANT(u::U_IO_FETCH_REQ, UBLK_U_IO_FETCH_REQ);
PEPITA_SAME_CONSTANT(u::U_IO_COMMIT_AND_FETCH_REQ, UBLK_U_IO_COMMIT_AND_FETCH_REQ);
PEPITA_SAME_CONSTANT(u::U_IO_NEED_GET_DATA, UBLK_U_IO_NEED_GET_DATA);
static_assert(u::IO_RES_OK == UBLK_IO_RES_OK);
static_assert(u::IO_RES_NEED_GET_DATA == UBLK_IO_RES_NEED_GET_DATA);
static_assert(u::IO_RES_ABORT == UBLK_IO_RES_ABORT);
PEPITA_SAME_CONSTANT(u::SRV_CMD_BUF_OFFSET, UBLKSRV_CMD_BUF_OFFSET);
PEPITA_SAME_CONSTANT(u::SRV_IO_BUF_OFFSET, UBLKSRV_IO_BUF_OFFSET);
PEPITA_SAME_CONSTANT(u::MAX_QUEUE_DEPTH, UBLK_MAX_QUEUE_DEPTH);
PEPITA_SAME_CONSTANT(u::IO_BUF_OFF, UBLK_IO_BUF_OFF);
PEPITA_SAME_CONSTANT(u::IO_BUF_BITS, UBLK_IO_BUF_BITS);
PEPITA_SAME_CONSTANT(u::IO_BUF_BITS_MASK, UBLK_IO_BUF_BITS_MASK);
PEPITA_SAME_CONSTANT(u::TAG_OFF, UBLK_TAG_OFF);
PEPITA_SAME_CONSTANT(u::TAG_BITS, UBLK_TAG_BITS);
PEPITA_SAME_CONSTANT(u::TAG_BITS_MASK, UBLK_TAG_BITS_MASK);
PEPITA_SAME_CONSTANT(u::QID_OFF, UBLK_QID_OFF);
PEPITA_SAME_CONSTANT(u::QID_BITS, UBLK_QID_BITS);
PEPITA_SAME_CONSTANT(u::QID_BITS_MASK, UBLK_QID_BITS_MASK);
PEPITA_SAME_CONSTANT(u::MAX_NR_QUEUES, UBLK_MAX_NR_QUEUES);
PEPITA_SAME_CONSTANT(u::SRV_IO_BUF_TOTAL_BITS, UBLKSRV_IO_BUF_TOTAL_BITS);
PEPITA_SAME_CONSTANT(u::SRV_IO_BUF_TOTAL_SIZE, UBLKSRV_IO_BUF_TOTAL_SIZE);
PEPITA_SAME_CONSTANT(u::F_SUPPORT_ZERO_COPY, UBLK_F_SUPPORT_ZERO_COPY);
PEPITA_SAME_CONSTANT(u::F_URING_CMD_COMP_IN_TASK, UBLK_F_URING_CMD_COMP_IN_TASK);
PEPITA_SAME_CONSTANT(u::F_NEED_GET_DATA, UBLK_F_NEED_GET_DATA);
PEPITA_SAME_CONSTANT(u::F_USER_RECOVERY, UBLK_F_USER_RECOVERY);
PEPITA_SAME_CONSTANT(u::F_USER_RECOVERY_REISSUE, UBLK_F_USER_RECOVERY_REISSUE);
PEPITA_SAME_CONSTANT(u::F_UNPRIVILEGED_DEV, UBLK_F_UNPRIVILEGED_DEV);
PEPITA_SAME_CONSTANT(u::F_CMD_IOCTL_ENCODE, UBLK_F_CMD_IOCTL_ENCODE);
PEPITA_SAME_CONSTANT(u::F_USER_COPY, UBLK_F_USER_COPY);
PEPITA_SAME_CONSTANT(u::F_ZONED, UBLK_F_ZONED);
PEPITA_SAME_CONSTANT(u::S_DEV_DEAD, UBLK_S_DEV_DEAD);
PEPITA_SAME_CONSTANT(u::S_DEV_LIVE, UBLK_S_DEV_LIVE);
PEPITA_SAME_CONSTANT(u::S_DEV_QUIESCED, UBLK_S_DEV_QUIESCED);
PEPITA_SAME_CONSTANT(u::IO_OP_READ, UBLK_IO_OP_READ);
PEPITA_SAME_CONSTANT(u::IO_OP_WRITE, UBLK_IO_OP_WRITE);
PEPITA_SAME_CONSTANT(u::IO_OP_FLUSH, UBLK_IO_OP_FLUSH);
PEPITA_SAME_CONSTANT(u::IO_OP_DISCARD, UBLK_IO_OP_DISCARD);
PEPITA_SAME_CONSTANT(u::IO_OP_WRITE_SAME, UBLK_IO_OP_WRITE_SAME);
PEPITA_SAME_CONSTANT(u::IO_OP_WRITE_ZEROES, UBLK_IO_OP_WRITE_ZEROES);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_OPEN, UBLK_IO_OP_ZONE_OPEN);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_CLOSE, UBLK_IO_OP_ZONE_CLOSE);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_FINISH, UBLK_IO_OP_ZONE_FINISH);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_APPEND, UBLK_IO_OP_ZONE_APPEND);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_RESET_ALL, UBLK_IO_OP_ZONE_RESET_ALL);
PEPITA_SAME_CONSTANT(u::IO_OP_ZONE_RESET, UBLK_IO_OP_ZONE_RESET);
PEPITA_SAME_CONSTANT(u::IO_OP_REPORT_ZONES, UBLK_IO_OP_REPORT_ZONES);
PEPITA_SAME_CONSTANT(u::IO_F_FAILFAST_DEV, UBLK_IO_F_FAILFAST_DEV);
PEPITA_SAME_CONSTANT(u::IO_F_FAILFAST_TRANSPORT, UBLK_IO_F_FAILFAST_TRANSPORT);
PEPITA_SAME_CONSTANT(u::IO_F_FAILFAST_DRIVER, UBLK_IO_F_FAILFAST_DRIVER);
PEPITA_SAME_CONSTANT(u::IO_F_META, UBLK_IO_F_META);
PEPITA_SAME_CONSTANT(u::IO_F_FUA, UBLK_IO_F_FUA);
PEPITA_SAME_CONSTANT(u::IO_F_NOUNMAP, UBLK_IO_F_NOUNMAP);
PEPITA_SAME_CONSTANT(u::IO_F_SWAP, UBLK_IO_F_SWAP);
PEPITA_SAME_CONSTANT(u::ATTR_READ_ONLY, UBLK_ATTR_READ_ONLY);
PEPITA_SAME_CONSTANT(u::ATTR_ROTATIONAL, UBLK_ATTR_ROTATIONAL);
PEPITA_SAME_CONSTANT(u::ATTR_VOLATILE_CACHE, UBLK_ATTR_VOLATILE_CACHE);
PEPITA_SAME_CONSTANT(u::ATTR_FUA, UBLK_ATTR_FUA);
PEPITA_SAME_CONSTANT(u::PARAM_TYPE_BASIC, UBLK_PARAM_TYPE_BASIC);
PEPITA_SAME_CONSTANT(u::PARAM_TYPE_DISCARD, UBLK_PARAM_TYPE_DISCARD);
PEPITA_SAME_CONSTANT(u::PARAM_TYPE_DEVT, UBLK_PARAM_TYPE_DEVT);
PEPITA_SAME_CONSTANT(u::PARAM_TYPE_ZONED, UBLK_PARAM_TYPE_ZONED);

namespace {

// The static_asserts above are the test; these check the runtime helpers built on the layout.
TEST(UblkAbi, IoDescAccessorsMatchKernel) {
  ublksrv_io_desc theirs{};
  theirs.op_flags = UBLK_IO_OP_WRITE | UBLK_IO_F_FUA;
  pepita::abi::ublk::IoDesc ours{};
  ours.op_flags = theirs.op_flags;
  EXPECT_EQ(u::io_desc_op(ours), ublksrv_get_op(&theirs));
  EXPECT_EQ(u::io_desc_flags(ours), ublksrv_get_flags(&theirs));
}

TEST(UblkAbi, UserCopyOffsetEncodesQueueAndTag) {
  EXPECT_EQ(u::user_copy_offset(0, 0, 0), UBLKSRV_IO_BUF_OFFSET);
  EXPECT_EQ(u::user_copy_offset(3, 7, 512),
            UBLKSRV_IO_BUF_OFFSET + (3ull << UBLK_QID_OFF) + (7ull << UBLK_TAG_OFF) + 512);
}

}  // namespace
