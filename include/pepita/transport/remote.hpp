#pragma once
// The driver side: RemoteDispatcher keeps one authenticated connection per worker (reconnecting
// with exponential backoff), leases queued tasks pull-style — a worker gets a task only when it
// has a free slot, so faster workers take more — watches heartbeats (suspect, then failed by a
// phi-accrual fault::FailureDetector), and re-dispatches a lost worker's in-flight tasks. A task
// with a resource request goes only to a worker whose advertised Inventory has room for it
// (placement.hpp: one task::Ledger per worker, the pool's reservation rule). Each
// task's completion callback runs exactly once, however many attempts it took; late duplicates are
// counted and dropped.
//
//   auto d = PEPITA_TRY(RemoteDispatcher::start({.workers = {"127.0.0.1:7070"}, .key = key}));
//   RemoteTask t{.id = 1};
//   t.spec.path = "/bin/echo"; t.spec.args = {"hi"};
//   RemoteOutcome out = PEPITA_TRY(d->run(std::move(t)));  // out.result.stdout_data == "hi\n"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/log_sink.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/transport/connection.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/messages.hpp"

namespace pepita::transport {

/// One task for a remote worker. `spec.attempt` is managed by the dispatcher. Files named in
/// `spec.files` must have been added with add_blob(); a `spec.path` of "blob:<hex>" runs an
/// uploaded binary.
struct RemoteTask {
  std::uint64_t id = 0;  // unique among live tasks of this dispatcher; never 0
  SubmitMsg spec{};
  /// What the task needs on its worker (issue 22). The dispatcher leases it only to a worker
  /// whose advertised Inventory has room for `resources.at_attempt(resource_attempt)` now, and
  /// sends the Allocation it took (spec.allocation is set by the dispatcher). Empty: any worker
  /// with a free slot.
  task::ResourceRequest resources{};
  /// The attempt the request grows with (Growth::PerAttempt): the pool's attempt, 1 first.
  std::uint32_t resource_attempt = 1;
  /// Issue 24: the files on this machine that spec.inputs describe (same order; each is served
  /// to the worker in chunks with pread when it asks), and the directory spec.outputs are
  /// written under: each arrives as <path>.pepita-part, is checked against the size and
  /// SHA-256 the worker reports, and is renamed into place; a mismatch fails the task and
  /// leaves nothing at the path.
  std::vector<std::string> input_sources{};
  std::string output_dir{};
  /// Live logs (issue 24): where the chunks the worker streams for this task go (nullptr:
  /// dropped). Called on the worker's connection thread.
  std::shared_ptr<task::LogSink> log_sink{};
};

/// How a task ended. `result.status` is Lost-free: a task that could not be placed after
/// max_attempts dispatches reports SpawnError with the reason, a shutdown reports Cancelled.
struct RemoteOutcome {
  std::uint64_t id = 0;
  ResultMsg result{};
  std::string worker{};        // endpoint that produced the result (empty if none)
  std::uint32_t attempts = 0;  // dispatches made, 1 when nothing went wrong
};

enum class WorkerState : std::uint8_t { Connecting, Alive, Suspect, Dead, Draining };
std::string_view to_string(WorkerState state) noexcept;

struct WorkerInfo {
  std::string endpoint{};
  std::string name{};
  WorkerState state = WorkerState::Connecting;
  std::uint32_t slots = 0;
  std::uint32_t in_flight = 0;
  std::uint64_t completed = 0;
  std::uint32_t connects = 0;   // successful handshakes so far (reconnects + 1)
  double phi = 0.0;             // the failure detector's suspicion at its last check
  task::Inventory inventory{};  // what it advertised at its last registration (protocol 3)
};

struct RemoteOptions {
  std::vector<std::string> workers;  // "host:port" each, dialed (and re-dialed) by the driver
  /// When set ("host:port", port 0 picks one), also accept workers that dial in
  /// (`pepita worker --connect`): each one that proves the key joins until its connection ends.
  /// Either workers or listen is required.
  std::string listen;
  std::optional<Key> key;  // required
  std::string name = "pepita-driver";
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds suspect_after{3000};  // no frame this long: lease nothing new
  std::chrono::milliseconds dead_after{5000};     // no frame this long: drop it, re-dispatch
  /// Phi-accrual threshold of the failure detector (fault::FailureDetector; Akka and Cassandra
  /// use 8). Past suspect_after of silence, a worker whose frames came regularly is declared
  /// failed (dropped, its tasks re-dispatched) once phi reaches this, before dead_after; one
  /// whose frames came irregularly gets more slack, up to dead_after. 0 turns phi off: only
  /// dead_after decides. InvalidArgument when negative or not a number.
  double phi_threshold = 8.0;
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_max{5000};
  std::uint32_t max_attempts = 5;
  /// When no worker has been up for this long, queued tasks fail (SpawnError, naming the last
  /// connection error) instead of waiting; 0 waits forever (workers may come later).
  std::chrono::milliseconds give_up_without_workers{0};
  ConnectionOptions connection;
  std::function<void(std::string_view)> log;  // default: stderr
};

class RemoteDispatcher {
 public:
  using Callback = std::function<void(RemoteOutcome)>;

