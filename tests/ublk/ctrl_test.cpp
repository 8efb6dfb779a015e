// Control-path encoding against the kernel's own linux/ublk_cmd.h and linux/io_uring.h (6.12):
// the SQE a command produces must be byte-for-byte what a C server using the UAPI headers sends.
#include "pepita/ublk/ctrl.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <pepita_test/kernel_uapi.hpp>
#include <utility>

namespace pepita::ublk {
namespace {
namespace u = abi::ublk;

TEST(UblkCtrlEncoding, IoctlEncodedOpcodesMatchKernel) {
  EXPECT_EQ(u::U_CMD_ADD_DEV, UBLK_U_CMD_ADD_DEV);
  EXPECT_EQ(u::U_CMD_DEL_DEV, UBLK_U_CMD_DEL_DEV);
  EXPECT_EQ(u::U_CMD_START_DEV, UBLK_U_CMD_START_DEV);
  EXPECT_EQ(u::U_CMD_STOP_DEV, UBLK_U_CMD_STOP_DEV);
  EXPECT_EQ(u::U_CMD_SET_PARAMS, UBLK_U_CMD_SET_PARAMS);
  EXPECT_EQ(u::U_CMD_GET_PARAMS, UBLK_U_CMD_GET_PARAMS);
  EXPECT_EQ(u::U_CMD_GET_DEV_INFO, UBLK_U_CMD_GET_DEV_INFO);
  EXPECT_EQ(u::U_IO_FETCH_REQ, UBLK_U_IO_FETCH_REQ);
  EXPECT_EQ(u::U_IO_COMMIT_AND_FETCH_REQ, UBLK_U_IO_COMMIT_AND_FETCH_REQ);
  EXPECT_EQ(u::IO_RES_ABORT, UBLK_IO_RES_ABORT);
}

// Builds the same command the way a C server does with the kernel's structs.
io_uring_sqe kernel_ctrl_sqe(int fd, uint32_t op, uint32_t dev_id, uint64_t addr, uint16_t len,
                             uint64_t data0, uint64_t user_data, unsigned char (&raw)[128]) {
  std::memset(raw, 0, sizeof raw);
  io_uring_sqe sqe;
  std::memset(&sqe, 0, sizeof sqe);
  sqe.opcode = IORING_OP_URING_CMD;
  sqe.fd = fd;
  sqe.cmd_op = op;
  sqe.user_data = user_data;
  std::memcpy(raw, &sqe, sizeof sqe);
  ublksrv_ctrl_cmd cmd;
  std::memset(&cmd, 0, sizeof cmd);
  cmd.dev_id = dev_id;
  cmd.queue_id = static_cast<__u16>(-1);
  cmd.len = len;
  cmd.addr = addr;
  cmd.data[0] = data0;
  std::memcpy(raw + offsetof(io_uring_sqe, cmd), &cmd, sizeof cmd);
  return sqe;
}

TEST(UblkCtrlEncoding, ControlSqeIsByteIdenticalToKernelLayout) {
  u::CtrlDevInfo info{};
  const struct {
    uint32_t op;
    uint32_t dev;
    const void* buf;
    uint16_t len;
    uint64_t data0;
  } cases[] = {
      {u::U_CMD_ADD_DEV, kAnyDevice, &info, sizeof info, 0},
      {u::U_CMD_START_DEV, 3, nullptr, 0, 4242},
      {u::U_CMD_STOP_DEV, 7, nullptr, 0, 0},
      {u::U_CMD_DEL_DEV, 0, nullptr, 0, 0},
      {u::U_CMD_GET_DEV_INFO, 12, &info, sizeof info, 0},
  };
  for (const auto& c : cases) {
    abi::Sqe128 ours;
    std::memset(&ours, 0xab, sizeof ours);  // stale bytes must all be overwritten
    prep_ctrl_cmd(ours, 5, c.op, make_ctrl_cmd(c.dev, c.buf, c.len, c.data0), 99);
    unsigned char theirs[128];
    kernel_ctrl_sqe(5, c.op, c.dev, reinterpret_cast<uintptr_t>(c.buf), c.len, c.data0, 99, theirs);
    EXPECT_EQ(std::memcmp(&ours, theirs, 128), 0) << "command 0x" << std::hex << c.op;
  }
}

TEST(UblkCtrlEncoding, IoCommandSqeMatchesKernelLayout) {
  abi::Sqe128 ours;
  std::memset(&ours, 0xcd, sizeof ours);
  u::IoCmd cmd{};
  cmd.q_id = 1;
  cmd.tag = 17;
  cmd.result = -5;
  cmd.addr = 0x7f0000001000;
  prep_io_cmd(ours, 9, u::U_IO_COMMIT_AND_FETCH_REQ, cmd, 17);

  unsigned char theirs[128] = {};
  io_uring_sqe sqe;
  std::memset(&sqe, 0, sizeof sqe);
  sqe.opcode = IORING_OP_URING_CMD;
  sqe.fd = 9;
  sqe.cmd_op = UBLK_U_IO_COMMIT_AND_FETCH_REQ;
  sqe.user_data = 17;
  std::memcpy(theirs, &sqe, sizeof sqe);
  ublksrv_io_cmd kcmd{};
  kcmd.q_id = 1;
  kcmd.tag = 17;
  kcmd.result = -5;
  kcmd.addr = 0x7f0000001000;
  std::memcpy(theirs + offsetof(io_uring_sqe, cmd), &kcmd, sizeof kcmd);
  EXPECT_EQ(std::memcmp(&ours, theirs, 128), 0);
}

TEST(UblkCtrlEncoding, AddDevInfoAsksForIoctlEncoding) {
  const u::CtrlDevInfo info = make_dev_info({.queues = 4, .depth = 256, .max_io_bytes = 1 << 20});
  EXPECT_EQ(info.nr_hw_queues, 4);
  EXPECT_EQ(info.queue_depth, 256);
  EXPECT_EQ(info.max_io_buf_bytes, 1u << 20);
  EXPECT_EQ(info.dev_id, kAnyDevice);  // must equal the header's dev_id for ADD_DEV
  EXPECT_EQ(info.ublksrv_pid, -1);     // the kernel's "no server" until START_DEV gives the pid
  EXPECT_NE(info.flags & UBLK_F_CMD_IOCTL_ENCODE, 0u);
  EXPECT_EQ(info.flags & UBLK_F_USER_COPY, 0u);
}

TEST(UblkCtrlEncoding, ValidateRejectsBadShapes) {
  EXPECT_TRUE(validate({}).has_value());
  EXPECT_EQ(validate({.queues = 0}).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(validate({.depth = 0}).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(validate({.depth = 4097}).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(validate({.max_io_bytes = 1000}).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(validate({.max_io_bytes = 64u << 20}).error().code(), ErrorCode::InvalidArgument);
  const auto zoned = validate({.extra_flags = UBLK_F_ZONED});
  ASSERT_FALSE(zoned);
  EXPECT_NE(zoned.error().message().find("USER_COPY"), std::string::npos);
}

// The bounds are inclusive: the largest queue count and depth the kernel takes are accepted, one
// more is refused.
TEST(UblkCtrlEncoding, ValidateAcceptsTheLargestQueueCountAndDepth) {
  EXPECT_TRUE(validate({.queues = static_cast<uint16_t>(u::MAX_NR_QUEUES)}).has_value());
  EXPECT_EQ(validate({.queues = static_cast<uint16_t>(u::MAX_NR_QUEUES + 1)}).error().code(),
            ErrorCode::InvalidArgument);
  EXPECT_TRUE(validate({.depth = static_cast<uint16_t>(u::MAX_QUEUE_DEPTH)}).has_value());
}

// The parameter rules ublk_validate_params() (6.12) enforces.
void expect_kernel_accepts(const u::Params& p, const u::CtrlDevInfo& info) {
  ASSERT_NE(p.types & UBLK_PARAM_TYPE_BASIC, 0u);
  EXPECT_EQ(p.types & UBLK_PARAM_TYPE_DEVT, 0u);  // read-only: SET_PARAMS with it is EINVAL
  EXPECT_GE(p.basic.logical_bs_shift, 9);
  EXPECT_LE(p.basic.logical_bs_shift, 12);
  EXPECT_LE(p.basic.logical_bs_shift, p.basic.physical_bs_shift);
  EXPECT_LE(p.basic.max_sectors, info.max_io_buf_bytes >> 9);
  EXPECT_EQ(p.len, sizeof(ublk_params));
  if ((p.types & UBLK_PARAM_TYPE_DISCARD) != 0) {
    EXPECT_NE(p.discard.discard_granularity, 0u);
    if (p.discard.max_discard_sectors != 0) {
      EXPECT_EQ(p.discard.max_discard_segments, 1);
    }
  }
}

TEST(UblkCtrlEncoding, ParamsFollowTheDeviceAndKernelRules) {
  blk_mq::DeviceInfo d;
  d.capacity_sectors = 1u << 21;
  d.logical_block_size = 4096;
  d.physical_block_size = 4096;
  d.max_sectors = 2048;
  d.features = blk_mq::features::kDiscard | blk_mq::features::kWriteZeroes |
               blk_mq::features::kFlush | blk_mq::features::kFua;
  u::CtrlDevInfo info = make_dev_info({});
  info.max_io_buf_bytes = 256 << 10;  // the kernel lowered it: max_sectors must follow
  const u::Params p = make_params(d, info);
  expect_kernel_accepts(p, info);
  EXPECT_EQ(p.basic.dev_sectors, d.capacity_sectors);
  EXPECT_EQ(p.basic.logical_bs_shift, 12);
  EXPECT_EQ(p.basic.max_sectors, 512u);
  EXPECT_NE(p.basic.attrs & UBLK_ATTR_VOLATILE_CACHE, 0u);
  EXPECT_NE(p.basic.attrs & UBLK_ATTR_FUA, 0u);
  EXPECT_NE(p.types & UBLK_PARAM_TYPE_DISCARD, 0u);
  EXPECT_EQ(p.discard.max_discard_sectors, 2048u);
  EXPECT_EQ(p.discard.max_write_zeroes_sectors, 2048u);

  d.features = blk_mq::features::kReadOnly;
  d.logical_block_size = 512;
  const u::Params ro = make_params(d, make_dev_info({}));
  expect_kernel_accepts(ro, make_dev_info({}));
  EXPECT_EQ(ro.types & UBLK_PARAM_TYPE_DISCARD, 0u);
  EXPECT_NE(ro.basic.attrs & UBLK_ATTR_READ_ONLY, 0u);
  EXPECT_EQ(ro.basic.attrs & UBLK_ATTR_VOLATILE_CACHE, 0u);
}

TEST(UblkCtrlEncoding, ParamsIoMinIsTheLogicalBlockAndIoOptThePhysicalBlock) {
  // A 512e disk: 512-byte logical blocks on 4 KiB physical ones.
  blk_mq::DeviceInfo d;
  d.capacity_sectors = 1u << 21;
  d.logical_block_size = 512;
  d.physical_block_size = 4096;
  d.max_sectors = 256;
  const u::CtrlDevInfo info = make_dev_info({});
  const u::Params p = make_params(d, info);
  expect_kernel_accepts(p, info);
  EXPECT_EQ(p.basic.logical_bs_shift, 9);
  EXPECT_EQ(p.basic.physical_bs_shift, 12);
  EXPECT_EQ(p.basic.io_min_shift, 9)
      << "io_min: the smallest I/O the disk takes, one logical block";
  EXPECT_EQ(p.basic.io_opt_shift, 12);

  d.logical_block_size = 4096;
  const u::Params native = make_params(d, info);
  EXPECT_EQ(native.basic.io_min_shift, 12);
  EXPECT_EQ(native.basic.io_opt_shift, 12);
}

TEST(UblkCtrlEncoding, DevicePaths) {
  EXPECT_EQ(char_device_path(3), "/dev/ublkc3");
  EXPECT_EQ(block_device_path(12), "/dev/ublkb12");
}

TEST(UblkCtrlEncoding, CommandFailuresUseTheCratesKernelErrorCases) {
  const Error gone = control_error(-ENODEV, "get_dev_info", 7);
  EXPECT_EQ(gone.code(), KernelError::UblkDeviceNotFound);
  EXPECT_EQ(gone.to_negative_errno(), -ENODEV);
  EXPECT_NE(gone.message().find("ublk get_dev_info (device 7)"), std::string::npos);
  const Error busy = control_error(-EBUSY, "del_dev", 2);
  EXPECT_EQ(busy.code(), KernelError::UblkDeviceBusy);
  EXPECT_TRUE(busy.is_retriable());
  const Error denied = control_error(-EPERM, "add_dev", kAnyDevice);
  EXPECT_EQ(denied.code(), KernelError::UblkNotPermitted);
  EXPECT_EQ(denied.message().find("(device"), std::string::npos);  // no id to name
  EXPECT_NE(denied.message().find("CAP_SYS_ADMIN"), std::string::npos);
  EXPECT_EQ(control_error(-EOPNOTSUPP, "start_dev", 1).code(), ErrorCode::Unsupported);
  EXPECT_EQ(control_error(-EINVAL, "set_params", 1).code(), ErrorCode::InvalidArgument);
}

TEST(UblkControl, MissingControlNodeSaysToLoadTheDriver) {
  auto control = Control::open("/nonexistent/ublk-control");
  ASSERT_FALSE(control);
  EXPECT_EQ(control.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(control.error().message().find("ublk_drv"), std::string::npos);
}

TEST(UblkControl, NodeThatCannotBeOpenedReadWriteIsAnErrnoErrorNamingIt) {
  // Not a missing driver and not a permission problem: the errno and the path, as they are.
  const char* dir = "/";
  auto control = Control::open(dir);
  ASSERT_FALSE(control);
  EXPECT_EQ(control.error().sys_errno(), EISDIR) << control.error().to_string();
  EXPECT_NE(control.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(control.error().message().find("open /"), std::string::npos)
      << control.error().message();
}

// Both branches, decided by the node itself: with /dev/ublk-control (the Linux 6.12 test guest)
// the control device opens; without it (this CI host's kernel) the error names the missing node.
TEST(UblkControl, DefaultControlNodeOpensOrIsReportedMissing) {
  auto control = Control::open();
  if (::access(kControlPath, R_OK | W_OK) == 0) {
    EXPECT_TRUE(control) << control.error().to_string();
    return;
  }
  ASSERT_FALSE(control);
  if (::access(kControlPath, F_OK) == 0) {
    EXPECT_EQ(control.error().code(), ErrorCode::PermissionDenied);
    return;
  }
  EXPECT_EQ(control.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(control.error().message().find("/dev/ublk-control missing"), std::string::npos);
}

// Only EACCES and EPERM are a permission problem: a node that fails to open for another reason
// (here a directory, EISDIR; then a path through a regular file, ENOTDIR) is not reported as
// needing root, which would send the user after the wrong fix.
TEST(UblkControl, OnlyEaccesAndEpermAreReportedAsNeedingRoot) {
  for (const auto& [path, err] :
       {std::pair<const char*, int>{"/", EISDIR},
        std::pair<const char*, int>{"/proc/self/exe/ublk-control", ENOTDIR}}) {
    auto control = Control::open(path);
    ASSERT_FALSE(control) << path;
    EXPECT_EQ(control.error().sys_errno(), err) << control.error().to_string();
    EXPECT_NE(control.error().code(), ErrorCode::PermissionDenied) << control.error().to_string();
    EXPECT_EQ(control.error().message().find("need root"), std::string::npos)
        << control.error().message();
  }
}

}  // namespace
}  // namespace pepita::ublk
