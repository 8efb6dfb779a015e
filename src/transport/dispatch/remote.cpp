// RemoteDispatcher: per-worker connection threads feeding a LeaseTable (the FIFO of task ids,
// credit-based (pull) leasing, lease expiry, re-dispatch and exactly-once completion), heartbeats
// judged by a phi-accrual fault::FailureDetector (suspect, then failed), reconnects with jittered
// backoff (fault::RetryPolicy, fault::RetryState).
#include "pepita/transport/remote.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/executor/completion_batch.hpp"
#include "pepita/fault/failure_detector.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/transport/lease_table.hpp"
#include "pepita/transport/placement.hpp"

namespace pepita::transport {
namespace {

using Clock = std::chrono::steady_clock;
// Retry number at which RetryPolicy's ceiling has long reached reconnect_max (keeps the count
// from wrapping while a worker stays down for days).
constexpr std::uint32_t kMaxRetry = 64;

void signal_fd(int fd) { (void)sys::eventfd_signal(fd); }
void clear_fd(int fd) { (void)sys::eventfd_drain(fd); }

}  // namespace

std::string_view to_string(WorkerState state) noexcept {
  switch (state) {
    case WorkerState::Connecting: return "connecting";
    case WorkerState::Alive: return "alive";
    case WorkerState::Suspect: return "suspect";
    case WorkerState::Dead: return "dead";
    case WorkerState::Draining: return "draining";
  }
  return "unknown";
}

struct RemoteDispatcher::Impl {
  // What the table does not keep: the task to send and whom to tell when it completes.
  struct Payload {
    RemoteTask task;
    Callback done;
  };
  struct W {
    Endpoint ep;
    bool dialed_in = false;  // accepted on the listener: not re-dialed when it ends
    WorkerInfo info;
    std::vector<std::uint64_t> cancels;  // Cancel frames to send (guarded by mu)
    // Its advertised resources and what the tasks it holds took (guarded by mu); set at
    // registration.
    std::optional<WorkerLedger> resources;
    UniqueFd wake;  // eventfd: new work queued, or stopping
    // wake_all() signalled `wake` and the session has not drained it yet: a further signal
    // would add nothing (issue 27: a batch of N submits wrote the eventfd N times).
    std::atomic<bool> woken{false};
    std::thread thread;
  };
  using Completion = std::pair<Callback, RemoteOutcome>;

  RemoteOptions opts;
  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::condition_variable backoff_cv;
  // Queue, leases, expiry, requeue and exactly-once completion: the pure state machine the
  // connection threads feed (guarded by mu).
  std::optional<LeaseTable> table;
  // Liveness: every frame from worker `wi` is a heartbeat of detector worker `wi`; a Failed
  // verdict ends that worker's session, which re-queues its leases. Thread-safe on its own.
  std::optional<fault::FailureDetector> detector;
  std::unordered_map<std::uint64_t, Payload> payloads;  // until completion (guarded by mu)
  std::size_t pending = 0;                              // submitted, not completed
  std::map<Digest, std::shared_ptr<const std::string>> blobs;
  // Issue 24: declared inputs of live tasks, served to workers in chunks (guarded by mu).
  struct Source {
    std::string path;
    std::uint64_t size = 0;
    int refs = 0;
  };
  std::map<Digest, Source> sources;
  // A declared output arriving from a worker (one session's, keyed by task id and index).
  struct Incoming {
    UniqueFd fd;
    Sha256 hash;
    std::uint32_t attempt = 0;
    std::uint64_t size = 0;
    std::uint64_t received = 0;
    std::string part;
    std::string error;
  };
  using IncomingMap = std::map<std::pair<std::uint64_t, std::uint32_t>, Incoming>;
  std::vector<std::unique_ptr<W>> ws;  // grows when workers dial in; guarded by mu
  std::optional<Listener> listener;
  UniqueFd stop_efd;  // wakes the acceptor
  std::thread acceptor;
  bool stopping = false;
  Clock::time_point worker_seen = Clock::now();  // last time some worker was up
  std::string last_failure;                      // why the last connection attempt failed

  void log(const std::string& line) {
    if (opts.log) {
      opts.log(line);
    } else {
      std::fprintf(stderr, "pepita remote: %s\n", line.c_str());
    }
  }

  // Caller holds mu (ws may grow).
  void wake_all() {
    for (auto& w : ws) {
      if (!w->woken.exchange(true, std::memory_order_acq_rel)) signal_fd(w->wake.get());
    }
  }

  // Runs callbacks outside the lock; a task stops counting as pending only after its callback
  // returned, so wait_idle() means "every callback has run".
  void run_completions(std::vector<Completion>& done) {
    if (done.empty()) return;
    {
      // Issue 27: the pool writes its journal and starts the next tasks once for these.
      executor::CompletionBatch batch;
      for (auto& [cb, out] : done) {
        if (cb) cb(std::move(out));
      }
    }
    const std::size_t n = done.size();
    done.clear();  // destroy callbacks (and what they own) before locking: they may cancel()
    std::lock_guard lock(mu);
    pending -= n;
    if (pending == 0) idle_cv.notify_all();
  }

  // The table completed `id`: collect its callback; the caller holds mu and runs it after
  // unlocking.
  void complete_locked(std::uint64_t id, std::uint32_t attempts, ResultMsg r,
                       const std::string& worker, std::vector<Completion>& out) {
    auto it = payloads.find(id);
    if (it == payloads.end()) return;
    for (const auto& in : it->second.task.spec.inputs) {
      if (auto s = sources.find(in.sha256); s != sources.end() && --s->second.refs <= 0) {
        sources.erase(s);
      }
    }
    out.emplace_back(std::move(it->second.done), RemoteOutcome{id, std::move(r), worker, attempts});
    payloads.erase(it);
  }

