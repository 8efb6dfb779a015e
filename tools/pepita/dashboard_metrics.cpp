// RunModel's Prometheus text exposition (format 0.0.4) and its rebuild from a journal.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "dashboard_model.hpp"
#include "pepita/core/format.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::cli::dashboard {
namespace {

// Label values escape backslash, double quote and line feed (the exposition format's rule).
std::string label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

constexpr const char* kStates[] = {"pending", "running",  "retrying",  "interrupted",   "succeeded",
                                   "failed",  "signaled", "timed-out", "launch-failed", "cancelled",
                                   "skipped", "rejected", "oom",       "sandbox"};

}  // namespace

std::string RunModel::metrics() const {
  std::lock_guard lock(mu_);
  std::string out;
  family(out, "pepita_tasks", "gauge", "Tasks of the run by state.");
  for (const char* state : kStates) {
    const auto n = std::count_if(tasks_.begin(), tasks_.end(),
                                 [&](const TaskRow& t) { return t.state == state; });
    out.append("pepita_tasks{state=\"").append(state).append("\"} ").append(std::to_string(n));
    out += '\n';
  }
  family(out, "pepita_attempts_total", "counter", "Attempts started, retries included.");
  out.append("pepita_attempts_total ").append(std::to_string(attempts_.size())).append("\n");
  family(out, "pepita_retries_total", "counter", "Attempts beyond each task's first.");
  out.append("pepita_retries_total ").append(std::to_string(retries_)).append("\n");
  family(out, "pepita_queue_depth", "gauge",
         "Tasks waiting for dependencies, a slot or a retry delay.");
  out.append("pepita_queue_depth ").append(std::to_string(queued_)).append("\n");
  family(out, "pepita_slots_used", "gauge", "Attempts in flight per backend.");
  for (const auto& w : workers_)
    out.append("pepita_slots_used{backend=\"")
        .append(label(w.backend))
        .append("\"} ")
        .append(std::to_string(w.running))
        .append("\n");
  family(out, "pepita_slots", "gauge", "Slots (attempts at once) per backend.");
  for (const auto& w : workers_)
    out.append("pepita_slots{backend=\"")
        .append(label(w.backend))
        .append("\"} ")
        .append(std::to_string(w.slots))
        .append("\n");
  family(out, "pepita_bytes_staged_total", "counter",
         "Bytes of task inputs and outputs staged to and from workers.");
  out.append("pepita_bytes_staged_total 0\n");
  family(out, "pepita_run_finished", "gauge", "1 once the run has ended.");
  out.append("pepita_run_finished ").append(finished_ ? "1" : "0").append("\n");
  family(out, "pepita_attempt_duration_seconds", "histogram",
         "Wall time of finished attempts, seconds.");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < std::size(kLatencyBuckets); ++b) {
    cumulative += latency_counts_[b];
    out.append("pepita_attempt_duration_seconds_bucket{le=\"")
        .append(number(kLatencyBuckets[b]))
        .append("\"} ")
        .append(std::to_string(cumulative))
        .append("\n");
  }
  cumulative += latency_counts_[std::size(kLatencyBuckets)];
  out.append("pepita_attempt_duration_seconds_bucket{le=\"+Inf\"} ")
      .append(std::to_string(cumulative))
      .append("\n");
  out.append("pepita_attempt_duration_seconds_sum ").append(number(latency_sum_)).append("\n");
  out.append("pepita_attempt_duration_seconds_count ")
      .append(std::to_string(latency_count_))
      .append("\n");
  return out;
}

std::string worker_metrics(const WorkerCounters& c) {
  std::string out;
  const auto counter = [&out](const char* name, const char* help, std::uint64_t value) {
    family(out, name, "counter", help);
    out.append(name).append(" ").append(std::to_string(value)).append("\n");
  };
  counter("pepita_worker_clients_accepted_total", "Drivers that completed the handshake.",
          c.clients_accepted);
  counter("pepita_worker_clients_rejected_total",
          "Connections that failed the handshake or broke the protocol.", c.clients_rejected);
  counter("pepita_worker_tasks_run_total", "Tasks this worker ran.", c.tasks_run);
  counter("pepita_worker_tasks_returned_total", "Tasks handed back unstarted (drain, disconnect).",
          c.tasks_returned);
  counter("pepita_worker_blobs_stored_total", "Binaries and blobs stored in the cache.",
          c.blobs_stored);
  counter("pepita_bytes_staged_total",
          "Bytes of task inputs and outputs staged to and from workers.", c.bytes_staged);
  family(out, "pepita_worker_slots", "gauge", "Tasks this worker runs at once.");
  out.append("pepita_worker_slots ").append(std::to_string(c.slots)).append("\n");
  return out;
}

