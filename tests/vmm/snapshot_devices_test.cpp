// Snapshots with virtio devices: the guest (virtio_snap) sets up virtio-console and virtio-blk
// before its kReady call; VMs restored from the snapshot do I/O through those queues against
// their own disks, recycle with reset_to, and refuse a config of another shape or a device with a
// request in flight at the snapshot point.
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

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
#include "pepita/core/format.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::read_sector;

using test::bytes_of;
namespace v = abi::virtio;

std::shared_ptr<blk_mq::BlockDevice> disk_with(const std::string& sector0,
                                               uint64_t bytes = 1 << 20) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = bytes});
  EXPECT_TRUE(disk) << disk.error().to_string();
  if (!disk) return nullptr;
  std::shared_ptr<blk_mq::BlockDevice> d(std::move(*disk));
  blk_mq::TagSet tags(d->info().tag_set);
  std::vector<std::byte> s0(512);
  std::memcpy(s0.data(), sector0.c_str(), sector0.size() + 1);
  auto w = blk_mq::execute(*d, tags, 0, blk_mq::Op::Write, 0, s0);
  EXPECT_TRUE(w) << w.error().to_string();
  return d;
}

// What virtio_snap writes to sector 1 for an input starting with `seed`.
bool has_pattern(blk_mq::BlockDevice& disk, char seed) {
  const auto s1 = read_sector(disk, 1);
  for (int i = 0; i < 512; ++i)
    if (s1[i] != std::byte(static_cast<uint8_t>(seed + i * 7))) return false;
  return true;
}

VmConfig devices(std::shared_ptr<blk_mq::BlockDevice> disk) {
  VmConfig c;
  c.virtio_console = true;
  c.virtio_blk = std::move(disk);
  return c;
}

Result<Snapshot> capture(VmConfig config) {
  config.snapshottable = true;
  auto vm = PEPITA_TRY(Vm::create(test::load_guest("virtio_snap"), config));
  return Vm::capture(std::move(vm));
}

std::string expected_output(const std::string& input, const std::string& at_init,
                            const std::string& now) {
  return "input: " + input + "\nsector 0 at init: " + at_init + "\nsector 0 now: " + now + "\n";
}

void expect_healthy(const RunResult& r) {
  ASSERT_EQ(r.virtio.size(), 2u);
  EXPECT_EQ(r.virtio[0].device_id, v::ID_CONSOLE);
  EXPECT_EQ(r.virtio[1].device_id, v::ID_BLOCK);
  for (const auto& d : r.virtio) {
    EXPECT_EQ(d.status & v::STATUS_NEEDS_RESET, 0) << d.last_error;
    EXPECT_NE(d.status & v::STATUS_DRIVER_OK, 0) << "restored with the driver's status";
    EXPECT_EQ(d.bad_accesses, 0u) << d.last_error;
  }
  EXPECT_EQ(r.virtio[1].notifies, 3u) << "write, read back, read sector 0: no re-initialisation";
}

TEST(SnapshotDevices, ColdRunOfTheGuestUsesBothDevices) {
  PEPITA_REQUIRE_KVM();
  auto disk = disk_with("cold disk");
  auto r = run_guest(test::load_guest("virtio_snap"), bytes_of("cold"), devices(disk));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output,
            "before the snapshot point\n" + expected_output("cold", "cold disk", "cold disk"));
  EXPECT_TRUE(has_pattern(*disk, 'c'));
}

TEST(SnapshotDevices, RestoredVmsDoIoThroughQueuesSetUpBeforeTheSnapshot) {
  PEPITA_REQUIRE_KVM();
  auto capture_disk = disk_with("capture disk");
  auto snap = capture(devices(capture_disk));
  ASSERT_TRUE(snap) << snap.error().to_string();
  // Two VMs from one snapshot, each with its own disk; the second runs after the first consumed
  // its copy of the console's held buffer and advanced its copy of the blk queue.
  auto disk_a = disk_with("disk A");
  auto disk_b = disk_with("disk B");
  auto a = Vm::restore(*snap, devices(disk_a));
  auto b = Vm::restore(*snap, devices(disk_b));
  ASSERT_TRUE(a && b) << (a ? b.error() : a.error()).to_string();
  auto ra = a->run(bytes_of("alpha"));
  auto rb = b->run(bytes_of("beta"));
  ASSERT_TRUE(ra && rb) << (ra ? rb.error() : ra.error()).to_string();
  for (const auto* r : {&*ra, &*rb}) {
    ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
    EXPECT_EQ(r->exit_code, 0) << r->output;
    expect_healthy(*r);
  }
  // Output before kReady belonged to the capture; sector 0 read before it came from the capture's
  // disk, the one read after from each VM's own.
  EXPECT_EQ(ra->output, expected_output("alpha", "capture disk", "disk A"));
  EXPECT_EQ(rb->output, expected_output("beta", "capture disk", "disk B"));
  EXPECT_TRUE(has_pattern(*disk_a, 'a'));
  EXPECT_TRUE(has_pattern(*disk_b, 'b'));
  EXPECT_EQ(read_sector(*capture_disk, 1), std::vector<std::byte>(512))
      << "restored VMs never write the capture's disk";
}

