#pragma once
// This test process's own cgroups, found independently of pepita's cgroup code, and PrivateCgroup,
// which moves the process into cgroups of its own for a test. Linux, as root.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

}  // namespace pepita::test
