#include "pepita/core/cgroup.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/private_cgroup.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"

namespace pepita {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool dir_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// Runs a child that joins `cg`, touches `bytes` of fresh memory and exits 0 (2: it could not
/// join, 3: malloc failed); returns its wait status, or -1 when it could not be started.
int touch_memory_in(const Cgroup& cg, std::size_t bytes) {
  const auto fds = cg.join_fds();
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (int fd : fds)
      if (::write(fd, "0", 1) != 1) ::_exit(2);
    auto* p = static_cast<char*>(::malloc(bytes));
    for (std::size_t i = 0; p && i < bytes; i += 4096) p[i] = 1;
    ::_exit(p ? 0 : 3);
  }
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid ? status : -1;
}

// A child that sleeps until killed; reaped by the caller.
pid_t sleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (;;) ::pause();
  }
  return pid;
}

// Writes `text` to a cgroup file (cgroup.procs, freezer.state); whether the kernel took it.
bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text << std::flush;
  return out.good();
}

// Our cgroup in the v1 hierarchy of `controller` (its mount point from /proc/self/mounts, our
// path in it from /proc/self/cgroup); empty when no v1 hierarchy has that controller.
std::string v1_cgroup_dir(const std::string& controller) {
  const std::string want = std::string(",").append(controller).append(",");
  std::string mount, path;
  std::ifstream mounts("/proc/self/mounts");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::string dev, dir, type, opts;
    if (!(f >> dev >> dir >> type >> opts) || type != "cgroup") continue;
    if (std::string(",").append(opts).append(",").find(want) != std::string::npos) mount = dir;
  }
  std::ifstream cgroups("/proc/self/cgroup");
  for (std::string line; std::getline(cgroups, line);) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctrls = std::string(",").append(line.substr(a + 1, b - a - 1)).append(",");
    if (ctrls.find(want) != std::string::npos) path = line.substr(b + 1);
  }
  if (mount.empty() || path.empty()) return {};
  return path == "/" ? mount : mount + path;
}

constexpr std::string_view kHybridCgroup =
    "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/b33\n2:cpuacct:/\n1:cpu:/\n0::/\n";
constexpr std::string_view kHybridMounts =
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(CgroupLayout, ParsesHybridV1Hierarchies) {
  auto l = parse_cgroup_layout(kHybridCgroup, kHybridMounts);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->memory, "/sys/fs/cgroup/memory/process_api/b33");
  EXPECT_EQ(l->cpu, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(l->cpuacct, "/sys/fs/cgroup/cpuacct");
  EXPECT_EQ(l->pids, "/sys/fs/cgroup/pids");
  EXPECT_EQ(l->unified, "/sys/fs/cgroup/unified");
}

