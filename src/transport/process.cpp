// Worker-side process runner (see detail/process.hpp).
#include "transport/detail/process.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "pepita/core/unique_fd.hpp"
#include "transport/detail/sys.hpp"

extern char** environ;

namespace pepita::transport::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct Pipe {
  UniqueFd read, write;
};

bool make_pipe(Pipe& p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return true;
}

ResultMsg spawn_error(std::string what) {
  ResultMsg r;
  r.status = TaskStatus::SpawnError;
  r.exit_code = -1;
  r.error = std::move(what);
  return r;
}

// Reads what is available from `fd` into `out` up to `cap`; returns false at EOF or error.
bool drain(int fd, std::string& out, std::size_t cap) {
  char chunk[16384];
  for (;;) {
    const long n = sys::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      const std::size_t room = cap > out.size() ? cap - out.size() : 0;
      out.append(chunk, std::min<std::size_t>(room, static_cast<std::size_t>(n)));
      continue;
    }
    if (n == -EINTR) continue;
    return n == -EAGAIN;
  }
}

}  // namespace

ResultMsg run_process(const SubmitMsg& task, const std::string& path, const std::string& cwd,
                      const std::atomic<bool>& cancel) {
  Pipe in, out, err;
  if (!make_pipe(in) || !make_pipe(out) || !make_pipe(err)) {
    return spawn_error(Error::from_errno(errno, "pipe2").message());
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.read.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out.write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.write.get(), 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group, so a timeout or cancel kills the task's children too; default signals.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> argv_s{path.substr(path.rfind('/') + 1)};
  argv_s.insert(argv_s.end(), task.args.begin(), task.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  if (task.inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      const auto key = kv.substr(0, kv.find('='));
      if (!task.env.contains(std::string(key))) env_s.emplace_back(kv);
    }
  }
  for (const auto& [k, v] : task.env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  const auto started = Clock::now();
  pid_t pid = -1;
  const bool search = path.find('/') == std::string::npos;
  const int rc = search ? ::posix_spawnp(&pid, path.c_str(), &fa, &attr, argv.data(), envp.data())
                        : ::posix_spawn(&pid, path.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return spawn_error(Error::from_errno(rc, "spawn " + path).message());
  in.read.reset();
  out.write.reset();
  err.write.reset();

  const int pidfd_raw = sys::pidfd_open(pid);
  UniqueFd pidfd(pidfd_raw >= 0 ? pidfd_raw : -1);
  (void)sys::set_nonblocking(out.read.get());
  (void)sys::set_nonblocking(err.read.get());
  (void)sys::set_nonblocking(in.write.get());
  std::size_t stdin_off = 0;
  if (task.stdin_data.empty()) in.write.reset();

  ResultMsg r;
  const std::size_t cap = task.output_cap;
  const auto deadline = task.timeout_ns ? started + std::chrono::nanoseconds(task.timeout_ns)
                                        : Clock::time_point::max();
  bool exited = false, timed_out = false, cancelled = false;
  while (!exited) {
    pollfd pfds[4] = {{out.read.get(), POLLIN, 0},
                      {err.read.get(), POLLIN, 0},
                      {in.write.get(), POLLOUT, 0},
                      {pidfd.get(), POLLIN, 0}};
    // 50 ms bounds how late a cancel is noticed; without a pidfd we also poll waitpid.
    (void)sys::poll(pfds, 4, pidfd ? 50 : 10);
    if (out.read && (pfds[0].revents & (POLLIN | POLLHUP)) &&
        !drain(out.read.get(), r.stdout_data, cap)) {
      out.read.reset();
    }
    if (err.read && (pfds[1].revents & (POLLIN | POLLHUP)) &&
        !drain(err.read.get(), r.stderr_data, cap)) {
      err.read.reset();
    }
    if (in.write && (pfds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const long n = sys::write(in.write.get(), task.stdin_data.data() + stdin_off,
                                task.stdin_data.size() - stdin_off);
      if (n > 0) stdin_off += static_cast<std::size_t>(n);
      if ((n < 0 && n != -EAGAIN && n != -EINTR) || stdin_off == task.stdin_data.size()) {
        in.write.reset();
      }
    }
    int status = 0;
    if (!pidfd || (pfds[3].revents & POLLIN)) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        if (WIFEXITED(status)) {
          r.exit_code = WEXITSTATUS(status);
          r.status = r.exit_code == 0 ? TaskStatus::Succeeded : TaskStatus::Failed;
        } else if (WIFSIGNALED(status)) {
          r.signal = WTERMSIG(status);
          r.exit_code = -1;
          r.status = TaskStatus::Signaled;
        }
        break;
      }
    }
    if (!timed_out && !cancelled) {
      if (Clock::now() >= deadline) timed_out = true;
      if (cancel.load(std::memory_order_relaxed)) cancelled = true;
      if (timed_out || cancelled) ::kill(-pid, SIGKILL);
    }
  }
  // Collect output already written; grandchildren still holding the pipes are not waited for.
  if (out.read) drain(out.read.get(), r.stdout_data, cap);
  if (err.read) drain(err.read.get(), r.stderr_data, cap);
  if (timed_out) {
    r.status = TaskStatus::TimedOut;
    r.error = "killed after its timeout of " + std::to_string(task.timeout_ns / 1'000'000) + " ms";
  } else if (cancelled) {
    r.status = TaskStatus::Cancelled;
    r.error = "cancelled by the driver";
  }
  r.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count();
  return r;
}

}  // namespace pepita::transport::detail
