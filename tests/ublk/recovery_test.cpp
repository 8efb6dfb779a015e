// ublk user recovery without the driver: the state file `pepita ublk add --recoverable` leaves
// (round trip, and every malformed file a clear error), the recovery flags and commands against
// the kernel's linux/ublk_cmd.h (6.12), and the pure decision whether a device may be recovered.
// The recovery itself (kill -9 under a mounted ext4, `pepita ublk recover`) is proven in the Linux
// guest (tests/ublk/guest/e2e.sh) and by UblkDevice.ServerKilledThenRecoveredKeepsTheFileData.
#include "pepita/ublk/recovery.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <pepita_test/kernel_uapi.hpp>
#include <string>
#include <vector>

#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "pepita/ublk/ctrl.hpp"
#include "pepita/ublk/server.hpp"
#include "pepita/ublk/targets.hpp"

namespace pepita::ublk {
namespace {
namespace u = abi::ublk;

DeviceState file_state() {
  DeviceState s;
  s.dev_id = 7;
  s.queues = 2;
  s.depth = 16;
  s.max_io_bytes = 512u << 10;
  s.flags =
      u::F_CMD_IOCTL_ENCODE | u::F_USER_RECOVERY | u::F_USER_RECOVERY_REISSUE | u::F_USER_COPY;
  s.server_pid = 4242;
  s.target.kind = TargetKind::File;
  s.target.path = "/var/tmp/a \"quoted\" dir/disk.img";
  s.target.size_bytes = 48u << 20;
  s.target.direct = true;
  s.target.queues = 2;
  s.target.queue_depth = 16;
  return s;
}

void expect_same(const DeviceState& a, const DeviceState& b) {
  EXPECT_EQ(a.dev_id, b.dev_id);
  EXPECT_EQ(a.queues, b.queues);
  EXPECT_EQ(a.depth, b.depth);
  EXPECT_EQ(a.max_io_bytes, b.max_io_bytes);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.server_pid, b.server_pid);
  EXPECT_EQ(a.target.kind, b.target.kind);
  EXPECT_EQ(a.target.size_bytes, b.target.size_bytes);
  EXPECT_EQ(a.target.path, b.target.path);
  EXPECT_EQ(a.target.direct, b.target.direct);
  EXPECT_EQ(a.target.compression, b.target.compression);
  EXPECT_EQ(a.target.queues, b.target.queues);
  EXPECT_EQ(a.target.queue_depth, b.target.queue_depth);
}

TEST(UblkRecoveryState, FormatThenParseKeepsEveryField) {
  const DeviceState file = file_state();
  auto back = parse_state(format_state(file));
  ASSERT_TRUE(back) << back.error().to_string() << "\n" << format_state(file);
  expect_same(*back, file);

  DeviceState zram = file_state();
  zram.flags = u::F_CMD_IOCTL_ENCODE | u::F_USER_RECOVERY;
  zram.target = {};
  zram.target.kind = TargetKind::Zram;
  zram.target.size_bytes = 64u << 20;
  zram.target.compression = "zstd";
  zram.target.queues = 2;
  zram.target.queue_depth = 16;
  const std::string text = format_state(zram);
  EXPECT_NE(text.find("recovery = 'on'"), std::string::npos) << text;
  EXPECT_NE(text.find("starts empty"), std::string::npos) << "no data-loss note:\n" << text;
  auto zback = parse_state(text);
  ASSERT_TRUE(zback) << zback.error().to_string();
  expect_same(*zback, zram);
}

TEST(UblkRecoveryState, SavedFileLoadsBackAndIsRemoved) {
  test::TempDir tmp("ublk-state");
  const std::string dir = tmp.file("run/pepita/ublk");  // created by save_state
  const DeviceState s = file_state();
  ASSERT_TRUE(save_state(dir, s));
  EXPECT_TRUE(std::filesystem::exists(state_file_path(dir, 7)));
  EXPECT_EQ(state_file_path(dir, 7), dir + "/7.toml");
  EXPECT_FALSE(std::filesystem::exists(state_file_path(dir, 7) + ".tmp"));
  auto back = load_state(dir, 7);
  ASSERT_TRUE(back) << back.error().to_string();
  expect_same(*back, s);

  ASSERT_TRUE(remove_state(dir, 7));
  EXPECT_FALSE(std::filesystem::exists(state_file_path(dir, 7)));
  EXPECT_TRUE(remove_state(dir, 7)) << "removing a missing state file is not an error";
  auto missing = load_state(dir, 7);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);
  EXPECT_NE(missing.error().message().find("--recoverable"), std::string::npos);
  EXPECT_NE(missing.error().message().find("7.toml"), std::string::npos);
}

