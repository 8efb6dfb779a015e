// The kernel-named ublk ABI (pepita/ublk/uapi.hpp, the reference crate's UblkCtrlCmd / UblkIoDesc /
// UblkIoCmd and UBLK_* constants): layout as the crate asserts it, every constant against the
// installed <linux/ublk_cmd.h>, and the crate's constructors fed to the server's real parser.
#include "pepita/ublk/uapi.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <type_traits>

#include "pepita/ublk/ctrl.hpp"
#include "pepita/ublk/request.hpp"

// clang-format off
#define PEPITA_UBLK_NAMES(X) \
  X(UBLK_U_CMD_ADD_DEV) \
  X(UBLK_U_CMD_DEL_DEV) \
  X(UBLK_U_CMD_START_DEV) \
  X(UBLK_U_CMD_STOP_DEV) \
  X(UBLK_U_CMD_SET_PARAMS) \
  X(UBLK_U_CMD_GET_PARAMS) \
  X(UBLK_U_CMD_GET_QUEUE_AFFINITY) \
  X(UBLK_U_CMD_GET_DEV_INFO) \
  X(UBLK_U_IO_FETCH_REQ) \
  X(UBLK_U_IO_COMMIT_AND_FETCH_REQ) \
  X(UBLK_U_IO_NEED_GET_DATA) \
  X(UBLK_F_SUPPORT_ZERO_COPY) \
  X(UBLK_F_URING_CMD_COMP_IN_TASK) \
  X(UBLK_F_NEED_GET_DATA) \
  X(UBLK_F_USER_COPY) \
  X(UBLK_F_CMD_IOCTL_ENCODE) \
  X(UBLK_F_UNPRIVILEGED_DEV) \
  X(UBLK_IO_OP_READ) \
  X(UBLK_IO_OP_WRITE) \
  X(UBLK_IO_OP_FLUSH) \
  X(UBLK_IO_OP_DISCARD) \
  X(UBLK_IO_OP_WRITE_ZEROES) \
  X(UBLK_IO_F_FUA)
// clang-format on

namespace {
#define PEPITA_OURS(name) uint64_t{pepita::ublk::name},
#define PEPITA_NAME(name) #name,
constexpr std::array kOurs{PEPITA_UBLK_NAMES(PEPITA_OURS)};
constexpr std::array kNames{PEPITA_UBLK_NAMES(PEPITA_NAME)};
}  // namespace

#include <pepita_test/kernel_uapi.hpp>  // must follow kOurs: it defines the names as macros

namespace {
#define PEPITA_KERNEL(name) static_cast<uint64_t>(name),
constexpr std::array kKernel{PEPITA_UBLK_NAMES(PEPITA_KERNEL)};
}  // namespace

