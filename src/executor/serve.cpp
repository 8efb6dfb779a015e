// The serve executor: one BlockingRunner thread per slot, each owning at most one persistent
// server process (see serve.hpp for the frame format and the rules).
#include "pepita/executor/serve.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

#include "detail/spawn.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/executor/blocking_runner.hpp"

namespace pepita::executor {
namespace {

/// How often a slot waiting for its server's reply looks at its stop token (cancel, timeout).
constexpr int kPollMs = 20;
/// The most server output (stdout + stderr) one attempt keeps; the rest is counted, not kept.
constexpr std::size_t kOutputCap = std::size_t{1} << 20;

/// One running server. Owned by its slot's runner thread only.
struct Worker {
  ServeCommand command;  // what started it
  pid_t pid = -1;        // also its process group (POSIX_SPAWN_SETPGROUP 0)
  UniqueFd sock;         // our end of the socketpair: request frames out, reply frames in
  UniqueFd output;       // read end of the pipe its stdout and stderr write to (non-blocking)
  std::uint64_t calls = 0;
};

/// Closes a posix_spawn attribute/file-action object however spawn_worker returns.
struct SpawnState {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnState() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnState() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnState(const SpawnState&) = delete;
  SpawnState& operator=(const SpawnState&) = delete;
};

/// `fd` moved above the stdio range and kServeFd, so the child's dup2 onto 0..3 never meets
/// an fd that is its own target (dup2(fd, fd) would keep O_CLOEXEC on some libcs).
Result<UniqueFd> high_fd(UniqueFd fd) {
  if (fd.get() > kServeFd) return fd;
  const int moved = static_cast<int>(sys::ret(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10)));
  return sys::check_fd(moved, "fcntl(F_DUPFD_CLOEXEC) for a served process");
}

Result<Worker> spawn_worker(ServeCommand command, std::string_view what) {
  std::vector<char*> argv;
  for (auto& s : command.argv) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& s : command.env) envp.push_back(s.data());
  envp.push_back(nullptr);
  int sv[2];
  PEPITA_TRY_VOID(
      sys::check_void(sys::ret(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)),
                      "socketpair for a served process"));
  UniqueFd ours(sv[0]);
  UniqueFd theirs = PEPITA_TRY(high_fd(UniqueFd(sv[1])));
  int pfd[2];
  PEPITA_TRY_VOID(sys::check_void(sys::pipe(pfd), "pipe for a served process's output"));
  UniqueFd out_r(pfd[0]);
  UniqueFd out_w = PEPITA_TRY(high_fd(UniqueFd(pfd[1])));
  PEPITA_TRY_VOID(sys::check_void(sys::set_nonblocking(out_r.get()), "O_NONBLOCK on a pipe"));

  SpawnState st;
  posix_spawn_file_actions_addopen(&st.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&st.actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&st.actions, out_w.get(), 2);
  posix_spawn_file_actions_adddup2(&st.actions, theirs.get(), kServeFd);
  // Its own process group: a terminal's Ctrl-C reaches the driver only (which cancels), and a
  // kill of the group also ends what the function started. Signals as a fresh process has them.
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setpgroup(&st.attr, 0);
  posix_spawnattr_setsigmask(&st.attr, &none);
  posix_spawnattr_setsigdefault(&st.attr, &defaults);
  posix_spawnattr_setflags(
      &st.attr,
      static_cast<short>(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF));
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &st.actions, &st.attr, argv.data(), envp.data());
  if (rc != 0) {
    return fail_errno(-rc, pepita::fmt("starting the {} {} (check that the program exists "
                                       "and can run)",
                                       what, argv[0]));
  }
  Worker w;
  w.command = std::move(command);
  w.pid = pid;
  w.sock = std::move(ours);
  w.output = std::move(out_r);
  return w;
}

/// Kills the worker's process group and reaps it; returns its wait status.
int kill_and_reap(Worker& w) {
  (void)sys::kill_group(w.pid, SIGKILL);
  int status = 0;
  while (::waitpid(w.pid, &status, 0) < 0 && sys::last_error() == -EINTR) {
  }
  w.pid = -1;
  return status;
}

/// Appends what the worker's output pipe holds now (non-blocking), keeping up to kOutputCap.
/// False once the pipe is at end of file.
bool drain_output(int fd, ExecutionResult& r) {
  std::array<char, 65536> buf;
  for (;;) {
    const long n = sys::read(fd, buf.data(), buf.size());
    if (n == -EINTR) continue;
    if (n <= 0) return n != 0;  // -EAGAIN: nothing more now; 0: closed
    const auto got = static_cast<std::size_t>(n);
    r.stderr_bytes += got;
    if (r.stderr_data.size() < kOutputCap) {
      r.stderr_data.append(buf.data(), std::min(got, kOutputCap - r.stderr_data.size()));
    }
  }
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return pepita::fmt("killed by signal {} (SIG{})", sig, name ? name : "?");
  }
  if (WIFEXITED(status)) return pepita::fmt("exited with status {}", WEXITSTATUS(status));
  return "ended";
}

