#pragma once
// The worker daemon's state, shared by its sections: listener and dial-out (worker.cpp), one
// session per client with job intake (session.cpp), execution handed to executors (execution.cpp)
// and result sending (results.cpp). Nothing here blocks a thread per slot: attempts go to
// executor::ProcessExecutor (processes) and executor::CpuExecutor (functions; the built-ins noop
// and echo, which cannot block, are answered where they are launched) asynchronously,
// and a process's completion comes back to the client's own session thread (a function's is
// reported where it completes; Connection::send is thread-safe).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pepita/core/sha256.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/executor/cpu.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/transport/connection.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/worker.hpp"
#include "worker/blob_store.hpp"
#include "worker/chunk_hasher.hpp"

namespace pepita::transport {
namespace worker {

using Clock = std::chrono::steady_clock;

struct Client;

struct Job {
  std::shared_ptr<Client> client;
  std::uint64_t id = 0;
  SubmitMsg msg;
  std::atomic<bool> cancel{false};
  std::stop_source stop;
  bool holds_slot = false;  // launched: counts in Impl::running until reported
  std::string scratch;      // staged files' directory, removed after the attempt
  bool pinned = false;      // holds its inputs in the store (released by report)
};

/// An input blob being fetched from a driver (issue 24), through the session of `via`.
struct Fetch {
  const Client* via = nullptr;
  std::uint64_t size = 0;
  UniqueFd fd;  // the <hex>.part file
  // SHA-256 of bytes [0, received), on its own thread (reads `fd` back through a duplicate).
  std::unique_ptr<worker::ChunkHasher> hasher;
  std::uint64_t received = 0;
  std::uint64_t requested = 0;
  // Whole transfers that did not hash to the blob's name (tampered or damaged in transit): the
  // first is fetched again from byte 0, the second fails the inputs that need it.
  std::uint32_t mismatches = 0;
};

/// An attempt's result on its way back to the client's session thread.
struct Done {
  std::shared_ptr<Job> job;
  executor::ExecutionResult result;
  bool function = false;
};

struct Client {
  std::unique_ptr<Connection> conn;
  std::string peer;
  UniqueFd wake;  // eventfd: an attempt completed, a job finished, or the worker is stopping
  std::atomic<bool> open{true};
  std::atomic<bool> finished{false};
  std::mutex jobs_mu;
  std::map<std::uint64_t, std::shared_ptr<Job>> jobs;  // submitted and not yet reported
  std::vector<Done> done;                              // guarded by jobs_mu
  // Killed by a signal while the worker may be being stopped with it: held back until the
  // worker's own stop arrives or the deadline passes (session thread only).
  std::vector<std::pair<Clock::time_point, Done>> parked;
  std::thread thread;
  std::uint64_t serial = 0;
  // Issue 23: the client's first task raised to the worker's sandbox floor is logged, the
  // rest are not (launcher threads; guarded by jobs_mu).
  bool told_floor = false;
  // Issue 24: jobs waiting for their inputs to be fetched (session thread only), and fetches
  // through this session that failed (digest -> why), read by the next advance_staging.
  std::vector<std::shared_ptr<Job>> staging;
  std::map<Digest, std::string> fetch_errors;
  // Threads sending a finished job's outputs back (joined when the session ends).
  std::mutex senders_mu;
  std::vector<std::pair<std::shared_ptr<std::atomic<bool>>, std::jthread>> senders;
};

/// The functions every worker has: noop, echo, sleep_ms (execution.cpp).
std::map<std::string, WorkerFunction> builtin_functions();

void signal_fd(int fd);
void clear_fd(int fd);
std::int64_t now_ns();

/// Live logs (issue 24, log_forward.cpp): a sink sending each chunk of task `id`'s output to
/// its driver as a Log frame. Backpressure, not loss: send blocks while the connection's socket
/// is full, which holds the process executor's reader, so the child blocks on its full pipe.
/// After the connection closed, chunks are dropped (the result still carries the capped output).
std::shared_ptr<task::LogSink> forward_logs(std::shared_ptr<Client> client, std::uint64_t id);

/// A directory this worker made for itself and removes, with all it holds, when it ends.
class OwnedDir {
 public:
  OwnedDir() = default;
  OwnedDir(const OwnedDir&) = delete;
  OwnedDir& operator=(const OwnedDir&) = delete;
  ~OwnedDir() {
    std::error_code ec;  // best effort: nothing to report to once the worker is gone
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  /// Takes `path` (made by the caller) to remove; at most once.
  void adopt(std::string path) { path_ = std::move(path); }

 private:
  std::string path_;
};

}  // namespace worker

struct Worker::Impl {
  using Job = worker::Job;
  using Client = worker::Client;
  using Done = worker::Done;

