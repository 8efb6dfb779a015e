// RunModel: the run's tasks, attempts and lanes, fed by pool events or a journal.
#include "dashboard_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "pepita/core/format.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::cli::dashboard {

using nlohmann::json;

RunModel::RunModel(std::string job_name) : job_(std::move(job_name)) {}

double RunModel::now_ms() const {
  if (fixed_now_ms_) return *fixed_now_ms_;
  return std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
}

void RunModel::touch_task(std::uint32_t index) { changes_.push_back(index); }
void RunModel::touch_attempt(std::uint32_t index) {
  changes_.push_back(-1 - static_cast<std::int64_t>(index));
}

std::uint32_t RunModel::row_for(std::uint64_t id, const std::string& name,
                                const std::string& backend) {
  if (auto it = by_id_.find(id); it != by_id_.end()) return it->second;
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    by_id_[id] = it->second;
    return it->second;
  }
  const auto index = static_cast<std::uint32_t>(tasks_.size());
  TaskRow row;
  row.id = id;
  row.name = name;
  row.backend = backend;
  tasks_.push_back(std::move(row));
  by_id_[id] = index;
  by_name_.emplace(name, index);
  touch_task(index);
  return index;
}

void RunModel::add_tasks(const std::vector<task::Task>& tasks) {
  std::lock_guard lock(mu_);
  for (const auto& t : tasks) row_for(t.id(), t.name(), std::string(t.backend().name()));
}

std::uint32_t RunModel::take_lane(const std::string& backend) {
  std::uint32_t next_slot = 0;
  for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i].backend != backend) continue;
    if (!lanes_[i].busy) {
      lanes_[i].busy = true;
      return i;
    }
    next_slot = std::max(next_slot, lanes_[i].slot + 1);
  }
  lanes_.push_back({backend, next_slot, true});
  return static_cast<std::uint32_t>(lanes_.size() - 1);
}

void RunModel::release_lane(std::uint32_t lane) {
  if (lane < lanes_.size()) lanes_[lane].busy = false;
}

void RunModel::close_attempt(TaskRow& row, const std::string& state, double end_ms) {
  if (!row.open_attempt) return;
  const std::uint32_t a = *row.open_attempt;
  row.open_attempt.reset();
  attempts_[a].end_ms = std::max(end_ms, attempts_[a].start_ms);
  attempts_[a].state = state;
  release_lane(attempts_[a].lane);
  const double secs = (attempts_[a].end_ms - attempts_[a].start_ms) / 1000.0;
  std::size_t b = 0;
  while (b < std::size(kLatencyBuckets) && secs > kLatencyBuckets[b]) ++b;
  ++latency_counts_[b];
  latency_sum_ += secs;
  ++latency_count_;
  touch_attempt(a);
}

void RunModel::apply_result(TaskRow& row, const executor::ExecutionResult& r) {
  row.wall_s = std::chrono::duration<double>(r.wall).count();
  row.cpu_s = std::chrono::duration<double>(r.cpu).count();
  row.max_rss_kb = r.max_rss_kb;
  row.peak_memory = r.peak_memory;
  row.exit_code = r.exit_code;
  row.signal = r.signal;
  row.host = r.host;
  row.error = r.error;
  row.from_journal = r.from_journal;
  row.from_cache = r.from_cache;
  if (!r.ok()) {
    const std::string& err = r.stderr_data;
    row.stderr_tail = executor::utf8_lossy(
        std::string_view(err).substr(err.size() > kStderrTail ? err.size() - kStderrTail : 0));
  }
}