class ServeExecutor final : public Executor {
 public:
  ServeExecutor(ServeOptions options, Backend backend)
      : opts_(std::move(options)), backend_(backend), pids_(opts_.slots) {
    workers_.resize(opts_.slots);
    for (auto& p : pids_) p.store(-1, std::memory_order_relaxed);
  }

  Result<void> init() {
    BlockingRunner::Options o;
    o.threads = opts_.slots;
    o.deadline = true;
    o.report_early = false;  // the body kills its server and reports the stop itself
    o.name = std::string(opts_.what).append(" executor");
    runner_ = PEPITA_TRY(BlockingRunner::create(
        std::move(o), [this](const BlockingRunner::Attempt& a) { return run(a); }));
    return {};
  }

  ~ServeExecutor() override { shutdown(); }

  Backend backend() const noexcept override { return backend_; }
  std::size_t slots() const noexcept override { return opts_.slots; }

  Result<void> start(const task::Task& task, std::stop_token stop, Completion done) override {
    if (task.process() == nullptr) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("task '{}' is not a process task; the {} backend runs only "
                              "process tasks (pepita.Task.function in Python)",
                              task.name(), backend_.name()));
    }
    return runner_->submit(task, std::move(stop), std::move(done));
  }

  void shutdown() override {
    if (!runner_) return;
    runner_->shutdown();
    // Every body has returned: the slots' servers are idle. They would exit at end of file on
    // their socket; a kill does not wait for them to notice.
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]) {
        kill_and_reap(*workers_[i]);
        retire(i);
      }
    }
  }

  void abandon() noexcept override {
    if (runner_) runner_->abandon();
    for (auto& p : pids_) {
      const pid_t pid = p.load(std::memory_order_relaxed);
      if (pid > 0) (void)sys::kill_group(pid, SIGKILL);
    }
  }

 private:
  ExecutionResult stopped(const BlockingRunner::Attempt& a, std::size_t slot, ExecutionResult r) {
    kill_and_reap(*workers_[slot]);
    retire(slot);
    const bool timed_out = a.timed_out();
    r.status = timed_out ? Status::TimedOut : Status::Cancelled;
    r.exit_code = -1;
    r.error = timed_out
                  ? pepita::fmt(
                        "timed out after {} s; its {} was killed and is replaced for "
                        "the next task",
                        std::chrono::duration<double>(a.task.timeout()).count(), opts_.what)
                  : pepita::fmt("cancelled; its {} was killed and is replaced for the next task",
                                opts_.what);
    return r;
  }

  ExecutionResult died(std::size_t slot, ExecutionResult r, std::string_view during) {
    Worker& w = *workers_[slot];
    const pid_t pid = w.pid;
    const int status = kill_and_reap(w);
    drain_output(w.output.get(), r);
    retire(slot);
    if (WIFSIGNALED(status)) {
      r.status = Status::Signaled;
      r.signal = WTERMSIG(status);
      r.exit_code = -1;
    } else {
      r.status = Status::Failed;
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    r.error = pepita::fmt("its {} (pid {}) {} {}; a new one replaces it for the next task",
                          opts_.what, pid, describe_status(status), during);
    return r;
  }

  void retire(std::size_t slot) {
    workers_[slot].reset();
    pids_[slot].store(-1, std::memory_order_relaxed);
  }

  /// The slot's server for `a`'s command: the running one, or a new one (replacing a server
  /// started for another command). nullptr with r filled in when it cannot start.
  Worker* server_for(const BlockingRunner::Attempt& a, std::size_t slot, ExecutionResult& r) {
    if (opts_.command) {  // one command for every task: nothing to build or compare
      if (workers_[slot]) return &*workers_[slot];
      return start_server(slot, *opts_.command, r);
    }
    Result<ServeCommand> command = serve_command_of(*a.task.process(), opts_.serve_args);
    if (!command) {
      r.status = Status::LaunchFailed;
      r.error = command.error().to_string();
      return nullptr;
    }
    if (workers_[slot] && workers_[slot]->command != *command) {
      kill_and_reap(*workers_[slot]);
      retire(slot);
    }
    if (workers_[slot]) return &*workers_[slot];
    return start_server(slot, std::move(*command), r);
  }

  Worker* start_server(std::size_t slot, ServeCommand command, ExecutionResult& r) {
    Result<Worker> w = spawn_worker(std::move(command), opts_.what);
    if (!w) {
      r.status = Status::LaunchFailed;
      r.error = w.error().to_string();
      return nullptr;
    }
    workers_[slot].emplace(std::move(*w));
    pids_[slot].store(workers_[slot]->pid, std::memory_order_relaxed);
    return &*workers_[slot];
  }

  ExecutionResult run(const BlockingRunner::Attempt& a) {
    ExecutionResult r;
    r.id = a.task.id();
    r.name = a.task.name();
    const std::size_t slot = a.thread;
    Worker* found = server_for(a, slot, r);
    if (found == nullptr) return r;
    Worker& w = *found;
    ++w.calls;
    const std::string& payload = a.task.process()->stdin_data;
    std::array<unsigned char, 8> head{};
    const std::uint64_t len = payload.size();
    for (std::size_t i = 0; i < 8; ++i) head[i] = static_cast<unsigned char>(len >> (8 * i));
    if (sys::send_all(w.sock.get(), head.data(), head.size()) < 0 ||
        sys::send_all(w.sock.get(), payload.data(), payload.size()) < 0) {
      return died(slot, std::move(r), "before it took this task");
    }

    // The reply: 8 bytes of length, then that many bytes, while its output pipe is drained.
    std::size_t head_got = 0;
    std::size_t body_got = 0;
    std::uint64_t body_len = 0;
    bool output_open = true;
    const std::size_t cap = a.task.output_cap();
    for (;;) {
      if (a.stop.stop_requested()) return stopped(a, slot, std::move(r));
      std::array<pollfd, 2> fds{{{w.sock.get(), POLLIN, 0}, {w.output.get(), POLLIN, 0}}};
      const int n = sys::poll(fds.data(), output_open ? 2 : 1, kPollMs);
      if (n == 0 || n == -EINTR) continue;
      if (n < 0) return died(slot, std::move(r), "while pepita polled it");
      if (output_open && fds[1].revents != 0) output_open = drain_output(w.output.get(), r);
      if (fds[0].revents == 0) continue;
      long got = 0;
      if (head_got < head.size()) {
        got = sys::recv(w.sock.get(), head.data() + head_got, head.size() - head_got, MSG_DONTWAIT);
      } else {
        got = sys::recv(w.sock.get(), r.stdout_data.data() + body_got, body_len - body_got,
                        MSG_DONTWAIT);
      }
      if (got == -EAGAIN || got == -EINTR) continue;
      if (got <= 0) return died(slot, std::move(r), "during this task");
      if (head_got < head.size()) {
        head_got += static_cast<std::size_t>(got);
        if (head_got < head.size()) continue;
        for (std::size_t i = 0; i < 8; ++i) body_len |= std::uint64_t{head[i]} << (8 * i);
        if (body_len > cap) {
          ExecutionResult out = died(slot, std::move(r), "was stopped");
          out.status = Status::Failed;
          out.error = pepita::fmt(
              "the reply is {} bytes, over the task's output cap of {} bytes; its {} was "
              "replaced",
              body_len, cap, opts_.what);
          return out;
        }
        r.stdout_data.resize(body_len);
      } else {
        body_got += static_cast<std::size_t>(got);
      }
      if (head_got == head.size() && body_got == body_len) break;
    }
    if (output_open) drain_output(w.output.get(), r);
    r.stdout_bytes = r.stdout_data.size();
    r.status = Status::Succeeded;
    r.exit_code = 0;
    return r;
  }

  ServeOptions opts_;
  Backend backend_;
  // Slot i's server, touched by runner thread i only (and by shutdown once the runner is down).
  std::vector<std::optional<Worker>> workers_;
  std::vector<std::atomic<pid_t>> pids_;  // for abandon(), from any thread
  // Last: its threads run bodies that use the members above, so it goes first.
  std::unique_ptr<BlockingRunner> runner_;
};

}  // namespace