  // First, so it goes last: the blob store and every task's scratch live inside.
  worker::OwnedDir owned_cache_dir;
  WorkerOptions opts;
  std::optional<Listener> listener;
  Endpoint bound;  // set once in start(); the listener itself is closed on stop
  std::string cache_dir;
  std::unique_ptr<worker::BlobStore> store;  // staged inputs (issue 24)
  std::mutex fetch_mu;
  std::map<Digest, worker::Fetch> fetches;  // guarded by fetch_mu
  std::atomic<std::uint64_t> blobs_fetched{0}, bytes_fetched{0}, output_bytes{0};
  std::map<std::string, WorkerFunction> functions;
  // Functions answered on the thread that launches them (execution.cpp): the built-ins that
  // cannot block (noop, echo) unless the options replaced them.
  std::set<std::string> inline_functions;
  // Spawn, watch (pidfd + epoll), time out and reap process tasks on their reactor thread.
  std::unique_ptr<executor::ProcessExecutor> processes;
  // Runs function tasks on its scheduler's `slots` threads; made for the first function task,
  // so a worker that only runs processes has no thread per slot at all.
  std::mutex cpu_mu;
  std::unique_ptr<executor::CpuExecutor> cpu;  // guarded by cpu_mu
  // Runs process tasks that asked for a persistent server (runs_on_server): one per slot,
  // made for the first such task (executor/serve.hpp).
  std::shared_ptr<executor::Executor> served;  // guarded by cpu_mu
  UniqueFd stop_efd;
  std::atomic<bool> stopping{false};
  std::atomic<bool> kill_running{false};

  std::mutex mu;                           // guards queue, queue_closed, running, clients
  std::deque<std::shared_ptr<Job>> queue;  // submitted, waiting for a slot
  bool queue_closed = false;               // shutting down: new submits are returned
  std::uint32_t running = 0;               // launched and not yet reported (<= slots)
  std::list<std::shared_ptr<Client>> clients;

  std::thread acceptor;
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool done = false;
  std::once_flag joined;

  std::atomic<std::uint64_t> accepted{0}, rejected{0}, tasks_run{0}, returned{0}, blobs{0};
  std::uint64_t next_serial = 0;

  void log(const std::string& line);

  // ---- listener and dial-out (worker.cpp) ------------------------------------------------
  void accept_loop();
  void dial_loop();
  void start_client_locked(std::string peer, UniqueFd fd);
  void reap_clients(bool all);
  void shutdown_sequence();
  void cancel_all();

  // ---- one client: session and job intake (session.cpp) ---------------------------------
  void serve(const std::shared_ptr<Client>& c, UniqueFd fd);
  std::string run_client(const std::shared_ptr<Client>& c);
  Result<void> handle(const std::shared_ptr<Client>& c, const Message& m);
  Result<void> intake(const std::shared_ptr<Client>& c, std::uint64_t id, SubmitMsg msg);
  std::string blob_path(const Digest& d) const;
  Result<void> store_blob(const UploadMsg& up);

  // ---- staged inputs and outputs (staging.cpp, issue 24) ---------------------------------
  /// A submit with inputs: pins them and waits in the client's staging list.
  Result<void> intake_staged(const std::shared_ptr<Client>& c, const std::shared_ptr<Job>& job);
  /// Session thread: fails, returns or queues staging jobs, and starts the fetches they need.
  Result<void> advance_staging(const std::shared_ptr<Client>& c);
  Result<void> start_fetch(Client& c, const Digest& d, std::uint64_t size);
  Result<void> request_more(Client& c, const Digest& d, worker::Fetch& f);
  Result<void> on_blob_chunk(Client& c, const BlobChunkMsg& chunk, ByteSpan data);
  /// The client's session ended: its fetches stop (their .part files stay for a resume) and its
  /// staging jobs end.
  void abandon_staging(Client& c);
  /// Queues a job whose inputs are all present (or that has none).
  Result<void> enqueue(const std::shared_ptr<Client>& c, std::shared_ptr<Job> job);
  /// Places the job's inputs in its scratch directory.
  std::optional<ResultMsg> materialise_inputs(Job& job);
  /// A succeeded job with declared outputs: a thread hashes and sends each, then reports.
  void send_outputs_async(const std::shared_ptr<Job>& job, ResultMsg r);
  void send_outputs(const std::shared_ptr<Job>& job, ResultMsg r);

  // ---- execution (execution.cpp) ---------------------------------------------------------
  /// Launches queued jobs while fewer than `slots` run. Call with no lock held.
  void pump();
  void launch(const std::shared_ptr<Job>& job);
  std::optional<ResultMsg> launch_function(const std::shared_ptr<Job>& job);
  /// An inline function (see inline_functions): runs it here, then reports Started and Result
  /// in one write.
  void run_inline(const std::shared_ptr<Job>& job, const WorkerFunction& fn);
  std::optional<ResultMsg> launch_process(const std::shared_ptr<Job>& job);
  /// A process task on a persistent server (runs_on_server said it may).
  std::optional<ResultMsg> launch_served(const std::shared_ptr<Job>& job);
  std::optional<ResultMsg> start_reported(executor::Executor& exec, const task::Task& task,
                                          const std::shared_ptr<Job>& job, bool function);
  std::optional<ResultMsg> stage(Job& job, std::string& path, std::string& cwd);
  std::optional<ResultMsg> hand_to_sandbox_user(Job& job, const task::SandboxPolicy& sandbox,
                                                std::string& path, std::string& cwd);

  // ---- results (results.cpp) -------------------------------------------------------------
  /// An executor's completion: hands the result to the job's session thread.
  void post(Done d);
  /// On the session thread: turns completed attempts into Result frames. With `now_all`, parked
  /// results are released at once (the session is ending).
  void deliver(Client& c, bool now_all);
  ResultMsg to_message(Done& d);
  /// Sends `r` (when the client is still open), forgets the job and frees its slot. With
  /// `started`, the task's Started frame goes first, in the same write.
  void report(Job& job, const ResultMsg& r, const StartedMsg* started = nullptr);
};

}  // namespace pepita::transport
