// The process reactor: one thread owns every child — spawns it, watches its pidfd and output
// pipes with epoll, enforces its deadline, reaps it and delivers the result. Other threads only
// enqueue starts and cancellations (under `mu`) and wake the reactor through an eventfd.
#include "pepita/executor/process.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_set>
#include <vector>

#include "detail/sandbox_spawn.hpp"
#include "detail/slot_cgroup.hpp"
#include "detail/slot_netns.hpp"
#include "detail/spawn.hpp"
#include "pepita/core/cgroup.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/executor/completion_batch.hpp"

namespace pepita::executor {
namespace {

using Clock = std::chrono::steady_clock;

enum class Channel : std::uint8_t { Wake = 0, Exit = 1, Out = 2, Err = 3, In = 4 };

// epoll user data: generation (so events of a recycled slot are recognised as stale), slot
// index, channel.
std::uint64_t tag(std::uint32_t gen, std::uint32_t slot, Channel ch) {
  return (std::uint64_t{gen} << 32) | (std::uint64_t{slot} << 3) | static_cast<std::uint64_t>(ch);
}

std::chrono::nanoseconds timeval_ns(const timeval& tv) {
  return std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
}

// The GPU variables of an attempt with an allocation: the ids it was given, comma-joined, under
// every name a GPU runtime reads (empty when it was given none, so that it sees no GPU).
std::map<std::string, std::string> gpu_env(const task::Allocation& a) {
  const std::string ids = a.gpu_list();
  return {{"CUDA_VISIBLE_DEVICES", ids},
          {"ROCR_VISIBLE_DEVICES", ids},
          {"ZE_AFFINITY_MASK", ids},
          {"PEPITA_GPUS", ids}};
}

// Process-wide, so attempts of several executors never collide under the shared parent cgroup.
std::atomic<std::uint64_t> g_cgroup_seq{0};

struct Captured {
  UniqueFd fd;
  std::string data;
  std::uint64_t total = 0;
  // Live logs (issue 24): every chunk read also goes here; Child::sink keeps it alive.
  task::LogSink* sink = nullptr;
  task::LogStream stream = task::LogStream::Stdout;
};

// One process of an attempt: the binary, or one stage of a pipeline.
struct Stage {
  pid_t pid = -1;
  UniqueFd pidfd;
  bool reaped = false;
  int wait_error = 0;          // negative errno when waitid failed
  int code = 0;                // CLD_EXITED, CLD_KILLED or CLD_DUMPED
  int status = 0;              // the exit status or the signal
  std::string label;           // "pipeline stage 1 ('sh')"
  UniqueFd report;             // sandboxed: the supervisor's report pipe (pid is the supervisor's)
  std::string sandbox_reason;  // "sandbox: syscall ptrace denied"
  // Sandboxed: the supervisor's stack, unmapped once it has been reaped.
  detail::SupervisorMemory sandbox_memory;
};

struct Child {
  std::uint32_t gen = 0;
  bool live = false;
  task::TaskId id = 0;
  std::string name;
  std::size_t cap = 0;
  Completion done;
  pid_t pid = -1;  // the process group: the (first) process's pid
  // Every process of the attempt, all in group `pid`: one for a binary, one per pipeline stage.
  std::vector<Stage> stages;
  std::size_t live_stages = 0;
  bool pipeline = false;
  bool piped = true;      // pipeline stages connected stdout -> stdin
  int failed_stage = -1;  // pipelines: the first stage seen failing; the others are then stopped
  rusage usage{};         // summed over the reaped processes (max for ru_maxrss)
  Captured out, err;
  std::shared_ptr<task::LogSink> sink;  // the attempt's live-log sink (Task::log_sink)
  UniqueFd stdin_fd;
  std::string stdin_data;
  std::size_t stdin_off = 0;
  Clock::time_point started;
  Clock::time_point deadline = Clock::time_point::max();
  bool timed_out = false;
  bool cancelled = false;
  bool term_sent = false;
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
  // Resources: the attempt's cgroup (when cgroups are usable), what it was given and its limit.
  // An attempt with limits gets a cgroup of its own; one without runs in its slot's reusable
  // cgroup (in_slot_cgroup), which outlives it.
  Cgroup cgroup;
  detail::SlotCgroup slot_cgroup;
  bool in_slot_cgroup = false;
  std::optional<task::Allocation> allocation;
  std::uint64_t memory_limit = 0;
  // The sandbox (issue 23): each process runs under a supervisor of detail/sandbox_spawn.hpp.
  bool sandboxed = false;
  std::uint32_t sandbox_id = 0;
  // The slot's loopback-only network namespace for sandboxes with `network = "none"`, made once
  // and reused while it stays pristine (detail/slot_netns.hpp); outlives the attempt.
  detail::SlotNetns netns;
};

struct Start {
  task::Task task;
  std::stop_token stop;
  Completion done;
};

struct Cancel {
  std::uint32_t slot;
  std::uint32_t gen;
};

struct Timer {
  Clock::time_point when;
  std::uint32_t slot;
  std::uint32_t gen;
  bool operator>(const Timer& o) const { return when > o.when; }
};

}  // namespace

struct ProcessExecutor::Impl {
  Options options;
  UniqueFd epoll;
  UniqueFd wake;
  UniqueFd dev_null;
  // This process's parent cgroup; null when cgroups cannot be used (cgroup_note says why).
  std::shared_ptr<CgroupTree> cgroups;
  std::string cgroup_note;
  // Whether attempts without limits reuse their slot's cgroup (detail/slot_cgroup.hpp); false
  // once the kernel turned out unable to reset a cgroup's peak memory.
  bool reuse_slot_cgroups = true;
  // The reactor thread's network namespace, to return to after starting a sandbox in its slot's
  // prepared one; prepared_netns turns false once one could not be made (not root): from then on
  // each such sandbox makes its own (CLONE_NEWNET).
  UniqueFd host_netns;
  bool prepared_netns = true;

