#pragma once
// ublk user recovery (UBLK_F_USER_RECOVERY, Documentation/block/ublk.rst "User recovery"): the
// state file a recoverable device's server leaves under /run/pepita/ublk so that a new server can
// rebuild its target after a crash, and the pure checks a device must pass before
// START_USER_RECOVERY. Server::recover (server.hpp) runs the recovery itself.
//
//   DeviceState state = PEPITA_TRY(load_state(kStateDir, id));     // written by `ublk add`
//   PEPITA_TRY_VOID(check_recoverable(PEPITA_TRY(control.get_dev_info(id)), server_alive(pid)));
//   auto server = PEPITA_TRY(Server::recover(id, PEPITA_TRY(make_target(state.target)), {}));

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pepita/abi/ublk.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/error.hpp"

namespace pepita::ublk {

/// Where `pepita ublk add --recoverable` records its devices (tmpfs: gone after a reboot, as the
/// devices are).
inline constexpr const char* kStateDir = "/run/pepita/ublk";
/// The state file format's version; load_state refuses any other.
inline constexpr int64_t kStateVersion = 1;

/// What a new server needs to serve a recoverable device again: the device's shape as the
/// kernel granted it and the target behind it. mem and zram targets keep their data in the
/// server's memory: after a crash a recovered device of those kinds starts empty (zeros); only
/// the file target (and null, which stores nothing) comes back with its data.
struct DeviceState {
  uint32_t dev_id = 0;
  uint16_t queues = 1;
  uint16_t depth = 1;
  uint32_t max_io_bytes = 0;
  uint64_t flags = 0;         // abi::ublk::F_* of the device (GET_DEV_INFO)
  int32_t server_pid = 0;     // the server that wrote the file
  blk_mq::TargetSpec target;  // kind, size, path, direct, compression; queues/depth as above
};

/// Whether a target of this kind loses its data with its server (mem, zram).
bool target_loses_data_on_crash(blk_mq::TargetKind kind) noexcept;

/// "DIR/ID.toml".
std::string state_file_path(std::string_view dir, uint32_t dev_id);

/// The TOML text of `state` (version, device shape, [target] table).
std::string format_state(const DeviceState& state);
/// Parses format_state()'s text. InvalidArgument naming `origin` (a file name, for messages) and
/// the key at fault for malformed TOML, a missing or mistyped key, a value out of range (queues,
/// depth, max I/O as validate() checks them; a target validate_target() refuses); Unsupported
/// for another version.
Result<DeviceState> parse_state(std::string_view text, std::string_view origin = "ublk state");

/// Writes state_file_path(dir, state.dev_id) atomically (a temporary file renamed over it),
/// creating `dir` (mode 0755) when missing.
Result<void> save_state(std::string_view dir, const DeviceState& state);
/// Reads and parses the state file of `dev_id`. NotFound, saying the device was not added with
/// --recoverable (or under another state directory), when the file does not exist.
Result<DeviceState> load_state(std::string_view dir, uint32_t dev_id);
/// Removes the state file of `dev_id`; a missing file is not an error.
Result<void> remove_state(std::string_view dir, uint32_t dev_id);

/// Whether process `pid` still runs (neither gone nor a zombie).
bool server_alive(pid_t pid) noexcept;

/// Whether a device (GET_DEV_INFO) may be recovered, `server_alive` saying whether its
/// ublksrv_pid still runs. Ok for QUIESCED (or FAIL_IO on newer kernels), and for LIVE with a dead
/// server (the kernel quiesces it once the server's io_uring is torn down: wait and look again).
/// InvalidArgument for a device created without UBLK_F_USER_RECOVERY or not started (DEAD);
/// UblkDeviceBusy for a LIVE device whose server runs.
Result<void> check_recoverable(const abi::ublk::CtrlDevInfo& info, bool server_alive);

}  // namespace pepita::ublk
