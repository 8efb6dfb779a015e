// ublk user recovery's state file and checks (recovery.hpp). The file is a small TOML table read
// with toml++ (as pool's job files are); every value is checked before a target is built from it,
// since it decides which file a new server opens and writes.
#include "pepita/ublk/recovery.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>

#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/process.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/ublk/ctrl.hpp"

namespace pepita::ublk {
namespace u = abi::ublk;

namespace {

// UBLK_S_DEV_FAIL_IO (Linux 6.13+, UBLK_F_USER_RECOVERY_FAIL_IO): also recoverable.
constexpr uint16_t kStateFailIo = 3;

std::string quoted(std::string_view text) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(text));
  return out.str();
}

// Reads an integer key of `table` into [lo, hi].
Result<int64_t> integer(const toml::table& table, std::string_view key, int64_t lo, int64_t hi,
                        std::string_view origin) {
  const toml::node* n = table.get(key);
  if (n == nullptr)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: key '{}' is missing; the file was not written by `pepita ublk add "
                    "--recoverable`, or was edited",
                    origin, key));
  const auto* v = n->as_integer();
  if (v == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: '{}' must be an integer", origin, key));
  if (v->get() < lo || v->get() > hi)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: '{}' is {}, outside {}..{}", origin, key, v->get(), lo, hi));
  return v->get();
}

