// The sandboxed spawn (docs/sandbox.md). The parent computes everything (mount plan, seccomp
// program, argv, envp), clones a supervisor into the new namespaces, writes its id maps, puts it in
// the attempt's cgroup and releases it through a pipe. The supervisor builds the root, installs the
// filter with a user-notification listener it keeps, starts the task and reports on the report
// pipe: `Started` once the task has exec'd, then `Ended` with the task's wait status and the
// syscall the filter stopped, if any. The supervisor runs on a mapping of its own
// (SupervisorMemory) and, where it is safe (root, a user namespace, no memory limit), shares our
// memory (CLONE_VM) instead of getting a copy of it: it outlives the spawn as pid 1 of its pid
// namespace, so that mapping stays until the executor has reaped it. Either way it makes raw
// system calls only (no errno: a CLONE_VM supervisor would write the spawning thread's) and calls
// no library function: it may share, or be a copy of, a multithreaded process, where a lock
// (malloc's) may be held forever.
#include "detail/sandbox_spawn.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/slot_netns.hpp"
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
  bool device;       // a bind of a device node (no nodev)
  const char* data;  // Copy: the contents (data_len bytes) and the mode
  std::size_t data_len;
  std::uint32_t mode;
};

struct SupervisorArgs {
  int sync_fd;
  int report_fd;
  int fds[3];
  bool user_ns, mount_ns, pid_ns, ipc_uts, net_none, no_new_privs, seccomp, parent_root;
  std::uint32_t id;
  const RawOp* ops;
  std::size_t op_count;
  // One pivot: the host dir the root's tmpfs is mounted over (no bind reads below it), the ops'
  // targets relative to it and their sources host paths. Null: bubblewrap's two pivots, the
  // ops' paths under /newroot and /oldroot.
  const char* staging;
  const char* workdir;
  const char* path;
  char* const* argv;
  char* const* envp;
  const sock_fprog* prog;
  std::uint64_t nofile, fsize, nproc;
};

#define PEPITA_NOSAN __attribute__((no_sanitize("address", "undefined", "thread")))
#define PEPITA_RAW PEPITA_NOSAN __attribute__((always_inline)) inline

// Raw system calls: a negative errno on failure, nothing written to `errno`. The supervisor may
// share our memory (CLONE_VM) while the thread that spawned it runs on: it must not touch that
// thread's TLS, of which errno is part.
#if defined(__x86_64__)
PEPITA_RAW long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  long ret;
  register long r10 asm("r10") = a4;
  register long r8 asm("r8") = a5;
  register long r9 asm("r9") = a6;
  asm volatile("syscall"
               : "=a"(ret)
               : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
PEPITA_RAW long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  register long x8 asm("x8") = nr;
  register long x0 asm("x0") = a1;
  register long x1 asm("x1") = a2;
  register long x2 asm("x2") = a3;
  register long x3 asm("x3") = a4;
  register long x4 asm("x4") = a5;
  register long x5 asm("x5") = a6;
  asm volatile("svc 0"
               : "+r"(x0)
               : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
               : "memory");
  return x0;
}
#else
PEPITA_RAW long raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  const long r = ::syscall(nr, a1, a2, a3, a4, a5, a6);
  return r < 0 ? -errno : r;
}
#endif

template <class T>
PEPITA_RAW long raw_arg(T v) {
  if constexpr (std::is_pointer_v<T> || std::is_null_pointer_v<T>) {
    return reinterpret_cast<long>(v);
  } else {
    return static_cast<long>(v);
  }
}

