#pragma once
// ublk control path: the commands on /dev/ublk-control (ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV,
// DEL_DEV, GET_DEV_INFO, GET_PARAMS), each sent as an IORING_OP_URING_CMD with the ioctl-encoded
// opcode (UBLK_F_CMD_IOCTL_ENCODE), as Documentation/block/ublk.rst and ublksrv describe. The
// encoders are pure functions, checked on the host against linux/ublk_cmd.h.
//
//   auto ctrl = PEPITA_TRY(Control::open());
//   abi::ublk::CtrlDevInfo info = PEPITA_TRY(ctrl.add_dev({.queues = 1, .depth = 64}));
//   PEPITA_TRY_VOID(ctrl.set_params(info.dev_id, make_params(disk.info(), info)));
//   ... start the queue threads (FETCH_REQ every tag), then ctrl.start_dev(info.dev_id, getpid())
//   ... ctrl.stop_dev(id); join queues; close /dev/ublkcN; ctrl.del_dev(id);

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pepita/abi/io_uring.hpp"
#include "pepita/abi/ublk.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::ublk {

inline constexpr const char* kControlPath = "/dev/ublk-control";
/// dev_id / queue_id values meaning "none": ADD_DEV with kAnyDevice lets the kernel pick the id.
inline constexpr uint32_t kAnyDevice = 0xffffffffu;
inline constexpr uint16_t kNoQueue = 0xffff;

/// "/dev/ublkcN" (the server's char device) and "/dev/ublkbN" (the block device users see).
std::string char_device_path(uint32_t dev_id);
std::string block_device_path(uint32_t dev_id);

/// What happens to a device whose server dies (Documentation/block/ublk.rst, "User recovery").
///   Off:     the kernel stops the device: /dev/ublkbN goes away, its I/O fails (the default).
///   On:      UBLK_F_USER_RECOVERY: the device stays (state QUIESCED) with new I/O queued until a
///            new server recovers it (Server::recover); requests the dead server held fail (EIO).
///   Reissue: UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE: as On, and the requests the
///            dead server held are issued again to the new one (writes may reach the target
///            twice: right for idempotent targets such as a file; what a mounted filesystem needs
///            to go on without an I/O error).
enum class Recovery : uint8_t { Off, On, Reissue };

/// The F_* flags of `recovery`: 0, F_USER_RECOVERY, or F_USER_RECOVERY | F_USER_RECOVERY_REISSUE.
uint64_t recovery_flags(Recovery recovery) noexcept;
/// The Recovery a device's flags ask for (GET_DEV_INFO): REISSUE without USER_RECOVERY is Off, as
/// the kernel treats it.
Recovery recovery_of(uint64_t flags) noexcept;
/// "off", "on", "reissue".
const char* recovery_name(Recovery recovery) noexcept;

/// What ADD_DEV asks for. The kernel may lower queues (to its CPU count) and max_io_bytes; the
/// CtrlDevInfo it returns is what the device really has.
struct DeviceOptions {
  uint32_t dev_id = kAnyDevice;
  uint16_t queues = 1;
  uint16_t depth = 128;                // tags per queue, 1..abi::ublk::MAX_QUEUE_DEPTH
  uint32_t max_io_bytes = 512u << 10;  // per-tag buffer; requests are split to fit it
  uint64_t extra_flags = 0;            // abi::ublk::F_* besides F_CMD_IOCTL_ENCODE
  Recovery recovery = Recovery::Off;   // adds recovery_flags(recovery) to the device's flags
};

/// Checks options before anything reaches the kernel: InvalidArgument names the bad field.
Result<void> validate(const DeviceOptions& options);

/// The ublksrv_ctrl_dev_info ADD_DEV sends (F_CMD_IOCTL_ENCODE always set, and the recovery
/// flags of options.recovery).
abi::ublk::CtrlDevInfo make_dev_info(const DeviceOptions& options) noexcept;

/// SET_PARAMS content for a device: basic (sizes, max_sectors clamped to the kernel's
/// max_io_buf_bytes, volatile cache/FUA when the target has them) and discard/write-zeroes when
/// the target serves them.
abi::ublk::Params make_params(const blk_mq::DeviceInfo& device,
                              const abi::ublk::CtrlDevInfo& info) noexcept;

