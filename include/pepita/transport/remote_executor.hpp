#pragma once
// RemoteExecutor: the pool's Backend::Remote, implemented on the executor::Executor interface
// over a RemoteDispatcher. A process task (Task::binary(...).backend(Backend::Remote)) is sent
// to whichever worker has a free slot; lost workers' attempts are re-dispatched inside the
// dispatcher, so the pool sees exactly one completion per start().
//
//   auto pool = PEPITA_TRY(pool::Pool::builder()
//                              .executor(remote_workers({.remote = {.workers = {"10.0.0.2:7070"},
//                                                                   .key = key}}))
//                              .build());
//   pool.submit(PEPITA_TRY(Task::binary("/usr/bin/cc").args({"-c", "a.c"})
//                              .backend(task::Backend::Remote).build()));

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pepita/executor/executor.hpp"
#include "pepita/executor/registry.hpp"  // ExecutorFactory
#include "pepita/transport/remote.hpp"
#include "pepita/transport/result_codec.hpp"  // to_executor_status

namespace pepita::transport {

struct RemoteExecutorOptions {
  RemoteOptions remote;
  /// Attempts the pool may have outstanding here (the dispatcher queues beyond the workers'
  /// free slots and leases pull-style). 0: 64 per worker address.
  std::size_t slots = 0;
  /// Upload a task's binary when `path` names a local file (contains '/'), and run the cached
  /// copy on the worker ("blob:<sha256>"); otherwise the path is resolved on the worker host.
  bool ship_binaries = false;
  /// The backend name this executor serves: backend() returns it and start() refuses tasks of
  /// any other. slurm::SlurmExecutor serves "slurm" this way; `pepita run --worker` "remote".
  task::Backend backend = task::Backend::Remote;
};

class RemoteExecutor final : public executor::Executor {
 public:
  /// Starts the dispatcher (connections come up in the background). Errors: those of
  /// RemoteDispatcher::start (no key, no workers, bad address).
  static Result<std::shared_ptr<RemoteExecutor>> create(RemoteExecutorOptions options);
  ~RemoteExecutor() override;

  task::Backend backend() const noexcept override { return backend_; }
  std::size_t slots() const noexcept override { return slots_; }
  /// True: a task's ResourceRequest is placed on a worker by the dispatcher (one task::Ledger
  /// per worker, from the Inventory it advertised), not charged to this host. The attempt the
  /// request grows with is `task.allocation()->attempt` when the pool set one, else 1.
  bool places_resources() const noexcept override { return true; }
  /// RemoteDispatcher::can_ever_fit: against the workers registered so far ("needs 4 GPUs; the
  /// largest worker has 2"); accepted while none has registered.
  Result<void> can_ever_fit(const task::ResourceRequest& request) const override;
  /// InvalidArgument for function tasks (closures cannot travel; use TaskKind::Function with
  /// RemoteDispatcher for worker-registered functions), for tasks of a backend other than
  /// backend(), and for unreadable shipped binaries;
  /// Cancelled after shutdown(). Lost-worker retries happen inside; a task that lost its
  /// worker max_attempts times completes as LaunchFailed.
  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override;
  void shutdown() override;

  /// The dispatcher, for worker status (workers()) and blobs (add_blob()).
  RemoteDispatcher& dispatcher() noexcept { return *dispatcher_; }

  struct Private {
    explicit Private() = default;
  };
  RemoteExecutor(Private, std::unique_ptr<RemoteDispatcher> d, std::size_t slots, bool ship,
                 task::Backend backend);

 private:
  Result<std::string> shipped_path(const std::string& path);
  Result<void> stage_files(const task::Task& task, RemoteTask& rt);

  std::unique_ptr<RemoteDispatcher> dispatcher_;
  std::size_t slots_;
  bool ship_;
  task::Backend backend_;
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> shut_{false};
  std::mutex ship_mu_;
  std::map<std::string, std::string> shipped_;  // local path -> "blob:<hex>"
};

/// The Remote backend for a pool, created at build():
/// `Pool::builder().executor(transport::remote_workers({.remote = {.workers = {...}, .key = k}}))`.
executor::ExecutorFactory remote_workers(RemoteExecutorOptions options);

/// Registers "remote" in an executor::Registry (issue 21: how Pool::Builder::remote_workers
/// connects, without the pool depending on the transport). Settings: workers=host:port,... and
/// key=<path of the pre-shared key file, mode 0600> (both required), tls=on|off,
/// ship_binaries=on|off, give_up_after=<duration with no worker up before queued tasks fail;
/// default 30s, 0 waits forever>. AlreadyExists when "remote" is taken.
Result<void> register_remote(executor::Registry& registry);

}  // namespace pepita::transport
