// `pepita ublk add|recover|list|del` with bad input, as a user types it: every usage error exits 2
// with the command's usage line, before the driver is opened — so no /dev/ublk* device and no
// backing file is left behind. Serving a real device is tested in the Linux guest
// (tests/ublk/guest).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

bool has_ublk_driver() { return ::access("/dev/ublk-control", F_OK) == 0; }

// The ublk char and block devices present now.
std::set<std::string> ublk_devices() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev", ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("ublkb") || name.starts_with("ublkc")) names.insert(name);
  }
  return names;
}

struct UsageCase {
  std::string args;
  std::string says;  // a piece of the error message naming what is wrong
};

TEST(CliUblk, BadArgumentsAreUsageErrorsThatCreateNothing) {
  ScratchDir dir;
  const std::string image = dir / "new.img";
  const std::vector<UsageCase> cases = {
      {"ublk add --size lots", "--size"},
      {"ublk add --target zram", "give a size (--size)"},
      {"ublk add --target null --size 1000", "multiple of 4096"},
      {"ublk add --target mem --size 1000", "multiple"},
      {"ublk add --target file --size 1M", "give a backing file (--file)"},
      {"ublk add --target file --file " + image + " --size 1000", "multiple"},
      {"ublk add --target file --file " + image + " --direct --size 6K", "multiple"},
      {"ublk add --target nbd --size 1M", "nbd"},
      {"ublk add --target zram --size 1M --comp xz", "xz"},
      {"ublk add --size 1M --queues 0", "--queues"},
      {"ublk add --size 1M --queues lots", "--queues"},
      {"ublk add --size 1M --depth 5000", "--depth"},
      {"ublk add --size 1M --max-io lots", "--max-io"},
      {"ublk add --size 1M --max-io 1000", "max I/O size must be a multiple of 4096"},
      {"ublk add --size 1M --no-such-flag", "--no-such-flag"},
      {"ublk", "subcommand"},
      {"ublk frobnicate", "A subcommand is required"},
      {"ublk list extra", "extra"},
      {"ublk del", "id"},
      {"ublk del abc", "abc"},
      {"ublk del 1 2", "2"},
      {"ublk add --size 1M --reissue", "give it with --recoverable"},
      {"ublk add --size 1M --recoverable --state-dir ''", "--state-dir must name a directory"},
      {"ublk recover", "id"},
      {"ublk recover abc", "abc"},
      {"ublk recover 1 2", "2"},
      {"ublk recover 1 --wait 0", "--wait must be 1..3600"},
      {"ublk recover 1 --wait lots", "--wait"},
      {"ublk recover 1 --state-dir ''", "--state-dir must name a directory"},
      {"ublk recover 1 --no-such-flag", "--no-such-flag"},
  };
  const auto before = ublk_devices();
  for (const auto& c : cases) {
    CliRun run = run_pepita(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find(c.says), std::string::npos) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find("Usage: pepita ublk"), std::string::npos)
        << c.args << ": no usage line\n"
        << run.output;
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "a usage error created a file";
  EXPECT_EQ(ublk_devices(), before) << "a usage error created a ublk device";
}

TEST(CliUblk, UsageLineNamesTheSubcommandsOptions) {
  CliRun run = run_pepita("ublk add --size lots");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("Usage: pepita ublk add [--target null|mem|file|zram] [--size SIZE]"),
            std::string::npos)
      << run.output;
  CliRun del = run_pepita("ublk del abc");
  EXPECT_EQ(del.exit_code, 2) << del.output;
  EXPECT_NE(del.output.find("Usage: pepita ublk del ID"), std::string::npos) << del.output;
  CliRun recover = run_pepita("ublk recover abc");
  EXPECT_EQ(recover.exit_code, 2) << recover.output;
  EXPECT_NE(recover.output.find("Usage: pepita ublk recover ID [--state-dir DIR] [--wait SECONDS]"),
            std::string::npos)
      << recover.output;
  CliRun add = run_pepita("ublk add --size 1M --reissue");
  EXPECT_NE(add.output.find("[--recoverable [--reissue]] [--state-dir DIR]"), std::string::npos)
      << add.output;
}

TEST(CliUblk, WithoutTheDriverEveryCommandFailsAndAddCreatesNoBackingFile) {
  if (has_ublk_driver())
    GTEST_SKIP() << "/dev/ublk-control exists: this host has the driver (the guest test covers it)";
  ScratchDir dir;
  const std::string image = dir / "disk.img";
  CliRun add = run_pepita("ublk add --target file --file " + image + " --size 1M");
  EXPECT_EQ(add.exit_code, 1) << add.output;
  EXPECT_NE(add.output.find("ublk_drv"), std::string::npos) << add.output;
  EXPECT_FALSE(std::filesystem::exists(image)) << "backing file created without a driver";
  EXPECT_EQ(dir.entries(), std::vector<std::string>{});

  CliRun list = run_pepita("ublk list");
  EXPECT_EQ(list.exit_code, 1) << list.output;
  EXPECT_NE(list.output.find("ublk_drv"), std::string::npos) << list.output;
  CliRun del = run_pepita("ublk del 0");
  EXPECT_EQ(del.exit_code, 1) << del.output;
  EXPECT_NE(del.output.find("ublk_drv"), std::string::npos) << del.output;
  CliRun recover = run_pepita("ublk recover 0 --state-dir " + (dir / "state"));
  EXPECT_EQ(recover.exit_code, 1) << recover.output;
  EXPECT_NE(recover.output.find("ublk_drv"), std::string::npos) << recover.output;
  CliRun recoverable =
      run_pepita("ublk add --size 1M --recoverable --state-dir " + (dir / "state"));
  EXPECT_EQ(recoverable.exit_code, 1) << recoverable.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "a failed add left a state file";
}

}  // namespace
}  // namespace pepita::test
