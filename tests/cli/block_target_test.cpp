// One block-target spec for every command that serves a block device: the same text is accepted
// by `pepita ublk add --target`, `pepita vhost-user-blk --target` and `pepita vm run --virtio-blk`,
// and the same bad text is refused by all three as a usage error (exit 2) that names the fix and
// creates nothing. Without /dev/ublk-control, ublk add is followed up to its driver check (exit 1,
// "ublk_drv"), as tests/cli/ublk_test.cpp does; without /dev/kvm, vm run up to the KVM check.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

bool has_ublk_driver() { return ::access("/dev/ublk-control", F_OK) == 0; }
bool has_kvm() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

std::string guest(const char* name) {
  return std::string(PEPITA_BINARY_DIR) + "/guest/" + name + ".elf";
}

// `pepita vm run` with the virtio_io guest (guest/vm_examples/virtio_io.cpp) on `spec`.
CliRun vm_run(const std::string& spec) {
  return run_pepita("vm run " + guest("virtio_io") +
                    " --mem 8M --timeout 10s --virtio-console --virtio-blk " + spec);
}

TEST(CliBlockTarget, OneSpecIsAcceptedByUblkAddVhostUserBlkAndVmRun) {
  ScratchDir dir;
  int round = 0;
  for (const std::string& spec : {std::string("mem:1M"), "file:" + dir / "disk.img" + ",1M"}) {
    SCOPED_TRACE(spec);
    const std::string n = std::to_string(round++);  // fresh output files: no stale line
    // ublk add: past every argument check, up to the driver.
    if (!has_ublk_driver()) {
      CliRun add = run_pepita("ublk add --target " + spec);
      EXPECT_EQ(add.exit_code, 1) << add.output;
      EXPECT_NE(add.output.find("ublk_drv"), std::string::npos) << add.output;
      EXPECT_EQ(add.output.find("Usage:"), std::string::npos) << add.output;
    }

    // vhost-user-blk: serves it until SIGTERM.
    const std::string sock = dir / ("vub" + n + ".sock");
    {
      BackgroundPepita server({"vhost-user-blk", "--socket", sock, "--target", spec},
                              dir / ("vub" + n + ".out"), dir / ("vub" + n + ".err"));
      ASSERT_TRUE(server.wait_for_stdout(sock + "\n")) << server.err();
      const std::string kind = spec.substr(0, spec.find(':'));
      EXPECT_NE(server.err().find("serving " + kind + " target (1 MiB, 1 queue(s)) on " + sock),
                std::string::npos)
          << server.err();
      EXPECT_EQ(server.kill_and_wait(SIGTERM), 0) << server.err();
    }

    // vm run --virtio-blk: the guest sees 1 MiB and writes and reads back a sector.
    CliRun vm = vm_run(spec);
    if (has_kvm()) {
      EXPECT_EQ(vm.exit_code, 0) << vm.output;
      EXPECT_NE(vm.output.find("virtio-blk: 2048 sectors\n"), std::string::npos) << vm.output;
      EXPECT_NE(vm.output.find("sector 1 written and verified"), std::string::npos) << vm.output;
    } else {
      EXPECT_NE(vm.exit_code, 2) << vm.output;
      EXPECT_EQ(vm.output.find("--virtio-blk"), std::string::npos) << vm.output;
    }
  }
}

TEST(CliBlockTarget, AFileTheRunCreatedIsRemovedWhenItFails) {
  ScratchDir dir;
  const std::string image = dir / "new.img";
  // vm run: the disk is created before the guest image is loaded.
  CliRun vm = run_pepita("vm run " + dir / "missing.elf" + " --virtio-blk file:" + image + ",1M");
  EXPECT_EQ(vm.exit_code, 1) << vm.output;
  // vhost-user-blk: the socket's directory does not exist.
  CliRun vub = run_pepita("vhost-user-blk --socket " + dir / "no/vub.sock" +
                          " --target file:" + image + ",1M");
  EXPECT_EQ(vub.exit_code, 1) << vub.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "a failed run left its new file";
}

