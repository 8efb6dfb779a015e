#pragma once
// The run model behind `pepita run --dashboard`, `--report`, `pepita report` and /metrics: one
// in-memory record of a run (tasks, attempts with start/end times and their slot lane, a
// throughput series) fed by the pool's events (pool::Event) or rebuilt from a journal
// (fault::read_journal), rendered as JSON for the page and as Prometheus text exposition
// (https://prometheus.io/docs/instrumenting/exposition_formats/) for scrapers.
//
//   RunModel model("wordcount");
//   model.add_tasks(job.tasks);                                   // every task as "pending"
//   builder.on_event([&](const pool::Event& e) { model.on_event(e); });
//   auto snap = model.snapshot();  auto d = model.delta_since(v);  // what the page receives
//   std::string text = model.metrics();                            // GET /metrics

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/task/task.hpp"

namespace pepita::cli::dashboard {

/// One attempt of one task: a bar on the timeline.
struct Attempt {
  std::uint32_t task = 0;    // index into the model's tasks
  std::uint32_t number = 1;  // 1-based
  std::uint32_t lane = 0;    // index into the model's lanes
  double start_ms = 0;       // since the run started
  double end_ms = -1;        // -1 while running
  std::string state = "running";
};

/// One task: a row of the table.
struct TaskRow {
  std::uint64_t id = 0;
  std::string name;
  std::string backend;
  std::string state = "pending";  // pending, running, retrying, interrupted, or a Status name
  std::uint32_t attempts = 0;
  double wall_s = 0, cpu_s = 0;
  std::int64_t max_rss_kb = 0;
  std::uint64_t peak_memory = 0;
  int exit_code = -1;
  int signal = 0;
  std::string host;
  std::string error;
  std::string stderr_tail;  // the last kStderrTail bytes of a failed task's stderr
  bool from_journal = false;
  bool from_cache = false;
  std::optional<std::uint32_t> open_attempt;  // index into attempts while one runs
};

/// A pool executor's use, as Pool::worker_loads reports it.
struct WorkerRow {
  std::string backend;
  std::size_t running = 0, slots = 0, ready = 0;
};

inline constexpr std::size_t kStderrTail = 2048;
/// Upper bounds of the attempt-latency histogram, seconds.
inline constexpr double kLatencyBuckets[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800};

class RunModel {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RunModel(std::string job_name);

  /// Adds every task as a pending row (before submit_all, so the page shows the whole job).
  void add_tasks(const std::vector<task::Task>& tasks);
  /// Applies one pool event; thread-safe (the pool calls it from its threads).
  void on_event(const pool::Event& event);
  /// The pool's executors and queue, polled by whoever serves the page.
  void set_workers(std::vector<WorkerRow> workers, std::uint64_t queued);
  /// The run is over (also what a report from a journal with no end says: `crashed`).
  void finish(bool crashed = false);
  bool finished() const;

  /// Everything the page draws: {"job","now_ms","finished","crashed","version","lanes",
  /// "tasks":[[id,name,backend,state,attempts,wall_s,cpu_s,rss_kb,exit,signal,host,error,
  /// journal]...], "attempts":[[task,number,lane,start_ms,end_ms,state]...],
  /// "failures":{task_index:stderr_tail}, "series":[[t_s,finished,running]...], "workers"}.
  nlohmann::json snapshot() const;
  /// What changed after `version` (tasks and attempts by index, with the same shapes, plus the
  /// series and workers in full), and the version to ask from next.
  nlohmann::json delta_since(std::uint64_t version) const;
  std::uint64_t version() const;

  /// Prometheus text exposition (format 0.0.4) of the run: tasks by state, attempts, retries,
  /// queue depth, slot use and slots per backend, bytes staged, attempt latency histogram.
  std::string metrics() const;

  /// Rebuilds a model from a journal (any format fault::read_journal reads). Attempt times are
  /// the records' wall-clock times where the journal has them (format 3), otherwise laid out
  /// from the order of the records and the attempts' wall times. A journal whose tasks did not
  /// all finish is a crashed run: its open attempts end "interrupted".
  static Result<std::unique_ptr<RunModel>> from_journal(const std::string& path,
                                                        std::string job_name);

  // For tests and the report.
  std::size_t task_count() const;
  std::size_t attempt_count() const;
  /// Appends a finished attempt directly (tests, benchmarks: a generated 100k-task model).
  void add_synthetic(const std::string& name, const std::string& backend, std::uint32_t lane_slot,
                     double start_ms, double end_ms, const std::string& state,
                     const std::string& stderr_tail = {});

 private:
  std::uint32_t row_for(std::uint64_t id, const std::string& name, const std::string& backend);
  std::uint32_t take_lane(const std::string& backend);
  void release_lane(std::uint32_t lane);
  void touch_task(std::uint32_t index);
  void touch_attempt(std::uint32_t index);
  double now_ms() const;
  nlohmann::json task_json(std::uint32_t index) const;
  nlohmann::json attempt_json(std::uint32_t index) const;
  nlohmann::json series_json() const;
  nlohmann::json workers_json() const;
  void close_attempt(TaskRow& row, const std::string& state, double end_ms);
  void apply_result(TaskRow& row, const executor::ExecutionResult& r);

  mutable std::mutex mu_;
  std::string job_;
  Clock::time_point t0_ = Clock::now();
  std::optional<double> fixed_now_ms_;  // a finished run's clock stops
  bool finished_ = false, crashed_ = false;
  std::vector<TaskRow> tasks_;
  std::unordered_map<std::uint64_t, std::uint32_t> by_id_;
  std::unordered_map<std::string, std::uint32_t> by_name_;
  std::vector<Attempt> attempts_;
  struct Lane {
    std::string backend;
    std::uint32_t slot = 0;
    bool busy = false;
  };
  std::vector<Lane> lanes_;
  std::vector<WorkerRow> workers_;
  std::uint64_t queued_ = 0;
  // Change log: entry k (version k + 1) names one task (index) or attempt (~index).
  std::vector<std::int64_t> changes_;
  std::uint64_t latency_counts_[std::size(kLatencyBuckets) + 1] = {};
  double latency_sum_ = 0;
  std::uint64_t latency_count_ = 0;
  std::uint64_t retries_ = 0;
};

/// A worker's counters (transport::WorkerStats and its slots) for `pepita worker --metrics`.
struct WorkerCounters {
  std::uint64_t clients_accepted = 0, clients_rejected = 0, tasks_run = 0, tasks_returned = 0;
  std::uint64_t blobs_stored = 0, slots = 0;
  std::uint64_t bytes_staged = 0;  // declared inputs fetched plus outputs sent back (issue 24)
};
/// Prometheus text exposition of a worker's counters (pepita_worker_*), with the same
/// pepita_bytes_staged_total family as a run's.
std::string worker_metrics(const WorkerCounters& counters);

/// The page (tools/pepita/dashboard/index.html with its JS and CSS inline). `data` empty: the
/// live page, which connects to /events; otherwise the report, with this snapshot inlined and no
/// connection made.
std::string render_page(const nlohmann::json* data);

}  // namespace pepita::cli::dashboard