TEST(CgroupLayout, ParsesPureV2WithAContainerMountRoot) {
  auto l = parse_cgroup_layout(
      "0::/docker/abc/user.slice\n",
      "25 20 0:22 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->unified, "/sys/fs/cgroup/user.slice");
  EXPECT_TRUE(l->memory.empty());
}

TEST(CgroupLayout, CoMountedCpuAndCpuacctShareADirectory) {
  auto l = parse_cgroup_layout(
      "3:cpu,cpuacct:/a\n4:memory:/a\n",
      "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->cpu, "/sys/fs/cgroup/cpu,cpuacct/a");
  EXPECT_EQ(l->cpuacct, l->cpu);
  EXPECT_EQ(l->memory, "/sys/fs/cgroup/memory/a");
}

TEST(CgroupLayout, UnescapesOctalInMountPoints) {
  auto l =
      parse_cgroup_layout("0::/a\n", "25 20 0:22 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->unified, "/mnt/my cgroups/a");
}

TEST(CgroupLayout, NoHierarchyMountedIsUnsupportedSayingWhatToDo) {
  auto l = parse_cgroup_layout("0::/\n", "22 1 0:21 / /proc rw - proc proc rw\n");
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(l.error().message().find("mount cgroup2"), std::string::npos) << l.error().message();
}

TEST(CgroupTree, ParentIsNamedAfterOurPidAndStartTimeAndSharedByHolders) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto a = CgroupTree::acquire();
  ASSERT_TRUE(a) << a.error().message();
  auto b = CgroupTree::acquire();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(a->get(), b->get());
  const std::string name = cgroup_parent_name(::getpid());
  ASSERT_FALSE(name.empty());
  EXPECT_TRUE((*a)->path().ends_with("/" + name)) << (*a)->path();
  EXPECT_TRUE(dir_exists((*a)->path()));
  const std::string path = (*a)->path();
  a->reset();
  EXPECT_TRUE(dir_exists(path)) << "the other holder still uses it";
  b->reset();
  EXPECT_FALSE(dir_exists(path)) << "the last holder removes it";
}

TEST(CgroupTree, MakeWritesMemoryCpuAndPidsLimits) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("limits", {.memory = 200ull << 20, .cpus = 0.5, .pids = 64});
  ASSERT_TRUE(cg) << cg.error().message();
  std::string memory_file, quota;
  if ((*tree)->version() == CgroupVersion::V1) {
    EXPECT_EQ(slurp(cg->path() + "/memory.limit_in_bytes"), "209715200\n");
    // With swap accounting the limit covers swap too, so the task is OOM-killed, not swapped.
    if (std::ifstream(cg->path() + "/memory.memsw.limit_in_bytes")) {
      EXPECT_EQ(slurp(cg->path() + "/memory.memsw.limit_in_bytes"), "209715200\n");
    }
    bool saw_cpu = false, saw_pids = false;
    for (const std::string& p : cg->paths()) {
      if (std::ifstream(p + "/cpu.cfs_quota_us")) {
        EXPECT_EQ(slurp(p + "/cpu.cfs_quota_us"), "50000\n");
        EXPECT_EQ(slurp(p + "/cpu.cfs_period_us"), "100000\n");
        EXPECT_EQ(slurp(p + "/cpu.shares"), "512\n");  // 1024 per CPU
        saw_cpu = true;
      }
      if (std::ifstream(p + "/pids.max")) {
        EXPECT_EQ(slurp(p + "/pids.max"), "64\n");
        saw_pids = true;
      }
    }
    EXPECT_TRUE(saw_cpu) << "no cpu hierarchy directory among the cgroup's";
    EXPECT_TRUE(saw_pids) << "no pids hierarchy directory among the cgroup's";
  } else {
    EXPECT_EQ(slurp(cg->path() + "/memory.max"), "209715200\n");
    EXPECT_EQ(slurp(cg->path() + "/cpu.max"), "50000 100000\n");
    EXPECT_EQ(slurp(cg->path() + "/cpu.weight"), "50\n");  // 100 per CPU
    if (std::ifstream(cg->path() + "/memory.swap.max")) {
      EXPECT_EQ(slurp(cg->path() + "/memory.swap.max"), "0\n");
    }
    EXPECT_EQ(slurp(cg->path() + "/pids.max"), "64\n");
  }
  const auto paths = cg->paths();
  errno = EACCES;  // a stale errno from before must not turn a clean removal into a failure
  ASSERT_TRUE(cg->end());
  for (const auto& p : paths) EXPECT_FALSE(dir_exists(p)) << p;
}

// A tiny CPU share is raised to what the kernel takes: a quota of at least 1 ms per 100 ms
// period, and v1 cpu.shares of at least 2 (v2 cpu.weight of at least 1).
TEST(CgroupTree, MakeRaisesATinyCpuLimitToTheKernelsMinimum) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("tiny-cpu", {.memory = 0, .cpus = 0.001, .pids = 0});
  ASSERT_TRUE(cg) << cg.error().message();
  if ((*tree)->version() == CgroupVersion::V1) {
    bool saw_cpu = false;
    for (const std::string& p : cg->paths()) {
      if (std::ifstream(p + "/cpu.cfs_quota_us")) {
        EXPECT_EQ(slurp(p + "/cpu.cfs_quota_us"), "1000\n");
        EXPECT_EQ(slurp(p + "/cpu.shares"), "2\n");
        saw_cpu = true;
      }
    }
    EXPECT_TRUE(saw_cpu) << "no cpu hierarchy directory among the cgroup's";
  } else {
    EXPECT_EQ(slurp(cg->path() + "/cpu.max"), "1000 100000\n");
    EXPECT_EQ(slurp(cg->path() + "/cpu.weight"), "1\n");
  }
  ASSERT_TRUE(cg->end());
}