  std::mutex mu;  // guards the fields below up to `reactor`
  std::condition_variable idle_cv;
  std::vector<Start> starts;
  std::vector<Cancel> cancels;
  std::size_t outstanding = 0;  // accepted by start(), completion not yet returned
  // Process groups of children not yet reaped (removed under mu before the reap, so abandon()
  // never signals a recycled id).
  std::unordered_set<pid_t> groups;
  bool accepting = true;
  bool stop_reactor = false;

  std::thread reactor;
  std::atomic<std::thread::id> reactor_id{};

  // Reactor-thread state.
  std::deque<Child> children;  // deque: a Child (with its stop_callback) never moves
  std::vector<std::uint32_t> free_slots;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers;
  std::size_t running = 0;

  void notify() {
    const std::uint64_t one = 1;
    // A full eventfd counter still wakes the reader, so a failed write needs no handling.
    (void)sys::eventfd_signal(wake.get(), one);
  }

  void run();
  void launch(Start start);
  void finish(std::uint32_t slot, Status status, int exit_code, int sig, const rusage* usage,
              std::string error);
  void drain(Captured& c, std::size_t cap);
  void feed_stdin(Child& c);
  int slot_netns(Child& c, const task::SandboxPolicy& policy);
  void on_exit(std::uint32_t slot);
  void finish_binary(std::uint32_t slot);
  void finish_pipeline(std::uint32_t slot);
  bool reap_stage(Child& c, Stage& st);
  void stop_stages(std::uint32_t slot);
  void on_timer(const Timer& t);
  void cancel(std::uint32_t slot);
  int epoll_add(int fd, std::uint32_t events, std::uint64_t data) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    return static_cast<int>(sys::ret(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev)));
  }
};

Result<std::unique_ptr<ProcessExecutor>> ProcessExecutor::create(Options options) {
  auto impl = std::make_unique<Impl>();
  if (options.slots == 0) {
    options.slots = static_cast<std::size_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  }
  if (options.kill_grace.count() < 0) {
    return fail(ErrorCode::InvalidArgument, "kill_grace must not be negative");
  }
  impl->options = options;
  // First end what a kill -9'd run left (a --resume must not start copies beside it), then take
  // our own parent cgroup. Neither is fatal: tasks without a memory request run without one.
  (void)reap_stale_cgroups();
  if (auto tree = CgroupTree::acquire()) {
    impl->cgroups = std::move(*tree);
  } else {
    impl->cgroup_note = tree.error().message();
  }
  impl->epoll = PEPITA_TRY(
      sys::check_fd(static_cast<int>(sys::ret(::epoll_create1(EPOLL_CLOEXEC))), "epoll_create1"));
  impl->wake = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
  impl->dev_null = PEPITA_TRY(sys::check_fd(sys::open("/dev/null", O_RDONLY), "open /dev/null"));
  if (int rc = impl->epoll_add(impl->wake.get(), EPOLLIN, tag(0, 0, Channel::Wake)); rc < 0) {
    return fail_errno(rc, "epoll_ctl eventfd");
  }
  Impl* raw = impl.get();
  try {
    impl->reactor = std::thread([raw] { raw->run(); });
  } catch (const std::system_error& e) {
    return fail(ErrorCode::ResourceExhausted,
                std::string("cannot start the process reactor thread: ") + e.what());
  }
  return std::make_unique<ProcessExecutor>(Private{}, std::move(impl));
}

ProcessExecutor::ProcessExecutor(Private, std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)) {}

ProcessExecutor::~ProcessExecutor() { shutdown(); }

std::size_t ProcessExecutor::slots() const noexcept { return impl_->options.slots; }

Result<void> ProcessExecutor::start(const task::Task& task, std::stop_token stop, Completion done) {
  if (!task.process() && !task.is_pipeline()) {
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() +
                    "' is not a binary or a pipeline; the process executor runs binaries");
  }
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) {
      return fail(ErrorCode::Cancelled,
                  "process executor is shut down; task '" + task.name() + "' was not started");
    }
    ++impl_->outstanding;
    impl_->starts.push_back(Start{task, std::move(stop), std::move(done)});
  }
  // The reactor drains `starts` after every batch of events, so it needs no wake-up from itself.
  if (impl_->reactor_id.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    impl_->notify();
  }
  return {};
}

void ProcessExecutor::shutdown() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.mu);
    s.accepting = false;
    s.idle_cv.wait(lock, [&] { return s.outstanding == 0; });
    s.stop_reactor = true;
  }
  s.notify();
  if (s.reactor.joinable()) s.reactor.join();
}

