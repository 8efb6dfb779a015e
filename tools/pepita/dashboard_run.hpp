#pragma once
// What `pepita run --dashboard/--report` adds to a run: the RunModel fed by the pool's events,
// the live server once the pool exists, and the report written when the run ends. run.cpp only
// forwards events and calls attach/finish.
//
//   RunDashboard dash({.serve = true, .address = "127.0.0.1:8265", .report = "run.html"}, "job");
//   builder.on_event([&](const pool::Event& e) { dash.on_event(e); });
//   auto pool = builder.build().value();
//   if (auto ok = dash.attach(pool, job.tasks); !ok) ...;   // prints the URL
//   ... wait_all ...;  dash.finish(interrupted);              // report, then server stops

#include <memory>
#include <string>
#include <vector>

#include "dashboard_model.hpp"
#include "dashboard_server.hpp"
#include "pepita/error.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::cli::dashboard {

struct RunDashboardOptions {
  bool serve = false;    // --dashboard
  std::string address;   // its ADDR (default 127.0.0.1:8265)
  std::string token;     // --dashboard-token
  bool control = false;  // --dashboard-control
  std::string report;    // --report FILE ("" for none)
};

class RunDashboard {
 public:
  RunDashboard(RunDashboardOptions options, std::string job_name);
  ~RunDashboard();
  bool enabled() const noexcept { return options_.serve || !options_.report.empty(); }

  /// Forwards a pool event to the model (any thread).
  void on_event(const pool::Event& e) { model_.on_event(e); }
  /// Adds the tasks as pending rows and, with --dashboard, starts the server on `pool` (its
  /// worker loads and, with control, its cancel). Prints the URL (and a generated token) once.
  Result<void> attach(pool::Pool& pool, const std::vector<task::Task>& tasks);
  /// The run ended: lets the open pages take the last delta, writes the report, stops the
  /// server. Call before the pool is destroyed. Returns the report's error, if any.
  Result<void> finish(bool interrupted);

  /// Stops the server (idempotent); the model stays.
  void stop();

  RunModel& model() noexcept { return model_; }

 private:
  RunDashboardOptions options_;
  RunModel model_;
  std::unique_ptr<Server> server_;
};

/// Writes the self-contained report page of `model` to `path` (through a temporary file and a
/// rename, so a reader never sees half a page). Io naming the path on failure.
Result<void> write_report(const RunModel& model, const std::string& path);

}  // namespace pepita::cli::dashboard
