// The sandboxed spawn (docs/sandbox.md). The parent computes everything (mount plan, seccomp
// program, argv, envp), clones a supervisor into the new namespaces (a copy of our memory: no
// CLONE_VM, since the supervisor outlives the spawn as pid 1 of its pid namespace), writes its id
// maps, puts it in the attempt's cgroup and releases it through a pipe. The supervisor builds the
// root, installs the filter with a user-notification listener it keeps, starts the task and reports
// on the report pipe: `Started` once the task has exec'd, then `Ended` with the task's wait status
// and the syscall the filter stopped, if any. Like spawn.cpp's child, the supervisor makes raw
// system calls only: it is a copy of a possibly multithreaded process, where a lock (malloc's)
// may be held forever.
#include "detail/sandbox_spawn.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"

extern char** environ;
// See spawn.cpp: glibc's clone(3), which ThreadSanitizer does not intercept.
extern "C" int __clone(int (*fn)(void*), void* stack, int flags, void* arg, ...);

namespace pepita::executor::detail {
namespace {

// Steps of the supervisor other than the mount plan's (whose steps are their index, >= 0).
enum Step : std::int32_t {
  kRelease = -1,
  kIds = -2,
  kFds = -3,
  kPrivate = -4,
  kBase = -5,
  kPivot = -6,
  kHostname = -7,
  kLoopback = -8,
  kChdir = -9,
  kRlimit = -10,
  kCaps = -11,
  kNoNewPrivs = -12,
  kSeccomp = -13,
  kSignals = -14,
  kFork = -15,
  kExec = -16,
};

enum Kind : std::int32_t { kFailed = 1, kStarted = 2, kEnded = 3, kReady = 4 };

// What the supervisor writes on the report pipe (each write is atomic: < PIPE_BUF).
struct Report {
  std::int32_t kind;
  std::int32_t step;         // kFailed
  std::int32_t err;          // kFailed: errno
  std::int32_t wait_status;  // kEnded: the task's raw wait status
  std::int32_t denied_nr;    // kEnded: the syscall the filter stopped, -1 for none
};

struct RawOp {
  MountOp::Kind kind;
  const char* source;
  const char* target;
  const char* options;
  bool device;  // a bind of a device node (no nodev)
};

struct SupervisorArgs {
  int sync_fd;
  int report_fd;
  int fds[3];
  bool user_ns, mount_ns, pid_ns, ipc_uts, net_none, no_new_privs, seccomp, parent_root;
  std::uint32_t id;
  const RawOp* ops;
  std::size_t op_count;
  const char* workdir;
  const char* path;
  char* const* argv;
  char* const* envp;
  const sock_fprog* prog;
  std::uint64_t nofile, fsize, nproc;
};

struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  unsigned long mask;
};

#define PEPITA_NOSAN __attribute__((no_sanitize("address", "undefined", "thread")))

PEPITA_NOSAN long sc_write(int fd, const void* buf, std::size_t n) {
  long r;
  do {
    r = ::syscall(SYS_write, fd, buf, n);
  } while (r < 0 && errno == EINTR);
  return r;
}

[[noreturn]] PEPITA_NOSAN void sup_fail(const SupervisorArgs* a, std::int32_t step, int err) {
  const Report r{kFailed, step, err, 0, -1};
  sc_write(a->report_fd, &r, sizeof r);
  for (;;) ::syscall(SYS_exit_group, 127);
}

PEPITA_NOSAN void set_rlimit(const SupervisorArgs* a, int resource, std::uint64_t value) {
  const rlimit lim{value, value};
  if (::syscall(SYS_setrlimit, resource, &lim) < 0) sup_fail(a, kRlimit, errno);
}

PEPITA_NOSAN void set_ro(const SupervisorArgs* a, std::int32_t step, const char* target,
                         std::uint64_t attrs, unsigned flags) {
  mount_attr attr{};
  attr.attr_set = attrs;
  if (::syscall(SYS_mount_setattr, AT_FDCWD, target, flags, &attr, sizeof attr) < 0)
    sup_fail(a, step, errno);
}

// The new root, from inside the fresh mount namespace: bubblewrap's two pivots. A tmpfs on /tmp
// becomes the root with the host's at /oldroot, the plan fills /newroot from /oldroot, then
// /newroot becomes the root and everything else is detached.
PEPITA_NOSAN void build_root(const SupervisorArgs* a) {
  if (::syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0)
    sup_fail(a, kPrivate, errno);
  if (::syscall(SYS_mount, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
    sup_fail(a, kBase, errno);
  if (::syscall(SYS_chdir, "/tmp") < 0) sup_fail(a, kBase, errno);
  if (::syscall(SYS_mkdir, "newroot", 0755) < 0 || ::syscall(SYS_mkdir, "oldroot", 0755) < 0)
    sup_fail(a, kBase, errno);
  if (::syscall(SYS_mount, "tmpfs", "newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
    sup_fail(a, kBase, errno);
  if (::syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") < 0) sup_fail(a, kPivot, errno);
  if (::syscall(SYS_chdir, "/") < 0) sup_fail(a, kPivot, errno);
  for (std::size_t i = 0; i < a->op_count; ++i) {
    const RawOp& op = a->ops[i];
    const auto step = static_cast<std::int32_t>(i);
    switch (op.kind) {
      case MountOp::Kind::Mkdir:
        if (::syscall(SYS_mkdir, op.target, 0755) < 0 && errno != EEXIST) sup_fail(a, step, errno);
        break;
      case MountOp::Kind::Touch: {
        const long fd =
            ::syscall(SYS_openat, AT_FDCWD, op.target, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) sup_fail(a, step, errno);
        ::syscall(SYS_close, fd);
        break;
      }
      case MountOp::Kind::Symlink:
        if (::syscall(SYS_symlink, op.source, op.target) < 0 && errno != EEXIST)
          sup_fail(a, step, errno);
        break;
      case MountOp::Kind::BindRO:
      case MountOp::Kind::BindRW: {
        if (::syscall(SYS_mount, op.source, op.target, nullptr, MS_BIND | MS_REC, nullptr) < 0)
          sup_fail(a, step, errno);
        std::uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if (op.kind == MountOp::Kind::BindRO) attrs |= MOUNT_ATTR_RDONLY;
        if (op.device) attrs = MOUNT_ATTR_NOSUID;  // /dev's binds: the nodes must work
        set_ro(a, step, op.target, attrs, AT_RECURSIVE);
        break;
      }
      case MountOp::Kind::Tmpfs:
        if (::syscall(SYS_mount, "tmpfs", op.target, "tmpfs", MS_NOSUID | MS_NODEV, op.options) < 0)
          sup_fail(a, step, errno);
        break;
      case MountOp::Kind::Proc:
        if (::syscall(SYS_mount, "proc", op.target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      nullptr) < 0)
          sup_fail(a, step, errno);
        break;
    }
  }
  // The root itself is read-only: a task writes only its work dir, /tmp and writable binds.
  set_ro(a, kPivot, "/newroot", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0);
  // One lazy unmount below takes the staging root and the host's tree under /oldroot together
  // (each unmount waits for an RCU grace period).
  if (::syscall(SYS_chdir, "/newroot") < 0) sup_fail(a, kPivot, errno);
  if (::syscall(SYS_pivot_root, ".", ".") < 0) sup_fail(a, kPivot, errno);
  if (::syscall(SYS_umount2, ".", MNT_DETACH) < 0) sup_fail(a, kPivot, errno);
  if (::syscall(SYS_chdir, "/") < 0) sup_fail(a, kPivot, errno);
}

PEPITA_NOSAN void loopback_up(const SupervisorArgs* a) {
  const long s = ::syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) sup_fail(a, kLoopback, errno);
  ifreq ifr{};
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  if (::syscall(SYS_ioctl, s, SIOCGIFFLAGS, &ifr) < 0) sup_fail(a, kLoopback, errno);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::syscall(SYS_ioctl, s, SIOCSIFFLAGS, &ifr) < 0) sup_fail(a, kLoopback, errno);
  ::syscall(SYS_close, s);
}

// Ends every process of the sandbox but the supervisor.
PEPITA_NOSAN void kill_all(const SupervisorArgs* a, pid_t task) {
  if (a->pid_ns) {
    ::syscall(SYS_kill, -1, SIGKILL);  // in a pid namespace: all of it but us
  } else {
    ::syscall(SYS_kill, -task, SIGKILL);
    ::syscall(SYS_kill, task, SIGKILL);
  }
}

struct TaskArgs {
  const SupervisorArgs* a;
  int err;  // the exec's errno, written by the task before it exits; read after CLONE_VFORK
};

// The task between the supervisor's clone and exec: its own process group (the supervisor
// forwards signals to it), no capabilities, the default signal mask, no descriptor beyond 0-2.
PEPITA_NOSAN __attribute__((noinline)) int task_main(void* arg) {
  // SAFETY: the supervisor is suspended (CLONE_VFORK) until we exec or exit; `arg` is on its stack.
  auto* t = static_cast<TaskArgs*>(arg);
  const SupervisorArgs* a = t->a;
  ::syscall(SYS_setpgid, 0, 0);
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (a->user_ns) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    ::syscall(SYS_capset, &hdr, data);
  }
  const unsigned long empty = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, nullptr, sizeof empty);
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  ::syscall(SYS_execve, a->path, a->argv, a->envp);
  t->err = errno;
  for (;;) ::syscall(SYS_exit_group, 127);
}

// The supervisor: pid 1 of the sandbox's pid namespace.
PEPITA_NOSAN __attribute__((noinline)) int supervisor_main(void* arg) {
  // SAFETY: `arg` points into our own copy of the parent's memory (no CLONE_VM), which nobody
  // else writes.
  const auto* a = static_cast<const SupervisorArgs*>(arg);
  const KernelSigaction dfl{};
  for (int sig = 1; sig < _NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));
  }
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // A parent that changed its ids (a worker that dropped root) is not dumpable, and neither are
  // we: our /proc files would then belong to root and the parent could not write our id maps.
  // Our own id switch below makes us non-dumpable again.
  if (!a->parent_root) {
    ::syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
    const Report ready{kReady, 0, 0, 0, -1};
    sc_write(a->report_fd, &ready, sizeof ready);
  }
  char go = 0;
  long n;
  do {
    n = ::syscall(SYS_read, a->sync_fd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) sup_fail(a, kRelease, n < 0 ? errno : EPIPE);  // the parent gave up on us
  // We hold a copy of the worker's memory (its keys among it): nothing in the sandbox, which runs
  // as our uid, may read it through /proc/1/mem or /proc/1/environ. Our capabilities already
  // refuse it (the task's are not a subset); not dumpable, it would also need CAP_SYS_PTRACE in
  // the worker's user namespace.
  ::syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Descriptors: the task's three, the report pipe at 3, nothing else of the parent's.
  for (int target = 0; target < 3; ++target) {
    const int from = a->fds[target];
    if (from == target) {
      if (::syscall(SYS_fcntl, from, F_SETFD, 0) < 0) sup_fail(a, kFds, errno);
    } else if (::syscall(SYS_dup3, from, target, 0) < 0) {
      sup_fail(a, kFds, errno);
    }
  }
  int report = a->report_fd;
  if (report != 3) {
    if (::syscall(SYS_dup3, report, 3, O_CLOEXEC) < 0) sup_fail(a, kFds, errno);
    report = 3;
  }
  SupervisorArgs local = *a;  // report_fd moved to 3 for sup_fail
  local.report_fd = report;
  a = &local;
  ::syscall(SYS_close_range, 4U, ~0U, 0U);

  if (a->user_ns) {
    // Our capabilities in the new namespace survive the switch: we were never its root.
    if (::syscall(SYS_setresgid, a->id, a->id, a->id) < 0) sup_fail(a, kIds, errno);
    if (a->parent_root && ::syscall(SYS_setgroups, 0, nullptr) < 0) sup_fail(a, kIds, errno);
    if (::syscall(SYS_setresuid, a->id, a->id, a->id) < 0) sup_fail(a, kIds, errno);
  }
  if (a->mount_ns) build_root(a);
  if (a->ipc_uts && ::syscall(SYS_sethostname, "pepita-sandbox", 14) < 0)
    sup_fail(a, kHostname, errno);
  if (a->net_none) loopback_up(a);
  if (a->workdir != nullptr && ::syscall(SYS_chdir, a->workdir) < 0) sup_fail(a, kChdir, errno);
  set_rlimit(a, RLIMIT_CORE, 0);
  if (a->nofile > 0) set_rlimit(a, RLIMIT_NOFILE, a->nofile);
  if (a->fsize > 0) set_rlimit(a, RLIMIT_FSIZE, a->fsize);
  if (a->nproc > 0) set_rlimit(a, RLIMIT_NPROC, a->nproc);
  if (a->user_ns) {
    for (int cap = 0; cap <= 63; ++cap) {
      if (::syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
        if (errno == EINVAL) break;  // past the last capability this kernel knows
        sup_fail(a, kCaps, errno);
      }
    }
  }
  if (a->no_new_privs && ::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    sup_fail(a, kNoNewPrivs, errno);
  long listener = -1;
  if (a->seccomp) {
    listener =
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, a->prog);
    if (listener < 0) sup_fail(a, kSeccomp, errno);
  }
  unsigned long mask = 0;
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM})
    mask |= 1UL << (sig - 1);
  if (::syscall(SYS_rt_sigprocmask, SIG_BLOCK, &mask, nullptr, sizeof mask) < 0)
    sup_fail(a, kSignals, errno);
  const long sigfd = ::syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC);
  if (sigfd < 0) sup_fail(a, kSignals, errno);
  // The task shares our memory until it execs (CLONE_VM | CLONE_VFORK, as spawn.cpp): no second
  // copy of the worker's address space.
  TaskArgs targs{a, 0};
  alignas(16) char task_stack[16 * 1024];
  const int task = ::__clone(task_main, task_stack + sizeof task_stack,
                             CLONE_VM | CLONE_VFORK | SIGCHLD, &targs);
  if (task < 0) sup_fail(a, kFork, errno);
  if (targs.err != 0) sup_fail(a, kExec, targs.err);  // exit_group reaps nothing: pid ns ends it
  const Report started{kStarted, 0, 0, 0, -1};
  sc_write(report, &started, sizeof started);

  int status = 0;
  std::int32_t denied = -1;
  for (bool done = false; !done;) {
    pollfd p[2] = {{static_cast<int>(sigfd), POLLIN, 0}, {static_cast<int>(listener), POLLIN, 0}};
    const long r = ::syscall(SYS_ppoll, p, listener >= 0 ? 2 : 1, nullptr, nullptr, 8);
    if (r < 0) continue;  // EINTR
    if (listener >= 0 && (p[1].revents & POLLIN) != 0) {
      // The filter stopped a syscall: remember the first, end the whole sandbox.
      alignas(8) unsigned char buf[256] = {};
      if (::syscall(SYS_ioctl, listener, SECCOMP_IOCTL_NOTIF_RECV, buf) == 0) {
        // SAFETY: the kernel filled a struct seccomp_notif at the start of the aligned buffer.
        const auto* notif = reinterpret_cast<const seccomp_notif*>(buf);
        if (denied < 0) denied = notif->data.nr;
        kill_all(a, static_cast<pid_t>(task));
      }
    }
    if ((p[0].revents & POLLIN) != 0) {
      signalfd_siginfo si{};
      if (::syscall(SYS_read, sigfd, &si, sizeof si) != sizeof si) continue;
      if (si.ssi_signo != SIGCHLD) {
        ::syscall(SYS_kill, -task, si.ssi_signo);  // what the executor sends is for the task
        continue;
      }
      for (;;) {
        int st = 0;
        const long w = ::syscall(SYS_wait4, -1, &st, WNOHANG, nullptr);
        if (w <= 0) break;
        if (w == task) {
          status = st;
          done = true;
        }
      }
    }
  }
  const Report ended{kEnded, 0, 0, status, denied};
  sc_write(report, &ended, sizeof ended);
  // As pid 1, exiting kills every process left in the namespace (a daemon the task left).
  for (;;) ::syscall(SYS_exit_group, 0);
}

