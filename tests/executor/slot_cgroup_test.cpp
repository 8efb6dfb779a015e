// The slot's reusable cgroup (src/executor/slot_cgroup.cpp, issue 27): attempts without limits run
// in one cgroup per executor slot instead of one made and removed per attempt, while an attempt
// with limits still gets its own; each attempt's peak memory and CPU time stay its own. Where a
// task ran is read by the task itself from /proc/self/cgroup and the cgroup directories are
// listed through the mount in /proc/self/mounts, not through pepita's cgroup code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/private_cgroup.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "executor/process_test_util.hpp"
#include "pepita/executor/process.hpp"

namespace pepita::executor {
namespace {

using test::run_one;
using namespace std::chrono_literals;
using task::Allocation;
using task::Task;
namespace fs = std::filesystem;

Task sh(const std::string& script) {
  return Task::binary("/bin/sh").args({"-c", script}).build().value();
}

// The mount of the v1 memory hierarchy, else of cgroup2 (as tests/common/require.hpp finds it).
struct Mount {
  std::string dir;
  bool v1 = false;
};
Mount memory_mount() {
  Mount v1, v2;
  if (FILE* f = std::fopen("/proc/self/mounts", "r")) {
    char dev[512], dir[1024], type[64], opts[1024];
    while (std::fscanf(f, "%511s %1023s %63s %1023s %*d %*d", dev, dir, type, opts) == 4) {
      const std::string o = std::string(",").append(opts).append(",");
      if (std::string(type) == "cgroup" && o.find(",memory,") != std::string::npos)
        v1 = {dir, true};
      if (std::string(type) == "cgroup2" && v2.dir.empty()) v2 = {dir, false};
    }
    std::fclose(f);
  }
  return v1.dir.empty() ? v2 : v1;
}

// A script printing the task's own cgroup in that hierarchy ("/.../task-slot0-3").
std::string print_own_cgroup(const Mount& m) {
  return m.v1 ? "grep ':memory:' /proc/self/cgroup | cut -d: -f3"
              : "grep '^0::' /proc/self/cgroup | cut -d: -f3";
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Whether the kernel can reset a cgroup's peak memory, which reuse needs: always on v1; on v2
// memory.peak takes a write since Linux 6.12 (it resets the peak seen through that fd only, so
// probing our own cgroup's file changes nothing for anyone else).
bool peak_resettable(const Mount& m) {
  if (m.v1) return true;
  std::FILE* f = std::fopen("/proc/self/cgroup", "r");
  if (f == nullptr) return false;
  char line[4096];
  std::string own;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "0::", 3) == 0) own = trimmed(line + 3);
  }
  std::fclose(f);
  const std::string peak = m.dir + (own == "/" ? "" : own) + "/memory.peak";
  const int fd = ::open(peak.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, "reset", 5) == 5;
  ::close(fd);
  return ok;
}

std::unique_ptr<ProcessExecutor> one_slot() {
  auto e = ProcessExecutor::create({.slots = 1, .kill_grace = 2s});
  EXPECT_TRUE(e) << e.error().message();
  return std::move(*e);
}

TEST(SlotCgroup, AttemptsWithoutLimitsInOneSlotRunInOneCgroupThatOutlivesThem) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  if (!peak_resettable(m)) GTEST_SKIP() << "cgroup2 memory.peak cannot be reset (Linux < 6.12)";
  auto exec = one_slot();
  // An attempt that leaves charges behind (on v1, kernel memory such as the dentries of its
  // /proc entries, or page cache it read in) ends the slot's cgroup by design, so the next one
  // starts clean in a fresh cgroup (its name carries a per-process sequence number). That is
  // the kernel's call, not ours: what must hold is that cgroups are reused across attempts, so
  // six attempts run in fewer than six cgroups, and never more than one is left beside the slot.
  constexpr int kAttempts = 6;
  std::vector<std::string> paths;
  for (int i = 0; i < kAttempts; ++i) {
    const auto r = run_one(*exec, sh(print_own_cgroup(m)));
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    paths.push_back(trimmed(r.stdout_data));
    EXPECT_NE(paths.back().find("/task-slot"), std::string::npos) << paths.back();
  }
  int reused = 0;
  for (int i = 1; i < kAttempts; ++i) reused += paths[i] == paths[i - 1] ? 1 : 0;
  EXPECT_GE(reused, 1) << "every attempt ran in a cgroup of its own: " << paths.front() << " .. "
                       << paths.back();
  // After the last attempt its cgroup stays unless that attempt left charges behind.
  const fs::path dir = m.dir + paths.back();
  int task_dirs = 0;
  for (const auto& e : fs::directory_iterator(dir.parent_path())) {
    if (e.is_directory() && e.path().filename().string().starts_with("task-")) ++task_dirs;
  }
  EXPECT_LE(task_dirs, 1);
  if (task_dirs == 1) {
    EXPECT_TRUE(fs::is_directory(dir)) << dir;
  }
  exec.reset();
  EXPECT_FALSE(fs::exists(dir)) << "the executor's end removes its slots' cgroups";
}

