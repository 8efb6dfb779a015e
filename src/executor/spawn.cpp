// Our own posix_spawn: clone(CLONE_VM|CLONE_VFORK) like glibc's (the cost does not grow with the
// parent's address space; the parent sleeps until the child execs or exits), with what glibc's
// attributes cannot express: PR_SET_PDEATHSIG, joining a cgroup, sched_setaffinity.
//
// The child shares our memory and runs on its own small stack until exec, so it may only make
// raw system calls: no allocation, no locks, no libc state, no sanitizer runtime. Everything it
// needs (the resolved path, argv, envp, the CPU set) is built here in the parent first, and its
// error comes back through `SpawnArgs::err`, which both sides see.
#include "detail/spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "pepita/core/sys.hpp"

extern char** environ;

// glibc's own name for clone(3), the same function. ThreadSanitizer intercepts `clone` and treats
// it as a fork: its child-side bookkeeping would run in our CLONE_VM child and rewrite the
// parent's sanitizer state (false races after every spawn). `__clone` is not intercepted.
extern "C" int __clone(int (*fn)(void*), void* stack, int flags, void* arg, ...);

namespace pepita::executor::detail {
namespace {

struct SpawnArgs {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // nullptr: stay
  int fds[3];
  pid_t pgid;
  pid_t parent;
  const int* cgroup_fds;
  std::size_t cgroup_count;
  const cpu_set_t* cpus;  // nullptr: inherit
  std::size_t cpus_size;
  int err;  // written by the child on failure (positive errno); read by the parent after clone
};

// Reports `r` (a negative errno) to the parent and ends the child.
[[noreturn]] __attribute__((no_sanitize("address", "undefined", "thread"))) void child_fail(
    SpawnArgs* a, long r) {
  a->err = r < 0 ? static_cast<int>(-r) : EINVAL;
  for (;;) ::syscall(SYS_exit, 127);
}

// The child, between clone and exec. Raw syscalls only (see the top of the file); the sanitizers
// must not instrument it, since their runtime state belongs to the parent thread whose memory and
// TLS it shares.
__attribute__((no_sanitize("address", "undefined", "thread"))) __attribute__((noinline)) int
child_main(void* arg) {
  // SAFETY: `arg` is the parent's SpawnArgs; the parent is suspended (CLONE_VFORK) until we exec
  // or exit, so it stays valid and nobody else touches it.
  auto* a = static_cast<SpawnArgs*>(arg);
  // Signals stay blocked (the parent blocked all before clone) until just before exec, so no
  // handler of the parent ever runs on this stack.
  const KernelSigaction dfl{};
  for (int sig = 1; sig < _NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(unsigned long));
  }
  // Die with the spawning thread. The parent may have died before this line: then our parent is
  // now a reaper, not the one that spawned us, and we must not run.
  if (::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) child_fail(a, -errno);
  if (::syscall(SYS_getppid) != a->parent) child_fail(a, -ESRCH);
  if (::syscall(SYS_setpgid, 0, a->pgid) < 0) child_fail(a, -errno);
  for (std::size_t i = 0; i < a->cgroup_count; ++i) {
    // "0" moves the writer: this process.
    if (::syscall(SYS_write, a->cgroup_fds[i], "0", 1) < 0) child_fail(a, -errno);
  }
  if (a->cpus != nullptr) {
    if (::syscall(SYS_sched_setaffinity, 0, a->cpus_size, a->cpus) < 0) child_fail(a, -errno);
  }
  for (int target = 0; target < 3; ++target) {
    const int from = a->fds[target];
    if (from == target) {
      // dup2 onto itself keeps FD_CLOEXEC: clear it instead.
      if (::syscall(SYS_fcntl, from, F_SETFD, 0) < 0) child_fail(a, -errno);
    } else if (::syscall(SYS_dup3, from, target, 0) < 0) {
      child_fail(a, -errno);
    }
  }
  // pepita opens everything O_CLOEXEC, but other code in the process may not: close the rest so
  // no descriptor leaks into the task. (Kernels before 5.9 lack it: then CLOEXEC has to do.)
  ::syscall(SYS_close_range, 3U, ~0U, 0U);
  if (a->cwd != nullptr && ::syscall(SYS_chdir, a->cwd) < 0) child_fail(a, -errno);
  const unsigned long empty_mask = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, sizeof empty_mask);
  ::syscall(SYS_execve, a->path, a->argv, a->envp);
  child_fail(a, -errno);
}

}  // namespace