TEST(SnapshotDevices, ConcurrentRestoresEachGetTheirOwnDeviceState) {
  PEPITA_REQUIRE_KVM();
  auto snap = capture(devices(disk_with("capture disk")));
  ASSERT_TRUE(snap) << snap.error().to_string();
  constexpr int kThreads = 4, kRuns = 10;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRuns; ++i) {
        const std::string name = pepita::fmt("disk {}.{}", t, i);
        auto disk = disk_with(name);
        auto vm = Vm::restore(*snap, devices(disk));
        if (!vm) continue;
        const char seed = static_cast<char>('A' + t * kRuns + i);
        const std::string input = std::string(1, seed) + name;
        auto r = vm->run(bytes_of(input));
        if (r && r->exit_code == 0 && r->output == expected_output(input, "capture disk", name) &&
            has_pattern(*disk, seed))
          ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kRuns);
}

TEST(SnapshotDevices, RestoreWithTheSnapshotsOwnConfigServesTheCaptureDisk) {
  PEPITA_REQUIRE_KVM();
  auto capture_disk = disk_with("shared");
  auto snap = capture(devices(capture_disk));
  ASSERT_TRUE(snap) << snap.error().to_string();
  auto vm = Vm::restore(*snap);
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto r = vm->run(bytes_of("own"));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->output, expected_output("own", "shared", "shared"));
  EXPECT_TRUE(has_pattern(*capture_disk, 'o'));
}

TEST(SnapshotDevices, RecycledVmReloadsTheDeviceStateEachTime) {
  PEPITA_REQUIRE_KVM();
  auto snap = capture(devices(disk_with("capture disk")));
  ASSERT_TRUE(snap) << snap.error().to_string();
  auto disk = disk_with("recycled");
  auto vm = Vm::restore(*snap, devices(disk));
  ASSERT_TRUE(vm) << vm.error().to_string();
  for (char c = 'a'; c < 'a' + 8; ++c) {
    SCOPED_TRACE(c);
    if (c != 'a') {
      auto reset = vm->reset_to(*snap);
      ASSERT_TRUE(reset) << reset.error().to_string();
    }
    const std::string input = std::string(1, c) + "-run";
    auto r = vm->run(bytes_of(input));
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
    EXPECT_EQ(r->output, expected_output(input, "capture disk", "recycled"));
    expect_healthy(*r);
    EXPECT_TRUE(has_pattern(*disk, c)) << "the recycled VM keeps serving its own disk";
  }
}