// Limits of 0 mean none: the kernel's defaults stay (no CPU quota, no memory or pids limit).
TEST(CgroupTree, MakeWithZeroLimitsLeavesTheKernelsDefaults) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("no-limits", {.memory = 0, .cpus = 0, .pids = 0});
  ASSERT_TRUE(cg) << cg.error().message();
  if ((*tree)->version() == CgroupVersion::V1) {
    for (const std::string& p : cg->paths()) {
      if (std::ifstream(p + "/cpu.cfs_quota_us")) {
        EXPECT_EQ(slurp(p + "/cpu.cfs_quota_us"), "-1\n") << p;
        EXPECT_EQ(slurp(p + "/cpu.shares"), "1024\n") << p;
      }
      if (std::ifstream(p + "/pids.max")) {
        EXPECT_EQ(slurp(p + "/pids.max"), "max\n") << p;
      }
    }
  } else {
    EXPECT_EQ(slurp(cg->path() + "/cpu.max"), "max 100000\n");
    EXPECT_EQ(slurp(cg->path() + "/memory.max"), "max\n");
    EXPECT_EQ(slurp(cg->path() + "/pids.max"), "max\n");
  }
  ASSERT_TRUE(cg->end());
}

TEST(CgroupTree, RejectsANameThatIsNotOnePathComponent) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  for (const char* bad : {"", "..", "a/b"}) {
    auto cg = (*tree)->make(bad, {});
    ASSERT_FALSE(cg) << bad;
    EXPECT_EQ(cg.error().code(), ErrorCode::InvalidArgument);
  }
}

TEST(CgroupTree, RejectsCpusThatAreNotAFiniteNonNegativeNumber) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  for (double bad :
       {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    auto cg = (*tree)->make("bad-cpus", {.memory = 0, .cpus = bad, .pids = 0});
    ASSERT_FALSE(cg) << bad;
    EXPECT_EQ(cg.error().code(), ErrorCode::InvalidArgument);
  }
}

TEST(Cgroup, EndKillsEveryProcessInsideAndRemovesTheDirectories) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("kill-me", {});
  ASSERT_TRUE(cg) << cg.error().message();
  const pid_t a = sleeper(), b = sleeper();
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  ASSERT_TRUE(cg->join(a));
  ASSERT_TRUE(cg->join(b));
  EXPECT_NE(slurp(cg->path() + "/cgroup.procs").find(std::to_string(a)), std::string::npos);
  const auto paths = cg->paths();
  ASSERT_TRUE(cg->end());
  int status = 0;
  ASSERT_EQ(::waitpid(a, &status, 0), a);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_EQ(::waitpid(b, &status, 0), b);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  for (const auto& p : paths) EXPECT_FALSE(dir_exists(p)) << p;
}

