#pragma once
// Capabilities a test needs of the machine (KVM, zram, io_uring, Vulkan, Slurm, netns, root, ...),
// each decided by a probe independent of the code under test, and the one skip-or-fail rule: a
// missing capability skips the test, printing what is missing and how to provide it, unless the
// PEPITA_REQUIRE environment variable (comma list, or `all`) names it; then the test fails.
// tests/common/require.sh is the same rule for the shell-driven guest tests.
//
//   TEST(Vm, Runs) {
//     PEPITA_REQUIRE_CAPABILITY(kvm);  // skips or fails here when /dev/kvm is not usable
//     ... a KvmSystem failure from now on is a test failure ...
//   }

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pepita::test {

enum class Capability {
  kvm,
  zram,
  io_uring,
  guest,
  vulkan,
  slurm,
  netns,
  root,
  ublk,
  cgroup,
  userns,
  chromium,
  torch
};

struct CapabilityInfo {
  Capability cap;
  std::string_view name;
  bool in_all;               // part of PEPITA_REQUIRE=all
  std::string_view provide;  // how to provide it, for the skip or failure message
};

// `ublk` is not in `all`: the CI host kernel has no ublk_drv, so the real-device ublk tests run in
// the Linux 6.12 test guest (ctest -L guest), which sets PEPITA_REQUIRE=ublk for them.
inline constexpr std::array<CapabilityInfo, 13> kCapabilities{{
    {Capability::kvm, "kvm", true,
     "a readable and writable /dev/kvm (load kvm_intel/kvm_amd, or join group kvm)"},
    {Capability::zram, "zram", true, "the zram module (modprobe zram, which creates zram0)"},
    {Capability::io_uring, "io_uring", true,
     "a kernel with io_uring enabled (>= 5.1; sysctl kernel.io_uring_disabled=0)"},
    {Capability::guest, "guest", true,
     "the Linux test guest: qemu-system-x86_64 and the 6.12 cloud kernel (scripts/install-deps)"},
    {Capability::vulkan, "vulkan", true,
     "a Vulkan device that vulkaninfo lists (scripts/install-deps installs Mesa lavapipe and "
     "vulkan-tools)"},
    {Capability::slurm, "slurm", true,
     "root and Slurm's daemons and client (scripts/install-deps: slurmctld slurmd slurm-client "
     "munge)"},
    {Capability::netns, "netns", true,
     "root, iproute2's `ip`, and network namespaces (unshare(CLONE_NEWNET))"},
    {Capability::root, "root", true, "running the tests as root"},
    {Capability::ublk, "ublk", false,
     "a readable and writable /dev/ublk-control (modprobe ublk_drv; Linux >= 6.0)"},
    {Capability::cgroup, "cgroup", true,
     "a writable cgroup hierarchy with the memory controller beneath the tests' own cgroup (run "
     "as root with cgroup v1 memory mounted, or in a cgroup v2 with memory delegated: "
     "systemd-run --scope -p Delegate=yes)"},
    {Capability::userns, "userns", true,
     "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
     "user.max_user_namespaces > 0; Ubuntu: kernel.apparmor_restrict_unprivileged_userns=0)"},
    {Capability::chromium, "chromium", true,
     "Debian's chromium (scripts/install-deps), able to run headless: `chromium --headless "
     "--no-sandbox --dump-dom about:blank` prints a page"},
    {Capability::torch, "torch", true,
     "Debian's PyTorch and scikit-learn for /usr/bin/python3 (scripts/install-deps: python3-torch "
     "python3-sklearn)"},
}};

inline const CapabilityInfo& capability_info(Capability cap) {
  for (const auto& c : kCapabilities)
    if (c.cap == cap) return c;
  std::abort();
}

/// What a probe found: empty `missing` means the capability is present.
struct ProbeResult {
  std::string missing;
  bool present() const { return missing.empty(); }
};

namespace detail {

inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

inline bool on_path(const std::string& tool) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin";  // daemons live there; root's PATH may lack it
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find(':', start), path.size());
    const std::string dir = path.substr(start, end - start);
    if (!dir.empty() && ::access((dir + "/" + tool).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Runs `command` through /bin/sh; its exit status (-1 when it did not exit) and stdout.
inline std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, out};
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline ProbeResult probe_root() {
  if (::geteuid() == 0) return {};
  return {"not running as root (euid " + std::to_string(::geteuid()) + ")"};
}

inline ProbeResult probe_kvm() {
  if (::access("/dev/kvm", R_OK | W_OK) != 0)
    return {"/dev/kvm is not readable and writable: " + errno_text(errno)};
  return {};
}

inline ProbeResult probe_zram() {
  struct stat st {};
  if (::stat("/sys/block/zram0", &st) == 0) return {};
  return {"no /sys/block/zram0 (zram module not loaded)"};
}

inline ProbeResult probe_io_uring() {
  io_uring_params p{};
  const long fd = ::syscall(__NR_io_uring_setup, 1, &p);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return {};
  }
  const int err = errno;
  if (err == ENOSYS) return {"io_uring_setup returned ENOSYS (kernel built without io_uring)"};
  if (err == EPERM)
    return {"io_uring_setup returned EPERM (sysctl kernel.io_uring_disabled, or seccomp)"};
  // Anything else (ENOMEM under a tight RLIMIT_MEMLOCK, ...) is the machine having io_uring but
  // the test's environment refusing one ring: the tests will show it as a failure.
  return {};
}

inline ProbeResult probe_vulkan() {
  if (!on_path("vulkaninfo")) return {"vulkaninfo is not installed (package vulkan-tools)"};
  auto [rc, out] = run("vulkaninfo --summary 2>/dev/null");
  if (out.find("deviceName") != std::string::npos) return {};
  return {"vulkaninfo --summary lists no device (exit " + std::to_string(rc) + ")"};
}

inline ProbeResult probe_slurm() {
  if (auto r = probe_root(); !r.present())
    return {"a local Slurm cluster needs root: " + r.missing};
  std::string missing;
  for (const char* tool : {"slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo"})
    if (!on_path(tool)) missing += std::string(missing.empty() ? "" : ", ") + tool;
  if (!missing.empty()) return {"not installed: " + missing};
  return {};
}

inline ProbeResult probe_netns() {
  if (auto r = probe_root(); !r.present()) return {"network namespaces need root: " + r.missing};
  if (!on_path("ip")) return {"the ip tool is not installed (package iproute2)"};
  // A child process takes a new network namespace: that is what `ip netns add` needs.
  const pid_t pid = ::fork();
  if (pid < 0) return {"fork failed: " + errno_text(errno)};
  if (pid == 0) ::_exit(::unshare(CLONE_NEWNET) == 0 ? 0 : 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return {"unshare(CLONE_NEWNET) failed (no CAP_SYS_ADMIN, or network namespaces disabled)"};
  return {};
}

inline ProbeResult probe_guest() {
  if (!on_path("qemu-system-x86_64")) return {"qemu-system-x86_64 is not installed"};
  return {};
}

inline ProbeResult probe_ublk() {
  if (::access("/dev/ublk-control", R_OK | W_OK) != 0)
    return {"/dev/ublk-control is not readable and writable: " + errno_text(errno)};
  return {};
}

// Independent of pepita's cgroup code: our cgroup in the memory hierarchy (v1 `memory`, else
// the v2 unified one) from /proc/self/cgroup and /proc/self/mounts, then a probe directory made
// beneath it must show a memory limit file, and is removed again.
inline ProbeResult probe_cgroup() {
  std::string v1_path, v2_path;
  if (FILE* f = std::fopen("/proc/self/cgroup", "r")) {
    char line[4096];
    while (std::fgets(line, sizeof line, f)) {
      std::string l(line);
      if (!l.empty() && l.back() == '\n') l.pop_back();
      const auto a = l.find(':'), b = l.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      // append, not "," + ...: g++ 12 -O3 sees a -Wrestrict in operator+(const char*, string&&)
      const std::string ctrls = std::string(",").append(l.substr(a + 1, b - a - 1)).append(",");
      if (ctrls.find(",memory,") != std::string::npos) v1_path = l.substr(b + 1);
      if (l.compare(0, 3, "0::") == 0) v2_path = l.substr(b + 1);
    }
    std::fclose(f);
  }
  std::string v1_mount, v2_mount;
  if (FILE* f = std::fopen("/proc/self/mounts", "r")) {
    char dev[512], dir[1024], type[64], opts[1024];
    while (std::fscanf(f, "%511s %1023s %63s %1023s %*d %*d", dev, dir, type, opts) == 4) {
      const std::string o = std::string(",") + opts + ",";
      if (std::string(type) == "cgroup" && o.find(",memory,") != std::string::npos) v1_mount = dir;
      if (std::string(type) == "cgroup2" && v2_mount.empty()) v2_mount = dir;
    }
    std::fclose(f);
  }
  std::string base, limit_file;
  if (!v1_path.empty() && !v1_mount.empty()) {
    base = v1_mount + (v1_path == "/" ? "" : v1_path);
    limit_file = "memory.limit_in_bytes";
  } else if (!v2_mount.empty()) {
    base = v2_mount + (v2_path == "/" ? "" : v2_path);
    limit_file = "memory.max";
  } else {
    return {"no cgroup v1 memory hierarchy and no cgroup2 mount in /proc/self/mounts"};
  }
  const std::string probe = base + "/pepita-probe-" + std::to_string(::getpid());
  if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST)
    return {"cannot create a cgroup beneath " + base + ": " + errno_text(errno)};
  const bool has_limit = ::access((probe + "/" + limit_file).c_str(), W_OK) == 0;
  ::rmdir(probe.c_str());
  if (!has_limit)
    return {"a cgroup made beneath " + base + " has no writable " + limit_file +
            " (the memory controller is not delegated to it)"};
  return {};
}

// An unprivileged process (root first drops to uid/gid 65534) clones into a new user namespace.
inline ProbeResult probe_userns() {
  const pid_t pid = ::fork();
  if (pid < 0) return {"fork failed: " + errno_text(errno)};
  if (pid == 0) {
    if (::geteuid() == 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
         ::setresuid(65534, 65534, 65534) != 0))
      ::_exit(2);
    // clone, not unshare: unshare(CLONE_NEWUSER) also needs a single-threaded caller, and a
    // sanitizer runtime may have started a thread in this child.
    const long child = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, 0);
    if (child == 0) ::_exit(0);
    if (child < 0) ::_exit(1);
    int child_status = 0;
    ::waitpid(static_cast<pid_t>(child), &child_status, 0);
    ::_exit(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 2) return {"cannot drop to uid 65534 to probe"};
  if (WEXITSTATUS(status) != 0)
    return {"clone(CLONE_NEWUSER) as an unprivileged user failed (disabled by sysctl or LSM)"};
  return {};
}