  void update_in_flight_locked(std::size_t wi) {
    ws[wi]->info.in_flight = static_cast<std::uint32_t>(table->held(wi));
  }

  // Resources go back when a lease ends, however it ended (a result, a requeue, the worker
  // lost, the lease expired): what a task took on a worker stays taken exactly while the table
  // says that worker holds it. Caller holds mu.
  void reconcile_resources_locked() {
    for (std::size_t wi = 0; wi < ws.size(); ++wi) {
      auto& res = ws[wi]->resources;
      if (!res) continue;
      for (std::uint64_t id : res->holders()) {
        if (table->holder(id) != wi) res->release(id);
      }
    }
  }

  // The inventories of workers that registered and may still run tasks (a configured worker
  // is re-dialed when down; a dial-in worker that left is gone). Caller holds mu.
  std::vector<task::Inventory> known_inventories_locked() const {
    std::vector<task::Inventory> out;
    for (const auto& w : ws) {
      if (!w->resources) continue;
      if (w->dialed_in && w->info.state == WorkerState::Dead) continue;
      out.push_back(w->resources->inventory());
    }
    return out;
  }

  // Whether the workers are known: every configured worker has registered (with dial-in
  // workers only: one has). Caller holds mu.
  bool workers_known_locked() const {
    bool any = false;
    for (const auto& w : ws) {
      if (w->dialed_in) {
        any = any || w->resources.has_value();
      } else if (!w->resources) {
        return false;
      } else {
        any = true;
      }
    }
    return any;
  }

  // Once the workers are known, a queued task that fits none of them fails instead of waiting
  // for a worker that may never come: task `only`, or every queued one. Caller holds mu.
  void fail_unfit_locked(std::vector<Completion>& out, std::optional<std::uint64_t> only = {}) {
    if (!workers_known_locked()) return;
    const auto known = known_inventories_locked();
    std::vector<std::pair<std::uint64_t, std::string>> unfit;
    auto check = [&](std::uint64_t id, const Payload& p) {
      if (p.task.resources.empty() || table->holder(id) || table->completed(id)) return;
      auto fits = can_ever_fit_any(known, p.task.resources.at_attempt(p.task.resource_attempt));
      if (!fits) unfit.emplace_back(id, fits.error().message());
    };
    if (only) {
      if (auto it = payloads.find(*only); it != payloads.end()) check(it->first, it->second);
    } else {
      for (const auto& [id, p] : payloads) check(id, p);
    }
    for (auto& [id, why] : unfit) {
      const LeaseTable::CancelVerdict v = table->cancel(id);
      if (v.action != LeaseTable::CancelAction::Completed) continue;
      log("task " + std::to_string(id) + " cannot run on any worker: " + why);
      complete_locked(
          id, v.attempts,
          ResultMsg{.status = TaskStatus::SpawnError, .exit_code = -1, .error = std::move(why)}, "",
          out);
    }
  }

  // A live-log chunk of task `id` (issue 24): to its sink, outside the lock. A chunk for a task
  // that already completed (or was never ours) is dropped. Returns why the frame is bad, or "".
  std::string on_log(std::uint64_t id, ByteSpan payload) {
    auto chunk = decode_log(payload);
    if (!chunk) return chunk.error().to_string();
    std::shared_ptr<task::LogSink> sink;
    {
      std::lock_guard lock(mu);
      if (auto it = payloads.find(id); it != payloads.end()) sink = it->second.task.log_sink;
    }
    if (sink) sink->write(static_cast<task::LogStream>(chunk->stream), chunk->data);
    return {};
  }

  void on_result(std::size_t wi, std::uint64_t id, ResultMsg r, std::vector<Completion>& out) {
    std::lock_guard lock(mu);
    W& w = *ws[wi];
    const bool returned = r.status == TaskStatus::Returned;
    const auto report = returned                            ? LeaseTable::Report::Returned
                        : r.status == TaskStatus::Cancelled ? LeaseTable::Report::Cancelled
                                                            : LeaseTable::Report::Final;
    const LeaseTable::Verdict v = table->on_result(wi, id, report);
    reconcile_resources_locked();
    update_in_flight_locked(wi);
    switch (v.action) {
      case LeaseTable::Action::Duplicate:
      case LeaseTable::Action::Ignored: return;
      case LeaseTable::Action::Requeued: wake_all(); return;
      case LeaseTable::Action::CompleteCancelled:
        r.status = TaskStatus::Cancelled;
        if (returned) r.error = "cancelled before it started";
        break;
      case LeaseTable::Action::Complete: break;
    }
    ++w.info.completed;
    complete_locked(id, v.attempts, std::move(r), w.ep.to_string(), out);
  }

  // The worker's connection ended: what it held runs elsewhere (a task we were asked to cancel
  // completes Cancelled instead).
  void requeue_inflight(std::size_t wi, std::vector<Completion>& out) {
    std::lock_guard lock(mu);
    W& w = *ws[wi];
    const LeaseTable::Released r = table->worker_lost(wi);
    reconcile_resources_locked();
    for (const auto& c : r.cancelled) {
      complete_locked(c.id, c.attempts,
                      ResultMsg{.status = TaskStatus::Cancelled,
                                .exit_code = -1,
                                .error = "cancelled; its worker went away before reporting"},
                      w.ep.to_string(), out);
    }
    if (r.leases > 0) {
      log("re-dispatching " + std::to_string(r.leases) + " task(s) of " + w.ep.to_string());
      wake_all();
    }
    update_in_flight_locked(wi);
  }