Result<std::string> string(const toml::table& table, std::string_view key,
                           std::string_view origin) {
  const toml::node* n = table.get(key);
  if (n == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: key '{}' is missing", origin, key));
  const auto* v = n->as_string();
  if (v == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: '{}' must be a string", origin, key));
  return v->get();
}

Result<bool> boolean(const toml::table& table, std::string_view key, std::string_view origin) {
  const toml::node* n = table.get(key);
  if (n == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: key '{}' is missing", origin, key));
  const auto* v = n->as_boolean();
  if (v == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: '{}' must be true or false", origin, key));
  return v->get();
}

}  // namespace

bool target_loses_data_on_crash(blk_mq::TargetKind kind) noexcept {
  return kind == blk_mq::TargetKind::Mem || kind == blk_mq::TargetKind::Zram;
}

std::string state_file_path(std::string_view dir, uint32_t dev_id) {
  return std::string(dir).append("/").append(std::to_string(dev_id)).append(".toml");
}

std::string format_state(const DeviceState& s) {
  std::ostringstream out;
  out << "# pepita ublk device state: `pepita ublk recover " << s.dev_id
      << "` reads it to serve the device again\n"
      << "# after its server died. Written by `pepita ublk add --recoverable`; removed when the "
         "device is stopped.\n"
      << "version = " << kStateVersion << "\n"
      << "dev_id = " << s.dev_id << "\n"
      << "queues = " << s.queues << "\n"
      << "depth = " << s.depth << "\n"
      << "max_io_bytes = " << s.max_io_bytes << "\n"
      << "flags = " << static_cast<int64_t>(s.flags & 0x7fffffffffffffffull) << "\n"
      << "recovery = " << quoted(recovery_name(recovery_of(s.flags))) << "\n"
      << "server_pid = " << s.server_pid << "\n"
      << "\n[target]\n"
      << "kind = " << quoted(blk_mq::target_name(s.target.kind)) << "\n"
      << "size = " << s.target.size_bytes << "\n"
      << "path = " << quoted(s.target.path) << "\n"
      << "direct = " << (s.target.direct ? "true" : "false") << "\n"
      << "compression = " << quoted(s.target.compression) << "\n";
  if (target_loses_data_on_crash(s.target.kind))
    out << "# a " << blk_mq::target_name(s.target.kind)
        << " target keeps its data in the server: a recovered device starts empty\n";
  return out.str();
}

Result<DeviceState> parse_state(std::string_view text, std::string_view origin) {
  toml::table doc;
  try {
    doc = toml::parse(text, std::string(origin));
  } catch (const toml::parse_error& e) {
    return fail(ErrorCode::InvalidArgument,
                fmt("{}:{}:{}: not a valid state file: {}", origin, e.source().begin.line,
                    e.source().begin.column, e.description()));
  }
  const int64_t version =
      PEPITA_TRY(integer(doc, "version", 0, std::numeric_limits<int64_t>::max(), origin));
  if (version != kStateVersion)
    return fail(ErrorCode::Unsupported,
                fmt("{}: state file version {}, this pepita reads version {}; recover the device "
                    "with the pepita that added it",
                    origin, version, kStateVersion));
  DeviceState s;
  s.dev_id = static_cast<uint32_t>(PEPITA_TRY(integer(doc, "dev_id", 0, UINT32_MAX - 1, origin)));
  s.queues = static_cast<uint16_t>(PEPITA_TRY(integer(doc, "queues", 1, u::MAX_NR_QUEUES, origin)));
  s.depth = static_cast<uint16_t>(PEPITA_TRY(integer(doc, "depth", 1, u::MAX_QUEUE_DEPTH, origin)));
  s.max_io_bytes = static_cast<uint32_t>(
      PEPITA_TRY(integer(doc, "max_io_bytes", 4096, int64_t{1} << u::IO_BUF_BITS, origin)));
  s.flags = static_cast<uint64_t>(
      PEPITA_TRY(integer(doc, "flags", 0, std::numeric_limits<int64_t>::max(), origin)));
  s.server_pid = static_cast<int32_t>(PEPITA_TRY(integer(doc, "server_pid", 0, INT32_MAX, origin)));
  if ((s.flags & u::F_USER_RECOVERY) == 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: the flags do not include UBLK_F_USER_RECOVERY: this device was not added "
                    "with --recoverable",
                    origin));

  const toml::table* t = doc.get_as<toml::table>("target");
  if (t == nullptr)
    return fail(ErrorCode::InvalidArgument, fmt("{}: the [target] table is missing", origin));
  const std::string where = std::string(origin).append(" [target]");
  const std::string kind = PEPITA_TRY(string(*t, "kind", where));
  auto parsed_kind = blk_mq::parse_target_kind(kind);
  if (!parsed_kind) return std::unexpected(std::move(parsed_kind.error()).with_context(where));
  s.target.kind = *parsed_kind;
  s.target.size_bytes = static_cast<uint64_t>(
      PEPITA_TRY(integer(*t, "size", 0, std::numeric_limits<int64_t>::max(), where)));
  s.target.path = PEPITA_TRY(string(*t, "path", where));
  s.target.direct = PEPITA_TRY(boolean(*t, "direct", where));
  s.target.compression = PEPITA_TRY(string(*t, "compression", where));
  s.target.queues = s.queues;
  s.target.queue_depth = s.depth;
  if (auto valid = blk_mq::validate_target(s.target); !valid)
    return std::unexpected(std::move(valid.error()).with_context(where));
  DeviceOptions shape;
  shape.queues = s.queues;
  shape.depth = s.depth;
  shape.max_io_bytes = s.max_io_bytes;
  if (auto valid = validate(shape); !valid)
    return std::unexpected(std::move(valid.error()).with_context(origin));
  return s;
}

Result<void> save_state(std::string_view dir, const DeviceState& state) {
  std::error_code ec;
  std::filesystem::create_directories(std::string(dir), ec);
  if (ec)
    return fail(ErrorCode::PermissionDenied,
                fmt("cannot create the ublk state directory {}: {}; pass another with "
                    "--state-dir",
                    dir, ec.message()),
                ec.value());
  const std::string path = state_file_path(dir, state.dev_id);
  const std::string temp = std::string(path).append(".tmp");
  const std::string text = format_state(state);
  {
    const int fd = sys::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fail_errno(fd, fmt("write ublk state file {}", temp));
    UniqueFd file(fd);
    if (sys::write_full(file.get(), text.data(), text.size()) !=
            static_cast<int64_t>(text.size()) ||
        sys::fsync(file.get()) != 0) {
      (void)std::remove(temp.c_str());
      return fail(ErrorCode::Io,
                  fmt("write ublk state file {}: short write or fsync failed", temp));
    }
  }
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    (void)std::remove(temp.c_str());
    return fail(ErrorCode::Io, fmt("rename {} to {}: {}", temp, path, ec.message()), ec.value());
  }
  return {};
}

Result<DeviceState> load_state(std::string_view dir, uint32_t dev_id) {
  const std::string path = state_file_path(dir, dev_id);
  const int fd = sys::open(path.c_str(), O_RDONLY);
  if (fd == -ENOENT)
    return fail(ErrorCode::NotFound,
                fmt("no state file {} for ublk device {}: it was not added with `pepita ublk add "
                    "--recoverable`, or under another --state-dir (give the same one)",
                    path, dev_id),
                ENOENT);
  if (fd < 0) return fail_errno(fd, fmt("open ublk state file {}", path));
  UniqueFd file(fd);
  std::string text;
  char buf[4096];
  for (;;) {
    const int64_t n = sys::read(file.get(), buf, sizeof buf);
    if (n < 0) return fail_errno(static_cast<int>(n), fmt("read ublk state file {}", path));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (64u << 10))
      return fail(ErrorCode::InvalidArgument,
                  fmt("{}: larger than 64 KiB, not a ublk state file", path));
  }
  DeviceState state = PEPITA_TRY(parse_state(text, path));
  if (state.dev_id != dev_id)
    return fail(ErrorCode::InvalidArgument,
                fmt("{} describes ublk device {}, not {}: the file was renamed or copied", path,
                    state.dev_id, dev_id));
  return state;
}