Result<ServeCommand> serve_command_of(const task::ProcessSpec& spec,
                                      const std::vector<std::string>& serve_args) {
  if (!spec.path.starts_with('/')) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("a served program needs an absolute path, got '{}'", spec.path));
  }
  ServeCommand c;
  c.argv.reserve(1 + spec.args.size() + serve_args.size());
  c.argv.push_back(spec.path);
  c.argv.insert(c.argv.end(), spec.args.begin(), spec.args.end());
  c.argv.insert(c.argv.end(), serve_args.begin(), serve_args.end());
  (void)detail::build_environment(spec, nullptr, c.env);
  return c;
}

Result<std::shared_ptr<Executor>> make_serve_executor(ServeOptions options) {
  if (options.command && (options.command->argv.empty() || options.command->argv[0].empty())) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("the {} command is empty: give the program's path", options.what));
  }
  if (options.slots == 0 || options.slots > 1024) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("{} slots must be 1..1024, got {}", options.what, options.slots));
  }
  const Backend backend = PEPITA_TRY(task::Backend::named(options.backend));
  auto exec = std::make_shared<ServeExecutor>(std::move(options), backend);
  PEPITA_TRY_VOID(exec->init());
  return std::shared_ptr<Executor>(std::move(exec));
}

}  // namespace pepita::executor