template <class... A>
PEPITA_RAW long rs(long nr, A... a) {
  static_assert(sizeof...(A) <= 6);
  long args[6] = {raw_arg(a)...};
  return raw6(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
}

// clone(2) onto `stack_top` running fn(arg) in the child, without glibc (whose wrapper writes
// errno on failure). The child exits with fn's result. Only x86-64 has it here: elsewhere the
// supervisor always gets a copy of our memory.
#if defined(__x86_64__)
constexpr bool kCanShareMemory = true;
PEPITA_NOSAN __attribute__((noinline)) long raw_clone(unsigned long flags, void* stack_top,
                                                      int (*fn)(void*), void* arg) {
  auto* sp = static_cast<void**>(stack_top);
  *--sp = arg;
  *--sp = reinterpret_cast<void*>(fn);
  long ret;
  register long r10 asm("r10") = 0;
  register long r8 asm("r8") = 0;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"
      "pop %%rax\n\t"
      "pop %%rdi\n\t"
      "call *%%rax\n\t"
      "mov %%eax, %%edi\n\t"
      "mov $60, %%eax\n\t"
      "syscall\n\t"
      "hlt\n"
      "1:"
      : "=a"(ret)
      : "0"(static_cast<long>(SYS_clone)), "D"(flags), "S"(sp), "d"(0L), "r"(r10), "r"(r8)
      : "rcx", "r11", "memory");
  return ret;
}
#else
constexpr bool kCanShareMemory = false;
PEPITA_NOSAN long raw_clone(unsigned long flags, void* stack_top, int (*fn)(void*), void* arg) {
  const int r = ::__clone(fn, stack_top, static_cast<int>(flags), arg);
  return r < 0 ? -errno : r;  // never in a supervisor that shares our memory: our own errno
}
#endif

PEPITA_NOSAN long sc_write(int fd, const void* buf, std::size_t n) {
  long r;
  do {
    r = rs(SYS_write, fd, buf, n);
  } while (r == -EINTR);
  return r;
}

[[noreturn]] PEPITA_NOSAN void sup_fail(const SupervisorArgs* a, std::int32_t step, long neg) {
  const Report r{kFailed, step, static_cast<std::int32_t>(-neg), 0, -1};
  sc_write(a->report_fd, &r, sizeof r);
  for (;;) rs(SYS_exit_group, 127);
}

PEPITA_NOSAN void set_rlimit(const SupervisorArgs* a, int resource, std::uint64_t value) {
  const rlimit lim{value, value};
  if (long r = rs(SYS_setrlimit, resource, &lim); r < 0) sup_fail(a, kRlimit, r);
}

PEPITA_NOSAN void set_ro(const SupervisorArgs* a, std::int32_t step, const char* target,
                         std::uint64_t attrs, unsigned flags) {
  mount_attr attr{};
  attr.attr_set = attrs;
  if (long r = rs(SYS_mount_setattr, AT_FDCWD, target, flags, &attr, sizeof attr); r < 0)
    sup_fail(a, step, r);
}

// Fails step `step` when `r` is an error.
PEPITA_NOSAN void check(const SupervisorArgs* a, std::int32_t step, long r) {
  if (r < 0) sup_fail(a, step, r);
}