void RunModel::on_event(const pool::Event& e) {
  std::lock_guard lock(mu_);
  const std::uint32_t index = row_for(e.id, e.name, "");
  TaskRow& row = tasks_[index];
  const double now = now_ms();
  switch (e.kind) {
    case pool::Event::Kind::Started: {
      close_attempt(row, "interrupted", now);  // a lost Retrying: never two bars at once
      Attempt a;
      a.task = index;
      a.number = e.attempt == 0 ? row.attempts + 1 : e.attempt;
      a.lane = take_lane(row.backend.empty() ? std::string("any") : row.backend);
      a.start_ms = now;
      row.open_attempt = static_cast<std::uint32_t>(attempts_.size());
      attempts_.push_back(a);
      touch_attempt(*row.open_attempt);
      row.attempts = a.number;
      row.state = "running";
      break;
    }
    case pool::Event::Kind::Retrying:
      ++retries_;
      close_attempt(row, e.result ? std::string(to_string(e.result->status)) : "failed", now);
      if (e.result) apply_result(row, *e.result);
      row.state = "retrying";
      break;
    case pool::Event::Kind::Finished:
      if (e.result) {
        const std::string state(to_string(e.result->status));
        close_attempt(row, state, now);
        apply_result(row, *e.result);
        row.state = state;
        row.attempts = std::max(row.attempts, e.result->attempts);
      } else {
        close_attempt(row, "failed", now);
        row.state = "failed";
      }
      break;
  }
  touch_task(index);
}

void RunModel::set_workers(std::vector<WorkerRow> workers, std::uint64_t queued) {
  std::lock_guard lock(mu_);
  workers_ = std::move(workers);
  queued_ = queued;
}

void RunModel::finish(bool crashed) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  const double now = now_ms();
  if (crashed) {
    for (auto& row : tasks_) {
      if (row.open_attempt || row.state == "retrying") {
        close_attempt(row, "interrupted", now);
        row.state = "interrupted";
        touch_task(static_cast<std::uint32_t>(&row - tasks_.data()));
      }
    }
  }
  fixed_now_ms_ = now;
  finished_ = true;
  crashed_ = crashed;
  changes_.push_back(0);  // the page learns "finished" from a delta
}

bool RunModel::finished() const {
  std::lock_guard lock(mu_);
  return finished_;
}

std::uint64_t RunModel::version() const {
  std::lock_guard lock(mu_);
  return changes_.size();
}

std::size_t RunModel::task_count() const {
  std::lock_guard lock(mu_);
  return tasks_.size();
}

std::size_t RunModel::attempt_count() const {
  std::lock_guard lock(mu_);
  return attempts_.size();
}

void RunModel::add_synthetic(const std::string& name, const std::string& backend,
                             std::uint32_t lane_slot, double start_ms, double end_ms,
                             const std::string& state, const std::string& stderr_tail) {
  std::lock_guard lock(mu_);
  const auto index = row_for(tasks_.size() + 1, name, backend);
  TaskRow& row = tasks_[index];
  std::uint32_t lane = 0;
  for (; lane < lanes_.size(); ++lane)
    if (lanes_[lane].backend == backend && lanes_[lane].slot == lane_slot) break;
  if (lane == lanes_.size()) lanes_.push_back({backend, lane_slot, false});
  Attempt a{index, row.attempts + 1, lane, start_ms, end_ms, state};
  attempts_.push_back(a);
  row.attempts = a.number;
  row.state = state;
  row.wall_s = (end_ms - start_ms) / 1000.0;
  row.exit_code = state == "succeeded" ? 0 : 1;
  row.stderr_tail = stderr_tail;
  fixed_now_ms_ = std::max(fixed_now_ms_.value_or(0), end_ms);
  finished_ = true;
}

json RunModel::task_json(std::uint32_t i) const {
  const TaskRow& t = tasks_[i];
  return json::array({t.id, t.name, t.backend, t.state, t.attempts, t.wall_s, t.cpu_s, t.max_rss_kb,
                      t.exit_code, t.signal, t.host, t.error,
                      t.from_journal ? 1 : (t.from_cache ? 2 : 0)});
}

