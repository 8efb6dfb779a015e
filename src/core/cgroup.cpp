// Cgroups for process tasks (see pepita/core/cgroup.hpp): layout discovery, the per-process
// parent, per-attempt children with limits, usage, killing and removal, and reaping what a
// crashed run left.
#include "pepita/core/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "pepita/core/sys.hpp"

namespace pepita {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = std::min(s.find(sep, start), s.size());
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// mountinfo escapes ' ', '\t', '\n' and '\\' as a backslash and three octal digits.
std::string unescape(std::string_view s) {
  std::string out;
  auto octal = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

// mount point + (cgroup path less the mount's root).
std::string join_path(std::string_view mount_root, std::string_view mount_point,
                      std::string_view cg_path) {
  std::string rel(cg_path);
  if (mount_root != "/" && rel.starts_with(mount_root)) rel.erase(0, mount_root.size());
  std::string out(mount_point);
  if (!rel.empty() && rel != "/") {
    if (rel.front() != '/') out.push_back('/');
    out.append(rel);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd(sys::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno(sys::last_error(), std::string("open ").append(path));
  std::string out;
  char buf[4096];
  for (;;) {
    const long n = sys::read(fd.get(), buf, sizeof buf);
    if (n == -EINTR) continue;
    if (n < 0) return fail_errno(static_cast<int>(n), std::string("read ").append(path));
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// 0 or a negative errno.
int write_file(const std::string& path, std::string_view value) {
  UniqueFd fd(sys::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sys::last_error();
  const long n = sys::write(fd.get(), value.data(), value.size());
  return n < 0 ? static_cast<int>(n) : 0;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::uint64_t read_u64(const std::string& path) {
  auto text = read_file(path);
  if (!text) return 0;
  return std::strtoull(text->c_str(), nullptr, 10);
}

// The value of `key` in a flat-keyed file ("oom_kill 3\n").
std::optional<std::uint64_t> read_key(const std::string& path, std::string_view key) {
  auto text = read_file(path);
  if (!text) return std::nullopt;
  for (std::string_view line : split(*text, '\n')) {
    if (line.starts_with(key) && line.size() > key.size() && line[key.size()] == ' ') {
      return std::strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
  }
  return std::nullopt;
}

std::vector<pid_t> read_procs(const std::string& dir) {
  std::vector<pid_t> pids;
  auto text = read_file(std::string(dir).append("/cgroup.procs"));
  if (!text) return pids;
  for (std::string_view line : split(*text, '\n')) {
    if (!line.empty()) pids.push_back(static_cast<pid_t>(std::atol(std::string(line).c_str())));
  }
  return pids;
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_type != DT_DIR) continue;
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    out.emplace_back(name);
  }
  ::closedir(d);
  return out;
}

// Kills everything in `dir` (v2: cgroup.kill when the kernel has it) and waits until it is empty.
// 0, or -EBUSY when processes remain after the wait.
int kill_dir(const std::string& dir, CgroupVersion version) {
  bool used_kill_file = false;
  if (version == CgroupVersion::V2) {
    used_kill_file = write_file(std::string(dir).append("/cgroup.kill"), "1") == 0;
  }
  // ~5 s: a SIGKILLed process leaves the cgroup when it exits, which takes a moment under load.
  for (int round = 0; round < 500; ++round) {
    const std::vector<pid_t> pids = read_procs(dir);
    if (pids.empty()) return 0;
    // v1 (or v2 without cgroup.kill): signal by pid. A pid listed here is in the cgroup until it
    // exits; one that exits between the read and the kill is gone or a zombie (zombies are not
    // listed), so a reused pid could only be hit in that window: the usual v1 trade-off.
    if (!used_kill_file || round % 50 == 49) {
      for (pid_t pid : pids) (void)sys::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -EBUSY;
}

// Kills and removes `dir` and every cgroup beneath it, deepest first. 0 or a negative errno.
int remove_tree(const std::string& dir, CgroupVersion version) {
  int rc = 0;
  for (const std::string& sub : subdirs(dir)) {
    const int r = remove_tree(std::string(dir).append("/").append(sub), version);
    if (r < 0 && rc == 0) rc = r;
  }
  if (int r = kill_dir(dir, version); r < 0 && rc == 0) rc = r;
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return rc;
    if (errno != EBUSY) return rc == 0 ? -errno : rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return rc == 0 ? -EBUSY : rc;
}

std::string unsupported_hint(int err) {
  if (err == -EROFS) {
    return "cgroups are mounted read-only (a container without cgroup delegation): run with a "
           "writable cgroup (docker --cgroupns=private with a writable /sys/fs/cgroup, or "
           "systemd-run --scope -p Delegate=yes)";
  }
  if (err == -EACCES || err == -EPERM) {
    return "no permission to create cgroups beneath ours: run as root, or in a delegated cgroup "
           "(systemd-run --user --scope -p Delegate=yes)";
  }
  return "check that cgroups are mounted under /sys/fs/cgroup and writable";
}

// Our layout from /proc.
Result<CgroupLayout> detect_layout() {
  auto cg = read_file("/proc/self/cgroup");
  if (!cg) {
    return fail(ErrorCode::Unsupported,
                "cannot read /proc/self/cgroup: " + cg.error().message() +
                    "; a kernel with cgroups (CONFIG_CGROUPS) and /proc mounted is needed");
  }
  auto mi = read_file("/proc/self/mountinfo");
  if (!mi) {
    return fail(ErrorCode::Unsupported,
                "cannot read /proc/self/mountinfo: " + mi.error().message());
  }
  return parse_cgroup_layout(*cg, *mi);
}

std::optional<std::uint64_t> start_time(pid_t pid) {
  auto text = read_file(std::string("/proc/").append(std::to_string(pid)).append("/stat"));
  if (!text) return std::nullopt;
  const std::size_t paren = text->rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  // Fields after "pid (comm)": state is field 3; starttime is field 22.
  const auto fields = split(std::string_view(*text).substr(paren + 2), ' ');
  if (fields.size() < 20) return std::nullopt;
  return std::strtoull(std::string(fields[19]).c_str(), nullptr, 10);
}

// The parent's shared state: one per process (a forked child starts afresh).
struct Registry {
  std::mutex mu;
  pid_t owner = 0;
  std::weak_ptr<CgroupTree> tree;
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: trees may outlive static destruction
  return *r;
}

}  // namespace

Result<CgroupLayout> parse_cgroup_layout(std::string_view proc_self_cgroup,
                                         std::string_view mountinfo) {
  // hierarchy-id:controller-list:path; "0::/path" is v2.
  std::string v2_path;
  struct V1 {
    std::string controllers, path;
  };
  std::vector<V1> v1;
  for (std::string_view line : split(proc_self_cgroup, '\n')) {
    if (line.empty()) continue;
    const std::size_t a = line.find(':');
    const std::size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    const std::string_view ctrls = line.substr(a + 1, b - a - 1);
    const std::string_view path = line.substr(b + 1);
    if (line.substr(0, a) == "0" && ctrls.empty()) {
      v2_path = path;
    } else {
      v1.push_back({std::string(ctrls), std::string(path)});
    }
  }
  CgroupLayout out;
  // mountinfo: id parent major:minor root mount-point options [optional...] - fstype source super
  for (std::string_view line : split(mountinfo, '\n')) {
    const auto f = split(line, ' ');
    const auto dash = std::find(f.begin(), f.end(), std::string_view("-"));
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) continue;
    const std::string_view fstype = *(dash + 1);
    const std::string root = unescape(f[3]);
    const std::string point = unescape(f[4]);
    if (fstype == "cgroup2") {
      if (out.unified.empty())
        out.unified = join_path(root, point, v2_path.empty() ? "/" : v2_path);
      continue;
    }
    if (fstype != "cgroup") continue;
    const auto opts = split(*(dash + 3), ',');
    auto has = [&](std::string_view c) {
      return std::find(opts.begin(), opts.end(), c) != opts.end();
    };
    for (const V1& h : v1) {
      const auto ctrls = split(h.controllers, ',');
      auto mine = [&](std::string_view c) {
        return std::find(ctrls.begin(), ctrls.end(), c) != ctrls.end() && has(c);
      };
      if (mine("memory") && out.memory.empty()) out.memory = join_path(root, point, h.path);
      if (mine("cpu") && out.cpu.empty()) out.cpu = join_path(root, point, h.path);
      if (mine("cpuacct") && out.cpuacct.empty()) out.cpuacct = join_path(root, point, h.path);
      if (mine("pids") && out.pids.empty()) out.pids = join_path(root, point, h.path);
    }
  }
  if (out.unified.empty() && out.memory.empty() && out.cpu.empty() && out.pids.empty()) {
    return fail(ErrorCode::Unsupported,
                "no cgroup hierarchy is mounted (neither cgroup2 nor the v1 memory, cpu or pids "
                "controllers): mount cgroup2 at /sys/fs/cgroup to run tasks with resource limits");
  }
  return out;
}

// ---- Cgroup -----------------------------------------------------------------------------------

Cgroup& Cgroup::operator=(Cgroup&& other) noexcept {
  if (this != &other) {
    (void)end();
    version_ = other.version_;
    dirs_ = std::move(other.dirs_);
    cpuacct_ = std::move(other.cpuacct_);
    other.dirs_.clear();
  }
  return *this;
}

std::vector<int> Cgroup::join_fds() const {
  std::vector<int> fds;
  for (const Dir& d : dirs_) fds.push_back(d.procs.get());
  return fds;
}

const std::string& Cgroup::path() const noexcept {
  static const std::string none;
  return dirs_.empty() ? none : dirs_.front().path;
}

std::vector<std::string> Cgroup::paths() const {
  std::vector<std::string> out;
  for (const Dir& d : dirs_) out.push_back(d.path);
  return out;
}

CgroupUsage Cgroup::usage() const {
  CgroupUsage u;
  if (dirs_.empty()) return u;
  const std::string& dir = dirs_.front().path;
  if (version_ == CgroupVersion::V2) {
    const std::string peak = std::string(dir).append("/memory.peak");
    u.peak_memory =
        exists(peak) ? read_u64(peak) : read_u64(std::string(dir).append("/memory.current"));
    if (auto k = read_key(std::string(dir).append("/memory.events"), "oom_kill")) {
      u.oom_kills = *k;
      u.oom_kill_counted = true;
    }
    if (auto us = read_key(std::string(dir).append("/cpu.stat"), "usage_usec")) {
      u.cpu = std::chrono::microseconds(*us);
    }
    return u;
  }
  u.peak_memory = read_u64(std::string(dir).append("/memory.max_usage_in_bytes"));
  u.memory_failcnt = read_u64(std::string(dir).append("/memory.failcnt"));
  if (auto k = read_key(std::string(dir).append("/memory.oom_control"), "oom_kill")) {
    u.oom_kills = *k;
    u.oom_kill_counted = true;
  }
  if (!cpuacct_.empty()) {
    u.cpu = std::chrono::nanoseconds(read_u64(std::string(cpuacct_).append("/cpuacct.usage")));
  }
  return u;
}

Result<void> Cgroup::join(pid_t pid) const {
  const std::string text = std::to_string(pid);
  for (const Dir& d : dirs_) {
    const long n = sys::write(d.procs.get(), text.data(), text.size());
    if (n < 0) {
      return fail_errno(static_cast<int>(n),
                        std::string("move process ").append(text).append(" into ").append(d.path));
    }
  }
  return {};
}

Result<void> Cgroup::kill_all() const {
  for (const Dir& d : dirs_) {
    if (int rc = kill_dir(d.path, version_); rc < 0) {
      return fail(ErrorCode::Busy, std::string("processes in cgroup ")
                                       .append(d.path)
                                       .append(" survived SIGKILL for 5 s (stuck in the kernel, "
                                               "D state?); it was left in place"));
    }
  }
  return {};
}

Result<void> Cgroup::end() {
  if (dirs_.empty()) return {};
  Result<void> result = kill_all();
  for (Dir& d : dirs_) {
    d.procs.reset();
    const int rc = remove_tree(d.path, version_);
    if (rc < 0 && result) result = fail_errno(rc, std::string("remove cgroup ").append(d.path));
  }
  dirs_.clear();
  return result;
}

// ---- CgroupTree -------------------------------------------------------------------------------

std::string cgroup_parent_name(pid_t pid) {
  const auto st = start_time(pid);
  if (!st) return {};
  return std::string("pepita-").append(std::to_string(pid)).append("-").append(std::to_string(*st));
}

CgroupTree::CgroupTree(Private, CgroupVersion version, std::vector<std::string> dirs,
                       std::string cpu_dir, std::string cpuacct_dir, std::string pids_dir,
                       std::string memory_note)
    : version_(version),
      dirs_(std::move(dirs)),
      cpu_dir_(std::move(cpu_dir)),
      cpuacct_dir_(std::move(cpuacct_dir)),
      pids_dir_(std::move(pids_dir)),
      memory_note_(std::move(memory_note)) {}

CgroupTree::~CgroupTree() {
  // Under the registry lock, so a new acquire() cannot re-create the directory meanwhile and then
  // lose it to this removal.
  std::lock_guard lock(registry().mu);
  for (const std::string& d : dirs_) (void)remove_tree(d, version_);
}

Result<std::shared_ptr<CgroupTree>> CgroupTree::acquire() {
  Registry& reg = registry();
  std::lock_guard lock(reg.mu);
  if (reg.owner == ::getpid()) {
    if (auto t = reg.tree.lock()) return t;
  }
  reg.owner = ::getpid();
  reg.tree.reset();
  const CgroupLayout layout = PEPITA_TRY(detect_layout());
  const std::string name = cgroup_parent_name(::getpid());
  if (name.empty()) return fail(ErrorCode::Unsupported, "cannot read /proc/self/stat");

  auto make_dir = [&](const std::string& under) -> Result<std::string> {
    std::string dir = std::string(under).append("/").append(name);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      const int err = -errno;
      return fail(ErrorCode::Unsupported,
                  Error::from_errno(err, std::string("create cgroup ").append(dir)).message() +
                      "; " + unsupported_hint(err),
                  -err);
    }
    return dir;
  };

  // v1 when the memory controller lives in a v1 hierarchy (hybrid systems: cgroup2 then has
  // no memory controller); v2 otherwise.
  if (!layout.memory.empty()) {
    std::vector<std::string> dirs{PEPITA_TRY(make_dir(layout.memory))};
    // v1 hierarchies must say which controllers they have; cpu and cpuacct may be co-mounted.
    auto optional_dir = [&](const std::string& under) -> std::string {
      if (under.empty()) return {};
      for (const std::string& d : dirs) {
        if (d == std::string(under).append("/").append(name)) return d;
      }
      auto d = make_dir(under);
      if (!d) return {};
      dirs.push_back(*d);
      return *d;
    };
    std::string cpu = optional_dir(layout.cpu);
    std::string cpuacct = optional_dir(layout.cpuacct);
    std::string pids = optional_dir(layout.pids);
    // Charges of our children go to this hierarchy's limits (on by default on modern kernels).
    (void)write_file(dirs.front() + "/memory.use_hierarchy", "1");
    auto tree =
        std::make_shared<CgroupTree>(Private{}, CgroupVersion::V1, std::move(dirs), std::move(cpu),
                                     std::move(cpuacct), std::move(pids), std::string());
    reg.tree = tree;
    return tree;
  }
  if (layout.unified.empty()) {
    return fail(ErrorCode::Unsupported,
                "no cgroup2 mount and no v1 memory hierarchy: mount cgroup2 at /sys/fs/cgroup to "
                "run tasks with resource limits");
  }
  std::string dir = PEPITA_TRY(make_dir(layout.unified));
  // Delegation: our children get a controller only if our cgroup enables it in its
  // subtree_control, which the kernel refuses (EBUSY) while our cgroup holds processes — us —
  // unless it is the root. We never move processes (ours or others'): without the controller a
  // memory limit is refused with this note, and tasks still get a cgroup to be killed with.
  std::string note;
  auto available = read_file(layout.unified + "/cgroup.controllers");
  const std::string ctrls = available ? *available : std::string();
  // cgroup.controllers is a space-separated list ("cpuset cpu io memory pids").
  auto listed = [](const std::string& list, std::string_view c) {
    for (std::string_view w : split(list, ' ')) {
      while (!w.empty() && (w.back() == '\n' || w.back() == ' ')) w.remove_suffix(1);
      if (w == c) return true;
    }
    return false;
  };
  if (!listed(ctrls, "memory")) {
    note = "cgroup v2: the memory controller is not available to our cgroup " + layout.unified +
           " (its parent does not delegate it): run pepita in a delegated cgroup "
           "(systemd-run --scope -p Delegate=yes pepita ...)";
  } else {
    std::string want;
    for (const char* c : {"memory", "cpu", "pids"}) {
      if (listed(ctrls, c)) want.append(want.empty() ? "+" : " +").append(c);
    }
    const std::string subtree = layout.unified + "/cgroup.subtree_control";
    auto enabled = read_file(subtree);
    if (!enabled || !listed(*enabled, "memory")) {
      if (int rc = write_file(subtree, want); rc < 0) {
        note = std::string("cgroup v2: cannot enable the memory controller for the children of ")
                   .append(layout.unified)
                   .append(" (")
                   .append(std::strerror(-rc))
                   .append(rc == -EBUSY ? ": it holds processes, and the kernel's "
                                          "no-internal-process rule forbids that)"
                                        : ")")
                   .append(
                       "; run pepita in a cgroup of its own with Delegate=yes "
                       "(systemd-run --scope -p Delegate=yes pepita ...)");
      }
    }
    if (note.empty() && write_file(dir + "/cgroup.subtree_control", want) < 0) {
      note = "cgroup v2: cannot enable the memory controller in " + dir;
    }
  }
  auto tree = std::make_shared<CgroupTree>(Private{}, CgroupVersion::V2,
                                           std::vector<std::string>{dir}, dir, dir, dir, note);
  reg.tree = tree;
  return tree;
}

Result<Cgroup> CgroupTree::make(std::string_view name, const CgroupLimits& limits) {
  if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..") {
    return fail(ErrorCode::InvalidArgument,
                std::string("cgroup name '").append(name).append("' must be one path component"));
  }
  if (limits.memory > 0 && !can_limit_memory()) {
    return fail(ErrorCode::Unsupported, "cannot limit memory: " + memory_note_);
  }
  if (!(limits.cpus >= 0) || !std::isfinite(limits.cpus)) {
    return fail(ErrorCode::InvalidArgument, "cgroup cpus must be a finite number >= 0");
  }
  Cgroup cg;
  cg.version_ = version_;
  for (const std::string& parent : dirs_) {
    std::string dir = std::string(parent).append("/").append(name);
    if (::mkdir(dir.c_str(), 0755) != 0) {
      return fail_errno(-errno, std::string("create cgroup ").append(dir));
    }
    UniqueFd procs(sys::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!procs) {
      const int err = sys::last_error();
      ::rmdir(dir.c_str());
      return fail_errno(err, std::string("open ").append(dir).append("/cgroup.procs"));
    }
    cg.dirs_.push_back({std::move(dir), std::move(procs)});
  }
  auto child_of = [&](const std::string& parent) {
    return parent.empty() ? std::string() : std::string(parent).append("/").append(name);
  };
  cg.cpuacct_ = version_ == CgroupVersion::V2 ? std::string() : child_of(cpuacct_dir_);
  auto set = [&](const std::string& file, const std::string& value) -> Result<void> {
    if (int rc = write_file(file, value); rc < 0) {
      return fail_errno(rc, std::string("set ").append(file).append(" to ").append(value));
    }
    return {};
  };
  const std::string mem = cg.dirs_.front().path;
  if (limits.memory > 0) {
    const std::string bytes = std::to_string(limits.memory);
    if (version_ == CgroupVersion::V2) {
      PEPITA_TRY(set(mem + "/memory.max", bytes));
      // Without this the task would swap instead of being OOM-killed at its limit.
      if (exists(mem + "/memory.swap.max")) PEPITA_TRY(set(mem + "/memory.swap.max", "0"));
    } else {
      PEPITA_TRY(set(mem + "/memory.limit_in_bytes", bytes));
      // memsw exists only with swap accounting; it must be >= limit_in_bytes (set just above).
      if (exists(mem + "/memory.memsw.limit_in_bytes")) {
        PEPITA_TRY(set(mem + "/memory.memsw.limit_in_bytes", bytes));
      }
    }
  }
  const std::string cpu = version_ == CgroupVersion::V2 ? mem : child_of(cpu_dir_);
  if (limits.cpus > 0 && !cpu.empty() &&
      (version_ == CgroupVersion::V1 || exists(cpu + "/cpu.max"))) {
    constexpr std::uint64_t period = 100'000;  // µs, the kernel's default
    const auto quota = std::max<std::uint64_t>(
        1'000, static_cast<std::uint64_t>(std::llround(limits.cpus * period)));
    if (version_ == CgroupVersion::V2) {
      PEPITA_TRY(set(cpu + "/cpu.max", std::to_string(quota) + " " + std::to_string(period)));
      // Weight 100 per CPU (the default for one), within the kernel's 1..10000.
      const auto weight = std::clamp<long long>(std::llround(limits.cpus * 100), 1, 10'000);
      PEPITA_TRY(set(cpu + "/cpu.weight", std::to_string(weight)));
    } else {
      PEPITA_TRY(set(cpu + "/cpu.cfs_period_us", std::to_string(period)));
      PEPITA_TRY(set(cpu + "/cpu.cfs_quota_us", std::to_string(quota)));
      const auto shares = std::max<long long>(2, std::llround(limits.cpus * 1024));
      PEPITA_TRY(set(cpu + "/cpu.shares", std::to_string(shares)));
    }
  }
  const std::string pids = version_ == CgroupVersion::V2 ? mem : child_of(pids_dir_);
  if (limits.pids > 0 && !pids.empty() && exists(pids + "/pids.max")) {
    PEPITA_TRY(set(pids + "/pids.max", std::to_string(limits.pids)));
  }
  return cg;
}

// ---- reaping ----------------------------------------------------------------------------------

Result<std::vector<std::string>> reap_stale_cgroups() {
  const CgroupLayout layout = PEPITA_TRY(detect_layout());
  const CgroupVersion version = layout.memory.empty() ? CgroupVersion::V2 : CgroupVersion::V1;
  std::vector<std::string> parents;
  for (const std::string* p : {&layout.memory, &layout.cpu, &layout.cpuacct, &layout.pids}) {
    if (!p->empty() && std::find(parents.begin(), parents.end(), *p) == parents.end()) {
      parents.push_back(*p);
    }
  }
  if (version == CgroupVersion::V2) parents = {layout.unified};
  std::vector<std::string> removed;
  for (const std::string& parent : parents) {
    for (const std::string& name : subdirs(parent)) {
      // pepita-<pid>-<starttime>
      if (!name.starts_with("pepita-")) continue;
      const auto parts = split(std::string_view(name).substr(7), '-');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) continue;
      const bool digits = std::all_of(parts[0].begin(), parts[0].end(), ::isdigit) &&
                          std::all_of(parts[1].begin(), parts[1].end(), ::isdigit);
      if (!digits) continue;
      const auto pid = static_cast<pid_t>(std::atol(std::string(parts[0]).c_str()));
      if (cgroup_parent_name(pid) == name) continue;  // its process lives (maybe us)
      const std::string dir = std::string(parent).append("/").append(name);
      if (remove_tree(dir, version) == 0) removed.push_back(dir);
    }
  }
  return removed;
}

}  // namespace pepita
