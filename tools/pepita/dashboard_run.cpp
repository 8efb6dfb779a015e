// RunDashboard: the glue between `pepita run` and the dashboard's model, server and report.
#include "dashboard_run.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "pepita/core/format.hpp"

namespace pepita::cli::dashboard {

RunDashboard::RunDashboard(RunDashboardOptions options, std::string job_name)
    : options_(std::move(options)), model_(std::move(job_name)) {
  if (options_.address.empty()) options_.address = "127.0.0.1:8265";
}

RunDashboard::~RunDashboard() { stop(); }

void RunDashboard::stop() {
  if (server_) server_->stop();
}

Result<void> RunDashboard::attach(pool::Pool& pool, const std::vector<task::Task>& tasks) {
  model_.add_tasks(tasks);
  if (!options_.serve) return {};
  ServerSources sources;
  sources.model = &model_;
  sources.refresh = [&pool, this] {
    std::vector<WorkerRow> rows;
    for (const auto& w : pool.worker_loads())
      rows.push_back({std::string(w.backend.name()), w.running, w.slots, w.ready});
    model_.set_workers(std::move(rows), pool.stats().queued);
  };
  if (options_.control) sources.cancel = [&pool](std::uint64_t id) { return pool.cancel(id); };
  sources.refresh();
  server_ = PEPITA_TRY(Server::start(
      {.address = options_.address, .token = options_.token, .control = options_.control},
      std::move(sources)));
  std::fprintf(stderr, "pepita run: dashboard at %s%s\n", server_->url().c_str(),
               options_.control ? " (tasks can be cancelled from the page)" : " (read-only)");
  if (server_->token_generated()) {
    std::fprintf(stderr,
                 "pepita run: dashboard token %s (generated: every request needs it; pass "
                 "--dashboard-token to choose one)\n",
                 server_->token().c_str());
  }
  std::fflush(stderr);
  return {};
}

Result<void> RunDashboard::finish(bool interrupted) {
  model_.finish(interrupted);
  Result<void> written;
  if (!options_.report.empty()) written = write_report(model_, options_.report);
  if (server_) {
    server_->notify();
    // One batch interval and a little: open pages take the final delta before the server goes.
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    server_->stop();
    server_.reset();
  }
  return written;
}

Result<void> write_report(const RunModel& model, const std::string& path) {
  const auto snapshot = model.snapshot();
  const std::string page = render_page(&snapshot);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(page.data(), static_cast<std::streamsize>(page.size()));
    out.close();
    if (!out) {
      return fail(ErrorCode::Io, pepita::fmt("cannot write the report {}: check that its "
                                             "directory exists and is writable",
                                             tmp));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;  // leave nothing behind: the caller sees only the error
    std::filesystem::remove(tmp, ignored);
    return fail(ErrorCode::Io, pepita::fmt("cannot move the report to {}: {}", path, ec.message()));
  }
  return {};
}

}  // namespace pepita::cli::dashboard