  // Leases whose worker has not been heard from for dead_after go back to the queue, even when
  // that worker's own session thread is stuck (in a send to a peer that stopped reading): any
  // session's tick runs this. Caller holds mu.
  void expire_locked(Clock::time_point now, std::vector<Completion>& out) {
    const LeaseTable::Released r = table->expire(now);
    if (r.leases == 0) return;
    reconcile_resources_locked();
    for (const auto& c : r.cancelled) {
      complete_locked(c.id, c.attempts,
                      ResultMsg{.status = TaskStatus::Cancelled,
                                .exit_code = -1,
                                .error = "cancelled; its worker went silent before reporting"},
                      "", out);
    }
    if (!r.requeued.empty()) {
      log(
          pepita::fmt("re-dispatching {} task(s) whose lease expired (no frame from the holder "
                      "for {} ms)",
                      r.requeued.size(), opts.dead_after.count()));
      wake_all();
    }
    for (std::size_t i = 0; i < ws.size(); ++i) update_in_flight_locked(i);
  }

  // With no worker up for give_up_without_workers, queued tasks fail instead of waiting for
  // a worker that may never come (a wrong address or key). Caller holds mu.
  void give_up_without_workers_locked(std::vector<Completion>& out) {
    if (opts.give_up_without_workers.count() <= 0 || table->queued() == 0) return;
    for (const auto& w : ws) {
      if (w->info.state != WorkerState::Dead && w->info.state != WorkerState::Connecting) return;
    }
    if (Clock::now() - worker_seen < opts.give_up_without_workers) return;
    const std::string why = "no worker reachable for " +
                            std::to_string(opts.give_up_without_workers.count()) + " ms (" +
                            last_failure + ")";
    const auto failed = table->drain_queue();
    for (const auto& f : failed) {
      complete_locked(f.id, f.attempts,
                      ResultMsg{.status = TaskStatus::SpawnError, .exit_code = -1, .error = why},
                      "", out);
    }
    log(why + ": failing " + std::to_string(failed.size()) + " queued task(s)");
  }

  void set_state(std::size_t wi, WorkerState s) {
    std::lock_guard lock(mu);
    ws[wi]->info.state = s;
  }

  // Leases queued tasks into free slots of worker `wi`. Returns the Submit payloads to send.
  std::vector<std::pair<std::uint64_t, SubmitMsg>> lease(std::size_t wi,
                                                         std::vector<Completion>& out) {
    std::vector<std::pair<std::uint64_t, SubmitMsg>> batch;
    std::lock_guard lock(mu);
    W& w = *ws[wi];
    if (w.info.state != WorkerState::Alive) return batch;
    // Each queued task with a request goes here only when this worker's ledger gives it an
    // Allocation now, and not past the first task that waits for room here (reservation).
    LeaseTable::AdmitFn admit;
    if (w.resources) {
      w.resources->begin_scan();
      admit = [this, &w](std::uint64_t id, std::uint32_t) {
        const RemoteTask& t = payloads.at(id).task;
        return w.resources->admit(id, t.resources, t.resource_attempt);
      };
    } else {
      // Registered without resources (cannot happen in protocol 3): only tasks that ask for
      // nothing.
      admit = [this](std::uint64_t id, std::uint32_t) {
        return payloads.at(id).task.resources.empty() ? LeaseTable::Admit::Take
                                                      : LeaseTable::Admit::Skip;
      };
    }
    const LeaseTable::Leased leased = table->lease(wi, w.info.slots, Clock::now(), admit);
    for (const auto& f : leased.exhausted) {
      ResultMsg r{.attempt = f.attempts,
                  .status = TaskStatus::SpawnError,
                  .exit_code = -1,
                  .error = "task lost its worker " + std::to_string(f.attempts) +
                           " times; giving up (max_attempts)"};
      complete_locked(f.id, f.attempts, std::move(r), "", out);
    }
    for (const auto& g : leased.granted) {
      SubmitMsg m = payloads.at(g.id).task.spec;
      m.attempt = g.attempt;
      m.allocation.reset();
      if (w.resources) {
        if (const task::Allocation* a = w.resources->allocation(g.id)) m.allocation = *a;
      }
      batch.emplace_back(g.id, std::move(m));
    }
    update_in_flight_locked(wi);
    return batch;
  }

  Result<void> ensure_blobs(Connection& conn, const SubmitMsg& m, std::set<Digest>& uploaded) {
    std::vector<Digest> need;
    for (const auto& f : m.files) need.push_back(f.sha256);
    if (m.path.starts_with("blob:")) {
      if (auto d = from_hex(m.path.substr(5)); d && d->size() == 32) {
        Digest dg{};
        std::copy(d->begin(), d->end(), dg.begin());
        need.push_back(dg);
      }
    }
    for (const Digest& d : need) {
      if (uploaded.contains(d)) continue;
      std::shared_ptr<const std::string> data;
      {
        std::lock_guard lock(mu);
        if (auto it = blobs.find(d); it != blobs.end()) data = it->second;
      }
      if (!data) continue;  // the worker reports the missing blob as a SpawnError
      PEPITA_TRY_VOID(
          conn.send(MessageType::Upload, 0, encode(UploadMsg{.sha256 = d, .data = *data})));
      uploaded.insert(d);
    }
    return {};
  }

