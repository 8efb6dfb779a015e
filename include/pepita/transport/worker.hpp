#pragma once
// The worker daemon behind `pepita worker`: listens (loopback by default), authenticates every
// client with the pre-shared key, announces its slots, runs Process tasks and registered
// functions on them, caches uploaded blobs by SHA-256, heartbeats, and on stop() drains —
// running tasks finish and report, queued ones are returned so the driver re-dispatches them.
// Protocol: docs/protocol.md.
//
//   WorkerOptions o{.listen = "127.0.0.1:0", .key = PEPITA_TRY(Key::from_file(path)), .slots = 4};
//   auto w = PEPITA_TRY(Worker::start(std::move(o)));
//   std::printf("listening on %s\n", w->endpoint().to_string().c_str());
//   w->wait();  // until stop() (e.g. from a SIGTERM handler thread)

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "pepita/error.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/transport/connection.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/messages.hpp"

namespace pepita::transport {

/// A named function a worker runs for TaskKind::Function submits: gets the task's stdin bytes,
/// returns its output text or an error.
using WorkerFunction = std::function<Result<std::string>(std::string_view input, std::stop_token)>;

struct WorkerOptions {
  std::string listen = "127.0.0.1:7070";  // port 0 picks a free port (see Worker::endpoint)
  /// Dial-out mode when set: instead of listening, connect to the driver at this "host:port"
  /// (cluster jobs and hosts behind NAT accept no inbound connections). The worker still
  /// verifies the driver's key, re-dials with backoff when the connection ends, and stops
  /// itself once the driver has been unreachable for give_up_after.
  std::string connect_to;
  std::chrono::milliseconds give_up_after{60000};
  std::optional<Key> key;           // required: no key, no worker
  bool allow_non_loopback = false;  // must be set to listen beyond loopback
  std::uint32_t slots = 0;          // 0: one per online CPU
  /// Blob cache. Empty: $TMPDIR/pepita-worker-<uid>-<port> for a worker listening on a port
  /// given (kept, so a restart there finds its blobs); for a dialing worker or port 0, a fresh
  /// $TMPDIR/pepita-worker-<uid>-XXXXXX that the worker removes when it ends.
  std::string cache_dir;
  /// Cap of the staged-input store (<cache_dir>/blobs, issue 24; `pepita worker
  /// --cache-size`): past it the least recently used blob no task holds is evicted. 0: no cap.
  std::uint64_t cache_size = 10ull << 30;
  /// Fault injection for tests: called with each chunk of a declared output after it was
  /// hashed and before it is sent, so a test can corrupt what reaches the driver.
  std::function<void(std::string_view output, std::string& chunk)> output_chunk_hook;
  std::string name;  // shown to drivers; empty: the host name
  std::map<std::string, std::string> labels;
  /// What this worker offers for resource requests (issue 22), advertised at registration: the
  /// dispatcher places tasks by it and sends each attempt's Allocation, which the worker runs
  /// the process task with (its cgroup, cores and GPU variables). nullopt: Inventory::detect()
  /// at start (`pepita worker --resources/--cpus/--memory` override what it detects).
  std::optional<task::Inventory> inventory;
  /// The least sandbox a process task from a driver runs in (issue 23; `pepita worker
  /// --sandbox`, whose default is standard): each task runs in raise_to_floor(its own policy,
  /// this). none is the explicit opt-out: drivers' binaries then run as the worker's user
  /// unless they ask for a sandbox themselves. With a floor, a task naming read_only or
  /// writable binds (paths of the driver's machine) is refused: ship inputs as files.
  /// Functions (this worker's own code, `functions` below) run in-process, without one.
  task::SandboxPolicy sandbox = task::SandboxPolicy::standard();
  /// Added to the built-ins noop, echo and sleep_ms; one with a built-in's name replaces it.
  /// Registered functions run on the worker's CpuExecutor threads. The built-ins noop and echo
  /// (which cannot block) are answered on the session thread that read the Submit, with
  /// Started and Result in one write (issue 27).
  std::map<std::string, WorkerFunction> functions;
  /// Issue 27, HyperQueue's zero-worker mode (`pepita worker --zero-worker`): every task a
  /// driver submits is reported Started, then Succeeded (exit code 0, no output, no declared
  /// outputs) at once, without staging, spawning or calling anything — so a driver measures
  /// the protocol's own cost per task.
  bool zero_worker = false;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds dead_after{5000};  // drop a client silent for this long
  ConnectionOptions connection;                // handshake/io timeouts, payload limit
  std::size_t max_clients = 64;
  std::function<void(std::string_view)> log;  // default: one line to stderr
};

/// The sandbox a task asking for `asked` runs in on a worker whose floor is `floor`: every part
/// at least as strict as both — a namespace or filter either turns on is on, no network if
/// either says none, the smaller disk quota and rlimits (0 = unlimited counts as the larger),
/// the floor's id when the floor maps users (the worker, not a driver, picks who tasks run
/// as). A task asking for at least the floor keeps its policy unchanged (level included);
/// otherwise the level is the preset the result equals (standard, strict) or custom.
task::SandboxPolicy raise_to_floor(const task::SandboxPolicy& asked,
                                   const task::SandboxPolicy& floor);

/// The environment variable by which a driver says that a process task may run on one of the
/// worker's persistent servers (value "1"): a program that, started as its argv plus "--serve 3",
/// answers each frame of its stdin on fd 3 with one frame of its stdout (executor/serve.hpp) —
/// pepita's Python function runner. The program gets it as one more variable and ignores it, so
/// a worker that predates it (or one that declines, see runs_on_server) runs the task as today.
inline constexpr std::string_view kServeEnv = "PEPITA_SERVE";

/// Whether a submitted task runs on a persistent server (one per slot, started on first use,
/// reused while the next task's command and environment are the same, replaced when it dies or
/// is killed on a timeout or cancel) rather than as a process of its own: it is a process task
/// asking for it (kServeEnv = "1"), and it needs nothing a server cannot honour — no sandbox
/// (`effective` is its policy raised to the worker's floor: a worker with any floor but none
/// runs it as a sandboxed process), no allocation with limits (cpus, cores, memory, GPUs, named
/// resources or pids), no shipped files, inputs, outputs or cwd, an absolute path.
bool runs_on_server(const SubmitMsg& m, const task::SandboxPolicy& effective);

struct WorkerStats {
  std::uint64_t clients_accepted = 0;
  std::uint64_t clients_rejected = 0;  // failed the handshake or broke the protocol
  std::uint64_t tasks_run = 0;
  std::uint64_t tasks_returned = 0;  // handed back unstarted on drain or disconnect
  std::uint64_t blobs_stored = 0;
  // Issue 24, staged inputs and outputs:
  std::uint64_t blobs_fetched = 0;      // input blobs fetched from drivers and verified
  std::uint64_t bytes_fetched = 0;      // their bytes received (a resumed fetch: only the rest)
  std::uint64_t blobs_evicted = 0;      // removed from the store past its cap
  std::uint64_t output_bytes_sent = 0;  // declared outputs' bytes sent back
};

class Worker {
 public:
  enum class StopMode : std::uint8_t {
    Drain,  // stop accepting; finish running tasks and report; return queued ones
    Kill,   // also kill running tasks (reported Cancelled)
  };

  /// Validates options, detects the inventory when none is given, creates the cache directory
  /// (mode 0700), binds and starts serving.
  /// InvalidArgument without a key; PermissionDenied for a non-loopback address without
  /// allow_non_loopback; errno-based errors from bind.
  static Result<std::unique_ptr<Worker>> start(WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Where it listens (with the real port when 0 was asked for), or the driver it dials.
  Endpoint endpoint() const;
  /// Begins shutdown; returns at once. Safe from any thread, idempotent.
  void stop(StopMode mode = StopMode::Drain);
  /// Blocks until shutdown has finished (every client told Drain and closed) — after stop(),
  /// or in dial-out mode when the driver stayed unreachable for give_up_after.
  void wait();
  WorkerStats stats() const;

  struct Impl;
  explicit Worker(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::transport