// The mount of the v1 pids hierarchy, else of cgroup2; empty without a pids controller.
Mount pids_mount() {
  Mount v1, v2;
  if (FILE* f = std::fopen("/proc/self/mounts", "r")) {
    char dev[512], dir[1024], type[64], opts[1024];
    while (std::fscanf(f, "%511s %1023s %63s %1023s %*d %*d", dev, dir, type, opts) == 4) {
      const std::string o = std::string(",").append(opts).append(",");
      if (std::string(type) == "cgroup" && o.find(",pids,") != std::string::npos) v1 = {dir, true};
      if (std::string(type) == "cgroup2" && v2.dir.empty()) v2 = {dir, false};
    }
    std::fclose(f);
  }
  return v1.dir.empty() ? v2 : v1;
}

std::string read_trimmed(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[64];
    while (std::fgets(buf, sizeof buf, f)) text += buf;
    std::fclose(f);
  }
  return trimmed(text);
}

TEST(SlotCgroup, ASandboxsPidsLimitIsItsSlotCgroupsPidsMaxReusedAcrossAttempts) {
  PEPITA_REQUIRE_CAPABILITY(root);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  if (!peak_resettable(m)) GTEST_SKIP() << "cgroup2 memory.peak cannot be reset (Linux < 6.12)";
  const Mount p = pids_mount();
  if (p.dir.empty() || (p.v1 != m.v1)) GTEST_SKIP() << "no pids controller mounted";
  pepita::test::TempDir work("slot-pids");
  fs::permissions(work.path(), fs::perms::all);  // the sandbox's uid binds it
  task::SandboxPolicy sandbox = task::SandboxPolicy::standard();
  sandbox.max_processes = 16;
  const std::string script = p.v1 ? "grep ':pids:' /proc/self/cgroup | cut -d: -f3"
                                  : "grep '^0::' /proc/self/cgroup | cut -d: -f3";
  auto sandboxed = [&] {
    return Task::binary("/bin/sh").args({"-c", script}).cwd(work.path()).sandbox(sandbox).build();
  };
  auto exec = one_slot();
  std::string first;
  for (int i = 0; i < 2; ++i) {
    auto t = sandboxed();
    ASSERT_TRUE(t) << t.error().message();
    const auto r = run_one(*exec, *t);
    ASSERT_EQ(r.status, Status::Succeeded) << r.error << r.stderr_data;
    const std::string path = trimmed(r.stdout_data);
    EXPECT_NE(path.find("/task-slot"), std::string::npos) << path;
    if (i == 0) first = path;
    EXPECT_EQ(path, first) << "sandboxed attempt " << i << " ran in another cgroup";
  }
  // The slot's cgroup outlives the attempts unless the last left charges (see above); while it
  // is there it holds the limit.
  if (fs::is_directory(p.dir + first)) {
    EXPECT_EQ(read_trimmed(p.dir + first + "/pids.max"), "16");
  }
  // An attempt without the limit must not run under it: another slot cgroup, without pids.max.
  const auto plain = run_one(*exec, sh(script));
  ASSERT_EQ(plain.status, Status::Succeeded) << plain.error;
  const std::string other = trimmed(plain.stdout_data);
  EXPECT_NE(other.find("/task-slot"), std::string::npos) << other;
  EXPECT_NE(other, first);
  if (fs::is_directory(p.dir + other)) {
    EXPECT_EQ(read_trimmed(p.dir + other + "/pids.max"), "max");
  }
}