// Runs the mount plan's steps in order.
PEPITA_NOSAN void run_ops(const SupervisorArgs* a) {
  for (std::size_t i = 0; i < a->op_count; ++i) {
    const RawOp& op = a->ops[i];
    const auto step = static_cast<std::int32_t>(i);
    switch (op.kind) {
      case MountOp::Kind::Mkdir:
        if (long r = rs(SYS_mkdir, op.target, 0755); r < 0 && r != -EEXIST) sup_fail(a, step, r);
        break;
      case MountOp::Kind::Touch: {
        const long fd = rs(SYS_openat, AT_FDCWD, op.target, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
        check(a, step, fd);
        rs(SYS_close, fd);
        break;
      }
      case MountOp::Kind::Symlink:
        if (long r = rs(SYS_symlink, op.source, op.target); r < 0 && r != -EEXIST)
          sup_fail(a, step, r);
        break;
      case MountOp::Kind::BindRO:
      case MountOp::Kind::BindRW: {
        check(a, step, rs(SYS_mount, op.source, op.target, nullptr, MS_BIND | MS_REC, nullptr));
        std::uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if (op.kind == MountOp::Kind::BindRO) attrs |= MOUNT_ATTR_RDONLY;
        if (op.device) attrs = MOUNT_ATTR_NOSUID;  // /dev's binds: the nodes must work
        set_ro(a, step, op.target, attrs, AT_RECURSIVE);
        break;
      }
      case MountOp::Kind::Tmpfs:
        check(a, step,
              rs(SYS_mount, "tmpfs", op.target, "tmpfs", MS_NOSUID | MS_NODEV, op.options));
        break;
      case MountOp::Kind::Copy: {
        const long fd =
            rs(SYS_openat, AT_FDCWD, op.target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, op.mode);
        check(a, step, fd);
        for (std::size_t done = 0; done < op.data_len;) {
          const long n = sc_write(static_cast<int>(fd), op.data + done, op.data_len - done);
          if (n <= 0) sup_fail(a, step, n < 0 ? n : -EIO);
          done += static_cast<std::size_t>(n);
        }
        rs(SYS_close, fd);
        break;
      }
      case MountOp::Kind::Proc:
        check(a, step,
              rs(SYS_mount, "proc", op.target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
        break;
    }
  }
}

// The new root, from inside the fresh mount namespace. One pivot where the parent found a host dir
// no bind reads below (a->staging): a tmpfs mounted over it becomes the root, filled from the
// host's paths directly, then pivot_root(".", ".") and one lazy unmount of the host's tree.
// Otherwise bubblewrap's two pivots: a tmpfs on /tmp becomes the root with the host's at
// /oldroot, the plan fills /newroot from /oldroot, then /newroot becomes the root and everything
// else is detached. (Each pivot_root walks every thread of the machine: chroot_fs_refs.)
PEPITA_NOSAN void build_root(const SupervisorArgs* a) {
  check(a, kPrivate, rs(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  if (a->staging != nullptr) {
    check(a, kBase, rs(SYS_mount, "tmpfs", a->staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
    check(a, kBase, rs(SYS_chdir, a->staging));  // the tmpfs's root: the ops' targets are relative
    run_ops(a);
    set_ro(a, kPivot, ".", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0);
  } else {
    check(a, kBase, rs(SYS_mount, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
    check(a, kBase, rs(SYS_chdir, "/tmp"));
    check(a, kBase, rs(SYS_mkdir, "newroot", 0755));
    check(a, kBase, rs(SYS_mkdir, "oldroot", 0755));
    check(a, kBase, rs(SYS_mount, "tmpfs", "newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
    check(a, kPivot, rs(SYS_pivot_root, "/tmp", "/tmp/oldroot"));
    check(a, kPivot, rs(SYS_chdir, "/"));
    run_ops(a);
    // The root itself is read-only: a task writes only its work dir, /tmp and writable binds.
    set_ro(a, kPivot, "/newroot", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0);
    check(a, kPivot, rs(SYS_chdir, "/newroot"));
  }
  // One lazy unmount below takes what was the root (with the host's tree, and in the two-pivot
  // case the staging root) together (each unmount waits for an RCU grace period).
  check(a, kPivot, rs(SYS_pivot_root, ".", "."));
  check(a, kPivot, rs(SYS_umount2, ".", MNT_DETACH));
  check(a, kPivot, rs(SYS_chdir, "/"));
}

PEPITA_NOSAN void loopback_up(const SupervisorArgs* a) {
  const long s = rs(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  check(a, kLoopback, s);
  ifreq ifr{};
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  check(a, kLoopback, rs(SYS_ioctl, s, SIOCGIFFLAGS, &ifr));
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  check(a, kLoopback, rs(SYS_ioctl, s, SIOCSIFFLAGS, &ifr));
  rs(SYS_close, s);
}

// Ends every process of the sandbox but the supervisor.
PEPITA_NOSAN void kill_all(const SupervisorArgs* a, pid_t task) {
  if (a->pid_ns) {
    rs(SYS_kill, -1, SIGKILL);  // in a pid namespace: all of it but us
  } else {
    rs(SYS_kill, -task, SIGKILL);
    rs(SYS_kill, task, SIGKILL);
  }
}

struct TaskArgs {
  const SupervisorArgs* a;
  long err;  // the exec's -errno, written by the task before it exits; read after CLONE_VFORK
};

// The task between the supervisor's clone and exec: its own process group (the supervisor
// forwards signals to it), no capabilities, the default signal mask, no descriptor beyond 0-2.
PEPITA_NOSAN __attribute__((noinline)) int task_main(void* arg) {
  // SAFETY: the supervisor is suspended (CLONE_VFORK) until we exec or exit; `arg` is on its stack.
  auto* t = static_cast<TaskArgs*>(arg);
  const SupervisorArgs* a = t->a;
  rs(SYS_setpgid, 0, 0);
  rs(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (a->user_ns) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    rs(SYS_capset, &hdr, data);
  }
  const unsigned long empty = 0;
  rs(SYS_rt_sigprocmask, SIG_SETMASK, &empty, nullptr, sizeof empty);
  rs(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  t->err = rs(SYS_execve, a->path, a->argv, a->envp);
  for (;;) rs(SYS_exit_group, 127);
}

// The supervisor: pid 1 of the sandbox's pid namespace. `arg` is its SupervisorArgs, at the top
// of its own mapping (SupervisorMemory), which outlives it.
PEPITA_NOSAN __attribute__((noinline)) int supervisor_main(void* arg) {
  // SAFETY: `arg` lies in the supervisor's mapping, which the parent neither reads nor writes
  // once it cloned us (and unmaps only after reaping us).
  auto* a = static_cast<SupervisorArgs*>(arg);
  const KernelSigaction dfl{};
  for (int sig = 1; sig < _NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    rs(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));
  }
  rs(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // A parent that changed its ids (a worker that dropped root) is not dumpable, and neither are
  // we: our /proc files would then belong to root and the parent could not write our id maps.
  // Our own id switch below makes us non-dumpable again. (Only a supervisor with a copy of our
  // memory gets here: dumpable is a property of the memory, which a CLONE_VM one shares.)
  if (!a->parent_root) {
    rs(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
    const Report ready{kReady, 0, 0, 0, -1};
    sc_write(a->report_fd, &ready, sizeof ready);
  }
  char go = 0;
  long n;
  do {
    n = rs(SYS_read, a->sync_fd, &go, 1);
  } while (n == -EINTR);
  if (n != 1) sup_fail(a, kRelease, n < 0 ? n : -EPIPE);  // the parent gave up on us
  // We hold the worker's memory (its keys among it), shared or a copy: nothing in the sandbox,
  // which runs as our uid, may read it through /proc/1/mem or /proc/1/environ (or write it). Our
  // capabilities already refuse it (the task's are not a subset); not dumpable, it would also
  // need CAP_SYS_PTRACE in the worker's user namespace.
  rs(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Descriptors: the task's three, the report pipe at 3, nothing else of the parent's.
  for (int target = 0; target < 3; ++target) {
    const int from = a->fds[target];
    if (from == target) {
      check(a, kFds, rs(SYS_fcntl, from, F_SETFD, 0));
    } else {
      check(a, kFds, rs(SYS_dup3, from, target, 0));
    }
  }
  if (a->report_fd != 3) {
    check(a, kFds, rs(SYS_dup3, a->report_fd, 3, O_CLOEXEC));
    a->report_fd = 3;
  }
  const int report = a->report_fd;
  rs(SYS_close_range, 4U, ~0U, 0U);

  if (a->user_ns) {
    // Our capabilities in the new namespace survive the switch: we were never its root.
    check(a, kIds, rs(SYS_setresgid, a->id, a->id, a->id));
    if (a->parent_root) check(a, kIds, rs(SYS_setgroups, 0, nullptr));
    check(a, kIds, rs(SYS_setresuid, a->id, a->id, a->id));
  }
  if (a->mount_ns) build_root(a);
  if (a->ipc_uts) check(a, kHostname, rs(SYS_sethostname, "pepita-sandbox", 14));
  if (a->net_none) loopback_up(a);
  if (a->workdir != nullptr) check(a, kChdir, rs(SYS_chdir, a->workdir));
  set_rlimit(a, RLIMIT_CORE, 0);
  if (a->nofile > 0) set_rlimit(a, RLIMIT_NOFILE, a->nofile);
  if (a->fsize > 0) set_rlimit(a, RLIMIT_FSIZE, a->fsize);
  if (a->nproc > 0) set_rlimit(a, RLIMIT_NPROC, a->nproc);
  if (a->user_ns) {
    for (int cap = 0; cap <= 63; ++cap) {
      if (long r = rs(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0); r < 0) {
        if (r == -EINVAL) break;  // past the last capability this kernel knows
        sup_fail(a, kCaps, r);
      }
    }
  }
  if (a->no_new_privs) check(a, kNoNewPrivs, rs(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  long listener = -1;
  if (a->seccomp) {
    listener = rs(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, a->prog);
    check(a, kSeccomp, listener);
  }
  unsigned long mask = 0;
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM})
    mask |= 1UL << (sig - 1);
  check(a, kSignals, rs(SYS_rt_sigprocmask, SIG_BLOCK, &mask, nullptr, sizeof mask));
  const long sigfd = rs(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC);
  check(a, kSignals, sigfd);
  // The task shares our memory until it execs (CLONE_VM | CLONE_VFORK, as spawn.cpp): no copy of
  // the worker's address space.
  TaskArgs targs{a, 0};
  alignas(16) char task_stack[16 * 1024];
  const long task = raw_clone(CLONE_VM | CLONE_VFORK | SIGCHLD, task_stack + sizeof task_stack,
                              task_main, &targs);
  check(a, kFork, task);
  if (targs.err < 0) sup_fail(a, kExec, targs.err);  // exit_group reaps nothing: pid ns ends it
  const Report started{kStarted, 0, 0, 0, -1};
  sc_write(report, &started, sizeof started);

  // From here on nothing of the parent's memory but our mapping is read: the spawn has returned
  // and the plan, argv and envp it pointed us to are gone.
  int status = 0;
  std::int32_t denied = -1;
  for (bool done = false; !done;) {
    pollfd p[2] = {{static_cast<int>(sigfd), POLLIN, 0}, {static_cast<int>(listener), POLLIN, 0}};
    const long r = rs(SYS_ppoll, p, listener >= 0 ? 2 : 1, nullptr, nullptr, 8);
    if (r < 0) continue;  // EINTR
    if (listener >= 0 && (p[1].revents & POLLIN) != 0) {
      // The filter stopped a syscall: remember the first, end the whole sandbox. The kernel
      // wants the buffer zeroed; a plain loop (no memset: it may be an interceptor).
      alignas(8) unsigned char buf[256];
      for (auto& b : buf) *static_cast<volatile unsigned char*>(&b) = 0;
      if (rs(SYS_ioctl, listener, SECCOMP_IOCTL_NOTIF_RECV, buf) == 0) {
        // SAFETY: the kernel filled a struct seccomp_notif at the start of the aligned buffer.
        const auto* notif = reinterpret_cast<const seccomp_notif*>(buf);
        if (denied < 0) denied = notif->data.nr;
        kill_all(a, static_cast<pid_t>(task));
      }
    }
    if ((p[0].revents & POLLIN) != 0) {
      signalfd_siginfo si;  // filled by the read (no zeroing memset)
      if (rs(SYS_read, sigfd, &si, sizeof si) != sizeof si) continue;
      if (si.ssi_signo != SIGCHLD) {
        rs(SYS_kill, -task, si.ssi_signo);  // what the executor sends is for the task
        continue;
      }
      for (;;) {
        int st = 0;
        const long w = rs(SYS_wait4, -1, &st, WNOHANG, nullptr);
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
  for (;;) rs(SYS_exit_group, 0);
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

// A plan's host path ("/oldroot/usr") as the host names it ("/usr").
std::string host_path(const std::string& source) {
  constexpr std::string_view kOld = "/oldroot";
  if (source.rfind(kOld, 0) != 0) return source;
  return source.size() == kOld.size() ? std::string("/") : source.substr(kOld.size());
}

// A plan's path in the new root ("/newroot/usr") relative to that root ("usr").
std::string inside_path(const std::string& target) {
  constexpr std::string_view kNew = "/newroot/";
  if (target.rfind(kNew, 0) != 0) return target == "/newroot" ? std::string(".") : target;
  return target.substr(kNew.size());
}

bool under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

Result<void> write_file(const std::string& path, const std::string& text) {
  const int fd = sys::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(fd, "open " + path);
  UniqueFd f(fd);
  const long n = sys::write(f.get(), text.data(), text.size());
  if (n < 0) return fail_errno(static_cast<int>(n), "write '" + text + "' to " + path);
  return {};
}

}  // namespace

const char* sandbox_staging_dir(const std::vector<MountOp>& plan) {
  constexpr const char* kCandidates[] = {"/mnt", "/srv", "/opt", "/media", "/tmp", "/run", "/var"};
  for (const char* dir : kCandidates) {
    struct stat st {};
    if (::lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    const std::string d = dir;
    const bool clash = std::any_of(plan.begin(), plan.end(), [&](const MountOp& op) {
      if (op.kind != MountOp::Kind::BindRO && op.kind != MountOp::Kind::BindRW) return false;
      const std::string source = host_path(op.source);
      return under(source, d) || under(d, source);
    });
    if (!clash) return dir;
  }
  return nullptr;
}

Result<SandboxChild> spawn_sandboxed(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid,
                                     const SpawnExtras& extras, const task::SandboxPolicy& policy) {
  if (!policy.mount_ns && (policy.disk || !policy.read_only.empty() || !policy.writable.empty())) {
    return fail(ErrorCode::InvalidArgument,
                "sandbox: disk, read_only and writable need the mount namespace (mount_ns = true)");
  }
  std::string path;
  if (int rc = sys::find_executable(spec.path, path); rc < 0)
    return fail_errno(rc, "cannot start '" + spec.path + "'");
  std::string workdir = spec.cwd;
  if (workdir.empty()) {
    char buf[4096];
    if (::getcwd(buf, sizeof buf) == nullptr) return fail_errno(-errno, "getcwd");
    workdir = buf;
  }
  std::vector<MountOp> plan;
  if (policy.mount_ns) plan = PEPITA_TRY(sandbox_mount_plan(policy, path, workdir));
  // One pivot where a host dir to build the root over exists: the plan's paths rebased onto it.
  const char* staging = policy.mount_ns ? sandbox_staging_dir(plan) : nullptr;
  std::vector<std::string> sources, targets;
  sources.reserve(plan.size());
  targets.reserve(plan.size());
  for (const MountOp& op : plan) {
    const bool bind = op.kind == MountOp::Kind::BindRO || op.kind == MountOp::Kind::BindRW;
    sources.push_back(staging != nullptr && bind ? host_path(op.source) : op.source);
    targets.push_back(staging != nullptr ? inside_path(op.target) : op.target);
  }
  std::vector<RawOp> ops;
  ops.reserve(plan.size());
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const MountOp& op = plan[i];
    ops.push_back({op.kind, sources[i].c_str(), targets[i].c_str(), op.options.c_str(),
                   op.source.rfind("/oldroot/dev/", 0) == 0, op.data ? op.data->data() : nullptr,
                   op.data ? op.data->size() : 0, op.mode});
  }
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

  // The supervisor's stack and arguments live in their own mapping (SupervisorMemory).
  SupervisorMemory memory = PEPITA_TRY(SupervisorMemory::make(128 * 1024));
  SupervisorArgs& args = *new (memory.args()) SupervisorArgs{};
  args.sync_fd = sync_r.get();
  args.report_fd = rep_w.get();
  args.fds[0] = fds.stdin_fd;
  args.fds[1] = fds.stdout_fd;
  args.fds[2] = fds.stderr_fd;
  args.user_ns = policy.user_ns;
  args.mount_ns = policy.mount_ns;
  args.pid_ns = policy.pid_ns;
  args.ipc_uts = policy.ipc_uts_ns;
  // A prepared namespace (the slot's, loopback already up) or one of the supervisor's own.
  const bool prepared_net = policy.network == task::SandboxNetwork::None && extras.netns >= 0;
  args.net_none = policy.network == task::SandboxNetwork::None && !prepared_net;
  args.no_new_privs = policy.no_new_privs;
  args.seccomp = filter != nullptr;
  args.parent_root = ::geteuid() == 0;
  args.id = policy.id;
  args.ops = ops.data();
  args.op_count = ops.size();
  args.staging = staging;
  args.workdir = workdir.c_str();
  args.path = path.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.prog = &prog;
  args.nofile = policy.max_open_files;
  args.fsize = policy.max_file_size;
  args.nproc = policy.max_processes;

  // The supervisor shares our memory (CLONE_VM: no copy of the worker's address space to make and
  // tear down) where that is safe: as root with a user namespace, since dumpable is a property of
  // the memory and a supervisor holding the worker's must never be dumpable (a non-root parent
  // needs it dumpable for a moment to write its id maps), and without a memory limit, since an
  // OOM kill of the supervisor would kill every process sharing its memory: the worker.
  const bool share_vm =
      kCanShareMemory && args.parent_root && policy.user_ns && !extras.memory_limit;
  int flags = SIGCHLD;
  if (share_vm) flags |= CLONE_VM;
  if (policy.user_ns) flags |= CLONE_NEWUSER;
  if (policy.mount_ns) flags |= CLONE_NEWNS;
  if (policy.pid_ns) flags |= CLONE_NEWPID;
  if (policy.ipc_uts_ns) flags |= CLONE_NEWIPC | CLONE_NEWUTS;
  if (args.net_none) flags |= CLONE_NEWNET;

  // Sharing our memory, the supervisor would make us dumpable or not as it goes: we are not,
  // for good (its id switch would make us so anyway).
  if (share_vm) ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  pid_t pid;
  {
    // The supervisor starts in the namespace this thread is in: the slot's prepared one for the
    // clone's length, then back (setns changes this thread's alone).
    auto net = EnterNetns::enter(prepared_net ? extras.netns : -1, extras.host_netns);
    if (!net) {
      memory.reaped();  // nothing runs on it
      return std::unexpected(std::move(net).error());
    }
    BlockAllSignals blocked;
    pid = ::__clone(supervisor_main, memory.stack_top(), flags, &args);
    if (pid < 0) pid = sys::last_error();  // before the way back, which may set errno
  }
  if (pid < 0 || !share_vm) memory.reaped();  // nothing runs on it, or the child has its own copy
  if (pid < 0) {
    return fail_errno(pid,
                      "sandbox: clone into new namespaces (user namespaces need "
                      "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or "
                      "run as root)");
  }
  sync_r.reset();
  rep_w.reset();
  // Until the task runs, any failure ends the supervisor (and with it the namespace).
  // The plan, argv and envp the supervisor reads until then outlive it (declared before).
  struct Guard {
    pid_t pid;
    SupervisorMemory* memory;
    bool armed = true;
    ~Guard() {
      if (!armed) return;
      ::kill(pid, SIGKILL);
      int st = 0;
      pid_t r;
      while ((r = ::waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
      }
      if (r == pid) memory->reaped();
    }
  } guard{pid, &memory};
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
    return SandboxChild{pid, std::move(rep_r), std::move(memory)};
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

Result<SupervisorMemory> SupervisorMemory::make(std::size_t bytes) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t stack = (bytes + page - 1) / page * page;
  const std::size_t size = page + stack + page;  // guard, stack, arguments
  void* base =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) return fail_errno(-errno, "sandbox: mmap the supervisor's stack");
  if (::mprotect(base, page, PROT_NONE) < 0) {
    const int err = errno;
    ::munmap(base, size);
    return fail_errno(-err, "sandbox: mprotect the supervisor's guard page");
  }
  SupervisorMemory m;
  m.base_ = base;
  m.size_ = size;
  m.args_ = static_cast<char*>(base) + page + stack;
  m.in_use_ = true;
  return m;
}

SupervisorMemory::SupervisorMemory(SupervisorMemory&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      args_(std::exchange(o.args_, nullptr)),
      in_use_(std::exchange(o.in_use_, false)) {}

SupervisorMemory& SupervisorMemory::operator=(SupervisorMemory&& o) noexcept {
  if (this != &o) {
    reset();
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    args_ = std::exchange(o.args_, nullptr);
    in_use_ = std::exchange(o.in_use_, false);
  }
  return *this;
}

void SupervisorMemory::reset() noexcept {
  if (base_ != nullptr && !in_use_) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
  args_ = nullptr;
  in_use_ = false;
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
