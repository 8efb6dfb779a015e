// The seccomp deny list and its BPF program (include/pepita/core/seccomp.hpp).
#include "pepita/core/seccomp.hpp"

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pepita/core/unique_fd.hpp"

namespace pepita::sys {

const std::vector<std::string>& seccomp_denied_syscalls() {
  static const std::vector<std::string> names = {
      // Debugging and reading or writing other processes.
      "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
      // Mounts and namespaces: the sandbox's own shape is final.
      "mount", "umount2", "pivot_root", "chroot", "setns", "unshare", "fsopen", "fsmount",
      "fsconfig", "move_mount", "open_tree", "mount_setattr",
      // The kernel itself: modules, kexec, eBPF, perf, keyrings.
      "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf",
      "perf_event_open", "keyctl", "add_key", "request_key",
      // File handles bypass the mount namespace; userfaultfd widens kernel races.
      "open_by_handle_at", "name_to_handle_at", "userfaultfd",
      // Host-wide state.
      "swapon", "swapoff", "reboot", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
      "acct", "quotactl", "lookup_dcookie", "iopl", "ioperm", "syslog", "vhangup", "nfsservctl",
      "uselib", "personality",
      // Changing identity (setuid(0) and friends); switching to the sandbox's own id is allowed.
      "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
      "setgroups"};
  return names;
}

std::string SeccompFilter::name(int nr) const {
  for (const auto& [n, s] : denied)
    if (n == nr) return s;
  return "syscall " + std::to_string(nr);
}

Result<const SeccompFilter*> seccomp_deny_filter(std::uint32_t id, SeccompDeny action) {
  static std::mutex mu;
  static std::vector<std::pair<std::uint64_t, std::unique_ptr<SeccompFilter>>> built;
  const std::uint64_t key = (std::uint64_t{id} << 1) | (action == SeccompDeny::Kill ? 1u : 0u);
  std::lock_guard lock(mu);
  for (const auto& [k, f] : built)
    if (k == key) return f.get();
  const std::uint32_t deny = action == SeccompDeny::Kill ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_NOTIFY;

  auto failed = [](const char* what, int rc) {
    return fail(ErrorCode::Internal, std::string("seccomp: libseccomp ")
                                         .append(what)
                                         .append(" failed: ")
                                         .append(std::strerror(-rc))
                                         .append(" (is libseccomp >= 2.5 installed?)"));
  };
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return failed("seccomp_init", -ENOMEM);
  struct Release {
    scmp_filter_ctx c;
    ~Release() { ::seccomp_release(c); }
  } release{ctx};
  // Another architecture's syscall table (i386 via int 0x80, x32) would bypass every rule.
  if (int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0)
    return failed("SCMP_FLTATR_ACT_BADARCH", rc);
  // A binary tree over the syscall numbers instead of a linear list: installing the filter costs
  // half the CPU (the kernel runs it once per syscall number of both x86 tables to build its
  // allow cache, with interrupts off: ~110 -> ~55 us a sandboxed task here), and every syscall
  // it does not cache runs ~8 comparisons instead of up to ~60.
  if (int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0)
    return failed("SCMP_FLTATR_CTL_OPTIMIZE", rc);
  auto filter = std::make_unique<SeccompFilter>();
  for (const auto& name : seccomp_denied_syscalls()) {
    const int nr = ::seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR || nr < 0) continue;  // not on this architecture
    int rc;
    if (name == "setuid" || name == "setgid" || name == "setfsuid" || name == "setfsgid") {
      rc = ::seccomp_rule_add(ctx, deny, nr, 1, SCMP_A0(SCMP_CMP_NE, id));
    } else {
      rc = ::seccomp_rule_add(ctx, deny, nr, 0);
    }
    if (rc < 0) return failed(("seccomp_rule_add " + name).c_str(), rc);
    filter->denied.emplace_back(nr, name);
  }
  // New namespaces through clone's flags; clone3 hides its flags in memory the filter cannot
  // read, so it answers ENOSYS and the C library falls back to clone.
  const int clone_nr = ::seccomp_syscall_resolve_name("clone");
  for (const unsigned long flag : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET,
                                   CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP}) {
    const int rc =
        ::seccomp_rule_add(ctx, deny, clone_nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    if (rc < 0) return failed("seccomp_rule_add clone", rc);
  }
  filter->denied.emplace_back(clone_nr, "clone (new namespace)");
  for (const char* name : {"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}) {
    const int nr = ::seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR || nr < 0) continue;
    if (int rc = ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0); rc < 0)
      return failed(name, rc);
  }
  const int mfd = ::memfd_create("pepita-seccomp", MFD_CLOEXEC);
  if (mfd < 0) return failed("memfd_create", -errno);
  UniqueFd mem(mfd);
  if (int rc = ::seccomp_export_bpf(ctx, mem.get()); rc < 0)
    return failed("seccomp_export_bpf", rc);
  const off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
    return failed("seccomp_export_bpf (size)", -EINVAL);
  filter->program.resize(static_cast<std::size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), filter->program.data(), static_cast<std::size_t>(size), 0) != size)
    return failed("reading the exported program", -errno);
  built.emplace_back(key, std::move(filter));
  return built.back().second.get();
}

}  // namespace pepita::sys
