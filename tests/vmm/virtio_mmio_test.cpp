// virtio-mmio devices in real KVM micro-VMs: a kernel-less guest drives virtio-console and
// virtio-blk through MMIO exits; a hostile guest breaks a device into NEEDS_RESET and the host
// survives. Skips (reason printed) without /dev/kvm.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pepita/abi/virtio.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::read_sector;

using test::bytes_of;
using test::load_guest;
namespace v = abi::virtio;

std::shared_ptr<blk_mq::BlockDevice> mem_disk(uint64_t bytes) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = bytes});
  EXPECT_TRUE(disk) << disk.error().to_string();
  return disk ? std::shared_ptr<blk_mq::BlockDevice>(std::move(*disk)) : nullptr;
}

void write_sector(blk_mq::BlockDevice& disk, uint64_t sector, std::vector<std::byte> data) {
  blk_mq::TagSet tags(disk.info().tag_set);
  data.resize(512);
  auto r = blk_mq::execute(disk, tags, 0, blk_mq::Op::Write, sector, data);
  ASSERT_TRUE(r) << r.error().to_string();
}

TEST(VirtioMmio, ConsoleAndBlockFromAKernelLessGuest) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("virtio_io");
  auto disk = mem_disk(1 << 20);
  ASSERT_TRUE(disk);
  const std::string line = "written by the host into sector 0";
  std::vector<std::byte> s0(512);
  std::memcpy(s0.data(), line.c_str(), line.size() + 1);
  write_sector(*disk, 0, s0);

  VmConfig config;
  config.virtio_console = true;
  config.virtio_blk = disk;
  auto vm = Vm::create(image, config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto r = vm->run(bytes_of("task input over virtio"));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output,
            "virtio-console: hello from a kernel-less guest\n"
            "input: task input over virtio\n"
            "virtio-blk: 2048 sectors\n"
            "sector 0: " +
                line +
                "\n"
                "sector 1 written and verified\n");
  // What the guest wrote is on the host's disk.
  auto s1 = read_sector(*disk, 1);
  for (int i = 0; i < 512; ++i)
    ASSERT_EQ(s1[i], std::byte(static_cast<uint8_t>(i * 13 + 7))) << "byte " << i;
  ASSERT_EQ(r->virtio.size(), 2u);
  EXPECT_EQ(r->virtio[0].device_id, v::ID_CONSOLE);
  EXPECT_EQ(r->virtio[1].device_id, v::ID_BLOCK);
  for (const auto& d : r->virtio) {
    EXPECT_EQ(d.status & v::STATUS_NEEDS_RESET, 0) << d.last_error;
    EXPECT_NE(d.status & v::STATUS_DRIVER_OK, 0);
    EXPECT_EQ(d.bad_accesses, 0u) << d.last_error;
  }
  EXPECT_EQ(r->virtio[1].notifies, 4u) << "read, write, read back, read past the end";
  const auto exits = r->virtio[0].mmio_exits + r->virtio[1].mmio_exits;
  std::printf(
      "[ info ] %llu MMIO exits in %.3f ms (%.1f us per exit, all in)\n",
      static_cast<unsigned long long>(exits),
      std::chrono::duration<double, std::milli>(r->elapsed).count(),
      std::chrono::duration<double, std::micro>(r->elapsed).count() / static_cast<double>(exits));
}

TEST(VirtioMmio, ConsoleOutputRespectsTheOutputLimit) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("virtio_io");
  VmConfig config;
  config.virtio_console = true;
  config.virtio_blk = mem_disk(1 << 20);
  config.output_limit = 20;
  auto r = run_guest(image, {}, config);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->output,
            std::string("virtio-console: hello from a kernel-less guest\n").substr(0, 20));
}

TEST(VirtioMmio, GuestWithoutTheDeviceItWantsExitsWithItsCode) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("virtio_io");
  auto r = run_guest(image, {}, VmConfig{});  // no devices at all
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 10);
  EXPECT_TRUE(r->virtio.empty());
  VmConfig console_only;
  console_only.virtio_console = true;
  r = run_guest(image, bytes_of("abc"), console_only);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->exit_code, 0) << r->describe();
  EXPECT_EQ(r->output,
            "virtio-console: hello from a kernel-less guest\ninput: abc\nvirtio-blk: none\n");
}