TEST(SnapshotDevices, RestoreWithDevicesOfAnotherShapeIsAClearError) {
  PEPITA_REQUIRE_KVM();
  auto snap = capture(devices(disk_with("capture disk")));
  ASSERT_TRUE(snap) << snap.error().to_string();
  struct Case {
    const char* what;
    VmConfig config;
    const char* says;
  };
  VmConfig no_console = devices(disk_with("x"));
  no_console.virtio_console = false;
  const Case cases[] = {
      {"no disk", devices(nullptr), "virtio-blk"},
      {"no console", no_console, "virtio-console"},
      {"a disk of another size", devices(disk_with("x", 2 << 20)), "disk size"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto vm = Vm::restore(*snap, c.config);
    ASSERT_FALSE(vm);
    EXPECT_EQ(vm.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(vm.error().message().find(c.says), std::string::npos) << vm.error().message();
  }
  // reset_to checks the same: a VM without the snapshot's devices cannot recycle into it.
  auto plain = capture(VmConfig{});
  ASSERT_TRUE(plain) << plain.error().to_string();
  auto vm = Vm::restore(*plain);
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto reset = vm->reset_to(*snap);
  ASSERT_FALSE(reset);
  EXPECT_EQ(reset.error().code(), ErrorCode::InvalidArgument);
}

TEST(SnapshotDevices, RequestInFlightAtTheSnapshotPointIsRefused) {
  PEPITA_REQUIRE_KVM();
  // An 8-sector disk asks virtio_snap to leave a request made available, never notified.
  auto snap = capture(devices(disk_with("busy", 8 * 512)));
  ASSERT_FALSE(snap);
  EXPECT_EQ(snap.error().code(), ErrorCode::Busy);
  EXPECT_NE(snap.error().message().find("without a notify"), std::string::npos)
      << snap.error().message();
}

TEST(SnapshotDevices, VsockVmsRestoreWithTheirOwnSocketPathAndTheSnapshotsCid) {
  PEPITA_REQUIRE_KVM();
  auto path = [](const char* tag) {
    return pepita::fmt("/tmp/pepita-snapvsock-{}-{}", ::getpid(), tag);
  };
  VmConfig config;
  config.vsock_path = path("capture");
  config.vsock_cid = 7;
  config.snapshottable = true;
  auto vm = Vm::create(test::load_guest("hello"), config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  auto snap = Vm::capture(std::move(*vm));
  ASSERT_TRUE(snap) << snap.error().to_string();
  // Two live VMs from one snapshot, each listening on its own path.
  VmConfig a = config, b = config;
  a.vsock_path = path("a");
  b.vsock_path = path("b");
  auto va = Vm::restore(*snap, a);
  auto vb = Vm::restore(*snap, b);
  ASSERT_TRUE(va && vb) << (va ? vb.error() : va.error()).to_string();
  for (auto* v : {&*va, &*vb}) {
    auto r = v->run({});
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
    ASSERT_EQ(r->virtio.size(), 1u);
    EXPECT_EQ(r->virtio[0].device_id, abi::virtio::ID_VSOCK);
  }
  VmConfig other_cid = config;
  other_cid.vsock_path = path("c");
  other_cid.vsock_cid = 8;
  auto bad = Vm::restore(*snap, other_cid);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("CID"), std::string::npos) << bad.error().message();
  VmConfig no_vsock = config;
  no_vsock.vsock_path.clear();
  auto missing = Vm::restore(*snap, no_vsock);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(missing.error().message().find(
                "the snapshot has virtio-vsock but the restored VM's config has none"),
            std::string::npos)
      << missing.error().message();
  // A socket path that cannot be bound fails naming the config field.
  VmConfig unbindable = config;
  unbindable.vsock_path = "/nonexistent/pepita-snapvsock.sock";
  auto unbound = Vm::restore(*snap, unbindable);
  ASSERT_FALSE(unbound);
  EXPECT_NE(unbound.error().to_string().find("VmConfig::vsock_path"), std::string::npos)
      << unbound.error().to_string();
  for (const char* tag : {"capture", "a", "b", "c"}) ::unlink(path(tag).c_str());
}

// Not a speed goal: prints start-to-result of a device VM started three ways, in alternated
// rounds on the same input and disk: cold (create: devices set up by the guest after boot),
// restored from the snapshot, recycled with reset_to. Checks every result.
TEST(SnapshotDevices, PrintsStartToResultOfColdRestoredAndRecycledVms) {
  PEPITA_REQUIRE_KVM();
  auto snap = capture(devices(disk_with("capture disk")));
  ASSERT_TRUE(snap) << snap.error().to_string();
  auto disk = disk_with("bench");
  auto image = test::load_guest("virtio_snap");
  auto recycled = Vm::restore(*snap, devices(disk));
  ASSERT_TRUE(recycled) << recycled.error().to_string();
  ASSERT_TRUE(recycled->run(bytes_of("warm")));
  struct Clock {
    std::vector<double> wall_us, cpu_us;
  };
  Clock cold, restored, recycle;
  auto thread_cpu = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  auto timed = [&](Clock& c, auto&& start_and_run) {
    const auto w0 = std::chrono::steady_clock::now();
    const auto c0 = thread_cpu();
    auto r = start_and_run();
    const auto c1 = thread_cpu();
    const auto w1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->exit_code, 0) << r->output;
    c.wall_us.push_back(std::chrono::duration<double, std::micro>(w1 - w0).count());
    c.cpu_us.push_back(std::chrono::duration<double, std::micro>(c1 - c0).count());
  };
  constexpr int kRounds = 15;
  for (int round = 0; round < kRounds; ++round) {
    auto run_cold = [&] {
      timed(cold, [&] { return run_guest(image, bytes_of("x"), devices(disk)); });
    };
    auto run_restored = [&] {
      timed(restored, [&]() -> Result<RunResult> {
        auto vm = PEPITA_TRY(Vm::restore(*snap, devices(disk)));
        return vm.run(bytes_of("x"));
      });
    };
    auto run_recycled = [&] {
      timed(recycle, [&]() -> Result<RunResult> {
        PEPITA_TRY_VOID(recycled->reset_to(*snap));
        return recycled->run(bytes_of("x"));
      });
    };
    // Rotate the order each round so no variant always runs first or last.
    if (round % 3 == 0) run_cold(), run_restored(), run_recycled();
    if (round % 3 == 1) run_restored(), run_recycled(), run_cold();
    if (round % 3 == 2) run_recycled(), run_cold(), run_restored();
  }
  auto line = [](const char* what, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return pepita::fmt("{}: median {} us (min {}, max {})", what,
                       static_cast<int64_t>(v[v.size() / 2]), static_cast<int64_t>(v.front()),
                       static_cast<int64_t>(v.back()));
  };
  for (const auto& [name, c] : {std::pair{"cold     ", &cold}, std::pair{"restored ", &restored},
                                std::pair{"recycled ", &recycle}}) {
    ASSERT_EQ(c->wall_us.size(), static_cast<size_t>(kRounds));
    std::printf("[ info ] %s %s | thread CPU %s\n", name, line("wall", c->wall_us).c_str(),
                line("cpu-thr", c->cpu_us).c_str());
  }
}

}  // namespace
}  // namespace pepita::vmm