// The browser tests' tool: the binary, and a headless page load of about:blank (as root it
// needs --no-sandbox; its profile goes to a temporary directory).
inline ProbeResult probe_chromium() {
  if (!on_path("chromium")) return {"chromium is not installed (package chromium)"};
  char dir[] = "/tmp/pepita-chromium-probe-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return {"mkdtemp failed: " + errno_text(errno)};
  auto [rc, out] = run(std::string("timeout 120 chromium --headless --no-sandbox --disable-gpu "
                                   "--user-data-dir=") +
                       dir + "/profile --dump-dom about:blank 2>/dev/null");
  run(std::string("rm -rf ") + dir);
  if (out.find("<html") != std::string::npos) return {};
  return {"`chromium --headless --dump-dom about:blank` printed no page (exit " +
          std::to_string(rc) + ")"};
}

// The AI examples' frameworks (examples/sweep): Debian's python3 imports torch and sklearn's
// bundled digits load (no download), in a child process of its own.
inline ProbeResult probe_torch() {
  if (::access("/usr/bin/python3", X_OK) != 0) return {"/usr/bin/python3 is not installed"};
  auto [rc, out] =
      run("/usr/bin/python3 -c 'import torch, sklearn.datasets; "
          "print(\"ok\", len(sklearn.datasets.load_digits().target))' 2>&1");
  if (rc == 0 && out.starts_with("ok 1797")) return {};
  std::string last = out.substr(0, out.find_last_not_of('\n') + 1);
  if (const auto nl = last.rfind('\n'); nl != std::string::npos) last = last.substr(nl + 1);
  if (last.empty()) last = std::string("exit ").append(std::to_string(rc));
  return {std::string("/usr/bin/python3 cannot import torch and sklearn.datasets (")
              .append(last)
              .append(")")};
}

}  // namespace detail