void ProcessExecutor::abandon() noexcept {
  std::lock_guard lock(impl_->mu);
  for (const pid_t pgid : impl_->groups) sys::kill_group(pgid, SIGKILL);
}

void ProcessExecutor::Impl::run() {
  reactor_id.store(std::this_thread::get_id(), std::memory_order_relaxed);
  // Writing to a child's stdin pipe after it exited must give EPIPE, not kill the process.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  std::vector<epoll_event> events(128);
  std::vector<Start> batch;
  std::vector<Cancel> cancel_batch;
  bool pending_work = false;
  for (;;) {
    int timeout_ms = -1;
    if (pending_work) {
      timeout_ms = 0;
    } else if (!timers.empty()) {
      const auto left = timers.top().when - Clock::now();
      timeout_ms = static_cast<int>(std::clamp<std::int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(left).count(), 0, 60'000));
    }
    const auto n = sys::ret(
        ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), timeout_ms));
    const int count = n < 0 ? 0 : static_cast<int>(n);  // EINTR: just go round
    // One completion batch per round: the pool writes its journal and starts the next
    // attempts once for all the exits reaped here (they land in `starts`, drained below).
    std::optional<CompletionBatch> round;
    round.emplace();
    // Exits last: output first, so a child's final bytes are read before it is reaped.
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < count; ++i) {
        const std::uint64_t data = events[static_cast<std::size_t>(i)].data.u64;
        const auto ch = static_cast<Channel>(data & 7);
        const auto slot = static_cast<std::uint32_t>((data >> 3) & 0x1FFFFFFF);
        const auto gen = static_cast<std::uint32_t>(data >> 32);
        if (ch == Channel::Wake) {
          if (pass == 0) {
            (void)sys::eventfd_drain(wake.get());
          }
          continue;
        }
        if (slot >= children.size() || !children[slot].live || children[slot].gen != gen) continue;
        Child& c = children[slot];
        if (pass == 0) {
          if (ch == Channel::Out) drain(c.out, c.cap);
          if (ch == Channel::Err) drain(c.err, c.cap);
          if (ch == Channel::In) feed_stdin(c);
        } else if (ch == Channel::Exit) {
          on_exit(slot);
        }
      }
    }
    while (!timers.empty() && timers.top().when <= Clock::now()) {
      const Timer t = timers.top();
      timers.pop();
      on_timer(t);
    }
    round.reset();
    bool quit = false;
    {
      std::lock_guard lock(mu);
      batch.swap(starts);
      cancel_batch.swap(cancels);
      quit = stop_reactor;
    }
    for (const Cancel& c : cancel_batch) {
      if (c.slot < children.size() && children[c.slot].live && children[c.slot].gen == c.gen) {
        cancel(c.slot);
      }
    }
    cancel_batch.clear();
    for (Start& s : batch) launch(std::move(s));
    batch.clear();
    {
      // Completions delivered above may have queued starts from this thread, without a wake-up.
      std::lock_guard lock(mu);
      pending_work = !starts.empty() || !cancels.empty();
    }
    if (quit && running == 0 && !pending_work) return;
  }
}