  // A worker asks for bytes of a declared input: read them with pread (bounded memory, however
  // large the file) and send them, or why not.
  Result<void> serve_fetch(Connection& conn, const FetchBlobMsg& f,
                           std::map<Digest, UniqueFd>& open_inputs, std::string& buf) {
    BlobChunkMsg reply{.sha256 = f.sha256};
    std::string path;
    std::uint64_t size = 0;
    bool known = false;
    {
      std::lock_guard lock(mu);
      if (auto it = sources.find(f.sha256); it != sources.end()) {
        known = true;
        path = it->second.path;
        size = it->second.size;
      }
    }
    if (!known) {
      reply.error = "no live task of this driver declares an input with SHA-256 " +
                    to_hex(f.sha256) + " (finished or cancelled)";
    } else if (f.offset >= size) {
      reply.error =
          pepita::fmt("offset {} is past the end of input {} ({} bytes)", f.offset, path, size);
    } else if (f.length > kMaxChunk) {
      reply.error =
          pepita::fmt("a chunk of {} bytes was asked for; at most {}", f.length, kMaxChunk);
    } else {
      auto fd = open_inputs.find(f.sha256);
      if (fd == open_inputs.end()) {
        UniqueFd opened(sys::open(path.c_str(), O_RDONLY));
        if (opened) fd = open_inputs.emplace(f.sha256, std::move(opened)).first;
      }
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(f.length, size - f.offset));
      if (fd == open_inputs.end()) {
        reply.error = "cannot open input " + path + " on the driver";
      } else if (!conn.encrypted()) {
        // Without TLS the bytes go from the page cache to the socket by sendfile: no copy here
        // (a plain pread + send copies each byte twice). A file that no longer holds them is
        // refused before the frame starts; one that shrinks during the send ends the connection
        // (the worker resumes from its partial file once the task is submitted again).
        const std::int64_t have = sys::file_size(fd->second.get());
        if (have < 0 || static_cast<std::uint64_t>(have) < f.offset + n) {
          reply.error = "input " + path + " shrank on the driver while it was sent";
        } else {
          reply.offset = f.offset;
          reply.size = size;
          return conn.send_bulk_file(MessageType::BlobChunk, 0, encode(reply), fd->second.get(),
                                     f.offset, n, "input " + path);
        }
      } else {
        // Under TLS: read into the session's one chunk buffer and sent from it as a bulk frame
        // (TLS encrypts it in user space anyway).
        buf.resize(n);
        if (sys::pread_full(fd->second.get(), buf.data(), n, f.offset) !=
            static_cast<std::int64_t>(n)) {
          reply.error = "input " + path + " shrank on the driver while it was sent";
        } else {
          reply.offset = f.offset;
          reply.size = size;
          return conn.send_bulk(MessageType::BlobChunk, 0, encode(reply), as_bytes(buf));
        }
      }
    }
    return conn.send(MessageType::BlobChunk, 0, encode(reply));
  }

