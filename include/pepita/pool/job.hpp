#pragma once
// Job files: a TOML description of a batch (pool settings + tasks with dependencies) that
// `pepita run` executes. Parsing checks everything that can be checked before running — syntax,
// unknown keys, value types and ranges, unknown or cyclic dependencies, binaries that do not
// exist, resource requests (issue 22: cpus, memory, gpus, named counts, retry_on), sandboxes
// (issue 23: `sandbox = "strict"` or a table of parts; examples/sandbox/job.toml), declared
// files (issue 24: `inputs`/`outputs` relative to the task's cwd, input globs, dependencies
// inferred from who writes what; two writers of one output, a cycle through files, a missing
// input nobody writes, an output outside the state directory are errors) — and reports
// each problem as "file:line:column: message". Format: docs in examples/wordcount/job.toml
// (resource keys: examples/resources/job.toml); TOML 1.0 via toml++.
//
//   auto job = load_job("job.toml", {.pepita_dir = "/usr/bin", .state_dir = "/tmp/s"});
//   if (!job) { std::cerr << job.error().message() << "\n"; return 2; }
//   auto pool = job->pool_builder().build();

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool {

/// Values for the variables job files may use: ${job_dir}, ${pepita_dir}, ${state_dir}, plus
/// ${i} inside a task with `count`, and ${env:NAME}.
struct JobOptions {
  std::string pepita_dir;      // directory of the pepita executable (helper binaries live there)
  std::string state_dir;       // per-job directory for the journal and task outputs
  bool check_binaries = true;  // for process, remote and microvm tasks (their command is a file)
  /// The backend names a task may use (e.g. executor::Registry::names()); empty: the built-ins
  /// (process, remote, microvm, gpu). An unknown name is an error listing these.
  std::vector<task::Backend> backends{};
  /// The sandbox of process tasks that name none, neither in the task nor in [defaults]
  /// (`pepita run --sandbox LEVEL`; issue 23). Tasks on other backends run without one.
  task::SandboxPolicy default_sandbox{};
  /// Every task runs on this backend, whatever the file says (`pepita run --zero-worker` sets
  /// the "zero" backend). The file is still checked as written (binaries, sandboxes, resources,
  /// files); only where the tasks run changes, and a sandbox is then dropped (it belongs to the
  /// backend the file named).
  std::optional<task::Backend> force_backend{};
};

struct Job {
  std::string name;     // [job] name, default: the file's stem
  std::string file;     // as given to load_job
  std::string journal;  // [pool] journal, default: <state_dir>/journal
  unsigned cpu_workers = 0;
  std::size_t process_slots = 0;
  std::chrono::nanoseconds kill_grace{std::chrono::seconds(2)};
  std::chrono::nanoseconds reserve_after{std::chrono::seconds(1)};  // [pool] reserve_after
  fault::RetryPolicy retry;
  fault::BreakerConfig breaker;
  std::vector<Task> tasks;        // in file order (count-expanded)
  std::vector<bool> show_output;  // per task: print its stdout after the summary
  /// Per task: where each resource key it uses was written, as "file:line:column" — "cpus",
  /// "memory", "gpus", "pin_cpus", "pids", "retry_on", "resources.<name>" (from the task or
  /// [defaults]). check_fit's messages point there.
  std::vector<std::map<std::string, std::string>> resource_at;

  /// Whether every task that runs on this machine (a local backend, or "any") could ever get
  /// what it asks for from `host` (task::Inventory::can_ever_fit at its first attempt) — the
  /// check `pepita run` and `run --check` make before running anything. InvalidArgument at the
  /// key that cannot be met: "job.toml:12:8: task 'train' can never run here: needs 4 GPUs;
  /// this host has 2 (...)". Tasks on remote workers are left to their dispatcher.
  Result<void> check_fit(const task::Inventory& host) const;

  /// A Pool::Builder with this job's settings (the caller adds journal/observer).
  Pool::Builder pool_builder() const;
};

/// Reads and checks a job file. Every error is InvalidArgument (NotFound for a missing file)
/// with a message starting "<file>:<line>:<column>: " where a position is known.
Result<Job> load_job(const std::string& path, const JobOptions& options);
/// The same from text; `file` names the source in messages and anchors relative paths.
Result<Job> parse_job(std::string_view text, const std::string& file, const JobOptions& options);

/// Expands ${...} variables in `text`; InvalidArgument naming an unknown variable.
Result<std::string> expand_variables(std::string_view text,
                                     const std::vector<std::pair<std::string, std::string>>& vars);

}  // namespace pepita::pool
