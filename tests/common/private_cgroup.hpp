#pragma once
// This test process's own cgroups, found independently of pepita's cgroup code; PrivateCgroup,
// which moves the process into cgroups of its own for a test; and CgroupNamespaceTest, which runs
// a test's body in a child with a mount namespace and a cgroup v2 cgroup of its own, to show
// pepita's cgroup code another machine. Linux, as root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/child.hpp"
#include "common/mount_namespace.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::test {

namespace fs = std::filesystem;

/// The cgroup directories this process is in, one per mounted hierarchy (v1 controllers and the
/// v2 tree), from /proc/self/cgroup under the usual mount points (/sys/fs/cgroup/<controller>, v2
/// at /sys/fs/cgroup/unified or /sys/fs/cgroup). With `pepitas`, only
/// those pepita makes cgroups in: v1's memory, cpu, cpuacct and pids, or the v2 tree where no v1
/// memory hierarchy is mounted.
inline std::vector<fs::path> own_cgroup_dirs(bool pepitas = false) {
  std::vector<fs::path> dirs;
  std::ifstream cg("/proc/self/cgroup");
  std::vector<std::string> lines;
  bool v1_memory = false;
  for (std::string line; std::getline(cg, line);) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    if (("," + line.substr(a + 1, b - a - 1) + ",").find(",memory,") != std::string::npos) {
      v1_memory = true;
    }
    lines.push_back(line);
  }
  for (const std::string& line : lines) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (pepitas) {
      bool used = ctl.empty() && !v1_memory;
      for (const char* c : {",memory,", ",cpu,", ",cpuacct,", ",pids,"}) {
        used = used || ("," + ctl + ",").find(c) != std::string::npos;
      }
      if (!used) continue;
    }
    std::vector<fs::path> roots;
    if (ctl.empty()) {
      roots = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    } else {
      std::stringstream ss(ctl);
      for (std::string c; std::getline(ss, c, ',');) {
        if (c.starts_with("name=")) c = c.substr(5);
        roots.push_back(fs::path("/sys/fs/cgroup") / c);
      }
    }
    for (const auto& root : roots) {
      const fs::path dir = root / fs::path(path).relative_path();
      std::error_code ec;
      if (fs::is_directory(dir, ec) && fs::exists(dir / "cgroup.procs", ec)) {
        dirs.push_back(dir);
        break;
      }
    }
  }
  return dirs;
}

/// Moves this test process into a cgroup of its own ("pepita-test-<pid>") beneath each of its
/// cgroups that pepita makes cgroups in, and back out (removing them, and any cgroup left beneath
/// them) when it goes. Every `pepita run` and process executor reaps the stale `pepita-*` cgroups
/// beside its own, so a stale cgroup a test makes in the shared ctest cgroup could be reaped by
/// another test's run first; in a private cgroup only what this test starts sees it.
class PrivateCgroup {
 public:
  PrivateCgroup() {
    const std::string name = "pepita-test-" + std::to_string(::getpid());
    for (const fs::path& dir : own_cgroup_dirs(true)) {
      const fs::path sub = dir / name;
      std::error_code ec;
      fs::create_directory(sub, ec);
      EXPECT_FALSE(ec) << sub << ": " << ec.message();
      moved_.emplace_back(dir, sub);
      std::ofstream(sub / "cgroup.procs") << ::getpid() << std::flush;
    }
    for (const fs::path& dir : own_cgroup_dirs(true)) {
      EXPECT_EQ(dir.filename(), name) << "this test did not move into its own cgroup";
    }
  }
  ~PrivateCgroup() {
    for (const auto& [dir, sub] : moved_) {
      std::ofstream(dir / "cgroup.procs") << ::getpid() << std::flush;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(sub, ec)) {
        if (e.is_directory(ec)) ::rmdir(e.path().c_str());  // a cgroup the test failed to reap
      }
      EXPECT_EQ(::rmdir(sub.c_str()), 0) << sub << ": " << std::strerror(errno);
    }
  }
  PrivateCgroup(const PrivateCgroup&) = delete;
  PrivateCgroup& operator=(const PrivateCgroup&) = delete;

 private:
  std::vector<std::pair<fs::path, fs::path>> moved_;
};

