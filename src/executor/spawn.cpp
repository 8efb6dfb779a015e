// Spawning one child: clone(CLONE_VM | CLONE_VFORK) on a small private stack, the way glibc's
// posix_spawn does (so the cost does not grow with the parent's address space), plus what
// posix_spawn cannot do: PR_SET_PDEATHSIG, so a parent killed with SIGKILL takes its tasks with
// it. The child reports an exec or set-up failure through memory it shares with the parent.
#include "detail/spawn.hpp"

#include <limits.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "detail/sys.hpp"

extern char** environ;

namespace pepita::executor::detail {
namespace {

// The child runs a few syscalls and execve: 64 KiB is ample (glibc's posix_spawn uses 32 KiB
// plus the argv size, for a /bin/sh fallback we do not have), and a guard page below it turns
// an overflow into a fault instead of a write into the parent's memory.
constexpr std::size_t kStackBytes = 64 * 1024;

class ChildStack {
 public:
  ChildStack() {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    size_ = kStackBytes + page;
    // SAFETY: a fresh private anonymous mapping, owned by this object until the destructor
    // unmaps it; the lowest page is made inaccessible as a guard.
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
      err_ = -errno;
      return;
    }
    base_ = static_cast<char*>(p);
    if (::mprotect(base_, page, PROT_NONE) < 0) err_ = -errno;
  }
  ~ChildStack() {
    if (base_) ::munmap(base_, size_);
  }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;

  int error() const { return err_; }
  // Stacks grow down on every Linux ABI pepita builds for; the top is page aligned.
  void* top() const { return base_ + size_; }