namespace pepita::ublk {
namespace {

// The crate's ABI asserts, as written there.
static_assert(sizeof(UblkCtrlCmd) == 32, "UblkCtrlCmd must be exactly 32 bytes");
static_assert(sizeof(UblkIoDesc) == 24, "UblkIoDesc must be exactly 24 bytes");
static_assert(sizeof(UblkIoCmd) == 16, "UblkIoCmd must be exactly 16 bytes");
static_assert(alignof(UblkCtrlCmd) >= 4 && alignof(UblkIoDesc) >= 4 && alignof(UblkIoCmd) >= 2);
static_assert(offsetof(UblkCtrlCmd, dev_id) == 0 && offsetof(UblkCtrlCmd, queue_id) == 4);
static_assert(offsetof(UblkCtrlCmd, len) == 6 && offsetof(UblkCtrlCmd, addr) == 8);
static_assert(offsetof(UblkIoDesc, op_flags) == 0 && offsetof(UblkIoDesc, nr_sectors) == 4);
static_assert(offsetof(UblkIoDesc, start_sector) == 8 && offsetof(UblkIoDesc, addr) == 16);
static_assert(offsetof(UblkIoCmd, q_id) == 0 && offsetof(UblkIoCmd, tag) == 2);
static_assert(offsetof(UblkIoCmd, result) == 4 && offsetof(UblkIoCmd, addr) == 8);
static_assert(std::is_standard_layout_v<UblkCtrlCmd> && std::is_trivially_copyable_v<UblkCtrlCmd>);
static_assert(std::is_standard_layout_v<UblkIoDesc> && std::is_trivially_copyable_v<UblkIoDesc>);
static_assert(std::is_standard_layout_v<UblkIoCmd> && std::is_trivially_copyable_v<UblkIoCmd>);
// The crate's module example, as written there.
static_assert(UblkCtrlCmd::make(0).dev_id == 0);
static_assert(UBLK_U_CMD_ADD_DEV == 0xc0207504u);

TEST(UblkUapi, EveryConstantEqualsTheKernelHeaders) {
  for (size_t i = 0; i < kNames.size(); ++i)
    EXPECT_EQ(kOurs[i], kKernel[i]) << kNames[i] << " differs from <linux/ublk_cmd.h>";
}

TEST(UblkUapi, CtrlCmdConstructorsMatchWhatTheServerSends) {
  int info = 0;
  UblkCtrlCmd cmd = UblkCtrlCmd::make(3);
  cmd.set_data(reinterpret_cast<uint64_t>(&info), sizeof info);
  cmd.set_extra_data(1234);
  const UblkCtrlCmd server = make_ctrl_cmd(3, &info, sizeof info, 1234);
  EXPECT_EQ(cmd.dev_id, server.dev_id);
  EXPECT_EQ(cmd.queue_id, server.queue_id);  // 0xffff: not for a queue
  EXPECT_EQ(cmd.len, server.len);
  EXPECT_EQ(cmd.addr, server.addr);
  EXPECT_EQ(cmd.data[0], 1234u);
  const UblkCtrlCmd affinity = UblkCtrlCmd::with_queue(3, 2);
  EXPECT_EQ(affinity.queue_id, 2);
  EXPECT_EQ(affinity.len, 0);
}

TEST(UblkUapi, IoDescAccessorsDecodeTheKernelsOpFlags) {
  UblkIoDesc desc = UblkIoDesc::make(UBLK_IO_OP_WRITE, 100, 8);
  desc.op_flags |= UBLK_IO_F_FUA;
  desc.set_addr(0x7000);
  EXPECT_TRUE(desc.is_write());
  EXPECT_FALSE(desc.is_read());
  EXPECT_FALSE(desc.is_flush());
  EXPECT_TRUE(desc.is_fua());
  EXPECT_EQ(desc.op(), UBLK_IO_OP_WRITE);
  EXPECT_EQ(desc.flags(), UBLK_IO_F_FUA);
  EXPECT_EQ(desc.byte_offset(), 100u * 512);
  EXPECT_EQ(desc.byte_len(), 8u * 512);
  EXPECT_EQ(desc.addr, 0x7000u);
  // The server's parser reads the same descriptor the same way.
  const ParsedIo io =
      parse_io_desc(desc, IoLimits{.capacity_sectors = 1024, .max_io_bytes = 65536});
  ASSERT_TRUE(io.ok()) << io.reason;
  EXPECT_EQ(io.op, blk_mq::Op::Write);
  EXPECT_EQ(io.sector, 100u);
  EXPECT_EQ(io.byte_length(), desc.byte_len());
  EXPECT_NE(io.flags & abi::blk_mq::flags::kFua, 0u);
}

TEST(UblkUapi, MalformedIoDescIsRefusedByTheParser) {
  const IoLimits limits{.capacity_sectors = 1024, .max_io_bytes = 65536};
  EXPECT_EQ(parse_io_desc(UblkIoDesc::make(UBLK_IO_OP_READ, 1020, 8), limits).neg_errno, -EIO);
  EXPECT_EQ(parse_io_desc(UblkIoDesc::make(UBLK_IO_OP_READ, 0, 0), limits).neg_errno, -EINVAL);
  EXPECT_EQ(parse_io_desc(UblkIoDesc::make(99, 0, 8), limits).neg_errno, -EOPNOTSUPP);
}

TEST(UblkUapi, IoCmdCarriesTagResultAndBuffer) {
  UblkIoCmd fetch = UblkIoCmd::make(1, 7);
  fetch.set_addr(0x9000);
  EXPECT_EQ(fetch.q_id, 1);
  EXPECT_EQ(fetch.tag, 7);
  EXPECT_EQ(fetch.addr, 0x9000u);
  EXPECT_TRUE(fetch.is_success());
  UblkIoCmd done = UblkIoCmd::completed(1, 7, 4096);
  EXPECT_TRUE(done.is_success());
  done.set_result(-EIO);
  EXPECT_FALSE(done.is_success());
  EXPECT_EQ(done.result, -EIO);
}

}  // namespace
}  // namespace pepita::ublk