// Builds envp: the parent's environment with the task's variables layered on top, or only the
// task's. The strings live in `storage`, which must outlive the spawn.
std::vector<char*> build_environment(const task::ProcessSpec& spec,
                                     const std::map<std::string, std::string>* extra,
                                     std::vector<std::string>& storage) {
  auto overridden = [&](const std::string& key) {
    return spec.env.contains(key) || (extra != nullptr && extra->contains(key));
  };
  if (spec.inherit_env) {
    for (char** e = environ; e && *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      const std::string key = eq ? std::string(*e, static_cast<std::size_t>(eq - *e)) : *e;
      if (!overridden(key)) storage.emplace_back(*e);
    }
  }
  for (const auto& [k, v] : spec.env) {
    if (extra == nullptr || !extra->contains(k))
      storage.push_back(std::string(k).append("=").append(v));
  }
  if (extra != nullptr) {
    for (const auto& [k, v] : *extra) storage.push_back(std::string(k).append("=").append(v));
  }
  std::vector<char*> envp;
  envp.reserve(storage.size() + 1);
  for (auto& s : storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  return envp;
}

namespace {

// The child's stack: an mmap'd region, one per spawning thread, reused by each spawn of that
// thread (the child has exec'd or exited before clone returns: CLONE_VFORK), so a spawn costs no
// mmap and no munmap (with its TLB shootdown across the process's other threads).
class ChildStack {
 public:
  static constexpr std::size_t kSize = 64 * 1024;
  ChildStack() = default;
  // Maps the stack on first use (and again after a failed try); false when mmap fails.
  bool ensure() {
    if (base_ != nullptr) return true;
    void* p = nullptr;
    // SAFETY: a fresh anonymous private mapping; nobody else holds it. Freed in the destructor.
    if (sys::mmap(&p, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1,
                  0) == 0) {
      base_ = p;
    }
    return base_ != nullptr;
  }
  ~ChildStack() {
    if (base_ != nullptr) ::munmap(base_, kSize);
  }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  // The stack grows down on every architecture Linux runs pepita on.
  void* top() const { return static_cast<char*>(base_) + kSize; }

 private:
  void* base_ = nullptr;
};

}  // namespace

pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid,
                    const SpawnExtras& extras, int* pidfd) {
  if (pidfd != nullptr) *pidfd = -1;
  std::string path;
  if (int rc = sys::find_executable(spec.path, path); rc < 0) return rc;

  std::string arg0 = spec.path;
  if (auto slash = arg0.rfind('/'); slash != std::string::npos) arg0.erase(0, slash + 1);
  std::vector<std::string> args_copy(spec.args);
  std::vector<char*> argv;
  argv.reserve(args_copy.size() + 2);
  argv.push_back(arg0.data());
  for (auto& a : args_copy) argv.push_back(a.data());
  argv.push_back(nullptr);

  char** envp = environ;
  std::vector<std::string> env_storage;
  std::vector<char*> env_vec;
  const bool extra_env = extras.env != nullptr && !extras.env->empty();
  if (!spec.env.empty() || !spec.inherit_env || extra_env) {
    env_vec = build_environment(spec, extra_env ? extras.env : nullptr, env_storage);
    envp = env_vec.data();
  }

  cpu_set_t* cpus = nullptr;
  std::size_t cpus_size = 0;
  if (!extras.cpus.empty()) {
    const unsigned max = *std::max_element(extras.cpus.begin(), extras.cpus.end());
    cpus = CPU_ALLOC(max + 1);
    if (cpus == nullptr) return -ENOMEM;
    cpus_size = CPU_ALLOC_SIZE(max + 1);
    CPU_ZERO_S(cpus_size, cpus);
    for (unsigned c : extras.cpus) CPU_SET_S(c, cpus_size, cpus);
  }
  struct FreeCpus {
    cpu_set_t* set;
    ~FreeCpus() {
      if (set != nullptr) CPU_FREE(set);
    }
  } free_cpus{cpus};

  SpawnArgs args{};
  args.path = path.c_str();
  args.argv = argv.data();
  args.envp = envp;
  args.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  args.fds[0] = fds.stdin_fd;
  args.fds[1] = fds.stdout_fd;
  args.fds[2] = fds.stderr_fd;
  args.pgid = pgid;
  args.parent = ::getpid();
  args.cgroup_fds = extras.cgroup_procs.data();
  args.cgroup_count = extras.cgroup_procs.size();
  args.cpus = cpus;
  args.cpus_size = cpus_size;
  args.err = 0;

  thread_local ChildStack stack;
  if (!stack.ensure()) return -ENOMEM;
  pid_t pid;
  // CLONE_PIDFD (Linux 5.2) hands us the child's pidfd with the clone itself: no pidfd_open, and
  // no window in which the pid could be reaped and reused. A kernel without it ignores the flag
  // (it was the long-dead CLONE_PID), leaving `fd` at -1.
  int fd = -1;
  {
    BlockAllSignals blocked;
    const int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | (pidfd != nullptr ? CLONE_PIDFD : 0);
    pid = ::__clone(child_main, stack.top(), flags, &args, &fd);
  }
  if (pid < 0) return sys::last_error();
  // The child has exec'd (err still 0) or exited after writing err. CLONE_VFORK ordered its
  // write before our wake-up.
  if (args.err != 0) {
    if (fd >= 0) ::close(fd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return -args.err;
  }
  if (pidfd != nullptr) *pidfd = fd;
  return pid;
}

}  // namespace pepita::executor::detail
