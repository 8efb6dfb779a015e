// ublk control commands as IORING_OP_URING_CMD on /dev/ublk-control (see ctrl.hpp). The kernel
// side is drivers/block/ublk_drv.c: ublk_ctrl_uring_cmd() needs a SQE128 ring and reads our
// ublksrv_ctrl_cmd from the SQE's command area.
#include "pepita/ublk/ctrl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "pepita/core/sys/fd.hpp"

namespace pepita::ublk {
namespace u = abi::ublk;

std::string char_device_path(uint32_t dev_id) { return "/dev/ublkc" + std::to_string(dev_id); }
std::string block_device_path(uint32_t dev_id) { return "/dev/ublkb" + std::to_string(dev_id); }

Result<void> validate(const DeviceOptions& o) {
  if (o.queues == 0 || o.queues > u::MAX_NR_QUEUES)
    return fail(ErrorCode::InvalidArgument, "ublk: queues must be 1.." +
                                                std::to_string(u::MAX_NR_QUEUES) + ", got " +
                                                std::to_string(o.queues));
  if (o.depth == 0 || o.depth > u::MAX_QUEUE_DEPTH)
    return fail(ErrorCode::InvalidArgument, "ublk: depth must be 1.." +
                                                std::to_string(u::MAX_QUEUE_DEPTH) + ", got " +
                                                std::to_string(o.depth));
  if (o.max_io_bytes < 4096 || o.max_io_bytes > (1u << u::IO_BUF_BITS) ||
      o.max_io_bytes % 4096 != 0)
    return fail(ErrorCode::InvalidArgument,
                "ublk: max I/O size must be a multiple of 4096 in 4 KiB..32 MiB, got " +
                    std::to_string(o.max_io_bytes));
  // Zoned devices and zero copy need server support this implementation lacks; recovery is
  // asked for through DeviceOptions::recovery (or these same two flags).
  constexpr uint64_t kAllowed = u::F_USER_COPY | u::F_URING_CMD_COMP_IN_TASK | u::F_USER_RECOVERY |
                                u::F_USER_RECOVERY_REISSUE;
  if ((o.extra_flags & ~kAllowed) != 0)
    return fail(ErrorCode::InvalidArgument,
                "ublk: only UBLK_F_USER_COPY, UBLK_F_URING_CMD_COMP_IN_TASK and the user recovery "
                "flags may be added to the device flags");
  const uint64_t flags = o.extra_flags | recovery_flags(o.recovery);
  if ((flags & u::F_USER_RECOVERY_REISSUE) != 0 && (flags & u::F_USER_RECOVERY) == 0)
    return fail(ErrorCode::InvalidArgument,
                "ublk: UBLK_F_USER_RECOVERY_REISSUE needs UBLK_F_USER_RECOVERY (reissue is a "
                "kind of recovery: ask for Recovery::Reissue, or --recoverable --reissue)");
  return {};
}

uint64_t recovery_flags(Recovery recovery) noexcept {
  switch (recovery) {
    case Recovery::Off: return 0;
    case Recovery::On: return u::F_USER_RECOVERY;
    case Recovery::Reissue: return u::F_USER_RECOVERY | u::F_USER_RECOVERY_REISSUE;
  }
  return 0;
}

Recovery recovery_of(uint64_t flags) noexcept {
  if ((flags & u::F_USER_RECOVERY) == 0) return Recovery::Off;
  return (flags & u::F_USER_RECOVERY_REISSUE) != 0 ? Recovery::Reissue : Recovery::On;
}

const char* recovery_name(Recovery recovery) noexcept {
  switch (recovery) {
    case Recovery::Off: return "off";
    case Recovery::On: return "on";
    case Recovery::Reissue: return "reissue";
  }
  return "off";
}

u::CtrlDevInfo make_dev_info(const DeviceOptions& o) noexcept {
  u::CtrlDevInfo info{};
  info.nr_hw_queues = o.queues;
  info.queue_depth = o.depth;
  info.max_io_buf_bytes = o.max_io_bytes;
  info.dev_id = o.dev_id;  // must equal the command header's dev_id (ublk_ctrl_add_dev checks)
  info.ublksrv_pid = -1;
  info.flags = u::F_CMD_IOCTL_ENCODE | o.extra_flags | recovery_flags(o.recovery);
  return info;
}

u::Params make_params(const blk_mq::DeviceInfo& d, const u::CtrlDevInfo& info) noexcept {
  namespace f = blk_mq::features;
  u::Params p{};
  p.len = sizeof(u::Params);
  p.types = u::PARAM_TYPE_BASIC;
  const auto shift = [](uint32_t bytes) {
    return static_cast<uint8_t>(std::countr_zero(std::max<uint32_t>(bytes, 512)));
  };
  p.basic.logical_bs_shift = shift(d.logical_block_size);
  p.basic.physical_bs_shift = std::max(p.basic.logical_bs_shift, shift(d.physical_block_size));
  p.basic.io_min_shift = p.basic.logical_bs_shift;
  p.basic.io_opt_shift = p.basic.physical_bs_shift;
  // The kernel refuses max_sectors above its (possibly lowered) max_io_buf_bytes.
  p.basic.max_sectors = std::min(d.max_sectors, info.max_io_buf_bytes >> 9);
  p.basic.dev_sectors = d.capacity_sectors;
  if ((d.features & f::kFlush) != 0) p.basic.attrs |= u::ATTR_VOLATILE_CACHE;
  if ((d.features & f::kFua) != 0) p.basic.attrs |= u::ATTR_FUA;
  if ((d.features & f::kReadOnly) != 0) p.basic.attrs |= u::ATTR_READ_ONLY;
  if ((d.features & (f::kDiscard | f::kWriteZeroes)) != 0) {
    p.types |= u::PARAM_TYPE_DISCARD;
    // ublk supports single-segment discards only; granularity must be non-zero.
    p.discard.discard_granularity = std::max<uint32_t>(d.discard_granularity, d.logical_block_size);
    p.discard.max_discard_segments = 1;
    // BlockDevice refuses any request longer than max_sectors, discards included.
    if ((d.features & f::kDiscard) != 0) p.discard.max_discard_sectors = d.max_sectors;
    if ((d.features & f::kWriteZeroes) != 0) p.discard.max_write_zeroes_sectors = d.max_sectors;
  }
  return p;
}

u::CtrlCmd make_ctrl_cmd(uint32_t dev_id, const void* buffer, uint16_t length,
                         uint64_t data0) noexcept {
  u::CtrlCmd cmd{};
  cmd.dev_id = dev_id;
  cmd.queue_id = kNoQueue;
  cmd.len = length;
  // SAFETY: only the address travels; the kernel copies to/from it while the command runs, and
  // every caller keeps `buffer` alive until the command's CQE arrived (Control::run is
  // synchronous).
  cmd.addr = reinterpret_cast<uintptr_t>(buffer);
  cmd.data[0] = data0;
  return cmd;
}

void prep_uring_cmd(abi::Sqe128& sqe, int fd, uint32_t cmd_op, const void* payload,
                    uint32_t payload_size, uint64_t user_data) noexcept {
  std::memset(&sqe, 0, sizeof sqe);
  sqe.opcode = static_cast<uint8_t>(abi::Op::UringCmd);
  sqe.fd = fd;
  sqe.cmd_op = cmd_op;
  sqe.user_data = user_data;
  std::memcpy(sqe.cmd, payload, std::min<uint32_t>(payload_size, sizeof sqe.cmd));
}

void prep_ctrl_cmd(abi::Sqe128& sqe, int control_fd, uint32_t cmd_op, const u::CtrlCmd& cmd,
                   uint64_t user_data) noexcept {
  prep_uring_cmd(sqe, control_fd, cmd_op, &cmd, sizeof cmd, user_data);
}

void prep_io_cmd(abi::Sqe128& sqe, int char_fd, uint32_t cmd_op, const u::IoCmd& cmd,
                 uint64_t user_data) noexcept {
  prep_uring_cmd(sqe, char_fd, cmd_op, &cmd, sizeof cmd, user_data);
}

Result<Control> Control::open(const char* path) {
  const int fd = pepita::sys::open(path, O_RDWR);  // O_CLOEXEC added
  if (fd < 0) {
    const int err = -fd;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      return fail(ErrorCode::Unsupported,
                  std::string(path) +
                      " missing: this kernel has no ublk driver loaded; load it with `modprobe "
                      "ublk_drv` (needs CONFIG_BLK_DEV_UBLK, Linux 6.0+)",
                  err);
    if (err == EACCES || err == EPERM)
      return fail(ErrorCode::PermissionDenied,
                  std::string("open ") + path + ": ublk devices need root (CAP_SYS_ADMIN)", err);
    return fail_errno(err, std::string("open ") + path);
  }
  UniqueFd owned(fd);
  auto ring = io_uring::Ring::create({.entries = 4, .sqe128 = true});
  if (!ring) return std::unexpected(std::move(ring.error()).with_context("ublk control ring"));
  return Control(std::move(owned), std::move(*ring));
}

Result<int> Control::run(uint32_t cmd_op, const u::CtrlCmd& cmd, const char* what,
                         uint32_t dev_id) {
  abi::Sqe128* sqe = ring_.get_sqe128();
  if (sqe == nullptr) return fail(ErrorCode::Internal, "ublk control ring: no free SQE");
  prep_ctrl_cmd(*sqe, fd_.get(), cmd_op, cmd, cmd_op);
  PEPITA_TRY(ring_.submit_and_wait(1));
  const abi::Cqe* cqe = ring_.peek_cqe();
  if (cqe == nullptr) return fail(ErrorCode::Internal, "ublk control ring: no completion");
  const int res = cqe->res;
  ring_.cqe_seen();
  if (res >= 0) return res;
  return std::unexpected(control_error(res, what, dev_id));
}

Error control_error(int res, std::string_view what, uint32_t dev_id) {
  std::string op = std::string("ublk ").append(what);
  if (dev_id != kAnyDevice) op += " (device " + std::to_string(dev_id) + ")";
  const int err = res < 0 ? -res : res;
  switch (err) {
    case EOPNOTSUPP:
      return Error(ErrorCode::Unsupported,
                   op + ": the kernel refused the command (EOPNOTSUPP); it may predate "
                        "ioctl-encoded ublk commands (needs Linux 6.0+)",
                   err);
    case ENODEV:
    case ENOENT:
      return Error(KernelError::UblkDeviceNotFound,
                   op + ": no such ublk device; `pepita ublk list` shows them", err);
    case EBUSY:
      return Error(KernelError::UblkDeviceBusy,
                   op + ": the device is in use (mounted, open, or its server is still running); "
                        "close it and retry",
                   err);
    case EPERM:
    case EACCES:
      return Error(KernelError::UblkNotPermitted,
                   op + ": not permitted; ublk control needs root (CAP_SYS_ADMIN), or an "
                        "unprivileged device (UBLK_F_UNPRIVILEGED_DEV) owned by this user",
                   err);
    default: return Error::from_errno(res, op);
  }
}

Result<u::CtrlDevInfo> Control::add_dev(const DeviceOptions& options) {
  PEPITA_TRY_VOID(validate(options));
  u::CtrlDevInfo info = make_dev_info(options);
  const u::CtrlCmd cmd = make_ctrl_cmd(options.dev_id, &info, sizeof info);
  PEPITA_TRY(run(u::U_CMD_ADD_DEV, cmd, "ADD_DEV", options.dev_id));
  return info;  // the kernel copied the granted values (dev_id, queues, buffer size) back
}

Result<void> Control::set_params(uint32_t dev_id, const u::Params& params) {
  u::Params copy = params;
  copy.len = sizeof copy;
  PEPITA_TRY(
      run(u::U_CMD_SET_PARAMS, make_ctrl_cmd(dev_id, &copy, sizeof copy), "SET_PARAMS", dev_id));
  return {};
}

Result<u::Params> Control::get_params(uint32_t dev_id) {
  u::Params params{};
  params.len = sizeof params;  // the kernel reads the header to learn how much we understand
  PEPITA_TRY(run(u::U_CMD_GET_PARAMS, make_ctrl_cmd(dev_id, &params, sizeof params), "GET_PARAMS",
                 dev_id));
  return params;
}

Result<u::CtrlDevInfo> Control::get_dev_info(uint32_t dev_id) {
  u::CtrlDevInfo info{};
  PEPITA_TRY(run(u::U_CMD_GET_DEV_INFO, make_ctrl_cmd(dev_id, &info, sizeof info), "GET_DEV_INFO",
                 dev_id));
  return info;
}

Result<void> Control::start_dev(uint32_t dev_id, pid_t server_pid) {
  PEPITA_TRY(run(u::U_CMD_START_DEV,
                 make_ctrl_cmd(dev_id, nullptr, 0, static_cast<uint64_t>(server_pid)), "START_DEV",
                 dev_id));
  return {};
}

Result<void> Control::stop_dev(uint32_t dev_id) {
  PEPITA_TRY(run(u::U_CMD_STOP_DEV, make_ctrl_cmd(dev_id, nullptr, 0), "STOP_DEV", dev_id));
  return {};
}

Result<void> Control::del_dev(uint32_t dev_id) {
  PEPITA_TRY(run(u::U_CMD_DEL_DEV, make_ctrl_cmd(dev_id, nullptr, 0), "DEL_DEV", dev_id));
  return {};
}

Result<void> Control::start_user_recovery(uint32_t dev_id) {
  PEPITA_TRY(run(u::U_CMD_START_USER_RECOVERY, make_ctrl_cmd(dev_id, nullptr, 0),
                 "START_USER_RECOVERY", dev_id));
  return {};
}

Result<void> Control::end_user_recovery(uint32_t dev_id, pid_t server_pid) {
  PEPITA_TRY(run(u::U_CMD_END_USER_RECOVERY,
                 make_ctrl_cmd(dev_id, nullptr, 0, static_cast<uint64_t>(server_pid)),
                 "END_USER_RECOVERY", dev_id));
  return {};
}

}  // namespace pepita::ublk