void ProcessExecutor::Impl::launch(Start start) {
  std::uint32_t slot;
  if (!free_slots.empty()) {
    slot = free_slots.back();
    free_slots.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(children.size());
    children.emplace_back();
  }
  Child& c = children[slot];
  c.gen += 1;
  c.live = true;
  c.id = start.task.id();
  c.name = start.task.name();
  c.cap = start.task.output_cap();
  c.done = std::move(start.done);
  c.out = {};
  c.err = {};
  c.sink = start.task.log_sink();
  c.out.sink = c.err.sink = c.sink.get();
  c.out.stream = task::LogStream::Stdout;
  c.err.stream = task::LogStream::Stderr;
  c.stdin_data.clear();
  c.stdin_off = 0;
  c.timed_out = c.cancelled = c.term_sent = false;
  c.deadline = Clock::time_point::max();
  c.started = Clock::now();
  c.cgroup = Cgroup();
  c.in_slot_cgroup = false;
  c.allocation.reset();
  c.memory_limit = 0;
  task::SandboxPolicy sandbox = start.task.sandbox();
  c.sandboxed = sandbox.enabled();
  c.sandbox_id = sandbox.id;
  ++running;

  auto launch_failed = [&](int err, const std::string& what) {
    finish(slot, Status::LaunchFailed, -1, 0, nullptr,
           what + ": " + Error::from_errno(err, "spawn").message());
  };
  if (start.stop.stop_requested()) {
    finish(slot, Status::Cancelled, -1, 0, nullptr, "cancelled before it started");
    return;
  }

  // A binary is a pipeline of one stage: the same spawning, reaping and group signalling.
  const task::PipelineTask* pipe = start.task.as_pipeline();
  std::vector<const task::ProcessSpec*> specs;
  if (pipe) {
    for (const auto& st : pipe->stages) specs.push_back(&st);
  } else {
    specs.push_back(start.task.process());
  }
  c.pipeline = pipe != nullptr;
  c.piped = !pipe || pipe->pipe_output;
  c.failed_stage = -1;
  c.usage = {};
  c.stages.clear();
  c.stages.resize(specs.size());
  c.live_stages = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    std::string base = specs[i]->path;
    if (auto slash = base.rfind('/'); slash != std::string::npos) base.erase(0, slash + 1);
    c.stages[i].label = std::string("pipeline stage ")
                            .append(std::to_string(i))
                            .append(" ('")
                            .append(base)
                            .append("')");
  }
  const task::ProcessSpec& first = *specs.front();

  int out_pipe[2], err_pipe[2], in_pipe[2] = {-1, -1};
  if (int rc = sys::pipe(out_pipe); rc < 0) return launch_failed(-rc, "pipe for stdout");
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (int rc = sys::pipe(err_pipe); rc < 0) return launch_failed(-rc, "pipe for stderr");
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);
  UniqueFd in_r, in_w;
  if (!first.stdin_data.empty()) {
    if (int rc = sys::pipe(in_pipe); rc < 0) return launch_failed(-rc, "pipe for stdin");
    in_r.reset(in_pipe[0]);
    in_w.reset(in_pipe[1]);
  }
  // Our ends only; a fresh pipe end has no other status flag, so one F_SETFL each (no F_GETFL).
  auto nonblock = [](int fd) {
    return static_cast<int>(sys::syscall(SYS_fcntl, fd, F_SETFL, O_NONBLOCK));
  };
  int nonblocking = nonblock(out_r.get());
  if (nonblocking == 0) nonblocking = nonblock(err_r.get());
  if (nonblocking == 0 && in_w) nonblocking = nonblock(in_w.get());
  if (nonblocking < 0) return launch_failed(-nonblocking, "set pipes non-blocking");
  // Between stages: plain blocking kernel pipes only the children touch, so a fast producer
  // blocks in write(2) on a slow consumer and no byte passes through pepita.
  std::vector<UniqueFd> links;  // [2i] read end for stage i+1, [2i+1] write end for stage i
  if (c.piped) {
    for (std::size_t i = 0; i + 1 < specs.size(); ++i) {
      int link[2];
      if (int rc = sys::pipe(link); rc < 0) return launch_failed(-rc, "pipe between stages");
      links.emplace_back(link[0]);
      links.emplace_back(link[1]);
    }
  }

  // Cores: the allocation's pinned cores, else the task's own affinity; set in the child.
  std::vector<unsigned> cpus;
  if (const task::Allocation* a = start.task.allocation()) {
    c.allocation = *a;
    c.memory_limit = a->memory;
    cpus = a->cores;
  }
  if (cpus.empty() && !start.task.affinity().is_any()) {
    auto resolved = start.task.affinity().resolve();
    if (!resolved) {
      return finish(slot, Status::LaunchFailed, -1, 0, nullptr, resolved.error().message());
    }
    cpus = std::move(*resolved);
  }
  // Every attempt runs in a cgroup when cgroups are usable, so that nothing it starts outlives
  // it: its own when it has limits, else its slot's (below); one with a memory limit cannot run
  // without (never silently unlimited).
  const bool limited = c.allocation && (c.allocation->memory > 0 || c.allocation->cpus > 0 ||
                                        c.allocation->pids > 0);
  // A sandbox's pids limit is the cgroup's pids.max where there is one, else RLIMIT_NPROC.
  std::uint32_t sandbox_pids = 0;
  if (c.sandboxed && sandbox.max_processes > 0) {
    sandbox_pids = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(sandbox.max_processes, std::numeric_limits<std::uint32_t>::max()));
  }
  if (c.allocation && c.allocation->memory > 0 && !cgroups) {
    return finish(slot, Status::LaunchFailed, -1, 0, nullptr,
                  std::string("task asks for memory = \"")
                      .append(task::format_bytes(c.allocation->memory))
                      .append("\" but its limit cannot be enforced here: ")
                      .append(cgroup_note));
  }
  if (cgroups && !limited && reuse_slot_cgroups) {
    // No limits to set: the slot's cgroup, made once and reused (nothing is created or removed
    // per attempt). It still ends whatever the attempt leaves behind and measures its usage.
    // A sandbox's pids limit is the slot cgroup's pids.max (one attempt at a time runs in a
    // slot, so it bounds this attempt alone); an attempt asking for another limit, or none, gets
    // a slot cgroup made with its own (a per-attempt mkdir/rmdir on up to four v1 hierarchies
    // cost a strict sandbox ~0.6 ms per task).
    if (c.slot_cgroup.valid() && c.slot_cgroup.pids() != sandbox_pids) {
      c.slot_cgroup = detail::SlotCgroup();
    }
    if (c.slot_cgroup.valid() && !c.slot_cgroup.begin()) c.slot_cgroup = detail::SlotCgroup();
    if (!c.slot_cgroup.valid()) {
      const std::string name = std::string("task-slot")
                                   .append(std::to_string(slot))
                                   .append("-")
                                   .append(std::to_string(g_cgroup_seq.fetch_add(1) + 1));
      auto made = detail::SlotCgroup::make(*cgroups, name, sandbox_pids);
      if (made) {
        c.slot_cgroup = std::move(*made);
      } else if (made.error().code() == ErrorCode::Unsupported) {
        reuse_slot_cgroups = false;  // this kernel cannot: a cgroup per attempt from now on
      }
    }
    c.in_slot_cgroup = c.slot_cgroup.valid();
    // pids.max holds the sandbox's limit where the pids controller is there; RLIMIT_NPROC
    // otherwise (as below).
    if (c.in_slot_cgroup && c.slot_cgroup.pids_enforced()) sandbox.max_processes = 0;
  }
  if (cgroups && !c.in_slot_cgroup) {
    CgroupLimits limits;
    if (c.allocation) {
      limits.memory = c.allocation->memory;
      limits.cpus = c.allocation->cpus;
      limits.pids = c.allocation->pids;
    }
    if (sandbox_pids > 0) {
      limits.pids = limits.pids == 0 ? sandbox_pids : std::min(limits.pids, sandbox_pids);
    }
    const std::string name = std::string("task-")
                                 .append(std::to_string(c.id))
                                 .append("-")
                                 .append(std::to_string(g_cgroup_seq.fetch_add(1) + 1));
    auto cg = cgroups->make(name, limits);
    if (cg) {
      c.cgroup = std::move(*cg);
      // pids.max holds the sandbox's limit where the pids controller is there (make() skips a
      // missing one); RLIMIT_NPROC otherwise.
      for (const std::string& dir : c.cgroup.paths()) {
        if (limits.pids > 0 && ::access((dir + "/pids.max").c_str(), F_OK) == 0)
          sandbox.max_processes = 0;
      }
    } else if (limited) {
      return finish(slot, Status::LaunchFailed, -1, 0, nullptr,
                    "cannot enforce the task's resource limits: " + cg.error().message());
    }
  }
  const std::vector<int> join = c.in_slot_cgroup ? c.slot_cgroup.join_fds() : c.cgroup.join_fds();
  std::map<std::string, std::string> env;
  if (c.allocation) env = gpu_env(*c.allocation);
  detail::SpawnExtras extras{join, cpus, env.empty() ? nullptr : &env, c.memory_limit > 0};
  if (c.sandboxed && sandbox.network == task::SandboxNetwork::None) {
    const int ns = slot_netns(c, sandbox);
    if (ns >= 0) {
      extras.netns = ns;
      extras.host_netns = host_netns.get();
    }
  }

  // Undoes a half-started pipeline: kill what runs, reap it, so nothing is left behind.
  auto abort_spawned = [&](std::size_t spawned) {
    if (spawned == 0) return;
    sys::kill_group(c.pid, SIGKILL);
    {
      std::lock_guard lock(mu);
      groups.erase(c.pid);
    }
    for (std::size_t k = 0; k < spawned; ++k) {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(c.stages[k].pid), &info, WEXITED) == 0)
        c.stages[k].sandbox_memory.reaped();
      c.stages[k].pidfd.reset();
    }
  };
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const task::ProcessSpec& spec = *specs[i];
    const bool last = i + 1 == specs.size();
    int stdin_fd = dev_null.get();
    if (i == 0 && in_r) stdin_fd = in_r.get();
    if (i > 0 && c.piped) stdin_fd = links[2 * (i - 1)].get();
    const int stdout_fd = last || !c.piped ? out_w.get() : links[2 * i + 1].get();
    const detail::SpawnFds fds{stdin_fd, stdout_fd, err_w.get()};
    pid_t pid;
    int pfd = -1;
    if (c.sandboxed) {
      auto child = detail::spawn_sandboxed(spec, fds, i == 0 ? 0 : c.pid, extras, sandbox);
      if (!child) {
        abort_spawned(i);
        std::string what = child.error().message();
        if (c.pipeline) what = c.stages[i].label + ": " + what;
        return finish(slot, Status::LaunchFailed, -1, 0, nullptr, std::move(what));
      }
      pid = child->pid;
      c.stages[i].report = std::move(child->report);
      c.stages[i].sandbox_memory = std::move(child->memory);
    } else {
      pid = detail::spawn_process(spec, fds, i == 0 ? 0 : c.pid, extras, &pfd);
    }
    if (pid < 0) {
      abort_spawned(i);
      std::string what = c.pipeline ? "cannot start " + c.stages[i].label + " '" + spec.path + "'"
                                    : "cannot start '" + spec.path + "'";
      if (!spec.cwd.empty()) what += " in '" + spec.cwd + "'";
      return launch_failed(-pid, what);
    }
    c.stages[i].pid = pid;
    if (i == 0) {
      c.pid = pid;
      std::lock_guard lock(mu);
      groups.insert(pid);
    }
    if (pfd < 0) pfd = sys::pidfd_open(pid);  // sandboxed, or a kernel without CLONE_PIDFD
    if (pfd < 0) {
      // Cannot watch it: make sure none of them outlives us unobserved, then reap them.
      abort_spawned(i + 1);
      return launch_failed(-pfd, "pidfd_open");
    }
    c.stages[i].pidfd.reset(pfd);
    ++c.live_stages;
  }
  // The children hold their own copies now; ours must close so EOF (and SIGPIPE) can arrive.
  out_w.reset();
  err_w.reset();
  in_r.reset();
  links.clear();

  c.out.fd = std::move(out_r);
  c.err.fd = std::move(err_r);
  for (const Stage& st : c.stages)
    epoll_add(st.pidfd.get(), EPOLLIN, tag(c.gen, slot, Channel::Exit));
  epoll_add(c.out.fd.get(), EPOLLIN, tag(c.gen, slot, Channel::Out));
  epoll_add(c.err.fd.get(), EPOLLIN, tag(c.gen, slot, Channel::Err));
  if (in_w) {
    c.stdin_fd = std::move(in_w);
    c.stdin_data = first.stdin_data;
    epoll_add(c.stdin_fd.get(), EPOLLOUT, tag(c.gen, slot, Channel::In));
    feed_stdin(c);
  }
  if (start.task.timeout().count() > 0) {
    c.deadline = c.started + start.task.timeout();
    timers.push({c.deadline, slot, c.gen});
  }
  if (start.stop.stop_possible()) {
    const std::uint32_t gen = c.gen;
    // Runs on whichever thread requests stop; it only queues the cancel for the reactor.
    c.on_stop.emplace(start.stop, std::function<void()>([this, slot, gen] {
                        {
                          std::lock_guard lock(mu);
                          cancels.push_back({slot, gen});
                        }
                        notify();
                      }));
  }
}