TEST(CliBlockTarget, ZramSpecReachesTheGuest) {
  if (!has_kvm()) GTEST_SKIP() << "/dev/kvm is not usable here";
  // zram's 4 KiB blocks (VIRTIO_BLK_F_BLK_SIZE): the guest's 512-byte read of sector 0 is
  // refused, so virtio_io stops at its step 23 after it saw the device and its size.
  CliRun vm = vm_run("zram:1M,zstd");
  EXPECT_EQ(vm.exit_code, 23) << vm.output;
  EXPECT_NE(vm.output.find("virtio-blk: 2048 sectors\n"), std::string::npos) << vm.output;
}

TEST(CliBlockTarget, OneBadSpecIsTheSameUsageErrorEverywhere) {
  ScratchDir dir;
  const std::string image = dir / "new.img";
  struct Case {
    std::string spec, says;
  };
  const std::vector<Case> cases = {
      {"zram:1M,xz", "compression must be lz4 or zstd, not 'xz'"},
      {"mem:0", "must be greater than zero"},
      {"mem:1Q", "unknown suffix"},
      {"mem:99999999999999999999", "too large"},
      {"mem:1G,zstd", "mem takes only a size"},
      {"mem:", "expected mem:SIZE"},
      {"mem:1000", "multiple"},
      {"zram:6K", "multiple of 4096"},
      {"nbd:1M", "file:PATH[,SIZE]"},
      {"file:", "no path"},
      {"file:" + image + ",1000", "multiple"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec);
    CliRun add = run_pepita("ublk add --target '" + c.spec + "'");
    EXPECT_EQ(add.exit_code, 2) << add.output;
    EXPECT_NE(add.output.find(c.says), std::string::npos) << add.output;
    EXPECT_NE(add.output.find("Usage: pepita ublk add"), std::string::npos) << add.output;

    CliRun vub =
        run_pepita("vhost-user-blk --socket " + dir / "vub.sock" + " --target '" + c.spec + "'");
    EXPECT_EQ(vub.exit_code, 2) << vub.output;
    EXPECT_NE(vub.output.find(c.says), std::string::npos) << vub.output;
    EXPECT_NE(vub.output.find("Usage: pepita vhost-user-blk"), std::string::npos) << vub.output;

    CliRun vm = vm_run("'" + c.spec + "'");
    EXPECT_EQ(vm.exit_code, 2) << vm.output;
    EXPECT_NE(vm.output.find(c.says), std::string::npos) << vm.output;
    EXPECT_NE(vm.output.find("--virtio-blk"), std::string::npos) << vm.output;
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{}) << "a usage error created a file";
}

TEST(CliBlockTarget, WholeSpecAndSeparateOptionsDoNotMix) {
  ScratchDir dir;
  const std::string sock = dir / "vub.sock";
  for (const std::string& extra :
       {std::string("--size 1M"), std::string("--comp zstd"), "--file " + dir / "x.img"}) {
    CliRun add = run_pepita("ublk add --target zram:1M " + extra);
    EXPECT_EQ(add.exit_code, 2) << extra << "\n" << add.output;
    EXPECT_NE(add.output.find("is a whole spec"), std::string::npos) << add.output;
    CliRun vub = run_pepita("vhost-user-blk --socket " + sock + " --target zram:1M " + extra);
    EXPECT_EQ(vub.exit_code, 2) << extra << "\n" << vub.output;
    EXPECT_NE(vub.output.find("is a whole spec"), std::string::npos) << vub.output;
  }
  // A kind a command does not serve is named as such, in either spelling.
  for (const char* target : {"null", "null:1M"}) {
    CliRun vub =
        run_pepita("vhost-user-blk --socket " + sock + " --target " + target + " --size 1M");
    EXPECT_EQ(vub.exit_code, 2) << vub.output;
  }
  CliRun vub = run_pepita("vhost-user-blk --socket " + sock + " --target null:1M");
  EXPECT_NE(vub.output.find("serves zram, file or mem targets, not null"), std::string::npos)
      << vub.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{});
}

}  // namespace
}  // namespace pepita::test
