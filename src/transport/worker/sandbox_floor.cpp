// The worker's sandbox floor (issue 23): a task from a driver runs in its own SandboxPolicy
// raised part by part to the worker's (include/pepita/transport/worker.hpp, raise_to_floor).
#include <algorithm>
#include <cstdint>

#include "pepita/transport/worker.hpp"

namespace pepita::transport {
namespace {

using task::SandboxLevel;
using task::SandboxNetwork;
using task::SandboxPolicy;

// The stricter of two limits where 0 means none.
std::uint64_t tighter(std::uint64_t a, std::uint64_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

}  // namespace

SandboxPolicy raise_to_floor(const SandboxPolicy& asked, const SandboxPolicy& floor) {
  if (!floor.enabled()) return asked;
  SandboxPolicy p = asked;
  p.user_ns = asked.user_ns || floor.user_ns;
  p.mount_ns = asked.mount_ns || floor.mount_ns;
  p.pid_ns = asked.pid_ns || floor.pid_ns;
  p.ipc_uts_ns = asked.ipc_uts_ns || floor.ipc_uts_ns;
  p.no_new_privs = asked.no_new_privs || floor.no_new_privs;
  p.seccomp = asked.seccomp || floor.seccomp;
  if (floor.network == SandboxNetwork::None) p.network = SandboxNetwork::None;
  if (floor.user_ns) p.id = floor.id;
  if (asked.disk && floor.disk) {
    p.disk = std::min(*asked.disk, *floor.disk);
  } else if (floor.disk) {
    p.disk = floor.disk;
  }
  p.max_open_files = tighter(asked.max_open_files, floor.max_open_files);
  p.max_file_size = tighter(asked.max_file_size, floor.max_file_size);
  p.max_processes = tighter(asked.max_processes, floor.max_processes);
  for (const auto& path : floor.read_only) {
    if (std::find(p.read_only.begin(), p.read_only.end(), path) == p.read_only.end())
      p.read_only.push_back(path);
  }
  for (const auto& path : floor.writable) {
    if (std::find(p.writable.begin(), p.writable.end(), path) == p.writable.end())
      p.writable.push_back(path);
  }
  if (p == asked && asked.enabled()) return asked;  // it asked for at least the floor
  if (p.same_parts_as(SandboxPolicy::strict())) {
    p.level = SandboxLevel::Strict;
  } else if (p.same_parts_as(SandboxPolicy::standard())) {
    p.level = SandboxLevel::Standard;
  } else {
    p.level = SandboxLevel::Custom;
  }
  return p;
}

}  // namespace pepita::transport