  // Bytes of a declared output: appended to <path>.pepita-part, hashed on the way. Returns an
  // error only for a protocol violation (chunks out of order, an index the task lacks).
  Result<void> on_output_chunk(std::uint64_t id, const OutputChunkMsg& oc, ByteSpan data,
                               IncomingMap& incoming) {
    std::string final_path;
    {
      std::lock_guard lock(mu);
      auto it = payloads.find(id);
      if (it == payloads.end()) return {};  // completed meanwhile: nothing to write
      const RemoteTask& t = it->second.task;
      if (oc.index >= t.spec.outputs.size()) {
        return fail(ErrorCode::Protocol,
                    pepita::fmt("output-chunk for output {} of task {}, which declares {}",
                                oc.index, id, t.spec.outputs.size()));
      }
      final_path = t.output_dir + "/" + t.spec.outputs[oc.index];
    }
    Incoming& in = incoming[{id, oc.index}];
    if (oc.offset == 0) {
      in = Incoming{};
      in.attempt = oc.attempt;
      in.size = oc.size;
      in.part = final_path + ".pepita-part";
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(final_path).parent_path(), ec);
      in.fd.reset(sys::open(in.part.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
      if (!in.fd) in.error = "cannot create " + in.part;
    } else if (oc.offset != in.received || oc.size != in.size || oc.attempt != in.attempt) {
      return fail(
          ErrorCode::Protocol,
          pepita::fmt("output-chunk of task {} at offset {} of {}, expected offset {} of {}", id,
                      oc.offset, oc.size, in.received, in.size));
    }
    if (in.error.empty() && !data.empty() &&
        sys::write_full(in.fd.get(), data.data(), data.size()) !=
            static_cast<std::int64_t>(data.size())) {
      in.error = "cannot write " + in.part + " (disk full?)";
    }
    // The one integrity check of these bytes: bulk frames do not MAC them, finish_outputs
    // compares this hash with the one the MAC'd Result carries.
    in.hash.update(data);
    in.received += data.size();
    return {};
  }

  // Task `id` reported: a success's declared outputs must have arrived whole and match what the
  // worker hashed; then each is renamed into place. Otherwise the task fails and no output is
  // left at its path.
  void finish_outputs(std::uint64_t id, ResultMsg& r, IncomingMap& incoming, const W& w) {
    std::vector<std::string> outputs;
    std::string dir;
    {
      std::lock_guard lock(mu);
      if (auto it = payloads.find(id); it != payloads.end()) {
        outputs = it->second.task.spec.outputs;
        dir = it->second.task.output_dir;
      }
    }
    std::string failure;
    if (r.status == TaskStatus::Succeeded && !outputs.empty()) {
      if (r.outputs.size() != outputs.size()) {
        failure = pepita::fmt("worker {} reported {} outputs for the {} declared", w.ep.to_string(),
                              r.outputs.size(), outputs.size());
      }
      for (std::uint32_t i = 0; i < outputs.size() && failure.empty(); ++i) {
        auto it = incoming.find({id, i});
        const std::string final_path = dir + "/" + outputs[i];
        if (it == incoming.end() || it->second.attempt != r.attempt) {
          failure =
              pepita::fmt("output '{}' never arrived from worker {}", outputs[i], w.ep.to_string());
          break;
        }
        Incoming& in = it->second;
        in.fd.reset();
        const Digest got = in.hash.finish();
        if (!in.error.empty()) {
          failure = pepita::fmt("output '{}': {}", outputs[i], in.error);
        } else if (in.received != in.size || r.outputs[i].size != in.size ||
                   r.outputs[i].sha256 != got || r.outputs[i].path != outputs[i]) {
          failure = pepita::fmt(
              "output '{}' from worker {} does not match its SHA-256 ({} bytes hashing to {} "
              "arrived; the worker hashed {} bytes to {}); nothing written at {}",
              outputs[i], w.ep.to_string(), in.received, to_hex(got), r.outputs[i].size,
              to_hex(r.outputs[i].sha256), final_path);
        }
      }
      if (failure.empty()) {
        for (std::uint32_t i = 0; i < outputs.size(); ++i) {
          const Incoming& in = incoming.at({id, i});
          const std::string final_path = dir + "/" + outputs[i];
          if (::rename(in.part.c_str(), final_path.c_str()) != 0 && failure.empty()) {
            failure = "cannot rename " + in.part + " to " + final_path;
          }
        }
      }
      if (!failure.empty()) {
        r.status = TaskStatus::Failed;
        if (r.exit_code == 0) r.exit_code = 1;
        r.error = failure;
        r.outputs.clear();
      }
    }
    for (auto it = incoming.lower_bound({id, 0}); it != incoming.end() && it->first.first == id;) {
      if (!failure.empty() || r.status != TaskStatus::Succeeded) ::unlink(it->second.part.c_str());
      it = incoming.erase(it);
    }
  }

  W& slot(std::size_t wi) {
    std::lock_guard lock(mu);
    return *ws[wi];
  }

  std::string session(std::size_t wi, Connection& conn) {
    W& w = slot(wi);
    std::set<Digest> uploaded;               // blobs this connection already sent
    std::map<Digest, UniqueFd> open_inputs;  // declared inputs this session serves
    IncomingMap incoming;                    // declared outputs arriving
    std::string chunk_buf;                   // one input chunk on its way out (serve_fetch)
    // Outputs still arriving when the session ends are dropped: no .pepita-part is left.
    struct DropParts {
      IncomingMap& m;
      ~DropParts() {
        for (const auto& [key, in] : m) {
          if (!in.part.empty()) ::unlink(in.part.c_str());
        }
      }
    } drop_parts{incoming};
    auto last_rx = Clock::now();
    auto last_hb = Clock::now();
    bool draining = false;
    std::vector<Completion> done;
    {
      // The worker's leases live while it is heard from: the table expires them dead_after
      // past the last frame (lease_ttl), and this session then ends and requeues them.
      std::lock_guard lock(mu);
      table->renew(wi, last_rx);
    }
    // A new connection starts a fresh inter-arrival history (the Register frame is its first).
    detector->register_worker(wi);
    detector->record_heartbeat(wi, last_rx);
    const auto tick =
        std::max(std::chrono::milliseconds(1),
                 std::min(opts.heartbeat_interval / 4, std::chrono::milliseconds(250)));
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) return "dispatcher stopping";
        if (draining && table->held(wi) == 0) return "worker drained";
      }
      std::vector<std::uint64_t> cancels;
      {
        std::lock_guard lock(mu);
        cancels.swap(w.cancels);
      }
      for (std::uint64_t id : cancels) {
        if (auto r = conn.send(Message::task_cancel(id)); !r) return r.error().to_string();
      }
      for (auto& [id, m] : lease(wi, done)) {
        if (auto r = ensure_blobs(conn, m, uploaded); !r) return r.error().to_string();
        if (auto r = conn.send(MessageType::Submit, id, encode(m)); !r) {
          return r.error().to_string();
        }
      }
      run_completions(done);
      auto msg = conn.receive(tick, w.wake.get());
      if (!msg) return msg.error().to_string();
      // Drained only when receive() came back without a frame (woken or timed out): a wake
      // still set while frames arrive costs at most one extra pass of this loop, which leases
      // and sends cancels on every pass anyway, where reading it after every frame cost a
      // syscall per frame.
      if (!*msg) {
        // Drained, then re-armed: work queued before the next wake_all() is leased at the top
        // of the next pass (it takes mu after this), work queued after it signals again.
        clear_fd(w.wake.get());
        w.woken.store(false, std::memory_order_release);
      }
      const auto now = Clock::now();
      if (*msg) {
        last_rx = now;
        detector->record_heartbeat(wi, now);
        const Message& m = **msg;
        switch (m.header.type) {
          case MessageType::Result: {
            auto r = decode_result(m.payload);
            if (!r) return r.error().to_string();
            finish_outputs(m.header.request_id, *r, incoming, w);
            detector->record_task_result(wi, r->status == TaskStatus::Succeeded);
            on_result(wi, m.header.request_id, std::move(*r), done);
            run_completions(done);
            break;
          }
          case MessageType::FetchBlob: {
            auto f = decode_fetch_blob(m.payload);
            if (!f) return f.error().to_string();
            if (auto r = serve_fetch(conn, *f, open_inputs, chunk_buf); !r) {
              return r.error().to_string();
            }
            break;
          }
          case MessageType::OutputChunk: {
            auto oc = decode_output_chunk(m.payload);
            if (!oc) return oc.error().to_string();
            if (!m.bulk.empty() && !oc->data.empty()) {
              return "bulk output-chunk frame with data in its metadata too";
            }
            const ByteSpan data = m.bulk.empty() ? as_bytes(oc->data) : m.bulk;
            if (auto r = on_output_chunk(m.header.request_id, *oc, data, incoming); !r) {
              return r.error().to_string();
            }
            break;
          }
          case MessageType::Drain: {
            draining = true;
            set_state(wi, WorkerState::Draining);
            log("worker " + w.ep.to_string() + " is draining");
            break;
          }
          case MessageType::Error: {
            auto e = decode_error(m.payload);
            return "worker sent error: " + (e ? e->reason : std::string("(garbled)"));
          }
          case MessageType::Log: {
            if (auto why = on_log(m.header.request_id, m.payload); !why.empty()) return why;
            break;
          }
          case MessageType::Started:
          case MessageType::Heartbeat:
          case MessageType::HaveBlob:
          case MessageType::Register: break;
          default:
            return "unexpected " + std::string(to_string(m.header.type)) + " frame from worker";
        }
        std::lock_guard lock(mu);
        table->renew(wi, now);
        if (w.info.state == WorkerState::Suspect) {
          w.info.state = WorkerState::Alive;
          signal_fd(w.wake.get());
        }
      }
      const auto silent = now - last_rx;
      const auto health = detector->get_health(wi, now);
      {
        std::lock_guard lock(mu);
        if (health) w.info.phi = health->phi;
        expire_locked(now, done);
      }
      run_completions(done);
      if (health && health->status == fault::HealthStatus::Failed) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(silent).count();
        if (silent > opts.dead_after) {
          return pepita::fmt("no frame for {} ms (dead_after {} ms): declared failed", ms,
                             opts.dead_after.count());
        }
        // Before dead_after only phi can say so: this worker's silence is far outside the
        // rhythm its frames kept so far.
        return pepita::fmt(
            "no frame for {} ms: declared failed by the failure detector (phi {} >= "
            "phi_threshold {})",
            ms, std::round(health->phi * 10) / 10, opts.phi_threshold);
      }
      if (silent > opts.suspect_after) {
        std::lock_guard lock(mu);
        if (w.info.state == WorkerState::Alive) {
          w.info.state = WorkerState::Suspect;
          log("worker " + w.ep.to_string() + " is suspect (silent)");
        }
      }
      if (now - last_hb >= opts.heartbeat_interval) {
        last_hb = now;
        HeartbeatMsg hb{.sent_ns = static_cast<std::uint64_t>(now.time_since_epoch().count())};
        if (auto r = conn.send(Message::heartbeat_full(hb)); !r) {
          return r.error().to_string();
        }
      }
    }
  }

  // Receives the Register frame that follows authentication.
  static Result<RegisterMsg> receive_register(Connection& conn, std::chrono::milliseconds timeout) {
    auto m = PEPITA_TRY(conn.receive(timeout));
    if (!m || m->header.type != MessageType::Register) {
      return fail(ErrorCode::Protocol, "worker did not register after auth");
    }
    return decode_register(m->payload);
  }

  void mark_up(W& w, const RegisterMsg& reg) {
    std::vector<Completion> unfit;
    {
      std::lock_guard lock(mu);
      w.info.slots = std::max<std::uint32_t>(1, reg.slots);
      w.info.name = reg.name;
      w.info.state = WorkerState::Alive;
      w.info.inventory = reg.inventory;
      // A new session holds no leases yet (the last one's were released when it ended): a
      // fresh ledger of what it offers now.
      w.resources.emplace(reg.inventory);
      ++w.info.connects;
      worker_seen = Clock::now();
      fail_unfit_locked(unfit);
    }
    run_completions(unfit);
    log("worker " + w.ep.to_string() + " (" + reg.name + ") up with " + std::to_string(reg.slots) +
        " slots; offers " + reg.inventory.to_string());
  }

  // Runs a session to its end and re-dispatches what the worker held.
  void run_session(std::size_t wi, Connection& conn) {
    W& w = slot(wi);
    std::string reason = session(wi, conn);
    conn.shutdown();
    std::vector<Completion> cancelled;
    requeue_inflight(wi, cancelled);
    run_completions(cancelled);
    {
      std::lock_guard lock(mu);
      w.info.state = WorkerState::Dead;
      worker_seen = Clock::now();
    }
    log("worker " + w.ep.to_string() + " down: " + reason);
  }

  // Workers that dial in (`pepita worker --connect`): authenticate each as the client side of
  // the handshake, then serve it like a configured worker until its connection ends.
  void accept_loop() {
    ConnectionOptions copts = opts.connection;
    copts.name = opts.name;
    for (;;) {
      pollfd pfds[2] = {{listener->fd(), POLLIN, 0}, {stop_efd.get(), POLLIN, 0}};
      (void)sys::poll(pfds, 2, 1000);
      std::string peer;
      auto fd = listener->accept(peer);
      std::lock_guard lock(mu);
      if (stopping) return;
      if (!fd) continue;
      auto w = std::make_unique<W>();
      w->ep = parse_endpoint(peer).value_or(Endpoint{peer, 0});
      w->dialed_in = true;
      w->info.endpoint = peer;
      w->wake.reset(sys::eventfd(0, EFD_NONBLOCK));
      const std::size_t wi = ws.size();
      W* raw = w.get();
      ws.push_back(std::move(w));
      raw->thread = std::thread([this, wi, copts, f = std::move(*fd)]() mutable {
        const std::string peer_name = slot(wi).ep.to_string();
        auto conn = Connection::client(std::move(f), peer_name, *opts.key, copts);
        auto reg = conn ? receive_register(**conn, copts.handshake_timeout)
                        : Result<RegisterMsg>(std::unexpected(conn.error()));
        if (!reg) {
          log("rejected dial-in from " + peer_name + ": " + reg.error().to_string());
          set_state(wi, WorkerState::Dead);
          return;
        }
        mark_up(slot(wi), *reg);
        run_session(wi, **conn);
      });
    }
  }

  void worker_loop(std::size_t wi) {
    W& w = slot(wi);
    // Exponential backoff with full jitter, so drivers that lost the same worker do not all
    // redial it in step.
    fault::RetryPolicy policy;
    policy.base_delay(opts.reconnect_initial).max_delay(opts.reconnect_max).jitter(true);
    fault::RetryState retry;  // failed connection attempts since the last session
    ConnectionOptions copts = opts.connection;
    copts.name = opts.name;
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      auto conn = Connection::connect(w.ep, *opts.key, copts);
      auto reg = conn ? receive_register(**conn, copts.handshake_timeout)
                      : Result<RegisterMsg>(std::unexpected(conn.error()));
      if (!conn || !reg) {
        const Error& e = conn ? reg.error() : conn.error();
        if (retry.attempts == 0) {
          log("worker " + w.ep.to_string() + " unavailable: " + e.to_string());
        }
        retry.record_failure(e.message());
        std::vector<Completion> failed;
        {
          std::lock_guard lock(mu);
          w.info.state = WorkerState::Dead;
          last_failure = "worker " + w.ep.to_string() + ": " + e.message();
          give_up_without_workers_locked(failed);
        }
        run_completions(failed);
        std::unique_lock lock(mu);
        // Authentication failures will not fix themselves quickly: back off hardest.
        if (e.code() == ErrorCode::PermissionDenied) {
          retry.attempts = std::max(retry.attempts, kMaxRetry);
        }
        backoff_cv.wait_for(lock, policy.backoff(std::min(retry.attempts, kMaxRetry)),
                            [&] { return stopping; });
        continue;
      }
      retry.reset();
      mark_up(w, *reg);
      run_session(wi, **conn);
      std::unique_lock lock(mu);
      backoff_cv.wait_for(lock, policy.backoff(1), [&] { return stopping; });
    }
  }
};