/// The mount points of `type` ("cgroup2", or "cgroup" with `controller` among its options), from
/// /proc/self/mounts.
inline std::vector<std::string> cgroup_mounts(const std::string& type,
                                              const std::string& controller = "") {
  std::vector<std::string> out;
  const std::string want = "," + controller + ",";
  std::ifstream mounts("/proc/self/mounts");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::string dev, dir, fstype, opts;
    if (!(f >> dev >> dir >> fstype >> opts) || fstype != type) continue;
    if (controller.empty() || ("," + opts + ",").find(want) != std::string::npos) {
      out.push_back(dir);
    }
  }
  return out;
}

/// Shows pepita's cgroup code another machine: run(body) runs `body` in a forked child with a
/// mount namespace of its own (every mount private), moved into a cgroup v2 cgroup of its own
/// beneath ours (`own`, passed to body), where it may unmount the v1 memory hierarchy (a pure
/// cgroup v2 machine), unmount cgroup2 or /proc, remount cgroup2 read-only or bind files over
/// cgroup files, and where only what it starts sees the cgroups it makes. The child moves back
/// and removes `own` when body returns; TearDown removes what a crashed child left. Needs root;
/// skips without cgroup2.
class CgroupNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PEPITA_REQUIRE_CAPABILITY(root);  // unshare(CLONE_NEWNS), mount, creates cgroups
    const auto unified = cgroup_mounts("cgroup2");
    if (unified.empty()) GTEST_SKIP() << "needs cgroup2 mounted (a cgroup v2 or hybrid machine)";
    std::ifstream cgroups("/proc/self/cgroup");
    for (std::string line; std::getline(cgroups, line);) {
      if (line.starts_with("0::")) home_ = unified.front() + (line == "0::/" ? "" : line.substr(3));
    }
    std::error_code ec;
    if (home_.empty() || !fs::exists(home_ + "/cgroup.procs", ec)) {
      GTEST_SKIP() << "our cgroup v2 directory is not under " << unified.front();
    }
    own_ = home_ + "/pepita-test-ns-" + std::to_string(::getpid());
  }
  void TearDown() override {
    if (!own_.empty()) remove_tree(own_);
  }

  void run(const std::function<void(const std::string& own)>& body) {
    const std::string name = own_.substr(own_.rfind('/') + 1);
    const auto code = run_forked_in_own_mount_namespace([&] {
      // Opened now: body may unmount the tree or make it read-only.
      UniqueFd home(::open(home_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(home) << home_ << ": " << std::strerror(errno);
      UniqueFd home_procs(::openat(home.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
      ASSERT_TRUE(home_procs) << std::strerror(errno);
      ASSERT_EQ(::mkdir(own_.c_str(), 0755), 0) << own_ << ": " << std::strerror(errno);
      const std::string me = std::to_string(::getpid());
      std::ofstream(own_ + "/cgroup.procs") << me << std::flush;
      body(own_);
      EXPECT_EQ(::write(home_procs.get(), me.data(), me.size()), static_cast<ssize_t>(me.size()))
          << std::strerror(errno);
      EXPECT_EQ(::unlinkat(home.get(), name.c_str(), AT_REMOVEDIR), 0) << std::strerror(errno);
    });
    ASSERT_TRUE(code) << "the child ran for 2 minutes";
    EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
  }

  /// Unmounts every v1 hierarchy with the memory controller: pepita then uses cgroup v2.
  static void unmount_v1_memory() {
    for (const std::string& m : cgroup_mounts("cgroup", "memory")) {
      ASSERT_EQ(::umount2(m.c_str(), MNT_DETACH), 0) << m << ": " << std::strerror(errno);
    }
  }

  /// Binds a file of `tmp` holding `text` over `target` (read-only with `read_only`).
  static void bind_text(const TempDir& tmp, const std::string& target, const std::string& text,
                        bool read_only = false) {
    const std::string file = tmp.file(target.substr(target.rfind('/') + 1));
    std::ofstream(file) << text << std::flush;
    ASSERT_EQ(::mount(file.c_str(), target.c_str(), nullptr, MS_BIND, nullptr), 0)
        << target << ": " << std::strerror(errno);
    if (read_only) {
      ASSERT_EQ(
          ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
          << target << ": " << std::strerror(errno);
    }
  }

 private:
  // Removes `dir` and the cgroups beneath it, deepest first, killing what they hold.
  static void remove_tree(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    std::ofstream(dir + "/cgroup.kill") << "1" << std::flush;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_directory(ec)) remove_tree(e.path().string());
    }
    for (int i = 0; i < 500 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_FALSE(fs::exists(dir, ec)) << dir << " was left behind";
  }

  std::string home_, own_;
};

}  // namespace pepita::test