// end() forgets the directories it removed: the ended object is no longer valid, and when it is
// destroyed (which ends it again) it leaves alone a new cgroup made meanwhile under the same name.
TEST(Cgroup, EndForgetsItsDirectoriesSoANewCgroupOfTheSameNameOutlivesTheEndedOne) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  std::optional<Cgroup> second;
  std::vector<std::string> paths;
  {
    auto first = (*tree)->make("reused", {});
    ASSERT_TRUE(first) << first.error().message();
    paths = first->paths();
    ASSERT_TRUE(first->end());
    EXPECT_FALSE(first->valid());
    EXPECT_TRUE(first->paths().empty());
    EXPECT_TRUE(first->path().empty());
    EXPECT_TRUE(first->join_fds().empty());
    EXPECT_TRUE(first->end()) << "a second end() has nothing left to do";
    auto made = (*tree)->make("reused", {});
    ASSERT_TRUE(made) << made.error().message();
    EXPECT_EQ(made->paths(), paths);
    second.emplace(std::move(*made));
  }  // `first` is destroyed here
  for (const auto& p : paths) EXPECT_TRUE(dir_exists(p)) << p << " of the new cgroup was removed";
  EXPECT_TRUE(second->valid());
  ASSERT_TRUE(second->end());
  for (const auto& p : paths) EXPECT_FALSE(dir_exists(p)) << p;
}

// Move-assigning ends the cgroup the target held and hands over the source's: the target then
// owns the source's directories (and removes them when it ends), the source owns nothing.
TEST(Cgroup, MoveAssignmentEndsTheOldCgroupAndTakesOverTheOther) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto target = (*tree)->make("move-target", {});
  ASSERT_TRUE(target) << target.error().message();
  auto source = (*tree)->make("move-source", {});
  ASSERT_TRUE(source) << source.error().message();
  const auto old_paths = target->paths();
  const auto moved_paths = source->paths();
  *target = std::move(*source);
  for (const auto& p : old_paths) EXPECT_FALSE(dir_exists(p)) << p << " was not ended";
  EXPECT_EQ(target->paths(), moved_paths);
  EXPECT_FALSE(source->valid());
  EXPECT_TRUE(source->paths().empty());
  ASSERT_TRUE(source->end());
  for (const auto& p : moved_paths) EXPECT_TRUE(dir_exists(p)) << p;
  ASSERT_TRUE(target->end());
  for (const auto& p : moved_paths) EXPECT_FALSE(dir_exists(p)) << p;
}

// A directory that rmdir refuses for a reason other than EBUSY (here EACCES: a process that may
// not write the parent directory ends the cgroup) makes end() fail, naming the directory, instead
// of reporting a removal that did not happen.
TEST(Cgroup, EndFailsWhenADirectoryCannotBeRemoved) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  PEPITA_REQUIRE_CAPABILITY(root);  // a child drops to uid 65534, so that rmdir fails (EACCES)
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("not-removable", {});
  ASSERT_TRUE(cg) << cg.error().message();
  const auto paths = cg->paths();
  // The child's exit status: 0 end() failed naming the directory, 3 end() claimed success, 4 it
  // failed with another message, 2 the uid could not be dropped.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    auto ended = cg->end();
    if (ended) ::_exit(3);
    ::_exit(ended.error().message().find("remove cgroup " + paths.front()) != std::string::npos
                ? 0
                : 4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: end() reported success for a directory it left behind";
  for (const auto& p : paths) EXPECT_TRUE(dir_exists(p)) << p << " should still exist";
  ASSERT_TRUE(cg->end());  // as root it goes
  for (const auto& p : paths) EXPECT_FALSE(dir_exists(p)) << p;
}

TEST(Cgroup, UsageReportsPeakMemoryOfWhatRanInside) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("usage", {.memory = 256ull << 20, .cpus = 0, .pids = 0});
  ASSERT_TRUE(cg) << cg.error().message();
  const int status = touch_memory_in(*cg, 32u << 20);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const CgroupUsage u = cg->usage();
  EXPECT_GE(u.peak_memory, 32ull << 20);
  EXPECT_LT(u.peak_memory, 256ull << 20);
  EXPECT_EQ(u.oom_kills, 0u);
  EXPECT_TRUE(u.oom_kill_counted) << "v1 memory.oom_control or v2 memory.events has oom_kill";
  EXPECT_EQ(u.memory_failcnt, 0u) << "the 256 MiB limit was never reached";
  EXPECT_GT(u.cpu, 0ns) << "touching 32 MiB takes CPU time";
}