// The slot's prepared network namespace for a `network = "none"` sandbox, or -1 (the supervisor
// then makes its own). Only where the task can hold no capability in it and leaves nothing
// running in it: as root (the namespace is the executor's user namespace's), with the sandbox's
// own user namespace (the task's capabilities are in that child namespace only) and pid
// namespace (every process of the attempt is gone once its supervisor is reaped). A namespace
// the last attempt left sockets in (TIME_WAIT) is replaced. The stages of a pipeline share it.
int ProcessExecutor::Impl::slot_netns(Child& c, const task::SandboxPolicy& policy) {
  if (!prepared_netns || !policy.user_ns || !policy.pid_ns || ::geteuid() != 0) return -1;
  if (!host_netns) {
    host_netns.reset(sys::open("/proc/thread-self/ns/net", O_RDONLY));
    if (!host_netns) {
      prepared_netns = false;
      return -1;
    }
  }
  if (c.netns.valid() && !c.netns.pristine()) c.netns = detail::SlotNetns();
  if (!c.netns.valid()) {
    auto made = detail::SlotNetns::make(host_netns.get());
    if (!made) {
      prepared_netns = false;
      return -1;
    }
    c.netns = std::move(*made);
  }
  return c.netns.fd();
}

void ProcessExecutor::Impl::drain(Captured& c, std::size_t cap) {
  if (!c.fd) return;
  char buf[65536];
  for (;;) {
    const long n = sys::read(c.fd.get(), buf, sizeof buf);
    if (n > 0) {
      const auto got = static_cast<std::size_t>(n);
      c.total += got;
      if (c.data.size() < cap) c.data.append(buf, std::min(got, cap - c.data.size()));
      if (c.sink) c.sink->write(c.stream, std::string_view(buf, got));
      continue;
    }
    if (n == -EINTR) continue;
    if (n == -EAGAIN) return;
    c.fd.reset();  // EOF or error: closing also removes it from the epoll set
    return;
  }
}