TEST(UblkRecoveryState, FileOfAnotherDeviceIsRefused) {
  test::TempDir tmp("ublk-state");
  ASSERT_TRUE(save_state(tmp.path(), file_state()));
  std::filesystem::rename(state_file_path(tmp.path(), 7), state_file_path(tmp.path(), 3));
  auto wrong = load_state(tmp.path(), 3);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(wrong.error().message().find("describes ublk device 7, not 3"), std::string::npos)
      << wrong.error().message();
}

struct BadState {
  std::string what;  // a piece of the text to replace (empty: the whole text is `with`)
  std::string with;
  std::string says;  // a piece of the error message
  ErrorCode code = ErrorCode::InvalidArgument;
};

TEST(UblkRecoveryState, MalformedFilesAreClearErrors) {
  const std::string good = format_state(file_state());
  const std::vector<BadState> cases = {
      {"", "this is = = not toml", "not a valid state file"},
      {"", "", "'version' is missing"},
      {"version = 1", "version = 2", "version 2", ErrorCode::Unsupported},
      {"version = 1", "version = \"1\"", "'version' must be an integer"},
      {"dev_id = 7\n", "", "'dev_id' is missing"},
      {"queues = 2", "queues = 0", "'queues' is 0"},
      {"depth = 16", "depth = 5000", "'depth' is 5000"},
      {"max_io_bytes = 524288", "max_io_bytes = 1000", "'max_io_bytes' is 1000"},
      {"max_io_bytes = 524288", "max_io_bytes = 5000", "max I/O size must be a multiple of 4096"},
      {"server_pid = 4242", "server_pid = -1", "'server_pid' is -1"},
      {"flags = 216", "flags = 64", "UBLK_F_USER_RECOVERY"},
      {"[target]", "[nottarget]", "[target] table is missing"},
      {"kind = 'file'", "kind = 'nbd'", "nbd"},
      {"kind = 'file'", "kind = 3", "'kind' must be a string"},
      {"direct = true", "direct = 1", "'direct' must be true or false"},
      {"path = ", "path = ''\nold_path = ", "file"},
      {"path = ", "old_path = ", "key 'path' is missing"},
      {"direct = true\n", "", "key 'direct' is missing"},
      {"size = 50331648", "size = 1000", "multiple"},
  };
  ASSERT_NE(good.find("flags = 216"), std::string::npos) << good;  // the cases edit these lines
  for (const auto& c : cases) {
    std::string text = c.with;
    if (!c.what.empty()) {
      text = good;
      const size_t at = text.find(c.what);
      ASSERT_NE(at, std::string::npos) << c.what;
      text.replace(at, c.what.size(), c.with);
    }
    auto parsed = parse_state(text, "/run/pepita/ublk/7.toml");
    ASSERT_FALSE(parsed) << "accepted: " << text;
    EXPECT_EQ(parsed.error().code(), c.code) << c.says << ": " << parsed.error().to_string();
    EXPECT_NE(parsed.error().message().find(c.says), std::string::npos)
        << c.says << ": " << parsed.error().message();
    EXPECT_NE(parsed.error().to_string().find("7.toml"), std::string::npos)
        << "the message names no file: " << parsed.error().to_string();
  }
}

TEST(UblkRecoveryState, UncreatableStateDirectoryIsAClearError) {
  test::TempDir tmp("ublk-state");
  const std::string file = tmp.file("not-a-dir");
  std::ofstream(file) << "x";
  auto saved = save_state(file + "/ublk", file_state());
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().code(), ErrorCode::PermissionDenied) << saved.error().to_string();
  EXPECT_NE(saved.error().message().find("cannot create the ublk state directory"),
            std::string::npos)
      << saved.error().message();
  EXPECT_NE(saved.error().message().find("--state-dir"), std::string::npos)
      << "the message does not say how to choose another: " << saved.error().message();
  EXPECT_TRUE(std::filesystem::is_regular_file(file)) << "the file in the way was touched";
}

