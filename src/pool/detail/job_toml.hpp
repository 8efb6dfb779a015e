#pragma once
// Shared by the job-file parser's files (job.cpp, job_resources.cpp): errors positioned at a
// toml++ node as "file:line:column: message", and the resource keys of issue 22 (cpus, pin_cpus,
// memory, gpus, resources, pids, retry_on) read into task::ResourceRequest and task::RetryOn.
// Private to the pool module; toml++ stays out of the public headers.

#include <toml++/toml.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool::detail {

/// "file:line:column" of `where` in `file` (just `file` when toml++ knows no position).
inline std::string position(const std::string& file, const toml::source_region& where) {
  std::string loc = file;
  if (where.begin.line != 0) {
    loc.append(":")
        .append(std::to_string(where.begin.line))
        .append(":")
        .append(std::to_string(where.begin.column));
  }
  return loc;
}

/// Errors of one job file, each starting with the position it is about.
class Ctx {
 public:
  explicit Ctx(std::string file) : file_(std::move(file)) {}
  std::unexpected<Error> err(const toml::source_region& where, const std::string& msg) const {
    return fail(ErrorCode::InvalidArgument, position(file_, where).append(": ").append(msg));
  }
  std::unexpected<Error> err(const toml::node& n, const std::string& msg) const {
    return err(n.source(), msg);
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

/// The resource keys a [[task]] or [defaults] may hold.
inline constexpr std::string_view kResourceKeys[] = {"cpus",      "pin_cpus", "memory",  "gpus",
                                                     "resources", "pids",     "retry_on"};
bool is_resource_key(std::string_view key);

/// What [defaults] and then one task say about resources; a task starts from a copy of the
/// defaults' spec and each of its keys replaces the default's (`resources` per name).
struct ResourceSpec {
  task::ResourceRequest request;
  std::vector<task::RetryOn> retry_on;
  bool has_retry_on = false;
  /// The node that last set each key ("cpus", "memory", "resources.license", ...): where a
  /// message about it points.
  std::map<std::string, const toml::node*> where;
};

/// Reads one resource key (is_resource_key(key)) into `spec`. InvalidArgument at the value (or
/// the offending element / name) for a wrong type, a bad size or amount, cpus = 0, negative
/// gpus, a fractional gpus above 1, a duplicate GPU id, a bad resource name or retry_on kind.
Result<void> apply_resource_key(const Ctx& ctx, std::string_view key, const toml::node& value,
                                ResourceSpec& spec);

/// The checks that need the whole request and the task's backend: fractional cpus only on the
/// process backend (or "any"), where a CFS quota holds them (as task::Builder rules), pin_cpus with
/// whole cpus, and ResourceRequest::validate. `fallback` positions a message no key owns.
Result<void> check_resources(const Ctx& ctx, const ResourceSpec& spec, const task::Backend& backend,
                             const std::string& task_name, const toml::node& fallback);

// ---- issue 23: sandbox (job_sandbox.cpp) ----

/// `sandbox = "none" | "standard" | "strict"`, or a table starting from `level` (default none)
/// whose keys override its parts: user_ns, mount_ns, pid_ns, ipc_uts_ns, network ("host" |
/// "none"), no_new_privs, seccomp, id, disk ("1G" or bytes), read_only, writable (arrays of
/// paths; relative ones start at `job_dir`), max_open_files, max_file_size, max_processes.
/// A table that changes a part of its level gives level Custom. InvalidArgument at the value
/// for an unknown key, a wrong type, a bad level, network, size or id, or binds and `disk`
/// without a mount namespace.
Result<task::SandboxPolicy> get_sandbox(
    const Ctx& ctx, const toml::node& value, const std::string& job_dir,
    const std::vector<std::pair<std::string, std::string>>& vars);

/// Whether a task on `backend` may carry a sandbox: process, remote and "any" (a microvm task is
/// isolated by its VM; a GPU or registered backend's command is not a process we spawn).
bool sandbox_applies(const task::Backend& backend);

}  // namespace pepita::pool::detail

namespace pepita::pool::detail {

// ---- issue 24: declared files (job_files.cpp) ----
/// One `inputs`/`outputs` element after ${...} expansion, with where it was written.
struct FileDecl {
  std::string path;
  const toml::node* node;
};
/// One task's declared files as written, and what the resolution makes of them.
struct TaskFiles {
  std::string cwd;  // the task's (absolute); relative paths start here
  std::vector<FileDecl> inputs, outputs;
  const toml::node* anchor = nullptr;  // the task's name: where task-level messages point
  std::vector<std::string> resolved_inputs, resolved_outputs;  // absolute, globs expanded
};
/// Resolves every task's files (relative to its cwd; input globs against the filesystem and
/// the declared outputs), then checks them: an output declared by two tasks, an output outside
/// `state_dir` (by `..`, an absolute path, or a symlinked parent; skipped when state_dir is
/// empty), an input that does not exist and that no task outputs, a glob that matches nothing.
/// Adds an edge reader -> writer to `deps` for each input another task outputs, and records it
/// in `inferred` (edge -> the file) so a cycle message can say which file links them.
Result<void> resolve_job_files(
    const Ctx& ctx, const std::vector<std::string>& names, std::vector<TaskFiles>& files,
    const std::string& state_dir,
    std::vector<std::vector<std::pair<std::size_t, const toml::node*>>>& deps,
    std::map<std::pair<std::size_t, std::size_t>, std::string>& inferred);

}  // namespace pepita::pool::detail
