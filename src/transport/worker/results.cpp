// Worker daemon, results: a process attempt's completion is posted to the job's session thread
// (it may have to be parked, below); a function's is reported on the executor's own thread.
// report() sends the Result frame (to_result_msg: every field, cpu and rss included), removes the
// job's scratch files, forgets the job and frees its slot for the next queued one.
#include <csignal>
#include <filesystem>

#include "pepita/transport/result_codec.hpp"
#include "worker/worker_impl.hpp"

namespace pepita::transport {

using worker::Clock;
using worker::signal_fd;

namespace {

// How long a task killed by a termination signal waits for the worker's own stop (below).
constexpr auto kStopGrace = std::chrono::seconds(3);

// A task killed by a signal this worker did not send, while the worker may be being stopped too:
// a cluster manager tearing down the whole job (scancel, preemption, time limit) signals every
// process at once. That is not the task's failure; the worker's own SIGTERM may land a moment
// after the child's.
bool maybe_killed_with_the_worker(const executor::ExecutionResult& er) {
  return er.status == executor::Status::Signaled && (er.signal == SIGTERM || er.signal == SIGKILL ||
                                                     er.signal == SIGINT || er.signal == SIGHUP);
}

}  // namespace

// Runs on the executor's thread: never blocks on the network.
void Worker::Impl::post(Done d) {
  Client& c = *d.job->client;
  {
    std::lock_guard jl(c.jobs_mu);
    c.done.push_back(std::move(d));
  }
  signal_fd(c.wake.get());
}

void Worker::Impl::deliver(Client& c, bool now_all) {
  std::vector<Done> ready;
  {
    std::lock_guard jl(c.jobs_mu);
    ready.swap(c.done);
  }
  const auto now = Clock::now();
  for (auto& d : ready) {
    if (!d.function && maybe_killed_with_the_worker(d.result) && !stopping.load() && !now_all) {
      c.parked.emplace_back(now + kStopGrace, std::move(d));
    } else {
      ResultMsg r = to_message(d);
      if (r.status == TaskStatus::Succeeded && !d.job->msg.outputs.empty()) {
        send_outputs_async(d.job, std::move(r));  // reports once its outputs are sent
      } else {
        report(*d.job, r);
      }
    }
  }
  // A parked result goes once the worker's stop arrived (then it is the worker's, not the
  // task's) or its grace has passed (then it was the task's own signal).
  for (auto it = c.parked.begin(); it != c.parked.end();) {
    if (now_all || stopping.load() || Clock::now() >= it->first) {
      Done d = std::move(it->second);
      it = c.parked.erase(it);
      ResultMsg r = to_message(d);
      if (r.status == TaskStatus::Succeeded && !d.job->msg.outputs.empty()) {
        send_outputs_async(d.job, std::move(r));
      } else {
        report(*d.job, r);
      }
    } else {
      ++it;
    }
  }
}

ResultMsg Worker::Impl::to_message(Done& d) {
  Job& job = *d.job;
  const SubmitMsg& m = job.msg;
  executor::ExecutionResult& er = d.result;
  tasks_run.fetch_add(1);
  // A success with declared outputs keeps its directory until they are sent (staging.cpp).
  const bool sends_outputs =
      !d.function && er.status == executor::Status::Succeeded && !m.outputs.empty();
  if (!job.scratch.empty() && !sends_outputs) {
    std::error_code ec;
    std::filesystem::remove_all(job.scratch, ec);
  }
  if (d.function) {
    ResultMsg r;
    r.attempt = m.attempt;
    r.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(er.wall).count();
    if (er.status == executor::Status::Succeeded) {
      r.stdout_data = std::move(er.stdout_data);
      r.stdout_bytes = er.stdout_bytes;
      if (r.stdout_data.size() > m.output_cap) r.stdout_data.resize(m.output_cap);
    } else {
      r.status = job.cancel.load() ? TaskStatus::Cancelled : TaskStatus::Failed;
      r.exit_code = 1;
      r.error = std::move(er.error);
    }
    r.allocation = m.allocation;  // what the dispatcher gave it, for the driver's report
    return r;
  }
  if (maybe_killed_with_the_worker(er) && stopping.load()) {
    er.status = executor::Status::Cancelled;
    er.exit_code = -1;
    er.stdout_data.clear();
    er.stderr_data.clear();
    er.stdout_bytes = er.stderr_bytes = 0;
    er.error = "killed by signal " + std::to_string(er.signal) +
               " while the worker itself was being stopped; the driver runs it elsewhere";
  }
  // The driver reports requested vs given per task: the allocation it ran with goes back, also
  // when the executor did not echo it.
  if (!er.allocation && m.allocation) er.allocation = m.allocation;
  return to_result_msg(std::move(er), m.attempt);
}

void Worker::Impl::report(Job& job, const ResultMsg& r, const StartedMsg* started) {
  Client& c = *job.client;
  if (c.open.load()) {
    const Bytes result = encode(r);
    if (started != nullptr) {
      const Bytes first = encode(*started);
      const Connection::Outgoing frames[] = {{MessageType::Started, job.id, first},
                                             {MessageType::Result, job.id, result}};
      (void)c.conn->send_all(frames);
    } else {
      (void)c.conn->send(MessageType::Result, job.id, result);
    }
  }
  {
    std::lock_guard jl(c.jobs_mu);
    c.jobs.erase(job.id);
  }
  if (job.pinned) {  // its inputs may be evicted again
    job.pinned = false;
    for (const auto& in : job.msg.inputs) store->unpin(in.sha256);
  }
  // Only a session waiting for its last job (draining, or closed and finishing) needs to look
  // again; otherwise waking it per task cost a poll and an eventfd read on every result.
  if (stopping.load() || !c.open.load()) signal_fd(c.wake.get());
  if (job.holds_slot) {
    job.holds_slot = false;
    {
      std::lock_guard lock(mu);
      --running;
    }
    pump();
  }
}

}  // namespace pepita::transport
