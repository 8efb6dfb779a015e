// `pepita vhost-user-blk` as a user runs it, without QEMU: bad arguments exit 2 with the usage
// line and create neither the socket nor a backing file; a socket that cannot be made leaves no
// backing file; a path that is not a socket is never replaced, a live server's socket never
// stolen, a dead server's socket reused; SIGTERM stops the server and removes its socket. The
// guest side is tests/virtio/guest.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

namespace fs = std::filesystem;

bool is_socket(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

TEST(CliVhostUserBlk, BadArgumentsAreUsageErrorsThatCreateNothing) {
  ScratchDir dir;
  const std::string sock = dir / "vub.sock";
  const std::string image = dir / "disk.img";
  const std::string s = " --socket " + sock;
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases = {
      {"vhost-user-blk --target mem --size 1M", "--socket"},
      {"vhost-user-blk" + s + " --size lots", "--size"},
      {"vhost-user-blk" + s + " --target mem", "give a size (--size)"},
      {"vhost-user-blk" + s + " --target zram --size 1000", "multiple of 4096"},
      {"vhost-user-blk" + s + " --target file --size 1M", "give a backing file (--file)"},
      {"vhost-user-blk" + s + " --target file --file " + image + " --size 1000", "multiple"},
      {"vhost-user-blk" + s + " --target null --size 1M", "null"},
      {"vhost-user-blk" + s + " --size 1M --comp xz --target zram", "xz"},
      {"vhost-user-blk" + s + " --size 1M --queues 0", "--queues"},
      {"vhost-user-blk" + s + " --size 1M --queue-size 100", "--queue-size"},
      {"vhost-user-blk" + s + " --size 1M --queue-size big", "--queue-size"},
      {"vhost-user-blk --socket " + dir / std::string(120, 's') + " --size 1M", "--socket"},
      {"vhost-user-blk" + s + " --size 1M stray", "stray"},
  };
  for (const auto& c : cases) {
    CliRun run = run_pepita(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find(c.says), std::string::npos) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find("Usage: pepita vhost-user-blk --socket PATH"), std::string::npos)
        << c.args << ": no usage line\n"
        << run.output;
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "a usage error created a file";
}

TEST(CliVhostUserBlk, SocketThatCannotBeCreatedLeavesNoBackingFile) {
  ScratchDir dir;
  const std::string image = dir / "disk.img";
  const std::string sock = dir / "missing-dir/vub.sock";
  CliRun run = run_pepita("vhost-user-blk --socket " + sock + " --target file --file " + image +
                          " --size 1M");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(sock), std::string::npos) << run.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "the new backing file was left behind";

  // A backing file that existed before is the user's: kept, whatever happened.
  std::ofstream(image) << std::string(4096, 'x');
  CliRun again = run_pepita("vhost-user-blk --socket " + sock + " --target file --file " + image);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_EQ(fs::file_size(image), 4096u);
}

TEST(CliVhostUserBlk, NeverReplacesAPathThatIsNotASocket) {
  ScratchDir dir;
  const std::string precious = dir / "precious.txt";
  std::ofstream(precious) << "user data";
  CliRun run = run_pepita("vhost-user-blk --socket " + precious + " --target mem --size 1M");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("is not a socket"), std::string::npos) << run.output;
  std::ifstream in(precious);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "user data") << "the server replaced a regular file with its socket";
}

TEST(CliVhostUserBlk, ServesUntilSigtermAndRemovesItsSocketWithoutStealingALiveOne) {
  ScratchDir dir;
  const std::string sock = dir / "vub.sock";
  const std::vector<std::string> args = {"vhost-user-blk", "--socket", sock, "--target", "mem",
                                         "--size",         "1M"};
  {
    BackgroundPepita server(args, dir / "a.out", dir / "a.err");
    ASSERT_TRUE(server.wait_for_stdout(sock + "\n")) << server.err();
    EXPECT_TRUE(is_socket(sock));
    EXPECT_NE(server.err().find("serving mem target (1 MiB, 1 queue(s)) on " + sock),
              std::string::npos)
        << server.err();

    // A second server on the same path must not take the live socket over.
    CliRun second = run_pepita("vhost-user-blk --socket " + sock + " --target mem --size 1M");
    EXPECT_EQ(second.exit_code, 1) << second.output;
    EXPECT_NE(second.output.find("another server is accepting on it"), std::string::npos)
        << second.output;
    EXPECT_TRUE(is_socket(sock)) << "the refused second server removed the live socket";

    EXPECT_EQ(server.kill_and_wait(SIGTERM), 0) << server.err();
    EXPECT_NE(server.err().find("stopped on signal " + std::to_string(SIGTERM)), std::string::npos)
        << server.err();
  }
  EXPECT_FALSE(fs::exists(sock)) << "the socket outlived its server";

  // A server killed outright leaves its socket; the next one replaces the stale socket.
  {
    BackgroundPepita killed(args, dir / "b.out", dir / "b.err");
    ASSERT_TRUE(killed.wait_for_stdout(sock + "\n")) << killed.err();
    EXPECT_EQ(killed.kill_and_wait(SIGKILL), 128 + SIGKILL);
  }
  ASSERT_TRUE(is_socket(sock));
  {
    BackgroundPepita restarted(args, dir / "c.out", dir / "c.err");
    ASSERT_TRUE(restarted.wait_for_stdout(sock + "\n")) << restarted.err();
    EXPECT_EQ(restarted.kill_and_wait(SIGTERM), 0) << restarted.err();
  }
  EXPECT_FALSE(fs::exists(sock));
}

}  // namespace
}  // namespace pepita::test