TEST(UblkRecoveryState, StateFileNameTakenByADirectoryIsRefusedAndKept) {
  // Something else owns <dir>/7.toml: save_state neither replaces it nor leaves its temporary
  // file, and remove_state says it could not remove it.
  test::TempDir tmp("ublk-state");
  const std::string taken = state_file_path(tmp.path(), 7);
  std::filesystem::create_directories(taken + "/inside");
  auto saved = save_state(tmp.path(), file_state());
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().code(), ErrorCode::Io) << saved.error().to_string();
  EXPECT_NE(saved.error().message().find("rename"), std::string::npos) << saved.error().message();
  EXPECT_NE(saved.error().message().find("7.toml"), std::string::npos) << saved.error().message();
  EXPECT_FALSE(std::filesystem::exists(taken + ".tmp")) << "the temporary file was left behind";
  EXPECT_TRUE(std::filesystem::is_directory(taken + "/inside"));

  auto removed = remove_state(tmp.path(), 7);
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code(), ErrorCode::PermissionDenied);
  EXPECT_NE(removed.error().message().find("cannot remove ublk state file"), std::string::npos)
      << removed.error().message();
  EXPECT_TRUE(std::filesystem::is_directory(taken + "/inside"));
}

TEST(UblkRecoveryState, OversizedFileIsRefused) {
  test::TempDir tmp("ublk-state");
  {
    std::ofstream out(state_file_path(tmp.path(), 1));
    out << format_state(file_state()) << std::string(70000, '#') << "\n";
  }
  auto big = load_state(tmp.path(), 1);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message().find("larger than 64 KiB"), std::string::npos);
}

TEST(UblkRecoveryFlags, RecoveryModesAreTheKernelsFlags) {
  EXPECT_EQ(recovery_flags(Recovery::Off), 0u);
  EXPECT_EQ(recovery_flags(Recovery::On), UBLK_F_USER_RECOVERY);
  EXPECT_EQ(recovery_flags(Recovery::Reissue), UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE);
  for (Recovery r : {Recovery::Off, Recovery::On, Recovery::Reissue})
    EXPECT_EQ(recovery_of(recovery_flags(r) | UBLK_F_CMD_IOCTL_ENCODE), r) << recovery_name(r);
  EXPECT_STREQ(recovery_name(Recovery::Off), "off");
  EXPECT_STREQ(recovery_name(Recovery::On), "on");
  EXPECT_STREQ(recovery_name(Recovery::Reissue), "reissue");
  // A value outside the enum (a corrupted caller) asks for no recovery rather than a guess.
  const auto bogus = static_cast<Recovery>(9);
  EXPECT_EQ(recovery_flags(bogus), 0u);
  EXPECT_STREQ(recovery_name(bogus), "off");
  // The kernel ignores REISSUE without USER_RECOVERY (ublk_queue_can_use_recovery_reissue).
  EXPECT_EQ(recovery_of(UBLK_F_USER_RECOVERY_REISSUE), Recovery::Off);

  const u::CtrlDevInfo info = make_dev_info({.queues = 1, .recovery = Recovery::Reissue});
  EXPECT_EQ(info.flags,
            UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE);
  EXPECT_EQ(make_dev_info({}).flags & (UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE), 0u);
}