RemoteDispatcher::RemoteDispatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<RemoteDispatcher>> RemoteDispatcher::start(RemoteOptions options) {
  if (!options.key) {
    return fail(ErrorCode::InvalidArgument, "remote workers need the shared key (--key FILE)");
  }
  if (options.workers.empty() && options.listen.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "no remote workers given (host:port) and no address for workers to dial in to");
  }
  if (options.max_attempts == 0) options.max_attempts = 1;
  if (!std::isfinite(options.phi_threshold) || options.phi_threshold < 0) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("phi_threshold {} is not a failure-detector threshold; use a positive "
                            "number such as 8, or 0 to decide by dead_after alone",
                            options.phi_threshold));
  }
  auto impl = std::make_unique<Impl>();
  if (!options.listen.empty()) {
    // Open to any address: a dialing worker must prove the key before it gets a task, and the
    // driver proves it too before the worker runs anything.
    const Endpoint at = PEPITA_TRY(parse_endpoint(options.listen));
    impl->listener.emplace(PEPITA_TRY(Listener::bind(at, /*allow_non_loopback=*/true)));
    impl->stop_efd = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
  }
  for (const auto& w : options.workers) {
    auto ep = parse_endpoint(w);
    if (!ep) return std::unexpected(std::move(ep.error()));
    auto ws = std::make_unique<Impl::W>();
    ws->ep = *ep;
    ws->info.endpoint = ep->to_string();
    ws->wake = PEPITA_TRY(sys::make_eventfd(EFD_NONBLOCK));
    impl->ws.push_back(std::move(ws));
  }
  impl->table.emplace(
      LeaseTable::Options{.max_attempts = options.max_attempts, .lease_ttl = options.dead_after});
  // Silence up to suspect_after is tolerated on top of a worker's usual rhythm (the acceptable
  // pause); past it phi decides, and dead_after bounds the wait whatever phi says. Task results
  // are recorded for the statistics only: a task's failure says nothing about its worker.
  impl->detector.emplace(fault::DetectorConfig{
      .heartbeat_interval = options.heartbeat_interval,
      .acceptable_pause = std::max(options.suspect_after, std::chrono::milliseconds(0)),
      .suspect_phi = 1.0,
      .failure_phi =
          options.phi_threshold > 0 ? options.phi_threshold : std::numeric_limits<double>::max(),
      .max_silence =
          std::max<std::chrono::nanoseconds>(options.dead_after, std::chrono::nanoseconds(1)),
      .failure_threshold = 0});
  impl->opts = std::move(options);
  Impl* raw = impl.get();
  for (std::size_t i = 0; i < raw->ws.size(); ++i) {
    raw->ws[i]->thread = std::thread([raw, i] { raw->worker_loop(i); });
  }
  if (raw->listener) raw->acceptor = std::thread([raw] { raw->accept_loop(); });
  return std::make_unique<RemoteDispatcher>(std::move(impl));
}

