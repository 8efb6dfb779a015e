// posix_spawn of one child. glibc's implementation clones with CLONE_VM|CLONE_VFORK, so the cost
// does not grow with the parent's address space, and it reports exec/chdir failures as errors.
#include "detail/spawn.hpp"

#include <signal.h>
#include <spawn.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "pepita/core/sys.hpp"

extern char** environ;

namespace pepita::executor::detail {
namespace {

class FileActions {
 public:
  FileActions() { ::posix_spawn_file_actions_init(&fa_); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

class Attr {
 public:
  Attr() { ::posix_spawnattr_init(&attr_); }
  ~Attr() { ::posix_spawnattr_destroy(&attr_); }
  Attr(const Attr&) = delete;
  Attr& operator=(const Attr&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

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

}  // namespace

pid_t spawn_process(const task::ProcessSpec& spec, const SpawnFds& fds, pid_t pgid) {
  FileActions fa;
  int rc = 0;
  rc |= ::posix_spawn_file_actions_adddup2(fa.get(), fds.stdin_fd, 0);
  rc |= ::posix_spawn_file_actions_adddup2(fa.get(), fds.stdout_fd, 1);
  rc |= ::posix_spawn_file_actions_adddup2(fa.get(), fds.stderr_fd, 2);
  // pepita opens everything O_CLOEXEC, but other code in the process may not: close the rest so
  // no descriptor leaks into the task.
  rc |= ::posix_spawn_file_actions_addclosefrom_np(fa.get(), 3);
  if (!spec.cwd.empty()) rc |= ::posix_spawn_file_actions_addchdir_np(fa.get(), spec.cwd.c_str());
  if (rc != 0) return -ENOMEM;

  Attr attr;
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  // Own process group (so a timeout can signal the whole tree; a pipeline's stages share the
  // first stage's), default dispositions (the parent may ignore SIGPIPE or SIGINT) and an empty
  // mask (the parent may block signals in threads).
  rc |= ::posix_spawnattr_setflags(
      attr.get(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  rc |= ::posix_spawnattr_setpgroup(attr.get(), pgid);
  rc |= ::posix_spawnattr_setsigmask(attr.get(), &empty);
  rc |= ::posix_spawnattr_setsigdefault(attr.get(), &all);
  if (rc != 0) return -ENOMEM;

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

  pid_t pid = -1;
  const bool search = spec.path.find('/') == std::string::npos;
  rc = search ? ::posix_spawnp(&pid, spec.path.c_str(), fa.get(), attr.get(), argv.data(), envp)
              : ::posix_spawn(&pid, spec.path.c_str(), fa.get(), attr.get(), argv.data(), envp);
  if (rc != 0) return -rc;
  return pid;
}

int ScopedSpawnAffinity::apply(std::span<const unsigned> cpus) {
  if (cpus.empty()) return 0;
  std::vector<unsigned> saved;
  for (int cpu : sys::allowed_cpus()) saved.push_back(static_cast<unsigned>(cpu));
  if (saved.empty()) return -EINVAL;  // cannot read our own mask: do not risk losing it
  const int rc = sys::set_current_thread_cpus(cpus);
  if (rc == 0) saved_ = std::move(saved);
  return rc;
}

ScopedSpawnAffinity::~ScopedSpawnAffinity() {
  // The mask was readable a moment ago, so setting it back only fails if a cpuset shrank in
  // between; the thread then keeps the narrower mask, which the kernel has already intersected.
  if (!saved_.empty()) (void)sys::set_current_thread_cpus(saved_);
}

}  // namespace pepita::executor::detail