// A process that goes past the memory limit is OOM-killed inside the cgroup, and usage() counts
// the kill, with a peak no higher than the limit. (memory.failcnt may stay 0 on v1: with swap
// accounting the memsw counter refuses the charges first.)
TEST(Cgroup, UsageCountsAnOomKillAtTheMemoryLimit) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  constexpr std::uint64_t kLimit = 32ull << 20;
  auto cg = (*tree)->make("oom", {.memory = kLimit, .cpus = 0, .pids = 0});
  ASSERT_TRUE(cg) << cg.error().message();
  const int status = touch_memory_in(*cg, 256u << 20);  // far past the limit
  ASSERT_NE(status, -1);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    GTEST_SKIP() << "the child outlived its limit (swap without swap accounting took the rest)";
  }
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  const CgroupUsage u = cg->usage();
  EXPECT_TRUE(u.oom_kill_counted);
  EXPECT_GE(u.oom_kills, 1u);
  EXPECT_LE(u.peak_memory, kLimit);
  EXPECT_GT(u.peak_memory, kLimit / 2);
  ASSERT_TRUE(cg->end());
}

TEST(ReapStaleCgroups, RemovesADeadProcessesParentAndKillsWhatIsInIt) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  // A pid that is surely gone: a child we reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string parent = (*tree)->path().substr(0, (*tree)->path().rfind('/'));
  const std::string stale = parent + "/pepita-" + std::to_string(dead) + "-12345";
  const std::string child = stale + "/task-1-1";
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0) << std::strerror(errno);
  ASSERT_EQ(::mkdir(child.c_str(), 0755), 0) << std::strerror(errno);
  const pid_t orphan = sleeper();
  ASSERT_GT(orphan, 0);
  {
    std::ofstream procs(child + "/cgroup.procs");
    procs << orphan << std::flush;
    ASSERT_TRUE(procs.good());
  }
  auto removed = reap_stale_cgroups();
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_NE(std::find(removed->begin(), removed->end(), stale), removed->end());
  EXPECT_FALSE(dir_exists(stale));
  int status = 0;
  ASSERT_EQ(::waitpid(orphan, &status, 0), orphan);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // Ours is alive: left alone.
  EXPECT_TRUE(dir_exists((*tree)->path()));
  EXPECT_EQ(std::find(removed->begin(), removed->end(), (*tree)->path()), removed->end());
}