TEST(VirtioMmio, HostileDriverGetsNeedsResetAndTheHostSurvives) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("virtio_garbage");
  auto disk = mem_disk(1 << 20);
  VmConfig config;
  config.virtio_blk = disk;
  auto r = run_guest(image, {}, config);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output,
            "garbage-registers needs-reset=0 magic-ok=1\n"
            "bad-queue-size needs-reset=1 magic-ok=1\n"
            "ring-in-gdt needs-reset=1 magic-ok=1\n"
            "recovered needs-reset=0 magic-ok=1\n"
            "descriptor-loop needs-reset=1 magic-ok=1\n"
            "after-loop needs-reset=1 magic-ok=1\n");
  ASSERT_EQ(r->virtio.size(), 1u);
  const VirtioReport& d = r->virtio[0];
  EXPECT_NE(d.status & v::STATUS_NEEDS_RESET, 0);
  EXPECT_NE(d.last_error.find("needs a reset"), std::string::npos) << d.last_error;
  EXPECT_GT(d.bad_accesses, 100u) << "the garbage writes were refused and counted";
  // The disk is intact and still usable from the host.
  write_sector(*disk, 5, std::vector<std::byte>(512, std::byte{0x5a}));
  EXPECT_EQ(read_sector(*disk, 5)[511], std::byte{0x5a});
}

TEST(VirtioMmio, AccessPastTheDeviceWindowIsAFault) {
  PEPITA_REQUIRE_KVM();
  // escape 'R' reads 1 TiB: unmapped in the guest page tables, so a #PF, devices or not.
  auto image = load_guest("escape");
  VmConfig config;
  config.virtio_console = true;
  auto r = run_guest(image, bytes_of("R"), config);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Fault) << r->describe();
}

TEST(VirtioMmio, ConsoleTheGuestNeverTouchesIsSnapshottedAndRestored) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("hello");
  VmConfig config;
  config.virtio_console = true;
  config.snapshottable = true;
  // Devices and snapshots mix (snapshot_devices_test.cpp drives the queues across one); here the
  // device was never set up, and the restored VM finds it as fresh as a cold one would.
  auto vm = Vm::create(image, config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto snap = Vm::capture(std::move(*vm));
  ASSERT_TRUE(snap) << snap.error().to_string();
  auto restored = Vm::restore(*snap);
  ASSERT_TRUE(restored) << restored.error().to_string();
  auto warm = restored->run({});
  ASSERT_TRUE(warm) << warm.error().to_string();
  EXPECT_EQ(warm->output, "hello from a pepita micro-VM\n");
  ASSERT_EQ(warm->virtio.size(), 1u);
  EXPECT_EQ(warm->virtio[0].status, 0);
  // A plain guest with a console it never touches runs as before.
  config.snapshottable = false;
  auto r = run_guest(image, {}, config);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
  ASSERT_EQ(r->virtio.size(), 1u);
  EXPECT_EQ(r->virtio[0].mmio_exits, 0u);
}

// Not a speed goal (those live in bench/): prints what one MMIO exit, a console transmit and a
// blk write cost here, as medians of whole runs minus a setup-only run, and checks the results.
TEST(VirtioMmio, ConcurrentVmsEachWithTheirOwnDevicesLeakNothing) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("virtio_io");
  auto fds = [] {
    size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (::readdir(d) != nullptr) ++n;
      ::closedir(d);
    }
    return n;
  };
  const size_t fds_before = fds();
  constexpr int kThreads = 4, kRuns = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRuns; ++i) {
        VmConfig config;
        config.virtio_console = true;
        config.virtio_blk = mem_disk(64 << 10);
        const std::string in = "vm " + std::to_string(t) + "." + std::to_string(i);
        auto r = run_guest(image, bytes_of(in), config);
        if (r && r->exit_code == 0 && r->output.find("input: " + in + "\n") != std::string::npos &&
            read_sector(*config.virtio_blk, 1)[1] == std::byte{20})
          ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kRuns);
  EXPECT_EQ(fds(), fds_before);
}

}  // namespace
}  // namespace pepita::vmm