TEST(SlotCgroup, AnAttemptWithAMemoryLimitGetsACgroupOfItsOwnRemovedWhenItEnds) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  auto exec = one_slot();
  Allocation a;
  a.memory = 64ull << 20;
  const auto r = run_one(*exec, sh(print_own_cgroup(m)).with_allocation(a));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const std::string path = trimmed(r.stdout_data);
  EXPECT_NE(path.find("/task-"), std::string::npos) << path;
  EXPECT_EQ(path.find("/task-slot"), std::string::npos) << path;
  EXPECT_FALSE(fs::exists(m.dir + path)) << "a limited attempt's cgroup ends with it";
  if (m.v1) {
    EXPECT_EQ(r.memory_limit, 64ull << 20);
  }
}

// Only a limit (memory, a cpu quota or pids) takes an attempt out of its slot's cgroup: an
// allocation of a GPU alone runs in the slot's, one with a cpu quota or a pids limit in its own.
TEST(SlotCgroup, OnlyAnAllocationWithALimitGetsACgroupOfItsOwn) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  if (!peak_resettable(m)) GTEST_SKIP() << "cgroup2 memory.peak cannot be reset (Linux < 6.12)";
  auto exec = one_slot();
  auto cgroup_of = [&](const Allocation& a) {
    const auto r = run_one(*exec, sh(print_own_cgroup(m)).with_allocation(a));
    EXPECT_EQ(r.status, Status::Succeeded) << r.error;
    return trimmed(r.stdout_data);
  };
  Allocation gpu;
  gpu.gpus.push_back({.id = "0", .fraction = 1.0});
  const std::string slot = cgroup_of(gpu);
  EXPECT_NE(slot.find("/task-slot"), std::string::npos) << slot;
  Allocation quota;
  quota.cpus = 0.5;
  Allocation pids;
  pids.pids = 64;
  for (const Allocation& limited : {quota, pids}) {
    const std::string own = cgroup_of(limited);
    EXPECT_NE(own.find("/task-"), std::string::npos) << own;
    EXPECT_EQ(own.find("/task-slot"), std::string::npos) << own;
  }
}

TEST(SlotCgroup, EachAttemptReportsItsOwnPeakMemoryAndCpuTime) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto exec = one_slot();
  // ~64 MiB touched and some CPU burnt in a grandchild the shell does not wait for via rusage
  // alone (the cgroup counts it), then a task that does nothing in the same slot.
  const auto big = run_one(*exec, sh("head -c 67108864 /dev/zero | tail -c 67108864 >/dev/null; "
                                     "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"));
  ASSERT_EQ(big.status, Status::Succeeded) << big.error;
  EXPECT_GE(big.peak_memory, 32ull << 20) << "tail holds its 64 MiB";
  EXPECT_GT(big.cpu, 50ms);
  const auto small = run_one(*exec, Task::binary("/bin/true").build().value());
  ASSERT_EQ(small.status, Status::Succeeded) << small.error;
  EXPECT_GT(small.peak_memory, 0u) << "the slot's cgroup still measures the peak";
  EXPECT_LT(small.peak_memory, 16ull << 20) << "the first attempt's peak was not reset";
  EXPECT_LT(small.cpu, big.cpu / 2) << "the first attempt's CPU time was counted again";
}

TEST(SlotCgroup, ChargesLeftBehindGiveTheNextAttemptAFreshCgroup) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  if (!peak_resettable(m)) GTEST_SKIP() << "cgroup2 memory.peak cannot be reset (Linux < 6.12)";
  pepita::test::TempDir tmp("slot-cgroup");
  auto exec = one_slot();
  // 16 MiB of page cache stays charged to the cgroup after the writer exits.
  const std::string file = tmp.path() + "/cache";
  const auto writer =
      run_one(*exec, sh("head -c 16777216 /dev/zero > " + file + "; " + print_own_cgroup(m)));
  ASSERT_EQ(writer.status, Status::Succeeded) << writer.error;
  const auto next = run_one(*exec, sh(print_own_cgroup(m)));
  ASSERT_EQ(next.status, Status::Succeeded) << next.error;
  EXPECT_NE(trimmed(next.stdout_data), trimmed(writer.stdout_data));
  EXPECT_FALSE(fs::exists(m.dir + trimmed(writer.stdout_data)));
  EXPECT_LT(next.peak_memory, 8ull << 20) << "the writer's page cache is not the next one's";
}