void ProcessExecutor::Impl::feed_stdin(Child& c) {
  while (c.stdin_fd && c.stdin_off < c.stdin_data.size()) {
    const long n = sys::write(c.stdin_fd.get(), c.stdin_data.data() + c.stdin_off,
                              c.stdin_data.size() - c.stdin_off);
    if (n > 0) {
      c.stdin_off += static_cast<std::size_t>(n);
    } else if (n == -EINTR) {
      continue;
    } else if (n == -EAGAIN) {
      return;
    } else {
      // EPIPE: the child stopped reading. Discard the SIGPIPE this thread has pending (blocked).
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      const timespec zero{};
      ::sigtimedwait(&pipe_set, nullptr, &zero);
      break;
    }
  }
  c.stdin_fd.reset();  // all written (or the child is gone): EOF for the child
}

// Reaps `st` if it has exited; false while it still runs. The last process of the group is reaped
// with `mu` held and its group removed first, so abandon() never signals a recycled group id.
bool ProcessExecutor::Impl::reap_stage(Child& c, Stage& st) {
  const bool last = c.live_stages == 1;
  if (last && (c.timed_out || c.cancelled || c.failed_stage >= 0)) {
    // This process is a zombie until we reap it, so the group id cannot have been reused: sweep
    // any descendants that ignored SIGTERM.
    sys::kill_group(c.pid, SIGKILL);
  }
  siginfo_t info{};
  rusage usage{};
  int rc;
  {
    std::lock_guard lock(mu);
    rc = sys::waitid_pidfd(st.pidfd.get(), &info, &usage);
    if (rc != 1 && last) groups.erase(c.pid);
  }
  if (rc == 1) return false;  // spurious readiness, or another stage's
  st.reaped = true;
  st.pidfd.reset();  // closing also removes it from the epoll set
  --c.live_stages;
  if (rc < 0) {
    st.wait_error = rc;
    return true;
  }
  st.sandbox_memory.reaped();
  st.sandbox_memory.reset();
  st.code = info.si_code;
  st.status = info.si_status;
  if (st.report) {
    // The supervisor's report carries the task's own status (and what the sandbox stopped).
    const detail::SandboxOutcome out = detail::read_sandbox_outcome(st.report.get(), c.sandbox_id);
    st.report.reset();
    if (out.reported) {
      st.code = out.code;
      st.status = out.status;
      st.sandbox_reason = out.reason;
    }
  }
  auto add = [](timeval& to, const timeval& from) {
    to.tv_sec += from.tv_sec;
    to.tv_usec += from.tv_usec;
    if (to.tv_usec >= 1'000'000) {
      to.tv_sec += 1;
      to.tv_usec -= 1'000'000;
    }
  };
  add(c.usage.ru_utime, usage.ru_utime);
  add(c.usage.ru_stime, usage.ru_stime);
  c.usage.ru_maxrss = std::max(c.usage.ru_maxrss, usage.ru_maxrss);
  return true;
}