RemoteDispatcher::~RemoteDispatcher() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->backoff_cv.notify_all();
  if (impl_->acceptor.joinable()) {
    signal_fd(impl_->stop_efd.get());
    impl_->acceptor.join();  // after this, ws no longer grows
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->wake_all();
  }
  for (auto& w : impl_->ws) {
    if (w->thread.joinable()) w->thread.join();
  }
  std::vector<Impl::Completion> done;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& f : impl_->table->shutdown()) {
      impl_->complete_locked(
          f.id, f.attempts,
          ResultMsg{
              .status = TaskStatus::Cancelled, .exit_code = -1, .error = "dispatcher shut down"},
          "", done);
    }
  }
  impl_->run_completions(done);
}

Digest RemoteDispatcher::add_blob(std::string data) {
  Digest d = sha256(as_bytes(data));
  std::lock_guard lock(impl_->mu);
  impl_->blobs.emplace(d, std::make_shared<const std::string>(std::move(data)));
  return d;
}

Result<void> RemoteDispatcher::submit(RemoteTask task, Callback done) {
  std::vector<Impl::Completion> unfit;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return fail(ErrorCode::Cancelled, "dispatcher is shutting down");
    if (task.id == 0) return fail(ErrorCode::InvalidArgument, "remote task id must not be 0");
    if (impl_->table->contains(task.id)) {
      return fail(ErrorCode::InvalidArgument,
                  "remote task id " + std::to_string(task.id) + " is already in flight");
    }
    if (!task.resources.empty()) {
      PEPITA_TRY_VOID(task.resources.validate());
      if (task.resource_attempt == 0) task.resource_attempt = 1;
    }
    if (task.input_sources.size() != task.spec.inputs.size()) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("remote task {} declares {} inputs but gives {} local files for them",
                              task.id, task.spec.inputs.size(), task.input_sources.size()));
    }
    for (std::size_t i = 0; i < task.spec.inputs.size(); ++i) {
      auto& src = impl_->sources[task.spec.inputs[i].sha256];
      if (src.refs++ == 0) {
        src.path = task.input_sources[i];
        src.size = task.spec.inputs[i].size;
      }
    }
    const std::uint64_t id = task.id;
    impl_->table->add(id);
    const bool requests = !task.resources.empty();
    impl_->payloads.insert_or_assign(id, Impl::Payload{std::move(task), std::move(done)});
    ++impl_->pending;
    if (requests) impl_->fail_unfit_locked(unfit, id);
    impl_->wake_all();
  }
  impl_->run_completions(unfit);
  return {};
}

