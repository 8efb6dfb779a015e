// CpuAffinity: resolving cores and NUMA nodes against the machine's sysfs topology, and the
// kernel's cpulist parser (Documentation/admin-guide/cputopology.rst, "cpulist format").
#include "pepita/task/affinity.hpp"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::task {
namespace {

constexpr unsigned kMaxCpu = 65536;

// A small sysfs text file, whole. Negative errno on failure.
Result<std::string> read_sysfs(const std::string& path) {
  const int fd = sys::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(fd, pepita::fmt("open {}", path));
  const UniqueFd file(fd);
  std::string text(4096, '\0');
  const int64_t n = sys::read_full(file.get(), text.data(), text.size());
  if (n < 0) return fail_errno(static_cast<int>(n), pepita::fmt("read {}", path));
  text.resize(static_cast<std::size_t>(n));
  return text;
}

std::string join(const std::vector<unsigned>& v) {
  std::string out;
  for (unsigned x : v) {
    if (!out.empty()) out.push_back(',');
    out.append(std::to_string(x));
  }
  return out;
}

// The NUMA nodes sysfs lists ("node0", "node1", ...), ascending; empty when the kernel has none.
std::vector<unsigned> existing_nodes() {
  std::vector<unsigned> nodes;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/sys/devices/system/node"), ::closedir);
  if (!dir) return nodes;
  while (const dirent* e = ::readdir(dir.get())) {
    const std::string_view name(e->d_name);
    if (!name.starts_with("node")) continue;
    unsigned n = 0;
    const auto* end = name.data() + name.size();
    auto [p, ec] = std::from_chars(name.data() + 4, end, n);
    if (ec == std::errc() && p == end && name.size() > 4) nodes.push_back(n);
  }
  std::sort(nodes.begin(), nodes.end());
  return nodes;
}

}  // namespace

CpuAffinity CpuAffinity::Cores(std::vector<unsigned> cores) {
  std::sort(cores.begin(), cores.end());
  cores.erase(std::unique(cores.begin(), cores.end()), cores.end());
  return CpuAffinity(Kind::Cores, std::move(cores), -1);
}

Result<std::vector<unsigned>> parse_cpu_list(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::vector<unsigned> cpus;
  auto number = [&](std::string_view part, unsigned& out) {
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), out);
    return ec == std::errc() && p == part.data() + part.size() && !part.empty() && out < kMaxCpu;
  };
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const auto dash = part.find('-');
    unsigned lo = 0, hi = 0;
    const bool ok = dash == std::string_view::npos
                        ? number(part, lo) && number(part, hi)
                        : number(part.substr(0, dash), lo) && number(part.substr(dash + 1), hi);
    if (!ok || lo > hi) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("cpu list part '{}' is not a CPU number or an ascending range "
                              "'a-b' of CPUs below {}",
                              part, kMaxCpu));
    }
    for (unsigned c = lo; c <= hi; ++c) cpus.push_back(c);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

Result<std::vector<unsigned>> online_cpus() {
  auto text = read_sysfs("/sys/devices/system/cpu/online");
  if (!text) {
    return fail(ErrorCode::Io, text.error().message() + "; is sysfs mounted at /sys?");
  }
  return parse_cpu_list(*text);
}

Result<std::vector<unsigned>> numa_node_cpus(int node) {
  const std::vector<unsigned> nodes = existing_nodes();
  const bool exists = node >= 0 && std::find(nodes.begin(), nodes.end(),
                                             static_cast<unsigned>(node)) != nodes.end();
  if (!exists) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("affinity: NUMA node {} does not exist; this machine has node(s) {} "
                            "(/sys/devices/system/node)",
                            node, nodes.empty() ? std::string("none") : join(nodes)));
  }
  auto text = read_sysfs(pepita::fmt("/sys/devices/system/node/node{}/cpulist", node));
  if (!text) return std::unexpected(std::move(text).error());
  return parse_cpu_list(*text);
}

bool CpuAffinity::allows_core(unsigned core) const {
  switch (kind_) {
    case Kind::Any: return true;
    case Kind::Core:
    case Kind::Cores: return std::binary_search(cores_.begin(), cores_.end(), core);
    case Kind::NumaNode: {
      auto cpus = numa_node_cpus(node_);
      return cpus && std::binary_search(cpus->begin(), cpus->end(), core);
    }
  }
  return false;
}

Result<std::vector<unsigned>> CpuAffinity::resolve() const {
  if (kind_ == Kind::Any) return std::vector<unsigned>{};
  std::vector<unsigned> cpus;
  if (kind_ == Kind::NumaNode) {
    cpus = PEPITA_TRY(numa_node_cpus(node_));
    if (cpus.empty()) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("affinity: NUMA node {} has no CPUs (a memory-only node); pick a "
                              "node with CPUs or list cores",
                              node_));
    }
    return cpus;
  }
  if (cores_.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "affinity: the core set is empty; name at least one core, or use "
                "CpuAffinity::Any()");
  }
  const std::vector<unsigned> online = PEPITA_TRY(online_cpus());
  for (unsigned c : cores_) {
    if (!std::binary_search(online.begin(), online.end(), c)) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("affinity: core {} does not exist or is offline; online cores are "
                              "{} (/sys/devices/system/cpu/online)",
                              c, join(online)));
    }
  }
  return cores_;
}

std::string to_string(const CpuAffinity& affinity) {
  switch (affinity.kind()) {
    case CpuAffinity::Kind::Any: return "any";
    case CpuAffinity::Kind::Core: return std::string("core ").append(join(affinity.cores()));
    case CpuAffinity::Kind::Cores: return std::string("cores ").append(join(affinity.cores()));
    case CpuAffinity::Kind::NumaNode:
      return std::string("numa node ").append(std::to_string(affinity.numa_node()));
  }
  return "?";
}

}  // namespace pepita::task