Result<std::unique_ptr<RunModel>> RunModel::from_journal(const std::string& path,
                                                         std::string job_name) {
  auto recovery = fault::read_journal(path);
  if (!recovery) {
    return fail(recovery.error().code(),
                pepita::fmt("cannot read the journal {}: {}", path, recovery.error().message()));
  }
  auto owned = std::make_unique<RunModel>(std::move(job_name));
  RunModel& model = *owned;  // not shared yet: no lock until finish()
  std::int64_t base_ns = 0;  // the earliest wall-clock start, where the journal has them
  for (const auto& r : recovery->records)
    if (r.type == fault::RecordType::Finished && r.started_unix_ns > 0)
      base_ns = base_ns == 0 ? r.started_unix_ns : std::min(base_ns, r.started_unix_ns);
  double clock_ms = 0;  // the run's time as far as the records tell it
  std::uint64_t next_id = 1;
  bool open_tasks = false;
  for (const auto& r : recovery->records) {
    const std::uint32_t index = model.row_for(
        model.by_name_.contains(r.name) ? model.tasks_[model.by_name_[r.name]].id : next_id++,
        r.name, "");
    TaskRow& row = model.tasks_[index];
    switch (r.type) {
      case fault::RecordType::Submitted:
        if (row.state == "pending") break;
        row.state = "pending";  // a resumed run submitted it again
        break;
      case fault::RecordType::Started: {
        if (row.open_attempt) {
          model.close_attempt(row, "failed", clock_ms);  // the attempt before a retry
          ++model.retries_;
        }
        Attempt a;
        a.task = index;
        a.number = r.attempt == 0 ? row.attempts + 1 : r.attempt;
        a.lane = model.take_lane("slot");
        a.start_ms = clock_ms;
        row.open_attempt = static_cast<std::uint32_t>(model.attempts_.size());
        model.attempts_.push_back(a);
        row.attempts = a.number;
        row.state = "running";
        break;
      }
      case fault::RecordType::Finished: {
        const auto status = r.status < executor::kStatusCount
                                ? static_cast<executor::Status>(r.status)
                                : executor::Status::Failed;
        const std::string state(to_string(status));
        if (row.open_attempt) {
          Attempt& a = model.attempts_[*row.open_attempt];
          if (r.started_unix_ns > 0 && r.finished_unix_ns >= r.started_unix_ns) {
            a.start_ms = static_cast<double>(r.started_unix_ns - base_ns) / 1e6;
            clock_ms = std::max(clock_ms, static_cast<double>(r.finished_unix_ns - base_ns) / 1e6);
            model.close_attempt(row, state,
                                static_cast<double>(r.finished_unix_ns - base_ns) / 1e6);
          } else {
            const double end = a.start_ms + static_cast<double>(r.wall_ns) / 1e6;
            clock_ms = std::max(clock_ms, end);
            model.close_attempt(row, state, end);
          }
        }
        executor::ExecutionResult result;
        result.status = status;
        result.exit_code = r.exit_code;
        result.signal = r.signal;
        result.wall = std::chrono::nanoseconds(r.wall_ns);
        result.cpu = std::chrono::nanoseconds(r.cpu_ns);
        result.max_rss_kb = r.max_rss_kb;
        result.stderr_data = r.stderr_data;
        result.error = r.error;
        result.host = r.host;
        result.from_cache = r.from_cache;
        model.apply_result(row, result);
        row.state = state;
        row.attempts = std::max<std::uint32_t>(row.attempts, r.attempt);
        break;
      }
    }
  }
  for (const auto& row : model.tasks_)
    open_tasks = open_tasks || row.open_attempt.has_value() || row.state == "pending";
  model.fixed_now_ms_ = clock_ms;
  model.finish(open_tasks);
  return owned;
}

}  // namespace pepita::cli::dashboard
