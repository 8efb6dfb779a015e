#pragma once
// What a task's sandbox is made of (issue 23): the levels `none | standard | strict` and the parts
// each is built from, as one value a task, a job file's `[defaults]` or a worker carries. The
// executor builds the sandbox from it (pepita/executor/sandbox.hpp); this header only says what
// is asked for, so that task, pool, job files and the wire can name it without the executor.
//
//   none      nothing: the task runs as the pool's user, sees everything (the local default)
//   standard  user namespace (an unprivileged id), mount namespace with a minimal root (read-only
//             binds of the binary, its libraries, declared inputs and the usual system dirs, a
//             writable work dir, /dev/null|zero|urandom, a fresh /proc), pid, IPC and UTS
//             namespaces, no_new_privs, the seccomp deny list, rlimits; the host's network.
//             `pepita worker` puts tasks from remote drivers in it unless told otherwise.
//   strict    standard with no network (a namespace with only loopback) and a work dir on a
//             size-limited tmpfs (`disk`, default 1 GiB).
// docs/sandbox.md documents each part, the filter and the three tiers (none, sandbox, micro-VM).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::task {

enum class SandboxLevel : std::uint8_t { None, Standard, Strict, Custom };
enum class SandboxNetwork : std::uint8_t { Host, None };

struct SandboxPolicy {
  SandboxLevel level = SandboxLevel::None;  // Custom: parts set one by one (a job-file table)

  // The parts. A policy with every part off is `none`.
  bool user_ns = false;   // run as an unprivileged id (root: uid/gid `id`; else the caller's own)
  bool mount_ns = false;  // minimal root: pivot_root onto a tmpfs holding only the binds
  bool pid_ns = false;    // the task is the child of a pid 1 of ours; all its processes die with it
  bool ipc_uts_ns = false;
  SandboxNetwork network = SandboxNetwork::Host;
  bool no_new_privs = false;
  bool seccomp = false;  // the deny list of docs/sandbox.md (kill, reported with the syscall name)

  std::uint32_t id = 65534;  // the unprivileged uid and gid the task runs as when we are root
  std::optional<std::uint64_t> disk;   // work dir on a tmpfs of this many bytes (strict: 1 GiB)
  std::vector<std::string> read_only;  // extra read-only binds (declared inputs, model dirs)
  std::vector<std::string> writable;   // extra writable binds
  // rlimits (0: leave the inherited one). Core dumps are always off inside a sandbox.
  std::uint64_t max_open_files = 0;  // RLIMIT_NOFILE
  std::uint64_t max_file_size = 0;   // RLIMIT_FSIZE, bytes
  std::uint64_t max_processes = 0;   // the pids limit (cgroup pids.max where usable)

  bool enabled() const noexcept { return level != SandboxLevel::None; }
  /// Whether the parts a level decides are `other`'s: everything but the level's name and the
  /// binds (read_only, writable), which a table may add to any level.
  bool same_parts_as(const SandboxPolicy& other) const;

  static SandboxPolicy none() { return {}; }
  static SandboxPolicy standard();
  static SandboxPolicy strict();
  /// "none", "standard" or "strict"; anything else is InvalidArgument naming the three.
  static Result<SandboxPolicy> parse(std::string_view level);

  friend bool operator==(const SandboxPolicy&, const SandboxPolicy&) = default;
};

/// "none", "standard", "strict", "custom".
std::string_view to_string(SandboxLevel level) noexcept;

}  // namespace pepita::task
