#pragma once
// The sandboxed spawn (issue 23; docs/sandbox.md): a supervisor cloned into new user, mount, pid,
// IPC, UTS and network namespaces, which builds a minimal root (pivot_root onto a tmpfs of
// read-only binds), drops what it may, installs the seccomp deny list with a user-notification
// listener it keeps, starts the task as its only child and reports the task's wait status (and the
// syscall the filter stopped) to the executor. Everything the supervisor needs is computed here in
// the parent: the mount plan, the BPF program, the id maps. Private to the executor module.

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "detail/spawn.hpp"
#include "pepita/core/seccomp.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/task/task.hpp"

namespace pepita::executor::detail {

/// One step of building the sandbox's root, run in order by the supervisor. Host paths are seen
/// under /oldroot, the new root under /newroot (bubblewrap's layout).
struct MountOp {
  enum class Kind : std::uint8_t {
    Mkdir,    // target: a directory (an existing one is fine)
    Touch,    // target: an empty file to bind a file onto
    Symlink,  // target -> source (a symlink's text, e.g. /lib -> usr/lib)
    BindRO,   // source (a host path) at target, read-only, nosuid, nodev
    BindRW,   // source at target, writable, nosuid, nodev
    Tmpfs,    // a tmpfs at target with `options` ("mode=0755,size=...")
    Proc,     // a fresh proc at target
    Copy,     // a file at target holding `data`, mode `mode` (a copy of host file source)
  };
  Kind kind;
  std::string source;
  std::string target;
  std::string options;
  std::string what;                                   // for an error message: "bind /usr"
  std::shared_ptr<const std::string> data = nullptr;  // Copy: the file's contents
  std::uint32_t mode = 0644;                          // Copy: its permission bits
};

/// The sandbox's root for `policy`: system dirs, copies of the /etc files a program needs (never
/// shadow; read once per process and again when the host's file changes),
/// `binary` when no system dir holds it, /dev, /proc, /tmp, the policy's read_only and writable
/// paths and the work dir `workdir` (writable bind, or a tmpfs of `disk` bytes). Pure except for
/// lstat/realpath of the host paths. InvalidArgument for a relative or missing declared path and
/// for a work dir of "/".
Result<std::vector<MountOp>> sandbox_mount_plan(const task::SandboxPolicy& policy,
                                                const std::string& binary,
                                                const std::string& workdir);

/// The host dir over which the supervisor mounts the new root's tmpfs to build it with one
/// pivot_root: a real directory among /mnt, /srv, /opt, /media, /tmp, /run, /var that no bind of
/// `plan` reads from, at or below it (the tmpfs would hide it) or above it (a bind of "/" would
/// take the root being built along). Null when every one clashes: bubblewrap's two pivots then.
const char* sandbox_staging_dir(const std::vector<MountOp>& plan);

/// The deny list and its program live in core (pepita/core/seccomp.hpp), shared with vmm::Jailer;
/// the sandbox's denied syscalls wake the supervisor's listener, which reports them.
using sys::SeccompFilter;
inline const std::vector<std::string>& sandbox_denied_syscalls() {
  return sys::seccomp_denied_syscalls();
}
inline Result<const SeccompFilter*> sandbox_filter(std::uint32_t id) {
  return sys::seccomp_deny_filter(id, sys::SeccompDeny::Notify);
}

/// The supervisor's stack and arguments: one mapping. A supervisor that shares our memory
/// (CLONE_VM) runs on it until it exits, so it is unmapped only once the supervisor has been
/// reaped: `reaped()` says so. Dropped without that (an attempt abandoned while its supervisor
/// may still run) the mapping is left in place, a leak rather than a stack pulled from under a
/// running process.
class SupervisorMemory {
 public:
  SupervisorMemory() = default;
  /// `bytes` of stack (rounded up to pages) below one page for the arguments, a guard page under.
  static Result<SupervisorMemory> make(std::size_t bytes);
  SupervisorMemory(SupervisorMemory&& o) noexcept;
  SupervisorMemory& operator=(SupervisorMemory&& o) noexcept;
  SupervisorMemory(const SupervisorMemory&) = delete;
  SupervisorMemory& operator=(const SupervisorMemory&) = delete;
  ~SupervisorMemory() { reset(); }

  void* stack_top() const noexcept { return args_; }  // the arguments' page lies above it
  void* args() const noexcept { return args_; }
  /// Nothing runs on the mapping any more (the supervisor was reaped, or has a copy of its own).
  void reaped() noexcept { in_use_ = false; }
  /// Unmaps it if nothing runs on it; otherwise lets it go (leaked).
  void reset() noexcept;
  explicit operator bool() const noexcept { return base_ != nullptr; }

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
  void* args_ = nullptr;
  bool in_use_ = false;
};

/// A running sandbox: its supervisor (the pid the executor waits for), the pipe it reports on and
/// the memory it runs on (kept until the supervisor has been reaped).
struct SandboxChild {
  pid_t pid = -1;
  UniqueFd report;
  SupervisorMemory memory;
};

/// Starts `spec` in the sandbox `policy`; returns once the task has exec'd (or with the error
/// naming the step that failed: "sandbox: bind /data at /data: No such file or directory").
/// `pgid` as in spawn_process. The supervisor dies with the calling thread (PR_SET_PDEATHSIG).
Result<SandboxChild> spawn_sandboxed(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid,
                                     const SpawnExtras& extras, const task::SandboxPolicy& policy);

/// How the task in a sandbox ended, from the supervisor's report (read after it exited).
struct SandboxOutcome {
  bool reported = false;  // false: the supervisor died without a report (killed from outside)
  int code = 0;           // CLD_EXITED, CLD_KILLED or CLD_DUMPED
  int status = 0;         // exit status or signal
  std::string reason;  // "sandbox: syscall ptrace denied"; empty when the sandbox stopped nothing
};

/// Reads the supervisor's final report from `report` (non-blocking: it wrote before exiting).
SandboxOutcome read_sandbox_outcome(int report, std::uint32_t id);

}  // namespace pepita::executor::detail
