// Worker daemon, one client: the session thread (handshake, Register, frames, heartbeats,
// failure detection, drain), job intake into the worker-wide queue, blob uploads; completed
// attempts come back to this thread and leave as Result frames (results.cpp).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>

#include "pepita/core/sys/fd.hpp"
#include "worker/worker_impl.hpp"

namespace pepita::transport {

using worker::clear_fd;
using worker::Clock;
using worker::now_ns;
using worker::signal_fd;
namespace fs = std::filesystem;

void Worker::Impl::serve(const std::shared_ptr<Client>& c, UniqueFd fd) {
  auto conn = Connection::accept(std::move(fd), c->peer, *opts.key, opts.connection);
  if (!conn) {
    // Logged before it is counted: whoever sees the count can read the reason.
    log("rejected " + c->peer + ": " + conn.error().to_string());
    rejected.fetch_add(1);
    c->open.store(false);
    c->finished.store(true);
    return;
  }
  c->conn = std::move(*conn);
  accepted.fetch_add(1);
  log("client " + c->conn->remote_name() + " (" + c->peer + ") authenticated");
  std::string reason = run_client(c);
  log("closed " + c->conn->remote_name() + " (" + c->peer + "): " + reason);
  c->open.store(false);
  {
    // Tasks of a gone driver are pointless: it re-dispatches them elsewhere.
    std::lock_guard jl(c->jobs_mu);
    for (auto& [id, j] : c->jobs) {
      j->cancel.store(true);
      j->stop.request_stop();
    }
  }
  c->conn->shutdown();
  abandon_staging(*c);
  // Its jobs still waiting for a slot end here; launched ones end as their executors report
  // (cancelled above), and this thread delivers them: wait for the last.
  std::deque<std::shared_ptr<Job>> mine;
  {
    std::lock_guard lock(mu);
    for (auto it = queue.begin(); it != queue.end();) {
      if ((*it)->client == c) {
        mine.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& j : mine) {
    report(*j, ResultMsg{.attempt = j->msg.attempt,
                         .status = TaskStatus::Cancelled,
                         .exit_code = -1,
                         .error = "cancelled before it started"});
  }
  for (;;) {
    deliver(*c, /*now_all=*/true);
    {
      std::lock_guard jl(c->jobs_mu);
      if (c->jobs.empty()) break;
    }
    pollfd pfd{c->wake.get(), POLLIN, 0};
    (void)sys::poll(&pfd, 1, 100);
    clear_fd(c->wake.get());
  }
  {
    std::vector<std::pair<std::shared_ptr<std::atomic<bool>>, std::jthread>> senders;
    {
      std::lock_guard sl(c->senders_mu);
      senders.swap(c->senders);
    }
    senders.clear();  // joins them: each has reported its job
  }
  c->finished.store(true);
  signal_fd(stop_efd.get());  // let the acceptor reap us promptly
}

std::string Worker::Impl::run_client(const std::shared_ptr<Client>& cp) {
  Client& c = *cp;
  RegisterMsg reg{.slots = opts.slots,
                  .backends = {"process", "cpu"},
                  .labels = opts.labels,
                  .name = opts.name,
                  .inventory = opts.inventory.value_or(task::Inventory{})};
  if (auto r = c.conn->send(MessageType::Register, 0, encode(reg)); !r) {
    return r.error().to_string();
  }
  auto last_rx = Clock::now();
  auto last_hb = Clock::now();
  bool drain_sent = false;
  for (;;) {
    if (stopping.load() && !drain_sent) {
      if (auto r = c.conn->send(MessageType::Drain, 0, {}); !r) return r.error().to_string();
      drain_sent = true;
    }
    if (drain_sent) {
      std::lock_guard jl(c.jobs_mu);
      if (c.jobs.empty()) return "worker shutting down (drained)";
    }
    deliver(c, /*now_all=*/false);
    if (!c.staging.empty()) {
      if (auto st = advance_staging(cp); !st) return st.error().to_string();
    }
    // A parked result waits for the worker's own stop for a few seconds: look again soon.
    const auto wait =
        std::min(opts.heartbeat_interval,
                 c.parked.empty() ? std::chrono::milliseconds(250) : std::chrono::milliseconds(10));
    auto msg = c.conn->receive(wait, c.wake.get());
    if (!msg) return msg.error().to_string();
    // Drained only after a pass without a frame: this loop delivers on every pass, so a wake
    // left set costs one extra pass at most (reading it after every frame cost a syscall each).
    if (!*msg) clear_fd(c.wake.get());
    const auto now = Clock::now();
    if (*msg) {
      last_rx = now;
      if (auto h = handle(cp, **msg); !h) return h.error().to_string();
    }
    if (now - last_rx > opts.dead_after) {
      return "driver silent for " + std::to_string(opts.dead_after.count()) + " ms";
    }
    if (now - last_hb >= opts.heartbeat_interval) {
      last_hb = now;
      HeartbeatMsg hb{.sent_ns = static_cast<std::uint64_t>(now_ns())};
      {
        std::lock_guard lock(mu);
        hb.running = running;
        hb.free_slots = opts.slots > running ? opts.slots - running : 0;
      }
      if (auto r = c.conn->send(MessageType::Heartbeat, 0, encode(hb)); !r) {
        return r.error().to_string();
      }
    }
  }
}

Result<void> Worker::Impl::handle(const std::shared_ptr<Client>& cp, const Message& m) {
  Client& c = *cp;
  switch (m.header.type) {
    case MessageType::Heartbeat: return {};
    case MessageType::Submit: {
      return intake(cp, m.header.request_id, PEPITA_TRY(decode_submit(m.payload)));
    }
    case MessageType::Cancel: {
      std::lock_guard jl(c.jobs_mu);
      if (auto it = c.jobs.find(m.header.request_id); it != c.jobs.end()) {
        it->second->cancel.store(true);
        it->second->stop.request_stop();
      }
      return {};
    }
    case MessageType::Upload: {
      auto up = PEPITA_TRY(decode_upload(m.payload));
      HaveBlobMsg reply{.sha256 = up.sha256, .present = false};
      if (const Digest actual = sha256(as_bytes(up.data)); actual != up.sha256) {
        // Nothing is written: a blob is stored only under the hash of its own bytes.
        log("upload from " + c.peer + " does not match its SHA-256 (claims " + to_hex(up.sha256) +
            ", its " + std::to_string(up.data.size()) + " bytes hash to " + to_hex(actual) +
            "); dropped, nothing stored");
      } else if (auto s = store_blob(up); !s) {
        log("storing blob failed: " + s.error().to_string());
      } else {
        reply.present = true;
      }
      return c.conn->send(MessageType::HaveBlob, m.header.request_id, encode(reply));
    }
    case MessageType::HaveBlob: {
      auto q = PEPITA_TRY(decode_have_blob(m.payload));
      q.present = fs::exists(blob_path(q.sha256));
      return c.conn->send(MessageType::HaveBlob, m.header.request_id, encode(q));
    }
    case MessageType::BlobChunk: {
      const BlobChunkMsg chunk = PEPITA_TRY(decode_blob_chunk(m.payload));
      if (!m.bulk.empty() && !chunk.data.empty()) {
        return fail(ErrorCode::Protocol, "bulk blob-chunk frame with data in its metadata too");
      }
      // A bulk frame's data is a view into the connection's buffer, written before the next
      // receive(); an older-style frame carries it in the message.
      return on_blob_chunk(c, chunk, m.bulk.empty() ? as_bytes(chunk.data) : m.bulk);
    }
    case MessageType::Error: {
      auto e = decode_error(m.payload);
      return fail(ErrorCode::Disconnected,
                  "driver closed with: " + (e ? e->reason : std::string("(garbled reason)")));
    }
    default:
      return fail(ErrorCode::Protocol,
                  "unexpected " + std::string(to_string(m.header.type)) + " frame from a driver");
  }
}

// Job intake: a Submit joins the worker-wide queue (one queue for all clients, so slots go to
// submits in arrival order) and launches as soon as a slot is free.
Result<void> Worker::Impl::intake(const std::shared_ptr<Client>& cp, std::uint64_t id,
                                  SubmitMsg msg) {
  Client& c = *cp;
  const auto hand_back = [&] {
    ResultMsg r{
        .attempt = msg.attempt, .status = TaskStatus::Returned, .error = "worker is draining"};
    returned.fetch_add(1);
    return c.conn->send(MessageType::Result, id, encode(r));
  };
  if (stopping.load()) return hand_back();
  // Issue 24: declared files name places in the task's own directory, nothing else; a bad one
  // fails this task (a SpawnError naming it), not the connection.
  std::string bad;
  for (const auto& in : msg.inputs) {
    if (auto ok = check_staged_path(in.path, "input"); !ok && bad.empty()) {
      bad = ok.error().message();
    }
  }
  for (const auto& out : msg.outputs) {
    if (auto ok = check_staged_path(out, "output"); !ok && bad.empty()) bad = ok.error().message();
  }
  if (bad.empty() && msg.kind == TaskKind::Function &&
      (!msg.inputs.empty() || !msg.outputs.empty())) {
    bad = "function tasks take no declared input or output files";
  }
  if (!bad.empty()) {
    ResultMsg r{.attempt = msg.attempt,
                .status = TaskStatus::SpawnError,
                .exit_code = -1,
                .error = "refused: " + bad};
    return c.conn->send(MessageType::Result, id, encode(r));
  }
  auto job = std::make_shared<Job>();
  job->id = id;
  job->msg = std::move(msg);
  job->client = cp;
  {
    std::lock_guard jl(c.jobs_mu);
    if (c.jobs.contains(id)) {
      return fail(ErrorCode::Protocol,
                  "task " + std::to_string(id) + " submitted twice while running");
    }
    c.jobs[id] = job;
  }
  if (!job->msg.inputs.empty()) return intake_staged(cp, job);
  return enqueue(cp, std::move(job));
}

Result<void> Worker::Impl::enqueue(const std::shared_ptr<Client>& cp, std::shared_ptr<Job> job) {
  Client& c = *cp;
  {
    std::lock_guard lock(mu);
    if (!queue_closed) {
      queue.push_back(std::move(job));
      job = nullptr;
    }
  }
  if (job) {  // shutdown swept the queue meanwhile: hand it back unstarted
    returned.fetch_add(1);
    report(*job, ResultMsg{.attempt = job->msg.attempt,
                           .status = TaskStatus::Returned,
                           .error = "worker is draining"});
    (void)c;
    return {};
  }
  pump();
  return {};
}

std::string Worker::Impl::blob_path(const Digest& d) const { return cache_dir + "/" + to_hex(d); }

Result<void> Worker::Impl::store_blob(const UploadMsg& up) {
  const std::string final_path = blob_path(up.sha256);
  if (fs::exists(final_path)) return {};
  const std::string tmp = final_path + ".tmp." + std::to_string(::gettid());
  UniqueFd fd = PEPITA_TRY(
      sys::check_fd(sys::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0700), "create " + tmp));
  PEPITA_TRY_VOID(
      sys::check_void(sys::write_full(fd.get(), up.data.data(), up.data.size()), "write " + tmp));
  fd.reset();
  // rename is atomic: a concurrent reader sees no blob or the whole verified blob.
  PEPITA_TRY_VOID(
      sys::check_void(sys::ret(::rename(tmp.c_str(), final_path.c_str())), "rename blob"));
  blobs.fetch_add(1);
  return {};
}

}  // namespace pepita::transport