TEST(UblkRecoveryFlags, ReissueAloneIsRefusedBeforeTheKernel) {
  EXPECT_TRUE(validate({.recovery = Recovery::On}));
  EXPECT_TRUE(validate({.recovery = Recovery::Reissue}));
  EXPECT_TRUE(validate({.extra_flags = UBLK_F_USER_RECOVERY}));
  const auto alone = validate({.extra_flags = UBLK_F_USER_RECOVERY_REISSUE});
  ASSERT_FALSE(alone);
  EXPECT_EQ(alone.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(alone.error().message().find("needs UBLK_F_USER_RECOVERY"), std::string::npos);
}

TEST(UblkRecoveryFlags, RecoveryCommandsMatchTheKernel) {
  EXPECT_EQ(u::U_CMD_START_USER_RECOVERY, UBLK_U_CMD_START_USER_RECOVERY);
  EXPECT_EQ(u::U_CMD_END_USER_RECOVERY, UBLK_U_CMD_END_USER_RECOVERY);
  EXPECT_EQ(u::S_DEV_QUIESCED, UBLK_S_DEV_QUIESCED);
  // END_USER_RECOVERY carries the new server's pid in data[0], as START_DEV does.
  const u::CtrlCmd end = make_ctrl_cmd(5, nullptr, 0, 1234);
  EXPECT_EQ(end.dev_id, 5u);
  EXPECT_EQ(end.data[0], 1234u);
  EXPECT_EQ(end.queue_id, kNoQueue);
}

u::CtrlDevInfo device(uint64_t flags, uint16_t state) {
  u::CtrlDevInfo info{};
  info.dev_id = 4;
  info.flags = u::F_CMD_IOCTL_ENCODE | flags;
  info.state = state;
  info.ublksrv_pid = 99;
  return info;
}

TEST(UblkRecoveryCheck, OnlyAQuiescedOrOrphanedRecoverableDeviceQualifies) {
  EXPECT_TRUE(check_recoverable(device(u::F_USER_RECOVERY, u::S_DEV_QUIESCED), false));
  EXPECT_TRUE(check_recoverable(device(u::F_USER_RECOVERY, u::S_DEV_LIVE), false))
      << "a live device whose server died is about to be quiesced";

  const auto live = check_recoverable(device(u::F_USER_RECOVERY, u::S_DEV_LIVE), true);
  ASSERT_FALSE(live);
  EXPECT_EQ(live.error().code(), KernelError::UblkDeviceBusy);
  EXPECT_NE(live.error().message().find("served by pid 99"), std::string::npos);
  EXPECT_NE(live.error().message().find("not quiesced"), std::string::npos);

  const auto plain = check_recoverable(device(0, u::S_DEV_QUIESCED), false);
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(plain.error().message().find("created without user recovery"), std::string::npos);
  EXPECT_NE(plain.error().message().find("pepita ublk del 4"), std::string::npos);

  const auto dead = check_recoverable(device(u::F_USER_RECOVERY, u::S_DEV_DEAD), false);
  ASSERT_FALSE(dead);
  EXPECT_NE(dead.error().message().find("not started"), std::string::npos);
  EXPECT_FALSE(check_recoverable(device(u::F_USER_RECOVERY, 77), false));
}

TEST(UblkRecoveryCheck, ServerAliveSeesRunningExitedAndZombieProcesses) {
  EXPECT_TRUE(server_alive(::getpid()));
  EXPECT_FALSE(server_alive(0));
  EXPECT_FALSE(server_alive(-1));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Until reaped the child is a zombie: it has released its files, so it serves nothing.
  for (int i = 0; i < 2000 && server_alive(child); ++i) ::usleep(1000);
  EXPECT_FALSE(server_alive(child)) << "a zombie counts as alive";
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(server_alive(child));
}

TEST(UblkRecoveryCheck, TargetsThatLoseDataAreNamed) {
  EXPECT_TRUE(target_loses_data_on_crash(TargetKind::Mem));
  EXPECT_TRUE(target_loses_data_on_crash(TargetKind::Zram));
  EXPECT_FALSE(target_loses_data_on_crash(TargetKind::File));
  EXPECT_FALSE(target_loses_data_on_crash(TargetKind::Null));
}

TEST(UblkServer, RecoverWithoutDriverFailsCleanly) {
  TargetSpec spec;
  spec.kind = TargetKind::Null;
  spec.size_bytes = 1 << 20;
  auto disk = make_target(spec);
  ASSERT_TRUE(disk);
  auto server = Server::recover(0, std::move(*disk), {}, "/nonexistent/ublk-control");
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(server.error().message().find("ublk_drv"), std::string::npos);
  EXPECT_EQ(Server::recover(0, nullptr).error().code(), ErrorCode::InvalidArgument);
}

// O_DIRECT I/O of `len` bytes at `at` on `path`: bytes moved or -errno.
ssize_t direct_io(const std::string& path, bool write, unsigned char* buf, size_t len, off_t at) {
  const int fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return -errno;
  const ssize_t n = write ? ::pwrite(fd, buf, len, at) : ::pread(fd, buf, len, at);
  const ssize_t out = n < 0 ? -errno : n;
  ::close(fd);
  return out;
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<unsigned char, AlignedFree>;
AlignedBuffer aligned(size_t len, unsigned char seed) {
  AlignedBuffer b(static_cast<unsigned char*>(std::aligned_alloc(4096, len)));
  if (b)
    for (size_t i = 0; i < len; ++i) b.get()[i] = static_cast<unsigned char>(i * 131 + seed);
  return b;
}

// The library's recovery end to end on the real driver (the Linux 6.12 guest): a child process
// serves a recoverable file-target device and is killed with SIGKILL; a write issued while the
// device has no server waits (the device stays, quiesced) and completes once Server::recover has
// taken the device over with the same file; both the data written before the kill and that write
// read back through the new server.
TEST(UblkDevice, ServerKilledThenRecoveredKeepsTheFileData) {
  PEPITA_REQUIRE_CAPABILITY(ublk);
  test::TempDir tmp("ublk-recover");
  TargetSpec spec;
  spec.kind = TargetKind::File;
  spec.path = tmp.file("disk.img");
  spec.size_bytes = 8u << 20;
  spec.queue_depth = 16;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The old server: reports its device id (or -1) and serves until it is killed.
    ::close(ready[0]);
    int32_t id = -1;
    std::unique_ptr<Server> server;
    if (auto disk = make_target(spec); disk) {
      auto started = Server::start(std::move(*disk), {.depth = 16, .recovery = Recovery::Reissue});
      if (started) server = std::move(*started);
    }
    if (server) id = static_cast<int32_t>(server->dev_id());
    if (::write(ready[1], &id, sizeof id) != sizeof id) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  int32_t id = -1;
  const ssize_t got = ::read(ready[0], &id, sizeof id);
  ::close(ready[0]);
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof id));
  if (id < 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    FAIL() << "the child could not start a recoverable server";
  }
  const std::string block = block_device_path(static_cast<uint32_t>(id));

  constexpr size_t kLen = 64 << 10;
  AlignedBuffer before = aligned(kLen, 7), during = aligned(kLen, 91), back = aligned(kLen, 0);
  ASSERT_TRUE(before && during && back);
  ASSERT_EQ(direct_io(block, true, before.get(), kLen, 1 << 20), static_cast<ssize_t>(kLen));

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_EQ(::access(block.c_str(), F_OK), 0) << block << " went away with its server";

  // Issued with no server: waits in the quiesced device until the recovery.
  auto pending = std::async(std::launch::async,
                            [&] { return direct_io(block, true, during.get(), kLen, 3 << 20); });

  auto disk = make_target(spec);
  ASSERT_TRUE(disk) << disk.error().to_string();
  auto server = Server::recover(static_cast<uint32_t>(id), std::move(*disk),
                                {.wait = std::chrono::seconds(60)});
  ASSERT_TRUE(server) << server.error().to_string();
  EXPECT_EQ((*server)->info().state, u::S_DEV_LIVE);
  EXPECT_EQ(recovery_of((*server)->info().flags), Recovery::Reissue);
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "the write issued during the outage did not complete after the recovery";
  EXPECT_EQ(pending.get(), static_cast<ssize_t>(kLen));

  ASSERT_EQ(direct_io(block, false, back.get(), kLen, 1 << 20), static_cast<ssize_t>(kLen));
  EXPECT_EQ(std::memcmp(back.get(), before.get(), kLen), 0) << "data written before the kill";
  ASSERT_EQ(direct_io(block, false, back.get(), kLen, 3 << 20), static_cast<ssize_t>(kLen));
  EXPECT_EQ(std::memcmp(back.get(), during.get(), kLen), 0) << "data written during the outage";

  // A second recover of the now live device is refused: its server (this process) runs.
  auto disk2 = make_target(spec);
  ASSERT_TRUE(disk2) << disk2.error().to_string();
  auto again = Server::recover(static_cast<uint32_t>(id), std::move(*disk2));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), KernelError::UblkDeviceBusy) << again.error().to_string();
  EXPECT_TRUE((*server)->stop());
  EXPECT_NE(::access(block.c_str(), F_OK), 0) << block << " outlived stop()";
}

}  // namespace
}  // namespace pepita::ublk