std::string step_name(std::int32_t step, const std::vector<MountOp>& plan) {
  if (step >= 0) {
    const auto i = static_cast<std::size_t>(step);
    if (i >= plan.size()) return "an unknown step";
    const MountOp& op = plan[i];
    if (!op.what.empty()) return op.what;
    std::string inside = op.target.substr(std::min<std::size_t>(8, op.target.size()));
    switch (op.kind) {
      case MountOp::Kind::Mkdir: return "mkdir " + inside;
      case MountOp::Kind::Touch: return "create the mount point " + inside;
      case MountOp::Kind::Symlink: return "symlink " + inside;
      default: return inside;
    }
  }
  switch (step) {
    case kRelease: return "wait for the parent";
    case kIds: return "switch to the sandbox's uid/gid";
    case kFds: return "set up stdin/stdout/stderr";
    case kPrivate: return "make the mounts private";
    case kBase: return "mount the staging tmpfs";
    case kPivot: return "pivot_root into the new root";
    case kHostname: return "set the hostname";
    case kLoopback: return "bring up loopback";
    case kChdir: return "chdir into the work dir";
    case kRlimit: return "set the rlimits";
    case kCaps: return "drop the capability bounding set";
    case kNoNewPrivs: return "set no_new_privs";
    case kSeccomp: return "install the seccomp filter";
    case kSignals: return "set up signals";
    case kFork: return "fork the task";
    case kExec: return "exec the task";
    default: return "an unknown step";
  }
}