Result<void> remove_state(std::string_view dir, uint32_t dev_id) {
  const std::string path = state_file_path(dir, dev_id);
  if (::unlink(path.c_str()) == 0 || !std::filesystem::exists(path)) return {};
  return fail(ErrorCode::PermissionDenied, fmt("cannot remove ublk state file {}", path));
}

bool server_alive(pid_t pid) noexcept {
  if (pid <= 0) return false;
  if (sys::kill(pid, 0) == -ESRCH) return false;
  // A zombie has released its files (and so its io_uring and /dev/ublkcN): it serves nothing.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = sys::open(path, O_RDONLY);
  if (fd < 0) return true;  // no /proc: trust kill()
  UniqueFd file(fd);
  char stat[512];
  const int64_t n = sys::read(file.get(), stat, sizeof stat - 1);
  if (n <= 0) return true;
  stat[n] = '\0';
  // "PID (COMM) S ...": the state follows the last ')' (COMM may hold ')').
  const char* close = std::strrchr(stat, ')');
  if (close == nullptr || close[1] == '\0' || close[2] == '\0') return true;
  return close[2] != 'Z' && close[2] != 'X';
}

Result<void> check_recoverable(const u::CtrlDevInfo& info, bool alive) {
  const uint32_t id = info.dev_id;
  if ((info.flags & u::F_USER_RECOVERY) == 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("ublk device {} was created without user recovery (UBLK_F_USER_RECOVERY; "
                    "`pepita ublk add --recoverable`): a new server cannot take it over; delete it "
                    "with `pepita ublk del {}`",
                    id, id));
  switch (info.state) {
    case u::S_DEV_QUIESCED:
    case kStateFailIo: return {};
    case u::S_DEV_LIVE:
      if (!alive) return {};  // the kernel quiesces it once the dead server's ring is gone
      return fail(KernelError::UblkDeviceBusy,
                  fmt("ublk device {} is live and served by pid {}: it is not quiesced, so there "
                      "is nothing to recover; recovery replaces a server that died",
                      id, info.ublksrv_pid),
                  EBUSY);
    case u::S_DEV_DEAD:
      return fail(ErrorCode::InvalidArgument,
                  fmt("ublk device {} is not started (state dead): there is no server to replace; "
                      "delete it with `pepita ublk del {}`",
                      id, id));
    default:
      return fail(
          ErrorCode::Unsupported,
          fmt("ublk device {} is in state {}, which this pepita does not know", id, info.state));
  }
}

}  // namespace pepita::ublk
