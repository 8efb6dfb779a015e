// The "python" backend's executor: one BlockingRunner thread per slot, each owning at most one
// persistent worker interpreter (see worker_executor.hpp for the frame format and the rules).
#include "worker_executor.hpp"

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

#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/executor/blocking_runner.hpp"

namespace pepita::python {
namespace {

using executor::BlockingRunner;
using executor::ExecutionResult;
using executor::Status;

/// How often a slot waiting for its worker's reply looks at its stop token (cancel, timeout).
constexpr int kPollMs = 20;
/// The most worker output (stdout + stderr) one attempt keeps; the rest is counted, not kept.
constexpr std::size_t kOutputCap = std::size_t{1} << 20;
/// The fd on which a worker finds its end of the call socket.
constexpr int kWorkerFd = 3;

/// One running worker interpreter. Owned by its slot's runner thread only.
struct Worker {
  pid_t pid = -1;   // also its process group (POSIX_SPAWN_SETPGROUP 0)
  UniqueFd sock;    // our end of the socketpair: request frames out, reply frames in
  UniqueFd output;  // read end of the pipe its stdout and stderr write to (non-blocking)
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

/// `fd` moved above the stdio range and kWorkerFd, so the child's dup2 onto 0..3 never meets
/// an fd that is its own target (dup2(fd, fd) would keep O_CLOEXEC on some libcs).
Result<UniqueFd> high_fd(UniqueFd fd) {
  if (fd.get() > kWorkerFd) return fd;
  const int moved = static_cast<int>(sys::ret(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10)));
  return sys::check_fd(moved, "fcntl(F_DUPFD_CLOEXEC) for a Python worker");
}

Result<Worker> spawn_worker(const std::vector<char*>& argv, const std::vector<char*>& envp) {
  int sv[2];
  PEPITA_TRY_VOID(
      sys::check_void(sys::ret(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)),
                      "socketpair for a Python worker"));
  UniqueFd ours(sv[0]);
  UniqueFd theirs = PEPITA_TRY(high_fd(UniqueFd(sv[1])));
  int pfd[2];
  PEPITA_TRY_VOID(sys::check_void(sys::pipe(pfd), "pipe for a Python worker's output"));
  UniqueFd out_r(pfd[0]);
  UniqueFd out_w = PEPITA_TRY(high_fd(UniqueFd(pfd[1])));
  PEPITA_TRY_VOID(sys::check_void(sys::set_nonblocking(out_r.get()), "O_NONBLOCK on a pipe"));

  SpawnState st;
  posix_spawn_file_actions_addopen(&st.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&st.actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&st.actions, out_w.get(), 2);
  posix_spawn_file_actions_adddup2(&st.actions, theirs.get(), kWorkerFd);
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
    return fail_errno(-rc, pepita::fmt("starting the Python worker {} (check that the "
                                       "interpreter exists and can run)",
                                       argv[0]));
  }
  Worker w;
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

class WorkerExecutor final : public executor::Executor {
 public:
  WorkerExecutor(WorkerCommand command, std::size_t slots)
      : command_(std::move(command)), slots_(slots), pids_(slots) {
    for (auto& s : command_.argv) argv_.push_back(s.data());
    argv_.push_back(nullptr);
    for (auto& s : command_.env) envp_.push_back(s.data());
    envp_.push_back(nullptr);
    workers_.resize(slots);
    for (auto& p : pids_) p.store(-1, std::memory_order_relaxed);
  }

  Result<void> init() {
    BlockingRunner::Options o;
    o.threads = slots_;
    o.deadline = true;
    o.report_early = false;  // the body kills its worker and reports the stop itself
    o.name = "Python worker executor";
    runner_ = PEPITA_TRY(BlockingRunner::create(
        std::move(o), [this](const BlockingRunner::Attempt& a) { return run(a); }));
    return {};
  }

  ~WorkerExecutor() override { shutdown(); }

  executor::Backend backend() const noexcept override { return backend_; }
  std::size_t slots() const noexcept override { return slots_; }

  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override {
    if (task.process() == nullptr) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("task '{}' is not a Python function task; the python backend "
                              "runs only pepita.Task.function tasks",
                              task.name()));
    }
    return runner_->submit(task, std::move(stop), std::move(done));
  }

  void shutdown() override {
    if (!runner_) return;
    runner_->shutdown();
    // Every body has returned: the slots' workers are idle. They would exit at end of file on
    // their socket; a kill does not wait for them to notice.
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i]) {
        kill_and_reap(*workers_[i]);
        workers_[i].reset();
        pids_[i].store(-1, std::memory_order_relaxed);
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
    r.error = timed_out ? pepita::fmt(
                              "timed out after {} s; its Python worker was killed and "
                              "is replaced for the next task",
                              std::chrono::duration<double>(a.task.timeout()).count())
                        : std::string(
                              "cancelled; its Python worker was killed and is replaced "
                              "for the next task");
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
    r.error = pepita::fmt(
        "its Python worker (pid {}) {} {}; a new worker replaces it for the "
        "next task",
        pid, describe_status(status), during);
    return r;
  }

  void retire(std::size_t slot) {
    workers_[slot].reset();
    pids_[slot].store(-1, std::memory_order_relaxed);
  }

  ExecutionResult run(const BlockingRunner::Attempt& a) {
    ExecutionResult r;
    r.id = a.task.id();
    r.name = a.task.name();
    const std::size_t slot = a.thread;
    if (!workers_[slot]) {
      Result<Worker> w = spawn_worker(argv_, envp_);
      if (!w) {
        r.status = Status::LaunchFailed;
        r.error = w.error().to_string();
        return r;
      }
      workers_[slot].emplace(std::move(*w));
      pids_[slot].store(workers_[slot]->pid, std::memory_order_relaxed);
    }
    Worker& w = *workers_[slot];
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
              "the function's pickled result is {} bytes, over the task's "
              "output cap of {} bytes; its worker was replaced",
              body_len, cap);
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

  WorkerCommand command_;
  std::vector<char*> argv_;  // into command_
  std::vector<char*> envp_;
  std::size_t slots_;
  executor::Backend backend_ = task::Backend::named(kWorkerBackend).value();
  // Slot i's worker, touched by runner thread i only (and by shutdown once the runner is down).
  std::vector<std::optional<Worker>> workers_;
  std::vector<std::atomic<pid_t>> pids_;  // for abandon(), from any thread
  // Last: its threads run bodies that use the members above, so it goes first.
  std::unique_ptr<BlockingRunner> runner_;
};

}  // namespace

Result<std::shared_ptr<executor::Executor>> make_worker_executor(WorkerCommand command,
                                                                 std::size_t slots) {
  if (command.argv.empty() || command.argv[0].empty()) {
    return fail(ErrorCode::InvalidArgument, "the Python worker command is empty");
  }
  if (slots == 0 || slots > 1024) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("Python worker slots must be 1..1024, got {}", slots));
  }
  auto exec = std::make_shared<WorkerExecutor>(std::move(command), slots);
  PEPITA_TRY_VOID(exec->init());
  return std::shared_ptr<executor::Executor>(std::move(exec));
}

}  // namespace pepita::python