void ProcessExecutor::Impl::on_exit(std::uint32_t slot) {
  Child& c = children[slot];
  for (std::size_t i = 0; i < c.stages.size(); ++i) {
    Stage& st = c.stages[i];
    if (st.reaped || !reap_stage(c, st)) continue;
    if (!c.pipeline || c.timed_out || c.cancelled || c.failed_stage >= 0) continue;
    // pipefail, less the SIGPIPE an upstream stage gets when a later stage stops reading (a
    // failing reader is reported on its own).
    const bool last = i + 1 == c.stages.size();
    const bool ok = st.wait_error == 0 && st.code == CLD_EXITED && st.status == 0;
    const bool broken_pipe =
        st.wait_error == 0 && st.code != CLD_EXITED && st.status == SIGPIPE && c.piped && !last;
    if (!ok && !broken_pipe) {
      c.failed_stage = static_cast<int>(i);
      if (c.live_stages > 0) stop_stages(slot);
    }
  }
  if (c.live_stages > 0) return;
  drain(c.out, c.cap);
  drain(c.err, c.cap);
  if (c.pipeline) {
    finish_pipeline(slot);
  } else {
    finish_binary(slot);
  }
}

// One stage failed: the rest of the pipeline cannot succeed, so stop it now (SIGTERM, then
// SIGKILL after the grace period) instead of waiting for EOF or SIGPIPE to reach every stage.
void ProcessExecutor::Impl::stop_stages(std::uint32_t slot) {
  Child& c = children[slot];
  if (c.term_sent) return;
  c.term_sent = true;
  sys::kill_group(c.pid, SIGTERM);
  timers.push({Clock::now() + options.kill_grace, slot, c.gen});
}

void ProcessExecutor::Impl::finish_binary(std::uint32_t slot) {
  Child& c = children[slot];
  const Stage& st = c.stages.front();
  const rusage* usage = &c.usage;
  if (!st.sandbox_reason.empty() && !c.timed_out && !c.cancelled) {
    finish(slot, Status::Sandboxed, -1, st.code == CLD_EXITED ? 0 : st.status, usage,
           st.sandbox_reason);
    return;
  }
  if (st.wait_error < 0) {
    finish(slot, Status::Failed, -1, 0, nullptr,
           Error::from_errno(st.wait_error, "waitid").message());
    return;
  }
  if (st.code == CLD_EXITED) {
    const int code = st.status;
    Status status = code == 0 ? Status::Succeeded : Status::Failed;
    std::string err = code == 0 ? "" : "exited with status " + std::to_string(code);
    if (c.timed_out) {
      status = Status::TimedOut;
      err = "timed out; exited with status " + std::to_string(code) + " after SIGTERM";
    } else if (c.cancelled) {
      status = Status::Cancelled;
      err = "cancelled";
    }
    finish(slot, status, code, 0, usage, std::move(err));
  } else {
    const int sig = st.status;
    Status status = Status::Signaled;
    std::string err = std::string("killed by signal ") + std::to_string(sig) + " (" +
                      (sigabbrev_np(sig) ? sigabbrev_np(sig) : "?") + ")";
    if (c.timed_out) {
      status = Status::TimedOut;
      err = "timed out after " +
            std::to_string(std::chrono::duration<double>(c.deadline - c.started).count()) + " s; " +
            err;
    } else if (c.cancelled) {
      status = Status::Cancelled;
      err = "cancelled; " + err;
    }
    finish(slot, status, -1, sig, usage, std::move(err));
  }
}