/// Probes `cap` once per process (the answer is cached).
inline const ProbeResult& probe(Capability cap) {
  static std::array<std::optional<ProbeResult>, kCapabilities.size()> cache;
  auto& slot = cache[static_cast<std::size_t>(cap)];
  if (!slot) {
    switch (cap) {
      case Capability::kvm: slot = detail::probe_kvm(); break;
      case Capability::zram: slot = detail::probe_zram(); break;
      case Capability::io_uring: slot = detail::probe_io_uring(); break;
      case Capability::guest: slot = detail::probe_guest(); break;
      case Capability::vulkan: slot = detail::probe_vulkan(); break;
      case Capability::slurm: slot = detail::probe_slurm(); break;
      case Capability::netns: slot = detail::probe_netns(); break;
      case Capability::root: slot = detail::probe_root(); break;
      case Capability::ublk: slot = detail::probe_ublk(); break;
      case Capability::cgroup: slot = detail::probe_cgroup(); break;
      case Capability::userns: slot = detail::probe_userns(); break;
      case Capability::chromium: slot = detail::probe_chromium(); break;
      case Capability::torch: slot = detail::probe_torch(); break;
    }
  }
  return *slot;
}

/// The capabilities PEPITA_REQUIRE names; `unknown` collects names it does not know.
struct Requirements {
  std::vector<Capability> required;
  std::vector<std::string> unknown;
};

