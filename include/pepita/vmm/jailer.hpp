#pragma once
// The reference crate's `vmm::Jailer`, real: confines the calling process (a VMM, before it starts
// its VMs) the way Firecracker's jailer confines a VMM before exec'ing it: its own memory cgroup
// and CPUs, new mount, IPC and UTS namespaces (and network, when asked), a chroot, an
// unprivileged uid and gid, no capabilities, no_new_privs and the seccomp deny list of
// pepita/core/seccomp.hpp (a denied syscall kills the process: there is nobody to report to).
// Tasks are confined by the executor's sandbox instead (task::SandboxPolicy, docs/sandbox.md).
//
//   vmm::kvm_available();  // open /dev/kvm first: the descriptor stays usable inside the jail
//   vmm::Jailer jail(vmm::JailerConfig::production("/srv/jail/vm1"));
//   if (auto ok = jail.enter(); !ok) return ok.error();   // before any thread starts
//
// Entering is for good: there is no way back out of namespaces, a chroot, a uid switch or a
// seccomp filter, so exit() refuses while the jail holds (the crate's exit() only cleared a flag).

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "pepita/error.hpp"

namespace pepita::vmm {

struct JailerConfig {
  std::optional<std::string> chroot_dir;      // must exist; becomes "/" (after the namespaces)
  std::optional<std::uint32_t> uid;           // root only: the uid to run as (else: stay)
  std::optional<std::uint32_t> gid;           // root only: the gid to run as (else: uid's number)
  bool seccomp = false;                       // the deny list, killing the process
  bool netns = false;                         // a network namespace with only loopback
  std::optional<std::string> cpuset;          // a cpu list ("0-3,8"): the process's CPU affinity
  std::optional<std::uint64_t> memory_limit;  // bytes: a memory cgroup of ours with this limit

  /// The crate's minimal(): chroot /srv/jailer, uid/gid 65534, seccomp, netns, 256 MiB.
  static JailerConfig minimal();
  /// The crate's production(chroot): that chroot, uid/gid 65534, seccomp, netns, no memory limit.
  static JailerConfig production(std::string chroot);
};

class Jailer {
 public:
  explicit Jailer(JailerConfig config) : config_(std::move(config)) {}
  Jailer(const Jailer&) = delete;
  Jailer& operator=(const Jailer&) = delete;

  const JailerConfig& config() const noexcept { return config_; }
  /// True once enter() has confined the process.
  bool is_active() const noexcept { return active_.load(std::memory_order_acquire); }

  /// Confines the calling process. Checked before anything changes: InvalidArgument when the
  /// process has more than one thread (namespaces, chroot and ids would hold for the calling
  /// thread only), the cpu list does not parse or names a CPU at or above CPU_SETSIZE (an
  /// affinity mask cannot hold it); NotFound for a missing chroot dir;
  /// PermissionDenied for another uid or gid without root; AlreadyExists when already active. A
  /// step that fails later (the cgroup, unshare, chroot, setresuid, the filter) is returned naming
  /// it, and the process may then be partly confined: end it.
  Result<void> enter();
  /// Unsupported while the jail holds (it cannot be left: end the process instead); Ok when it
  /// was never entered.
  Result<void> exit();

 private:
  JailerConfig config_;
  std::atomic<bool> active_{false};
};

}  // namespace pepita::vmm