Result<RemoteOutcome> RemoteDispatcher::run(RemoteTask task) {
  auto promise = std::make_shared<std::promise<RemoteOutcome>>();
  auto future = promise->get_future();
  PEPITA_TRY_VOID(
      submit(std::move(task), [promise](RemoteOutcome o) { promise->set_value(std::move(o)); }));
  return future.get();
}

void RemoteDispatcher::cancel(std::uint64_t id) {
  std::vector<Impl::Completion> done;
  {
    std::lock_guard lock(impl_->mu);
    const LeaseTable::CancelVerdict v = impl_->table->cancel(id);
    if (v.action == LeaseTable::CancelAction::Completed) {
      impl_->complete_locked(id, v.attempts,
                             ResultMsg{.status = TaskStatus::Cancelled,
                                       .exit_code = -1,
                                       .error = "cancelled before it was dispatched"},
                             "", done);
    } else if (v.action == LeaseTable::CancelAction::SendToHolder) {
      auto& w = *impl_->ws[v.holder];
      w.cancels.push_back(id);
      signal_fd(w.wake.get());
    }
  }
  impl_->run_completions(done);
}

bool RemoteDispatcher::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->idle_cv.wait_for(lock, timeout, [&] { return impl_->pending == 0; });
}

std::vector<WorkerInfo> RemoteDispatcher::workers() const {
  std::lock_guard lock(impl_->mu);
  std::vector<WorkerInfo> out;
  for (const auto& w : impl_->ws) out.push_back(w->info);
  return out;
}

std::optional<Endpoint> RemoteDispatcher::listen_endpoint() const {
  if (!impl_->listener) return std::nullopt;
  return impl_->listener->endpoint();
}

Result<void> RemoteDispatcher::can_ever_fit(const task::ResourceRequest& request) const {
  std::lock_guard lock(impl_->mu);
  return can_ever_fit_any(impl_->known_inventories_locked(), request);
}

std::size_t RemoteDispatcher::backlog() const {
  std::lock_guard lock(impl_->mu);
  return impl_->pending;
}

std::uint64_t RemoteDispatcher::duplicates_dropped() const {
  std::lock_guard lock(impl_->mu);
  return impl_->table->duplicates();
}

}  // namespace pepita::transport