// A process that survives SIGKILL (frozen by the v1 freezer, which a fatal signal does not thaw)
// makes kill_all() give up after its ~5 s with Busy, naming the cgroup and leaving it in place;
// once thawed, end() kills it and removes the cgroup.
TEST(Cgroup, KillAllIsBusyWhenAProcessSurvivesSigkill) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  PEPITA_REQUIRE_CAPABILITY(root);  // moves a process into a freezer cgroup and freezes it
  const std::string freezer = v1_cgroup_dir("freezer");
  if (freezer.empty()) {
    GTEST_SKIP() << "needs the cgroup v1 freezer hierarchy: only a process frozen by the v1 "
                    "freezer outlives SIGKILL (cgroup v2's freezer lets it die)";
  }
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("frozen", {});
  ASSERT_TRUE(cg) << cg.error().message();
  const std::string ice = freezer + "/pepita-test-kill-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(ice.c_str(), 0755), 0) << ice << ": " << std::strerror(errno);
  const pid_t pid = sleeper();
  ASSERT_GT(pid, 0);
  const bool moved = cg->join(pid).has_value() &&
                     write_text(ice + "/cgroup.procs", std::to_string(pid)) &&
                     write_text(ice + "/freezer.state", "FROZEN");
  for (int i = 0; moved && i < 1000 && slurp(ice + "/freezer.state") != "FROZEN\n"; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const bool frozen = moved && slurp(ice + "/freezer.state") == "FROZEN\n";
  auto killed = frozen ? cg->kill_all() : Result<void>{};
  // Undone whatever happened: thawed (the pending SIGKILL lands), reaped, the freezer cgroup gone.
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(write_text(ice + "/freezer.state", "THAWED"));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  for (int i = 0; i < 500 && ::rmdir(ice.c_str()) != 0 && errno == EBUSY; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(dir_exists(ice)) << ice;
  ASSERT_TRUE(frozen) << "could not freeze the process in " << ice;
  ASSERT_FALSE(killed) << "kill_all() reported an empty cgroup while a process was in it";
  EXPECT_EQ(killed.error().code(), ErrorCode::Busy);
  EXPECT_NE(killed.error().message().find("processes in cgroup " + cg->path() +
                                          " survived SIGKILL for 5 s"),
            std::string::npos)
      << killed.error().message();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  const auto paths = cg->paths();
  ASSERT_TRUE(cg->end());
  for (const auto& p : paths) EXPECT_FALSE(dir_exists(p)) << p;
}

// What the test below builds, undone whatever happened: its processes killed, thawed and reaped,
// leftover cgroups removed, and (the private cgroup going last) this process back in its own.
struct FrozenStaleCgroup {
  std::optional<test::PrivateCgroup> private_cgroup;
  std::string own, ice, stale, child;
  std::vector<pid_t> pids;
  ~FrozenStaleCgroup() {
    if (ice.empty()) return;  // skipped, or nothing made
    for (pid_t p : pids) ::kill(p, SIGKILL);
    (void)write_text(ice + "/freezer.state", "THAWED");  // the kill lands once thawed
    for (pid_t p : pids) ::waitpid(p, nullptr, 0);
    for (const std::string* dir : {&child, &stale}) ::rmdir(dir->c_str());
    EXPECT_EQ(::rmdir(ice.c_str()), 0) << ice << ": " << std::strerror(errno);
  }
};

// A stale cgroup whose removal of a cgroup beneath it failed is not reported removed, even when
// the stale cgroup itself goes in the end. The cgroup beneath holds a process that survives
// SIGKILL (frozen by the v1 freezer, which a fatal signal does not thaw), so its removal fails;
// once reaping moved on to the stale cgroup itself (deepest first: it opens the stale cgroup's
// cgroup.procs, seen through inotify), the test moves that process out and removes the emptied
// cgroup, so the stale cgroup's own rmdir succeeds. All in a memory cgroup of this test's own, so
// no other test's reaping sees the stale cgroup.
TEST(ReapStaleCgroups, AStaleCgroupIsNotReportedRemovedWhenACgroupBeneathItWasNot) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  PEPITA_REQUIRE_CAPABILITY(root);  // moves processes between cgroups and freezes them
  FrozenStaleCgroup t;
  const std::string home = v1_cgroup_dir("memory");
  const std::string freezer = v1_cgroup_dir("freezer");
  if (home.empty() || freezer.empty()) {
    GTEST_SKIP() << "needs the cgroup v1 memory and freezer hierarchies: only a process frozen by "
                    "the v1 freezer outlives SIGKILL (cgroup v2's freezer lets it die)";
  }
  t.private_cgroup.emplace();
  t.own = v1_cgroup_dir("memory");
  ASSERT_NE(t.own, home) << "this test did not move into a memory cgroup of its own";
  const std::string ice =
      freezer + "/" + std::string("pepita-test-").append(std::to_string(::getpid()));
  ASSERT_EQ(::mkdir(ice.c_str(), 0755), 0) << ice << ": " << std::strerror(errno);
  t.ice = ice;
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  t.stale = t.own + "/pepita-" + std::to_string(dead) + "-12345";
  t.child = t.stale + "/task-1-1";
  ASSERT_EQ(::mkdir(t.stale.c_str(), 0755), 0) << std::strerror(errno);
  ASSERT_EQ(::mkdir(t.child.c_str(), 0755), 0) << std::strerror(errno);
  const pid_t inner = sleeper();
  ASSERT_GT(inner, 0);
  t.pids.push_back(inner);
  const pid_t outer = sleeper();
  ASSERT_GT(outer, 0);
  t.pids.push_back(outer);
  ASSERT_TRUE(write_text(t.child + "/cgroup.procs", std::to_string(inner)));
  ASSERT_TRUE(write_text(t.stale + "/cgroup.procs", std::to_string(outer)));
  ASSERT_TRUE(write_text(t.ice + "/cgroup.procs", std::to_string(inner)));
  ASSERT_TRUE(write_text(t.ice + "/cgroup.procs", std::to_string(outer)));
  ASSERT_TRUE(write_text(t.ice + "/freezer.state", "FROZEN"));
  for (int i = 0; i < 1000 && slurp(t.ice + "/freezer.state") != "FROZEN\n"; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(slurp(t.ice + "/freezer.state"), "FROZEN\n");

  UniqueFd watch(::inotify_init1(IN_CLOEXEC));
  ASSERT_TRUE(watch) << std::strerror(errno);
  ASSERT_GE(::inotify_add_watch(watch.get(), (t.stale + "/cgroup.procs").c_str(), IN_OPEN), 0)
      << std::strerror(errno);
  Result<std::vector<std::string>> removed = std::vector<std::string>{};
  std::thread reaper([&] { removed = reap_stale_cgroups(); });
  // The child's removal takes its 5 s of SIGKILLs, then reaping opens the stale cgroup's procs.
  pollfd ready{.fd = watch.get(), .events = POLLIN, .revents = 0};
  const bool reached_stale = ::poll(&ready, 1, 120'000) == 1;
  EXPECT_TRUE(reached_stale) << "reaping never read " << t.stale << "/cgroup.procs";
  const bool inner_out = write_text(t.own + "/cgroup.procs", std::to_string(inner));
  int child_rmdir = -1;
  for (int i = 0; i < 100 && (child_rmdir = ::rmdir(t.child.c_str())) != 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const bool outer_out = write_text(t.own + "/cgroup.procs", std::to_string(outer));
  reaper.join();
  ASSERT_TRUE(inner_out && outer_out);
  ASSERT_EQ(child_rmdir, 0) << t.child << ": " << std::strerror(errno);
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_EQ(std::find(removed->begin(), removed->end(), t.stale), removed->end())
      << "reported removed although removing the cgroup beneath it failed";
  EXPECT_FALSE(dir_exists(t.stale)) << "the stale cgroup itself goes once the one beneath is gone";
}

// A name taken, a process that is gone and a limit the kernel refuses: each fails naming what
// it tried, and the failed make() leaves no directory behind.
TEST(CgroupTree, MakeJoinAndLimitFailuresNameWhatFailedAndLeaveNothing) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto tree = CgroupTree::acquire();
  ASSERT_TRUE(tree) << tree.error().message();
  auto cg = (*tree)->make("taken", {});
  ASSERT_TRUE(cg) << cg.error().message();
  auto again = (*tree)->make("taken", {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::AlreadyExists);
  EXPECT_NE(again.error().message().find("create cgroup " + cg->path()), std::string::npos)
      << again.error().message();
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
  auto joined = cg->join(gone);
  ASSERT_FALSE(joined);
  EXPECT_NE(joined.error().message().find("move process " + std::to_string(gone) + " into "),
            std::string::npos)
      << joined.error().message();
  ASSERT_TRUE(cg->end());
  // pids.max takes at most the kernel's PID_MAX_LIMIT (2^22).
  auto too_many = (*tree)->make("too-many-pids", {.memory = 0, .cpus = 0, .pids = UINT32_MAX});
  if (too_many) {
    for (const auto& p : too_many->paths()) {
      EXPECT_FALSE(std::ifstream(p + "/pids.max")) << "pids.max " << p << " took 2^32-1";
    }
  } else {
    EXPECT_NE(too_many.error().message().find("/pids.max to 4294967295"), std::string::npos)
        << too_many.error().message();
    EXPECT_FALSE(dir_exists((*tree)->path() + "/too-many-pids")) << "left behind";
  }
}

}  // namespace
}  // namespace pepita