Result<void> write_file(const std::string& path, const std::string& text) {
  const int fd = sys::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(fd, "open " + path);
  UniqueFd f(fd);
  const long n = sys::write(f.get(), text.data(), text.size());
  if (n < 0) return fail_errno(static_cast<int>(n), "write '" + text + "' to " + path);
  return {};
}

class BlockSignals {
 public:
  BlockSignals() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockSignals(const BlockSignals&) = delete;
  BlockSignals& operator=(const BlockSignals&) = delete;

 private:
  sigset_t old_;
};

}  // namespace

Result<SandboxChild> spawn_sandboxed(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid,
                                     const SpawnExtras& extras, const task::SandboxPolicy& policy) {
  if (!policy.mount_ns && (policy.disk || !policy.read_only.empty() || !policy.writable.empty())) {
    return fail(ErrorCode::InvalidArgument,
                "sandbox: disk, read_only and writable need the mount namespace (mount_ns = true)");
  }
  std::string path;
  if (int rc = resolve_binary(spec.path, path); rc < 0)
    return fail_errno(rc, "cannot start '" + spec.path + "'");
  std::string workdir = spec.cwd;
  if (workdir.empty()) {
    char buf[4096];
    if (::getcwd(buf, sizeof buf) == nullptr) return fail_errno(-errno, "getcwd");
    workdir = buf;
  }
  std::vector<MountOp> plan;
  if (policy.mount_ns) plan = PEPITA_TRY(sandbox_mount_plan(policy, path, workdir));
  std::vector<RawOp> ops;
  ops.reserve(plan.size());
  for (const MountOp& op : plan)
    ops.push_back({op.kind, op.source.c_str(), op.target.c_str(), op.options.c_str(),
                   op.source.rfind("/oldroot/dev/", 0) == 0});
  const SeccompFilter* filter = nullptr;
  if (policy.seccomp) filter = PEPITA_TRY(sandbox_filter(policy.id));
  sock_fprog prog{};
  if (filter != nullptr) {
    prog.len = static_cast<unsigned short>(filter->program.size());
    prog.filter = const_cast<sock_filter*>(filter->program.data());
  }

  std::string arg0 = spec.path;
  if (auto slash = arg0.rfind('/'); slash != std::string::npos) arg0.erase(0, slash + 1);
  std::vector<std::string> args_copy(spec.args);
  std::vector<char*> argv;
  argv.push_back(arg0.data());
  for (auto& s : args_copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  std::vector<char*> envp = build_environment(spec, extras.env, env_storage);

  int sync[2], rep[2];
  if (int rc = sys::pipe(sync); rc < 0) return fail_errno(rc, "sandbox: pipe");
  UniqueFd sync_r(sync[0]), sync_w(sync[1]);
  if (int rc = sys::pipe(rep); rc < 0) return fail_errno(rc, "sandbox: pipe");
  UniqueFd rep_r(rep[0]), rep_w(rep[1]);

  SupervisorArgs args{};
  args.sync_fd = sync_r.get();
  args.report_fd = rep_w.get();
  args.fds[0] = fds.stdin_fd;
  args.fds[1] = fds.stdout_fd;
  args.fds[2] = fds.stderr_fd;
  args.user_ns = policy.user_ns;
  args.mount_ns = policy.mount_ns;
  args.pid_ns = policy.pid_ns;
  args.ipc_uts = policy.ipc_uts_ns;
  args.net_none = policy.network == task::SandboxNetwork::None;
  args.no_new_privs = policy.no_new_privs;
  args.seccomp = filter != nullptr;
  args.parent_root = ::geteuid() == 0;
  args.id = policy.id;
  args.ops = ops.data();
  args.op_count = ops.size();
  args.workdir = workdir.c_str();
  args.path = path.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.prog = &prog;
  args.nofile = policy.max_open_files;
  args.fsize = policy.max_file_size;
  args.nproc = policy.max_processes;

  int flags = SIGCHLD;
  if (policy.user_ns) flags |= CLONE_NEWUSER;
  if (policy.mount_ns) flags |= CLONE_NEWNS;
  if (policy.pid_ns) flags |= CLONE_NEWPID;
  if (policy.ipc_uts_ns) flags |= CLONE_NEWIPC | CLONE_NEWUTS;
  if (args.net_none) flags |= CLONE_NEWNET;

  // The supervisor's stack: part of our memory it gets a copy of (no CLONE_VM).
  std::vector<char> stack(128 * 1024);
  pid_t pid;
  {
    BlockSignals blocked;
    pid = ::__clone(supervisor_main, stack.data() + stack.size(), flags, &args);
  }
  if (pid < 0) {
    return fail_errno(sys::last_error(),
                      "sandbox: clone into new namespaces (user namespaces need "
                      "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or "
                      "run as root)");
  }
  sync_r.reset();
  rep_w.reset();
  // Until the task runs, any failure ends the supervisor (and with it the namespace).
  struct Guard {
    pid_t pid;
    bool armed = true;
    ~Guard() {
      if (!armed) return;
      ::kill(pid, SIGKILL);
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
    }
  } guard{pid};
  if (::setpgid(pid, pgid == 0 ? pid : pgid) < 0) return fail_errno(-errno, "sandbox: setpgid");
  if (!args.parent_root) {
    // Wait until the supervisor made itself dumpable (its /proc files ours).
    Report ready{};
    long got;
    do {
      got = sys::read(rep_r.get(), &ready, sizeof ready);
    } while (got == -EINTR);
    if (got != sizeof ready || ready.kind != kReady)
      return fail(ErrorCode::Internal, "sandbox: the supervisor ended before its setup");
  }
  if (policy.user_ns) {
    const std::string proc = "/proc/" + std::to_string(pid);
    const std::uint32_t uid = args.parent_root ? policy.id : ::getuid();
    const std::uint32_t gid = args.parent_root ? policy.id : ::getgid();
    if (!args.parent_root) PEPITA_TRY(write_file(proc + "/setgroups", "deny"));
    PEPITA_TRY(write_file(proc + "/uid_map", pepita::fmt("{} {} 1\n", policy.id, uid)));
    PEPITA_TRY(write_file(proc + "/gid_map", pepita::fmt("{} {} 1\n", policy.id, gid)));
  }
  const std::string pid_text = std::to_string(pid);
  for (const int fd : extras.cgroup_procs) {
    if (long n = sys::write(fd, pid_text.data(), pid_text.size()); n < 0)
      return fail_errno(static_cast<int>(n), "sandbox: join the attempt's cgroup");
  }
  if (!extras.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned c : extras.cpus)
      if (c < CPU_SETSIZE) CPU_SET(c, &set);
    if (::sched_setaffinity(pid, sizeof set, &set) < 0)
      return fail_errno(-errno, "sandbox: sched_setaffinity");
  }
  if (long n = sys::write(sync_w.get(), "g", 1); n != 1)
    return fail_errno(n < 0 ? static_cast<int>(n) : -EPIPE, "sandbox: release the supervisor");
  sync_w.reset();
  Report first{};
  long n;
  do {
    n = sys::read(rep_r.get(), &first, sizeof first);
  } while (n == -EINTR);
  if (n == sizeof first && first.kind == kStarted) {
    guard.armed = false;
    return SandboxChild{pid, std::move(rep_r)};
  }
  if (n == sizeof first && first.kind == kFailed) {
    if (first.step == kExec)
      return fail_errno(-first.err, "cannot start '" + spec.path + "' in its sandbox");
    std::string what = "sandbox: cannot " + step_name(first.step, plan);
    const bool bind = first.step >= 0 && static_cast<std::size_t>(first.step) < plan.size() &&
                      (plan[static_cast<std::size_t>(first.step)].kind == MountOp::Kind::BindRO ||
                       plan[static_cast<std::size_t>(first.step)].kind == MountOp::Kind::BindRW);
    if (bind && (first.err == EACCES || first.err == EPERM)) {
      return fail(ErrorCode::PermissionDenied,
                  what.append(": ")
                      .append(std::strerror(first.err))
                      .append("; the sandbox builds its root as uid ")
                      .append(std::to_string(policy.id))
                      .append(": make the path readable by it and its parent dirs searchable"),
                  first.err);
    }
    return fail_errno(-first.err, what);
  }
  return fail(ErrorCode::Internal,
              "sandbox: the supervisor ended before the task started (killed from outside?)");
}

SandboxOutcome read_sandbox_outcome(int report, std::uint32_t id) {
  SandboxOutcome out;
  (void)sys::set_nonblocking(report);
  Report r{};
  while (sys::read(report, &r, sizeof r) == sizeof r) {
    if (r.kind != kEnded) continue;
    out.reported = true;
    const int st = r.wait_status;
    if (WIFEXITED(st)) {
      out.code = CLD_EXITED;
      out.status = WEXITSTATUS(st);
    } else {
      out.code = WCOREDUMP(st) ? CLD_DUMPED : CLD_KILLED;
      out.status = WTERMSIG(st);
    }
    if (r.denied_nr >= 0) {
      auto filter = sandbox_filter(id);
      const std::string name =
          filter ? (*filter)->name(r.denied_nr) : "syscall " + std::to_string(r.denied_nr);
      out.reason = "sandbox: syscall " + name + " denied";
    }
  }
  return out;
}

}  // namespace pepita::executor::detail
