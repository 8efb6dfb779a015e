// `pepita report STATE_DIR -o run.html`: the self-contained HTML report of a run, built after
// the fact from its journal (the same page `pepita run --report` writes, see dashboard_run.hpp),
// also for a run that crashed or was killed: tasks it never finished show as interrupted.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "command.hpp"
#include "dashboard_model.hpp"
#include "dashboard_run.hpp"

namespace pepita::cli {
namespace {

struct ReportOptions {
  std::string source;  // a state directory or a journal file
  std::string output;
  std::string name;
};

constexpr const char* kCommand = "pepita report";
constexpr const char* kUsage = "pepita report STATE_DIR|JOURNAL -o FILE.html [--name NAME]";

int run_report(const ReportOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool is_dir = fs::is_directory(o.source, ec);
  const std::string journal = is_dir ? (fs::path(o.source) / "journal").string() : o.source;
  if (!fs::is_regular_file(journal, ec)) {
    return usage_error(kCommand, kUsage,
                       "no journal at " + journal +
                           ": pass the run's state directory (pepita run prints it: \"state "
                           "in ...\") or its journal file ([pool] journal)");
  }
  std::string name = o.name;
  if (name.empty()) {
    const fs::path p = fs::path(o.source).lexically_normal();
    name = (is_dir ? p : p.parent_path()).filename().string();
    if (name.empty()) name = "run";
  }
  auto model = dashboard::RunModel::from_journal(journal, name);
  if (!model) {
    std::fprintf(stderr, "pepita report: %s\n", model.error().message().c_str());
    return kExitFailure;
  }
  if (auto written = dashboard::write_report(**model, o.output); !written) {
    std::fprintf(stderr, "pepita report: %s\n", written.error().message().c_str());
    return kExitFailure;
  }
  const auto snapshot = (*model)->snapshot();
  std::printf("wrote %s: %zu tasks, %zu attempts%s\n", o.output.c_str(), (*model)->task_count(),
              (*model)->attempt_count(),
              snapshot["crashed"].get<bool>() ? " (the run did not finish: its unfinished tasks "
                                                "show as interrupted or pending)"
                                              : "");
  return kExitOk;
}

void add_report(CLI::App& app, Dispatch& dispatch) {
  auto* sub = app.add_subcommand(
      "report", "Write the HTML report of a run from its journal (also of a crashed run)");
  auto o = std::make_shared<ReportOptions>();
  sub->add_option("source", o->source, "The run's state directory, or its journal file")
      ->required();
  sub->add_option("-o,--output", o->output, "The HTML file to write (self-contained)")->required();
  sub->add_option("--name", o->name, "The job's name in the report (default: the directory's)");
  dispatch.on(
      sub, [o] { return run_report(*o); }, kUsage);
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(report, pepita::cli::add_report);