inline Requirements parse_requirements(std::string_view list) {
  Requirements r;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    std::string name;
    for (char c : list.substr(start, end - start))
      if (!std::isspace(static_cast<unsigned char>(c)))
        name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    start = end + 1;
    if (name.empty()) continue;
    // "-name" takes a capability back out of what came before it (`all,-kvm`).
    if (name.size() > 1 && name[0] == '-') {
      const std::string_view drop = std::string_view(name).substr(1);
      bool known = false;
      for (const auto& c : kCapabilities) {
        if (c.name != drop) continue;
        known = true;
        std::erase(r.required, c.cap);
      }
      if (!known) r.unknown.push_back(name);
      continue;
    }
    if (name == "all") {
      for (const auto& c : kCapabilities)
        if (c.in_all) r.required.push_back(c.cap);
      continue;
    }
    bool known = false;
    for (const auto& c : kCapabilities) {
      if (c.name == name) {
        r.required.push_back(c.cap);
        known = true;
      }
    }
    if (!known) r.unknown.push_back(name);
  }
  return r;
}

inline const Requirements& requirements() {
  static const Requirements r = parse_requirements(
      std::getenv("PEPITA_REQUIRE") != nullptr ? std::getenv("PEPITA_REQUIRE") : "");
  return r;
}

/// The verdict for `cap`: empty when present; otherwise the message, and whether it must fail.
struct Verdict {
  std::string message;
  bool fail = false;
};

/// The rule itself, pure: what a test needing `cap` does, given the probe's answer and the
/// parsed PEPITA_REQUIRE.
inline Verdict decide(Capability cap, const ProbeResult& p, const Requirements& req) {
  Verdict v;
  if (!req.unknown.empty()) {  // a typo in PEPITA_REQUIRE must not quietly turn into skips
    v.fail = true;
    v.message = "PEPITA_REQUIRE names unknown capabilities:";
    for (const auto& n : req.unknown) v.message += " '" + n + "'";
    v.message += " (known: all";
    for (const auto& c : kCapabilities) v.message += ", " + std::string(c.name);
    v.message += ")";
    return v;
  }
  if (p.present()) return v;
  const CapabilityInfo& i = capability_info(cap);
  for (Capability c : req.required) v.fail = v.fail || c == cap;
  v.message = "capability '" + std::string(i.name) + "' missing: " + p.missing +
              ". To provide it: " + std::string(i.provide) + ".";
  v.message += v.fail ? " PEPITA_REQUIRE names it, so this is a failure."
                      : " (PEPITA_REQUIRE=" + std::string(i.name) + " makes this a failure.)";
  return v;
}

/// The verdict for `cap` on this machine under this process's PEPITA_REQUIRE.
inline Verdict check(Capability cap) { return decide(cap, probe(cap), requirements()); }

}  // namespace pepita::test

/// Skips the test (or fails it, when PEPITA_REQUIRE names the capability) unless the capability
/// `cap` (a pepita::test::Capability enumerator: kvm, zram, io_uring, ...) is present. Use in a
/// test body or SetUp(); like GTEST_SKIP it returns from the function.
#define PEPITA_REQUIRE_CAPABILITY(cap)                                                       \
  do {                                                                                       \
    if (const auto pepita_verdict_ = ::pepita::test::check(::pepita::test::Capability::cap); \
        !pepita_verdict_.message.empty()) {                                                  \
      if (pepita_verdict_.fail) FAIL() << pepita_verdict_.message;                           \
      GTEST_SKIP() << pepita_verdict_.message;                                               \
    }                                                                                        \
  } while (0)