TEST(SlotCgroup, ABackgroundGrandchildIsKilledAndTheSlotsCgroupIsReusedAfterIt) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const Mount m = memory_mount();
  if (!peak_resettable(m)) GTEST_SKIP() << "cgroup2 memory.peak cannot be reset (Linux < 6.12)";
  auto exec = one_slot();
  const auto r = run_one(*exec, sh("sleep 100 >/dev/null 2>&1 & echo $!; " + print_own_cgroup(m)));
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const auto nl = r.stdout_data.find('\n');
  ASSERT_NE(nl, std::string::npos) << r.stdout_data;
  const pid_t grandchild = std::stoi(r.stdout_data.substr(0, nl));
  EXPECT_FALSE(test::process_running(grandchild)) << "killed before the result was delivered";
  const auto next = run_one(*exec, sh(print_own_cgroup(m)));
  ASSERT_EQ(next.status, Status::Succeeded) << next.error;
  EXPECT_EQ(trimmed(next.stdout_data), trimmed(r.stdout_data.substr(nl + 1)));
}

using ExecutorInOwnMountNamespace = pepita::test::CgroupNamespaceTest;

// On cgroup v2 without the memory controller (the v1 memory hierarchy unmounted in the test's own
// mount namespace) a slot cgroup has no memory counters to reuse: each attempt gets a cgroup of
// its own instead, and a memory limit is a launch failure saying why, not an unlimited run.
TEST_F(ExecutorInOwnMountNamespace, OnV2WithoutMemoryAttemptsGetCgroupsOfTheirOwnAndNoMemoryLimit) {
  run([](const std::string& own) {
    unmount_v1_memory();
    std::ifstream controllers(own + "/cgroup.controllers");
    const std::string listed((std::istreambuf_iterator<char>(controllers)), {});
    if (listed.find("memory") != std::string::npos) {
      GTEST_SKIP() << "the memory controller is delegated to us on cgroup v2";
    }
    auto exec = one_slot();
    for (int i = 0; i < 2; ++i) {
      const auto r = run_one(*exec, sh("grep '^0::' /proc/self/cgroup | cut -d: -f3"));
      ASSERT_EQ(r.status, Status::Succeeded) << r.error;
      const std::string path = trimmed(r.stdout_data);
      EXPECT_NE(path.find("/task-"), std::string::npos) << path;
      EXPECT_EQ(path.find("/task-slot"), std::string::npos) << path << ": a slot cgroup";
    }
    Allocation a;
    a.memory = 64ull << 20;
    const auto limited = run_one(*exec, sh("true").with_allocation(a));
    EXPECT_EQ(limited.status, Status::LaunchFailed);
    EXPECT_NE(limited.error.find("cannot enforce the task's resource limits: cannot limit memory: "
                                 "cgroup v2: the memory controller is not available"),
              std::string::npos)
        << limited.error;
    EXPECT_NE(limited.error.find("Delegate=yes"), std::string::npos) << limited.error;
  });
}

// Without any usable cgroup hierarchy (no cgroup2, no v1 memory) tasks still run, but one that
// asks for memory fails to launch, saying that its limit cannot be enforced and why.
TEST_F(ExecutorInOwnMountNamespace, WithoutCgroupsAMemoryRequestIsALaunchFailureSayingWhy) {
  run([](const std::string&) {
    unmount_v1_memory();
    for (const std::string& m : pepita::test::cgroup_mounts("cgroup2")) {
      ASSERT_EQ(::umount2(m.c_str(), MNT_DETACH), 0) << m << ": " << std::strerror(errno);
    }
    auto exec = one_slot();
    const auto plain = run_one(*exec, sh("echo ran"));
    ASSERT_EQ(plain.status, Status::Succeeded) << plain.error;
    EXPECT_EQ(plain.stdout_data, "ran\n");
    Allocation a;
    a.memory = 64ull << 20;
    const auto limited = run_one(*exec, sh("echo ran").with_allocation(a));
    EXPECT_EQ(limited.status, Status::LaunchFailed);
    EXPECT_EQ(limited.stdout_data, "");
    EXPECT_NE(limited.error.find("task asks for memory = \"64M\" but its limit cannot be "
                                 "enforced here: "),
              std::string::npos)
        << limited.error;
    EXPECT_NE(limited.error.find("mount cgroup2"), std::string::npos) << limited.error;
  });
}

}  // namespace
}  // namespace pepita::executor
