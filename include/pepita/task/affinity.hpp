#pragma once
// CpuAffinity: which CPUs a task's processes may run on — any, one core, a set of cores, or the
// CPUs of one NUMA node as Linux lists them in /sys/devices/system/node/node<N>/cpulist. The
// process executor applies it with sched_setaffinity(2) so the child (every stage of a pipeline)
// inherits it; the names follow the crate's `CpuAffinity` enum.
//
//   auto t = Task::binary("./worker").affinity(CpuAffinity::Cores({0, 1})).build();
//   auto near_gpu = Task::binary("./feed").affinity(CpuAffinity::NumaNode(0)).build();
//   CpuAffinity::Core(1).allows_core(0);  // false
//   auto cpus = CpuAffinity::NumaNode(0).resolve();  // {0, 1} on a two-CPU machine with one node

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::task {

class CpuAffinity {
 public:
  enum class Kind : std::uint8_t { Any, Core, Cores, NumaNode };

  /// No restriction: the child inherits the executor's own mask (the default).
  CpuAffinity() = default;
  static CpuAffinity Any() { return {}; }
  /// Exactly one core.
  static CpuAffinity Core(unsigned core) { return CpuAffinity(Kind::Core, {core}, -1); }
  /// A set of cores (duplicates are dropped, order does not matter).
  static CpuAffinity Cores(std::vector<unsigned> cores);
  /// The CPUs of NUMA node `node`, read from sysfs when the task is built and again at spawn.
  static CpuAffinity NumaNode(int node) { return CpuAffinity(Kind::NumaNode, {}, node); }

  Kind kind() const noexcept { return kind_; }
  bool is_any() const noexcept { return kind_ == Kind::Any; }
  /// The cores of Core/Cores, ascending; empty for Any and NumaNode.
  const std::vector<unsigned>& cores() const noexcept { return cores_; }
  /// The node of NumaNode; -1 otherwise.
  int numa_node() const noexcept { return node_; }

  /// Whether a process with this affinity may run on `core`. Any allows every core; a NUMA node
  /// allows the cores sysfs lists for it (none when the node does not exist).
  bool allows_core(unsigned core) const;

  /// The CPUs to pass to sched_setaffinity, ascending; empty for Any. InvalidArgument, naming
  /// the field and what exists, when: the set is empty, a core is not online
  /// (/sys/devices/system/cpu/online), or the node is negative or has no
  /// /sys/devices/system/node/node<N>/cpulist (the message lists the nodes there are).
  Result<std::vector<unsigned>> resolve() const;

  friend bool operator==(const CpuAffinity&, const CpuAffinity&) = default;

 private:
  CpuAffinity(Kind kind, std::vector<unsigned> cores, int node)
      : kind_(kind), cores_(std::move(cores)), node_(node) {}
  Kind kind_ = Kind::Any;
  std::vector<unsigned> cores_;
  int node_ = -1;
};

/// "any", "core 3", "cores 0,2", "numa node 1" — for messages and logs.
std::string to_string(const CpuAffinity& affinity);

/// Parses the kernel's CPU list format ("0-3,8,10-11", a trailing newline allowed) into
/// ascending, distinct CPU numbers. InvalidArgument naming the bad part on malformed text
/// (a reversed range, a non-number, a CPU >= 65536).
Result<std::vector<unsigned>> parse_cpu_list(std::string_view text);

/// The online CPUs, from /sys/devices/system/cpu/online. Io when sysfs cannot be read.
Result<std::vector<unsigned>> online_cpus();

/// The CPUs of NUMA node `node`, from /sys/devices/system/node/node<node>/cpulist.
/// InvalidArgument listing the existing nodes when there is no such node.
Result<std::vector<unsigned>> numa_node_cpus(int node);

}  // namespace pepita::task