 private:
  char* base_ = nullptr;
  std::size_t size_ = 0;
  int err_ = 0;
};

// Everything the child reads, prepared by the parent (the child must not allocate), and the one
// thing it writes back.
struct ChildArgs {
  int fds[3];                     // for the child's 0, 1, 2
  const char* cwd;                // nullptr: stay
  const char* const* candidates;  // paths to try in order, nullptr-terminated
  char* const* argv;
  char* const* envp;
  pid_t parent;  // getpid() before the clone
  // Set by the child (a positive errno) when set-up or every exec failed; 0 after a successful
  // exec. The parent reads it after clone returns: CLONE_VFORK suspends the parent until the
  // child has exec'd or exited, and that wake-up orders the child's store before the load.
  std::atomic<int> err{0};
};

[[noreturn]] PEPITA_VFORK_CHILD void child_fail(ChildArgs& a, int neg_errno) {
  a.err.store(-neg_errno, std::memory_order_release);  // the parent reads it after clone returns
  ::_exit(127);
}

// Runs in the child, on ChildStack, sharing the parent's memory while the parent thread waits:
// only raw syscalls (sys::child), nothing that allocates, locks or touches glibc state.
PEPITA_VFORK_CHILD int child_main(void* raw) {
  // SAFETY: `raw` is the ChildArgs in spawn_process's frame, which stays alive (the parent thread
  // is suspended in clone) until this child has exec'd or exited.
  ChildArgs& a = *static_cast<ChildArgs*>(raw);
  namespace c = sys::child;
  // 1. Default dispositions (the parent's handlers are code in a process we no longer are; it
  //    may also ignore SIGPIPE or SIGINT), then an empty mask (the parent blocked everything for
  //    the clone, and threads of pepita block signals).
  for (int sig = 1; sig <= c::kSignals; ++sig) c::set_default_action(sig);  // EINVAL: KILL, STOP
  if (int rc = c::clear_sigmask(); rc < 0) child_fail(a, rc);
  // 2. Own process group, so a timeout or cancel can signal the whole tree.
  if (int rc = c::setpgid_self(); rc < 0) child_fail(a, rc);
  // 3. SIGKILL when the parent thread dies; if the parent died before the prctl, the signal will
  //    never come: getppid() is then the reaper's pid, not the parent's.
  if (int rc = c::set_parent_death_signal(SIGKILL); rc < 0) child_fail(a, rc);
  if (c::getppid() != a.parent) ::_exit(127);  // nobody is left to read an error
  // 4. stdin, stdout, stderr. A source below 3 (the parent had closed a standard fd) is first
  //    moved out of the way so one dup cannot overwrite the next one's source.
  int src[3] = {a.fds[0], a.fds[1], a.fds[2]};
  for (int i = 0; i < 3; ++i) {
    if (src[i] < 3 && src[i] != i) {
      const int moved = c::dup_at_least(src[i], 3);
      if (moved < 0) child_fail(a, moved);
      src[i] = moved;
    }
  }
  for (int i = 0; i < 3; ++i) {
    // dup3 refuses equal fds; an fd already in place only needs its O_CLOEXEC cleared.
    const int rc = src[i] == i ? c::clear_cloexec(i) : c::dup_to(src[i], i);
    if (rc < 0) child_fail(a, rc);
  }
  // 5. pepita opens everything O_CLOEXEC, but other code in the process may not: close the rest
  //    so no descriptor leaks into the task.
  if (int rc = c::close_from(3); rc < 0) child_fail(a, rc);
  // 6. cwd (relative candidates of the PATH search resolve against it, as with posix_spawnp).
  if (a.cwd) {
    if (int rc = c::chdir(a.cwd); rc < 0) child_fail(a, rc);
  }
  // 7. exec, with execvp's rules for which errors end the search: EACCES is remembered and
  //    reported if nothing else works; "not here" errors move on; anything else stops.
  int err = -ENOENT;  // no candidate: an empty path
  bool got_eacces = false;
  for (const char* const* p = a.candidates; *p; ++p) {
    err = c::execve(*p, a.argv, a.envp);
    if (err == -EACCES) {
      got_eacces = true;
    } else if (err != -ENOENT && err != -ESTALE && err != -ENOTDIR && err != -ENODEV &&
               err != -ETIMEDOUT) {
      child_fail(a, err);
    }
  }
  child_fail(a, got_eacces ? -EACCES : err);
}

// The paths execve should try: `path` itself when it holds a '/', else each directory of the
// parent's PATH (default "/bin:/usr/bin", as glibc's) joined with it; an empty element means the
// current directory. Empty: no candidate (ENOENT). A name over NAME_MAX: ENAMETOOLONG.
int exec_candidates(const std::string& path, std::vector<std::string>& out) {
  if (path.empty()) return 0;
  if (path.find('/') != std::string::npos) {
    out.push_back(path);
    return 0;
  }
  if (path.size() > NAME_MAX) return -ENAMETOOLONG;
  const char* env = std::getenv("PATH");
  const std::string dirs = env ? env : "/bin:/usr/bin";
  for (std::size_t at = 0;;) {
    const std::size_t colon = dirs.find(':', at);
    const std::string dir = dirs.substr(at, colon == std::string::npos ? colon : colon - at);
    out.push_back(dir.empty() ? path : dir + "/" + path);
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  return 0;
}

// Builds envp: the parent's environment with the task's variables layered on top, or only the
// task's. The strings live in `storage`, which must outlive the spawn.
std::vector<char*> build_env(const task::ProcessSpec& spec, std::vector<std::string>& storage) {
  if (spec.inherit_env) {
    for (char** e = environ; e && *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      const std::string key = eq ? std::string(*e, static_cast<std::size_t>(eq - *e)) : *e;
      if (!spec.env.contains(key)) storage.emplace_back(*e);
    }
  }
  for (const auto& [k, v] : spec.env) storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  envp.reserve(storage.size() + 1);
  for (auto& s : storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  return envp;
}

// Blocks every signal in the calling thread for its lifetime, so no handler of the parent runs
// in the child (which shares its memory) before the child has reset them all.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockAllSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t old_;
};

}  // namespace

pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds) {
  std::vector<std::string> candidates;
  if (int rc = exec_candidates(spec.path, candidates); rc < 0) return rc;
  std::vector<const char*> candidate_ptrs;
  candidate_ptrs.reserve(candidates.size() + 1);
  for (const auto& c : candidates) candidate_ptrs.push_back(c.c_str());
  candidate_ptrs.push_back(nullptr);

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
  if (!spec.env.empty() || !spec.inherit_env) {
    env_vec = build_env(spec, env_storage);
    envp = env_vec.data();
  }

  ChildStack stack;
  if (stack.error() < 0) return stack.error();
  ChildArgs args{.fds = {fds.stdin_fd, fds.stdout_fd, fds.stderr_fd},
                 .cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str(),
                 .candidates = candidate_ptrs.data(),
                 .argv = argv.data(),
                 .envp = envp,
                 .parent = ::getpid()};
  pid_t pid;
  {
    BlockAllSignals blocked;
    pid = sys::clone_vfork(child_main, stack.top(), &args);
  }
  if (pid < 0) return pid;
  // The child has exec'd or exited by now (CLONE_VFORK), so its stack is free to unmap.
  if (const int err = args.err.load(std::memory_order_acquire); err != 0) {
    sys::wait_pid(pid);  // it exited without exec: reap it here, nobody else knows its pid
    return -err;
  }
  return pid;
}

}  // namespace pepita::executor::detail