  /// Parses the endpoints and starts one connection thread per worker; connecting happens in
  /// the background, so an unreachable worker is not an error here. InvalidArgument for no key,
  /// no workers or a malformed address.
  static Result<std::unique_ptr<RemoteDispatcher>> start(RemoteOptions options);
  /// Stops: tasks not yet finished get a Cancelled outcome, connections close.
  ~RemoteDispatcher();
  RemoteDispatcher(const RemoteDispatcher&) = delete;
  RemoteDispatcher& operator=(const RemoteDispatcher&) = delete;

  /// Keeps `data` to upload to each worker before the first task that names it; returns its
  /// SHA-256 for FileRef::sha256 or "blob:<hex>" paths.
  Digest add_blob(std::string data);

  /// Queues a task; `done` runs exactly once on a dispatcher thread (keep it short).
  /// InvalidArgument for id 0, an id already in flight or an invalid resource request;
  /// Cancelled after shutdown began. A task whose request fits none of the known workers (see
  /// can_ever_fit) completes at once as SpawnError with the reason (`done` may then run on
  /// this thread, before submit returns).
  Result<void> submit(RemoteTask task, Callback done);
  /// submit() and wait for the outcome.
  Result<RemoteOutcome> run(RemoteTask task);
  /// Cancels task `id`: a queued task completes at once as Cancelled; a running one is told to
  /// stop (its worker kills it and reports Cancelled). No-op for unknown or finished ids.
  void cancel(std::uint64_t id);
  /// Waits until every submitted task has completed, or `timeout` passes (false then).
  bool wait_idle(std::chrono::milliseconds timeout = std::chrono::hours(24));

  std::vector<WorkerInfo> workers() const;
  /// Where dialing workers connect (the real port), when RemoteOptions::listen was set.
  std::optional<Endpoint> listen_endpoint() const;
  /// Whether a task asking `request` could ever run on one of the workers that have registered
  /// (a configured worker that is down still counts: it is re-dialed). OK when none has
  /// registered yet: nothing is known, the task is accepted, and once every configured worker
  /// has registered (or, with only dial-in workers, once one has) a queued task that fits none
  /// of them fails as a SpawnError with this same reason. Unsupported otherwise: "needs 4 GPUs;
  /// the largest worker has 2".
  Result<void> can_ever_fit(const task::ResourceRequest& request) const;
  /// Tasks submitted and not yet completed (queued or running) — the demand an elastic
  /// launcher sizes its workers by.
  std::size_t backlog() const;
  /// Results dropped because their task had already completed (a re-dispatched task's first
  /// attempt finishing late).
  std::uint64_t duplicates_dropped() const;

  struct Impl;
  explicit RemoteDispatcher(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::transport