json RunModel::attempt_json(std::uint32_t i) const {
  const Attempt& a = attempts_[i];
  return json::array({a.task, a.number, a.lane, std::round(a.start_ms * 10) / 10,
                      a.end_ms < 0 ? -1.0 : std::round(a.end_ms * 10) / 10, a.state});
}

// At most ~300 points: attempts finished per bucket and attempts running at its end.
json RunModel::series_json() const {
  const double end = now_ms();
  const double width = std::max(100.0, std::ceil(end / 300.0 / 100.0) * 100.0);
  const auto n = static_cast<std::size_t>(end / width) + 1;
  std::vector<std::int64_t> finished(n, 0), running_delta(n + 1, 0);
  for (const Attempt& a : attempts_) {
    const auto s = std::min(n - 1, static_cast<std::size_t>(a.start_ms / width));
    const double e = a.end_ms < 0 ? end : a.end_ms;
    const auto f = std::min(n - 1, static_cast<std::size_t>(e / width));
    if (a.end_ms >= 0) ++finished[f];
    ++running_delta[s];
    if (a.end_ms >= 0)
      --running_delta[f];
    else
      --running_delta[n];
  }
  json out = json::array();
  std::int64_t running = 0;
  for (std::size_t b = 0; b < n; ++b) {
    running += running_delta[b];
    out.push_back(json::array({static_cast<double>(b) * width / 1000.0, finished[b], running}));
  }
  return out;
}

json RunModel::workers_json() const {
  json out = json::array();
  for (const auto& w : workers_)
    out.push_back(
        {{"backend", w.backend}, {"running", w.running}, {"slots", w.slots}, {"ready", w.ready}});
  return out;
}

json RunModel::snapshot() const {
  std::lock_guard lock(mu_);
  json tasks = json::array(), attempts = json::array(), lanes = json::array();
  json failures = json::object();
  for (std::uint32_t i = 0; i < tasks_.size(); ++i) {
    tasks.push_back(task_json(i));
    if (!tasks_[i].stderr_tail.empty()) failures[std::to_string(i)] = tasks_[i].stderr_tail;
  }
  for (std::uint32_t i = 0; i < attempts_.size(); ++i) attempts.push_back(attempt_json(i));
  for (const auto& l : lanes_) lanes.push_back(pepita::fmt("{}#{}", l.backend, l.slot));
  return {{"job", job_},
          {"now_ms", now_ms()},
          {"finished", finished_},
          {"crashed", crashed_},
          {"version", changes_.size()},
          {"lanes", lanes},
          {"tasks", tasks},
          {"attempts", attempts},
          {"failures", failures},
          {"series", series_json()},
          {"workers", workers_json()},
          {"queued", queued_}};
}

json RunModel::delta_since(std::uint64_t version) const {
  std::lock_guard lock(mu_);
  json tasks = json::object(), attempts = json::object(), failures = json::object();
  for (std::size_t k = std::min<std::uint64_t>(version, changes_.size()); k < changes_.size();
       ++k) {
    const std::int64_t c = changes_[k];
    if (c >= 0) {
      const auto i = static_cast<std::uint32_t>(c);
      tasks[std::to_string(i)] = task_json(i);
      if (!tasks_[i].stderr_tail.empty()) failures[std::to_string(i)] = tasks_[i].stderr_tail;
    } else {
      const auto i = static_cast<std::uint32_t>(-1 - c);
      attempts[std::to_string(i)] = attempt_json(i);
    }
  }
  json lanes = json::array();
  for (const auto& l : lanes_) lanes.push_back(pepita::fmt("{}#{}", l.backend, l.slot));
  return {{"now_ms", now_ms()},         {"finished", finished_}, {"crashed", crashed_},
          {"version", changes_.size()}, {"lanes", lanes},        {"tasks", tasks},
          {"attempts", attempts},       {"failures", failures},  {"series", series_json()},
          {"workers", workers_json()},  {"queued", queued_}};
}

}  // namespace pepita::cli::dashboard
