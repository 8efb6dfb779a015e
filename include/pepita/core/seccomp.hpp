#pragma once
// The seccomp deny list shared by the task sandbox (src/executor, docs/sandbox.md) and the
// micro-VM jailer (vmm::Jailer): syscalls that reach beyond a confined process (ptrace, mounts and
// new namespaces, modules, kexec, eBPF, perf, keyrings, file handles, host-wide clocks and
// swap, identity changes) and the BPF program libseccomp builds from it, exported into memory so
// that a child which may only make raw system calls can install it.

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::sys {

/// The names on the deny list, in docs/sandbox.md's order.
const std::vector<std::string>& seccomp_denied_syscalls();

/// What a denied syscall does: wake the holder of the filter's user-notification listener (who
/// learns which syscall it was, kills and reports: the task sandbox), or kill the process at once
/// (the jailer, which has nobody to report to).
enum class SeccompDeny : std::uint8_t { Notify, Kill };

/// The program and the names of the syscalls it stops.
struct SeccompFilter {
  std::vector<sock_filter> program;
  std::vector<std::pair<int, std::string>> denied;  // native syscall number -> name
  /// "ptrace" for its number; "syscall 1234" for one not in the list.
  std::string name(int nr) const;
};

/// Built once per (id, action) per process with libseccomp (seccomp_export_bpf): the deny list,
/// `clone` with any CLONE_NEW* flag, and another architecture's syscalls (kill); `clone3` and
/// io_uring answer ENOSYS (the C library falls back; io_uring would bypass the filter). `id` is the
/// only uid/gid the setuid family may still switch to. Internal on a libseccomp failure.
Result<const SeccompFilter*> seccomp_deny_filter(std::uint32_t id, SeccompDeny action);

}  // namespace pepita::sys