void ProcessExecutor::Impl::finish_pipeline(std::uint32_t slot) {
  Child& c = children[slot];
  auto how = [](const Stage& st) {
    if (st.wait_error < 0) return Error::from_errno(st.wait_error, "waitid").message();
    if (st.code == CLD_EXITED) return "exited with status " + std::to_string(st.status);
    const char* abbrev = sigabbrev_np(st.status);
    return std::string("killed by signal ")
        .append(std::to_string(st.status))
        .append(" (")
        .append(abbrev ? abbrev : "?")
        .append(")");
  };
  if (c.timed_out || c.cancelled) {
    const std::string what =
        c.timed_out
            ? "timed out after " +
                  std::to_string(std::chrono::duration<double>(c.deadline - c.started).count()) +
                  " s"
            : std::string("cancelled");
    finish(slot, c.timed_out ? Status::TimedOut : Status::Cancelled, -1, 0, &c.usage,
           what + "; all " + std::to_string(c.stages.size()) + " pipeline stages were stopped");
    return;
  }
  if (c.failed_stage < 0) {
    finish(slot, Status::Succeeded, 0, 0, &c.usage, "");
    return;
  }
  const Stage& bad = c.stages[static_cast<std::size_t>(c.failed_stage)];
  if (!bad.sandbox_reason.empty()) {
    finish(slot, Status::Sandboxed, -1, bad.code == CLD_EXITED ? 0 : bad.status, &c.usage,
           bad.label + ": " + bad.sandbox_reason);
    return;
  }
  std::string err = bad.label + " " + how(bad);
  if (c.stages.size() > 1) err += "; the other stages were stopped";
  if (bad.wait_error == 0 && bad.code != CLD_EXITED) {
    finish(slot, Status::Signaled, -1, bad.status, &c.usage, std::move(err));
  } else {
    finish(slot, Status::Failed, bad.wait_error == 0 ? bad.status : -1, 0, &c.usage,
           std::move(err));
  }
}

void ProcessExecutor::Impl::cancel(std::uint32_t slot) {
  Child& c = children[slot];
  if (c.pid < 0 || c.term_sent) return;
  c.cancelled = !c.timed_out;
  c.term_sent = true;
  sys::kill_group(c.pid, SIGTERM);
  timers.push({Clock::now() + options.kill_grace, slot, c.gen});
}

void ProcessExecutor::Impl::on_timer(const Timer& t) {
  if (t.slot >= children.size()) return;
  Child& c = children[t.slot];
  if (!c.live || c.gen != t.gen || c.pid < 0) return;
  if (!c.term_sent) {
    c.timed_out = true;
    cancel(t.slot);
  } else {
    sys::kill_group(c.pid, SIGKILL);
  }
}

void ProcessExecutor::Impl::finish(std::uint32_t slot, Status status, int exit_code, int sig,
                                   const rusage* usage, std::string error) {
  Child& c = children[slot];
  ExecutionResult r;
  std::chrono::nanoseconds cgroup_cpu{0};  // includes descendants that were never waited for
  if (c.in_slot_cgroup) {
    // No limit, so no OOM to detect: the usage, and whatever the attempt left is killed. A slot
    // cgroup that cannot be reused cleanly is ended here; the next attempt makes a fresh one.
    Result<void> reusable;
    const CgroupUsage u = c.slot_cgroup.finish(reusable);
    cgroup_cpu = u.cpu;
    r.peak_memory = u.peak_memory;
    if (!reusable) c.slot_cgroup = detail::SlotCgroup();
    c.in_slot_cgroup = false;
  } else if (c.cgroup.valid()) {
    // Read before ending it: the counters go with the directory. Ending kills whatever the
    // attempt left running (a background grandchild), so nothing outlives it.
    const CgroupUsage u = c.cgroup.usage();
    cgroup_cpu = u.cpu;
    (void)c.cgroup.end();
    r.peak_memory = u.peak_memory;
    const bool oom =
        u.oom_kill_counted ? u.oom_kills > 0 : (sig == SIGKILL && u.memory_failcnt > 0);
    if (c.memory_limit > 0 && oom && (status == Status::Failed || status == Status::Signaled)) {
      const std::string limit = task::format_bytes(c.memory_limit);
      status = Status::OutOfMemory;
      error = std::string("killed by its memory limit: peak ")
                  .append(task::format_bytes(u.peak_memory))
                  .append(" of ")
                  .append(limit)
                  .append(" (memory = \"")
                  .append(limit)
                  .append("\"); ask for more memory or retry_on = [\"oom\"] with memory = \"")
                  .append(limit)
                  .append(" * attempt\"");
    }
  }
  r.memory_limit = c.memory_limit;
  r.allocation = std::move(c.allocation);
  c.allocation.reset();
  r.id = c.id;
  r.name = std::move(c.name);
  r.status = status;
  r.exit_code = exit_code;
  r.signal = sig;
  r.wall = Clock::now() - c.started;
  if (usage) {
    r.cpu = timeval_ns(usage->ru_utime) + timeval_ns(usage->ru_stime);
    r.max_rss_kb = usage->ru_maxrss;
    r.cpu = std::max(r.cpu, cgroup_cpu);
  }
  r.stdout_data = std::move(c.out.data);
  r.stderr_data = std::move(c.err.data);
  r.stdout_bytes = c.out.total;
  r.stderr_bytes = c.err.total;
  c.out.sink = c.err.sink = nullptr;
  c.sink.reset();  // closes the attempt's log files before the result is delivered
  r.error = std::move(error);
  Completion done = std::move(c.done);
  // Deregistering the stop callback waits for one running on another thread; it only takes
  // `mu`, which we do not hold here.
  c.on_stop.reset();
  c.stages.clear();
  c.out.fd.reset();
  c.err.fd.reset();
  c.stdin_fd.reset();
  c.pid = -1;
  c.live = false;
  free_slots.push_back(slot);
  --running;
  done(std::move(r));
  {
    std::lock_guard lock(mu);
    if (--outstanding == 0) idle_cv.notify_all();
  }
}

}  // namespace pepita::executor
