// Inventory (issue 22): what this host offers — CPUs from our affinity mask and the sysfs NUMA
// nodes, memory from /proc/meminfo lowered to our cgroup's limit (cgroup v2 memory.max or v1
// memory.limit_in_bytes, ours and every ancestor's), GPUs from `nvidia-smi -L` or the DRM render
// nodes — plus overrides ("gpus=0,1 cpus=32") and the "could this ever fit" check.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <memory>

#include "detail/resources_util.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/sys/thread.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/task/affinity.hpp"
#include "pepita/task/resources.hpp"

extern char** environ;

namespace pepita::task {
namespace {

using detail::format_amount;
using detail::trim;

// A small text file, whole (procfs and sysfs files report size 0, so read to EOF).
std::optional<std::string> read_text(const std::string& path) {
  const int fd = sys::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  const UniqueFd file(fd);
  std::string text;
  char buf[4096];
  for (;;) {
    const int64_t n = sys::read_full(file.get(), buf, sizeof buf);
    if (n < 0) return std::nullopt;
    text.append(buf, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof buf) break;
  }
  return text;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    lines.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  for (;;) {
    const auto at = text.find(sep);
    out.emplace_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  s = trim(s);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> entries(const char* dir_path, std::string_view prefix) {
  std::vector<std::string> names;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(dir_path), ::closedir);
  if (!dir) return names;
  while (const dirent* e = ::readdir(dir.get())) {
    const std::string_view name(e->d_name);
    if (name.starts_with(prefix)) names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// MemTotal of /proc/meminfo in bytes; 0 when unreadable.
std::uint64_t mem_total() {
  const auto text = read_text("/proc/meminfo");
  if (!text) return 0;
  for (const auto& line : split_lines(*text)) {
    if (!line.starts_with("MemTotal:")) continue;
    std::string_view v = trim(std::string_view(line).substr(9));
    if (v.ends_with("kB")) v = trim(v.substr(0, v.size() - 2));
    if (auto kb = parse_u64(v)) return *kb * 1024;
  }
  return 0;
}

// A cgroup mount from /proc/self/mountinfo: where it is mounted and which part of the
// hierarchy is its root (not "/" inside some containers).
struct CgroupMount {
  std::string root;
  std::string point;
};

// The cgroup2 mount (v2 == true) or the v1 mount carrying controller `controller`.
std::optional<CgroupMount> find_mount(bool v2, std::string_view controller) {
  const auto text = read_text("/proc/self/mountinfo");
  if (!text) return std::nullopt;
  for (const auto& line : split_lines(*text)) {
    // id parent major:minor root point options [optional...] - fstype source super_options
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    const auto head = split(std::string_view(line).substr(0, dash), ' ');
    const auto tail = split(std::string_view(line).substr(dash + 3), ' ');
    if (head.size() < 5 || tail.size() < 3) continue;
    if (v2 ? tail[0] != "cgroup2" : tail[0] != "cgroup") continue;
    if (!v2) {
      const auto opts = split(tail[2], ',');
      if (std::find(opts.begin(), opts.end(), controller) == opts.end()) continue;
    }
    return CgroupMount{head[3], head[4]};
  }
  return std::nullopt;
}

// The smallest memory limit on our cgroup and its ancestors, for v2 (file "memory.max") or v1
// ("memory.limit_in_bytes"); nullopt when none is set or readable.
std::optional<std::uint64_t> cgroup_limit(bool v2) {
  const auto self = read_text("/proc/self/cgroup");
  if (!self) return std::nullopt;
  std::optional<std::string> path;
  for (const auto& line : split_lines(*self)) {
    // hierarchy-id:controllers:path
    const auto parts = split(line, ':');
    if (parts.size() < 3) continue;
    const auto ctls = split(parts[1], ',');
    const bool match = v2 ? (parts[0] == "0" && parts[1].empty())
                          : std::find(ctls.begin(), ctls.end(), "memory") != ctls.end();
    if (match) {
      path = line.substr(parts[0].size() + parts[1].size() + 2);
      break;
    }
  }
  if (!path) return std::nullopt;
  const auto mount = find_mount(v2, "memory");
  if (!mount) return std::nullopt;
  std::string rel = *path;
  if (mount->root != "/" && rel.starts_with(mount->root)) rel.erase(0, mount->root.size());
  const char* file = v2 ? "memory.max" : "memory.limit_in_bytes";
  std::optional<std::uint64_t> limit;
  for (;;) {
    std::string dir = mount->point;
    if (!rel.empty() && rel != "/") dir.append(rel.front() == '/' ? "" : "/").append(rel);
    if (const auto text = read_text(dir + "/" + file)) {
      if (const auto v = parse_u64(*text)) limit = std::min(limit.value_or(*v), *v);  // "max": none
    }
    if (rel.empty() || rel == "/") break;
    const auto slash = rel.rfind('/');
    rel = slash == std::string::npos ? std::string() : rel.substr(0, slash);
  }
  return limit;
}

// An executable named `name` on PATH, or empty.
std::string find_on_path(std::string_view name) {
  const char* path = ::getenv("PATH");
  if (!path) return {};
  for (const auto& dir : split(path, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir;
    candidate.append("/").append(name);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

// One child process with its stdout on a pipe. Owns both: the destructor kills (SIGKILL) and
// reaps a child that was not waited for, so no zombie and no stray process is left behind.
class Child {
 public:
  static std::optional<Child> spawn(const std::string& path, std::vector<std::string> argv) {
    int fds[2];
    if (sys::pipe(fds) < 0) return std::nullopt;
    UniqueFd read_end(fds[0]);
    UniqueFd write_end(fds[1]);
    posix_spawn_file_actions_t actions;
    if (posix_spawn_file_actions_init(&actions) != 0) return std::nullopt;
    std::unique_ptr<posix_spawn_file_actions_t, int (*)(posix_spawn_file_actions_t*)> guard(
        &actions, posix_spawn_file_actions_destroy);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    if (posix_spawn(&pid, path.c_str(), &actions, nullptr, args.data(), environ) != 0) {
      return std::nullopt;
    }
    return Child(pid, std::move(read_end));
  }
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), out_(std::move(o.out_)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  // Its whole stdout, or nullopt when it did not finish within `limit` (then it is killed) or
  // exited non-zero.
  std::optional<std::string> output(std::chrono::milliseconds limit) {
    std::string text;
    const auto until = std::chrono::steady_clock::now() + limit;
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{out_.get(), POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno != EINTR) return std::nullopt;
      if (ready <= 0) continue;
      const ssize_t n = ::read(out_.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      if (text.size() > (1u << 20)) return std::nullopt;
    }
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return std::nullopt;
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
    return text;
  }

 private:
  Child(pid_t pid, UniqueFd out) : pid_(pid), out_(std::move(out)) {}
  pid_t pid_;
  UniqueFd out_;
};

// GPU indexes from `nvidia-smi -L` ("GPU 0: NVIDIA H100 (UUID: GPU-...)"); nullopt when it is
// not on PATH or fails.
std::optional<std::vector<std::string>> nvidia_gpus() {
  const std::string path = find_on_path("nvidia-smi");
  if (path.empty()) return std::nullopt;
  auto child = Child::spawn(path, {"nvidia-smi", "-L"});
  if (!child) return std::nullopt;
  const auto text = child->output(std::chrono::seconds(10));
  if (!text) return std::nullopt;
  std::vector<std::string> ids;
  for (const auto& line : split_lines(*text)) {
    if (!line.starts_with("GPU ")) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string id(trim(std::string_view(line).substr(4, colon - 4)));
    if (parse_u64(id)) ids.push_back(id);
  }
  return ids;
}

std::vector<std::string> count_ids(std::size_t n) {
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  return ids;
}

std::string join_ids(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out.append(out.empty() ? "" : ",").append(id);
  return out;
}

// Every NUMA node's usable cores: its sysfs cpulist intersected with `cpus`; nodes with none
// left out.
std::map<int, std::vector<unsigned>> numa_of(const std::vector<unsigned>& cpus) {
  std::map<int, std::vector<unsigned>> out;
  for (const auto& name : entries("/sys/devices/system/node", "node")) {
    const auto n = parse_u64(std::string_view(name).substr(4));
    if (!n) continue;
    const auto text = read_text(pepita::fmt("/sys/devices/system/node/{}/cpulist", name));
    if (!text) continue;
    const auto list = parse_cpu_list(*text);
    if (!list) continue;
    std::vector<unsigned> mine;
    std::set_intersection(list->begin(), list->end(), cpus.begin(), cpus.end(),
                          std::back_inserter(mine));
    if (!mine.empty()) out[static_cast<int>(*n)] = std::move(mine);
  }
  return out;
}

}  // namespace

Result<Inventory> Inventory::detect() {
  Inventory inv;
  for (int c : sys::allowed_cpus()) inv.cpus.push_back(static_cast<unsigned>(c));
  if (inv.cpus.empty()) {
    return fail(ErrorCode::Io,
                "cannot read this process's CPU affinity (sched_getaffinity); give the host's "
                "resources explicitly (e.g. --cpus N)");
  }
  inv.numa = numa_of(inv.cpus);
  inv.memory = mem_total();
  if (inv.memory == 0) {
    return fail(ErrorCode::Io,
                "cannot read MemTotal from /proc/meminfo; is /proc mounted? (or give memory=... "
                "explicitly)");
  }
  for (const bool v2 : {true, false}) {
    if (const auto limit = cgroup_limit(v2); limit && *limit > 0) {
      inv.memory = std::min(inv.memory, *limit);
    }
  }
  if (auto ids = nvidia_gpus()) {
    inv.gpus = std::move(*ids);
  } else {
    inv.gpus = count_ids(entries("/sys/class/drm", "renderD").size());
  }
  return inv;
}

Result<void> Inventory::apply_overrides(std::string_view spec) {
  // Items are comma-separated; a piece without '=' continues the value before it (gpu ids,
  // cpu lists).
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& piece : split(spec, ',')) {
    const std::string_view p = trim(piece);
    if (p.empty()) continue;  // "" and a trailing comma change nothing
    const auto eq = p.find('=');
    if (eq == std::string_view::npos) {
      if (items.empty()) {
        return fail(ErrorCode::InvalidArgument,
                    pepita::fmt("resources '{}': '{}' is not name=value (e.g. gpus=0,1 cpus=8 "
                                "memory=64G license=2)",
                                spec, p));
      }
      items.back().second.append(",").append(p);
    } else {
      items.emplace_back(std::string(trim(p.substr(0, eq))), std::string(trim(p.substr(eq + 1))));
    }
  }
  Inventory next = *this;
  for (const auto& [name, value] : items) {
    auto bad = [&, &name = name, &value = value](std::string_view why) {
      return fail(ErrorCode::InvalidArgument, pepita::fmt("resources: {}={} {}", name, value, why));
    };
    if (value.empty()) return bad("has no value");
    if (name == "gpus") {
      if (const auto n = parse_u64(value)) {
        next.gpus = count_ids(*n);
      } else {
        next.gpus.clear();
        for (const auto& id : split(value, ',')) {
          const std::string t(trim(id));
          if (t.empty()) return bad("has an empty gpu id");
          if (std::find(next.gpus.begin(), next.gpus.end(), t) != next.gpus.end()) {
            return bad(pepita::fmt("lists gpu '{}' twice", t));
          }
          next.gpus.push_back(t);
        }
      }
    } else if (name == "cpus") {
      if (const auto n = parse_u64(value)) {
        if (*n == 0 || *n > 65536) return bad("is out of range: give 1..65536 CPUs or a list");
        next.cpus.clear();
        for (unsigned i = 0; i < *n; ++i) next.cpus.push_back(i);
      } else {
        auto list = parse_cpu_list(value);
        if (!list)
          return bad(pepita::fmt("is neither a count nor a cpu list: {}", list.error().message()));
        if (list->empty()) return bad("lists no CPUs");
        next.cpus = std::move(*list);
      }
      // The NUMA nodes keep the cores they still have; if some cores belong to no node, the
      // host is treated as one node.
      std::map<int, std::vector<unsigned>> nodes;
      std::size_t covered = 0;
      for (const auto& [node, cores] : numa_of(next.cpus)) {
        covered += cores.size();
        nodes[node] = cores;
      }
      next.numa = covered == next.cpus.size() ? std::move(nodes) : decltype(nodes){};
    } else if (name == "memory") {
      auto bytes = parse_bytes(value);
      if (!bytes) return bad(bytes.error().message());
      next.memory = *bytes;
    } else {
      if (auto ok = detail::check_resource_name(name); !ok) return ok;
      const auto v = detail::parse_decimal(value);
      if (!v) return bad("is not a count: use a number of 0 or more");
      next.named[name] = *v;
    }
  }
  *this = std::move(next);
  return {};
}

Result<void> Inventory::can_ever_fit(const ResourceRequest& request) const {
  const ResourceRequest r = request.at_attempt(1);
  auto cannot = [](std::string why) { return fail(ErrorCode::Unsupported, std::move(why)); };
  const double have_cpus = static_cast<double>(cpus.size());
  if (r.cpus > have_cpus + 1e-9) {
    return cannot(pepita::fmt("needs {} CPUs{}; this host has {}", format_amount(r.cpus),
                              r.pin_cpus ? " (pinned)" : "", cpus.size()));
  }
  if (r.memory > memory) {
    return cannot(pepita::fmt("needs {} of memory; this host has {}", format_bytes(r.memory),
                              format_bytes(memory)));
  }
  if (!r.gpu_ids.empty()) {
    for (const auto& id : r.gpu_ids) {
      if (std::find(gpus.begin(), gpus.end(), id) == gpus.end()) {
        return cannot(pepita::fmt(
            "needs GPU '{}'; this host has {}", id,
            gpus.empty() ? std::string("no GPUs") : std::string("GPUs ").append(join_ids(gpus))));
      }
    }
  } else if (r.gpus > 0) {
    const double need = std::ceil(r.gpus - 1e-9);
    if (need > static_cast<double>(gpus.size())) {
      return cannot(pepita::fmt("needs {} GPU{}; this host has {}", format_amount(r.gpus),
                                r.gpus > 1 ? "s" : "", gpus.size()));
    }
  }
  for (const auto& [name, amount] : r.named) {
    auto it = named.find(name);
    if (it == named.end()) {
      if (amount <= 0) continue;
      return cannot(
          pepita::fmt("needs {}={}; this host has no '{}'", name, format_amount(amount), name));
    }
    if (amount > it->second + 1e-9) {
      return cannot(pepita::fmt("needs {}={}; this host has {}", name, format_amount(amount),
                                format_amount(it->second)));
    }
  }
  return {};
}

std::string Inventory::to_string() const {
  std::string out = pepita::fmt("cpus={} memory={}", cpus.size(), format_bytes(memory));
  if (!gpus.empty()) out.append(" gpus=").append(join_ids(gpus));
  for (const auto& [name, amount] : named) {
    out.append(" ").append(name).append("=").append(format_amount(amount));
  }
  return out;
}

}  // namespace pepita::task