/// The 32-byte command area of a control command.
abi::ublk::CtrlCmd make_ctrl_cmd(uint32_t dev_id, const void* buffer, uint16_t length,
                                 uint64_t data0 = 0) noexcept;

/// Fills a whole 128-byte SQE as IORING_OP_URING_CMD: `cmd_op` in the cmd_op field, `payload`
/// copied to the start of the command area, everything else zero.
void prep_uring_cmd(abi::Sqe128& sqe, int fd, uint32_t cmd_op, const void* payload,
                    uint32_t payload_size, uint64_t user_data) noexcept;
void prep_ctrl_cmd(abi::Sqe128& sqe, int control_fd, uint32_t cmd_op, const abi::ublk::CtrlCmd& cmd,
                   uint64_t user_data) noexcept;
void prep_io_cmd(abi::Sqe128& sqe, int char_fd, uint32_t cmd_op, const abi::ublk::IoCmd& cmd,
                 uint64_t user_data) noexcept;

/// An open /dev/ublk-control and the small SQE128 ring its commands go through. Commands are
/// synchronous (submit, wait for the one CQE). Not thread-safe; one per thread that controls.
/// The Error for a control command (`what`, e.g. "del_dev") that the kernel failed with the
/// negative errno `res`, naming the device unless dev_id is kAnyDevice. Uses the crate's
/// KernelError cases: ENODEV/ENOENT -> UblkDeviceNotFound, EBUSY -> UblkDeviceBusy (retriable),
/// EPERM/EACCES -> UblkNotPermitted; EOPNOTSUPP -> Unsupported; anything else by errno.
Error control_error(int res, std::string_view what, uint32_t dev_id);

class Control {
 public:
  /// Unsupported, saying to load ublk_drv, when /dev/ublk-control is missing; PermissionDenied
  /// without CAP_SYS_ADMIN; Unsupported when io_uring lacks URING_CMD (Linux < 6.0).
  static Result<Control> open(const char* path = kControlPath);

  /// Creates a device (state DEAD until START_DEV) and returns what the kernel granted.
  Result<abi::ublk::CtrlDevInfo> add_dev(const DeviceOptions& options);
  Result<void> set_params(uint32_t dev_id, const abi::ublk::Params& params);
  Result<abi::ublk::Params> get_params(uint32_t dev_id);
  Result<abi::ublk::CtrlDevInfo> get_dev_info(uint32_t dev_id);
  /// Blocks until every queue has sent FETCH_REQ for all its tags, then adds /dev/ublkbN.
  Result<void> start_dev(uint32_t dev_id, pid_t server_pid);
  /// Removes /dev/ublkbN; in-flight FETCH commands complete with UBLK_IO_RES_ABORT.
  Result<void> stop_dev(uint32_t dev_id);
  /// Forgets the device; blocks until /dev/ublkcN is closed by every server.
  Result<void> del_dev(uint32_t dev_id);
  /// START_USER_RECOVERY: allowed once the dead server's /dev/ublkcN is closed and the device is
  /// QUIESCED (UblkDeviceBusy before that, InvalidArgument for a device without
  /// UBLK_F_USER_RECOVERY). Next: open /dev/ublkcN, FETCH_REQ every tag, end_user_recovery().
  Result<void> start_user_recovery(uint32_t dev_id);
  /// END_USER_RECOVERY: blocks until every queue sent FETCH_REQ for all its tags, then records
  /// `server_pid` and unquiesces the device (state LIVE again; queued I/O flows).
  Result<void> end_user_recovery(uint32_t dev_id, pid_t server_pid);

 private:
  Control(UniqueFd fd, io_uring::Ring ring) : fd_(std::move(fd)), ring_(std::move(ring)) {}
  Result<int> run(uint32_t cmd_op, const abi::ublk::CtrlCmd& cmd, const char* what,
                  uint32_t dev_id);

  // The ring goes first on destruction (declared last), so no command can be in flight on fd_.
  UniqueFd fd_;
  io_uring::Ring ring_;
};

}  // namespace pepita::ublk
