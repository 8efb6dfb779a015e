// sbatch/squeue/scancel as child processes (through the executor module's ProcessExecutor, with
// a timeout so a hung slurmctld cannot hang the driver) and the parsers for their output.
#include "pepita/slurm/commands.hpp"

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pepita/executor/process.hpp"
#include "pepita/task/task.hpp"

namespace pepita::slurm {
namespace {

namespace fs = std::filesystem;

constexpr auto kCommandTimeout = std::chrono::seconds(60);

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

Result<JobId> parse_id(std::string_view text) {
  JobId id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id == 0) {
    return fail(ErrorCode::Protocol, "not a Slurm job id: '" + std::string(text) + "'");
  }
  return id;
}

std::string find_command(const std::string& bin_dir, const std::string& name) {
  if (!bin_dir.empty()) {
    const fs::path p = fs::path(bin_dir) / name;
    return ::access(p.c_str(), X_OK) == 0 ? p.string() : std::string();
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::string user_name() {
  if (const passwd* pw = ::getpwuid(::getuid())) return pw->pw_name;
  return std::to_string(::getuid());
}

std::string first_line(std::string_view text) {
  text = trim(text);
  return std::string(text.substr(0, text.find('\n')));
}

}  // namespace

bool is_finished(std::string_view state) noexcept {
  for (std::string_view s : {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED",
                             "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}) {
    if (state == s) return true;
  }
  return false;
}

Result<JobId> parse_sbatch_parsable(std::string_view out) {
  out = trim(out);
  // A site's job_submit plugin may print notes before the id: the id is the last line.
  if (const auto nl = out.rfind('\n'); nl != std::string_view::npos) out = out.substr(nl + 1);
  return parse_id(out.substr(0, out.find(';')));
}

Result<std::map<JobId, JobState>> parse_squeue_json(std::string_view json) {
  const auto doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("jobs") || !doc["jobs"].is_array()) {
    return fail(ErrorCode::Protocol, "squeue --json printed no \"jobs\" array");
  }
  std::map<JobId, JobState> out;
  for (const auto& job : doc["jobs"]) {
    if (!job.is_object() || !job.contains("job_id") || !job["job_id"].is_number_unsigned()) {
      return fail(ErrorCode::Protocol, "squeue --json: a job without a numeric job_id");
    }
    JobState st;
    const auto& state = job.contains("job_state") ? job["job_state"] : nlohmann::json();
    // A string up to Slurm 23.02, a list of flags ("RUNNING", "COMPLETING"...) after.
    if (state.is_string()) {
      st.state = state.get<std::string>();
    } else if (state.is_array() && !state.empty() && state[0].is_string()) {
      st.state = state[0].get<std::string>();
    } else {
      return fail(
          ErrorCode::Protocol,
          "squeue --json: job " + std::to_string(job["job_id"].get<JobId>()) + " has no job_state");
    }
    if (job.contains("state_reason") && job["state_reason"].is_string()) {
      st.reason = job["state_reason"].get<std::string>();
    }
    if (job.contains("name") && job["name"].is_string()) st.name = job["name"].get<std::string>();
    out[job["job_id"].get<JobId>()] = std::move(st);
  }
  return out;
}

Result<std::map<JobId, JobState>> parse_squeue_text(std::string_view text) {
  std::map<JobId, JobState> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty()) continue;
    std::vector<std::string_view> fields;
    std::string_view rest = line;
    for (int i = 0; i < 3; ++i) {
      const auto bar = rest.find('|');
      if (bar == std::string_view::npos) break;
      fields.push_back(rest.substr(0, bar));
      rest = rest.substr(bar + 1);
    }
    fields.push_back(rest);  // the name, which may itself contain '|'
    if (fields.size() != 4) {
      return fail(ErrorCode::Protocol,
                  "squeue line '" + std::string(line) + "' is not id|state|reason|name");
    }
    // Array jobs print "123_4": the pilot jobs are never arrays, so skip what is not ours.
    auto id = parse_id(fields[0]);
    if (!id) continue;
    out[*id] = JobState{std::string(fields[1]), std::string(fields[2]), std::string(fields[3])};
  }
  return out;
}

struct SlurmCommands::Runner {
  std::string sbatch, squeue, scancel, user;
  std::unique_ptr<executor::ProcessExecutor> processes;
  std::atomic<bool> json{true};  // cleared once squeue rejects --json (Slurm < 21.08)
};

SlurmCommands::SlurmCommands(std::unique_ptr<Runner> runner) : runner_(std::move(runner)) {}
SlurmCommands::SlurmCommands(SlurmCommands&&) noexcept = default;
SlurmCommands& SlurmCommands::operator=(SlurmCommands&&) noexcept = default;
SlurmCommands::~SlurmCommands() = default;

Result<SlurmCommands> SlurmCommands::locate(const std::string& bin_dir) {
  auto r = std::make_unique<Runner>();
  for (auto [name, path] : {std::pair{"sbatch", &r->sbatch}, std::pair{"squeue", &r->squeue},
                            std::pair{"scancel", &r->scancel}}) {
    *path = find_command(bin_dir, name);
    if (path->empty()) {
      return fail(ErrorCode::NotFound,
                  std::string(name) + " not found " +
                      (bin_dir.empty() ? "on PATH" : "in " + bin_dir) +
                      ": run on a Slurm login node, or install the Slurm client (Debian: "
                      "slurm-client) and point it at your cluster");
    }
  }
  r->user = user_name();
  r->processes = PEPITA_TRY(executor::ProcessExecutor::create({.slots = 4}));
  return SlurmCommands(std::move(r));
}

Result<SlurmCommands::Output> SlurmCommands::run(const std::string& path,
                                                 std::vector<std::string> args) const {
  auto task =
      PEPITA_TRY(task::Task::binary(path).args(std::move(args)).timeout(kCommandTimeout).build());
  std::promise<executor::ExecutionResult> promise;
  auto result = promise.get_future();
  PEPITA_TRY_VOID(runner_->processes->start(
      task, {}, [&promise](executor::ExecutionResult r) { promise.set_value(std::move(r)); }));
  executor::ExecutionResult r = result.get();
  const std::string command = fs::path(path).filename().string();
  if (r.status == executor::Status::TimedOut) {
    return fail(ErrorCode::TimedOut, command + " did not answer within " +
                                         std::to_string(kCommandTimeout.count()) +
                                         " s: is slurmctld up? (try `sinfo`)");
  }
  if (r.status == executor::Status::LaunchFailed) {
    return fail(ErrorCode::NotFound, command + " could not be started: " + r.error);
  }
  return Output{r.exit_code, std::move(r.stdout_data), std::move(r.stderr_data)};
}

Result<JobId> SlurmCommands::submit(const std::vector<std::string>& sbatch_args) const {
  std::vector<std::string> args{"--parsable"};
  args.insert(args.end(), sbatch_args.begin(), sbatch_args.end());
  Output o = PEPITA_TRY(run(runner_->sbatch, std::move(args)));
  if (o.exit_code != 0) {
    return fail(ErrorCode::InvalidArgument,
                "Slurm refused the worker job: " +
                    (trim(o.err).empty() ? "sbatch exited " + std::to_string(o.exit_code)
                                         : std::string(trim(o.err))));
  }
  return parse_sbatch_parsable(o.out);
}

Result<std::map<JobId, JobState>> SlurmCommands::states(const std::vector<JobId>& ids) const {
  std::map<JobId, JobState> all;
  // By user, not by --jobs: squeue fails outright when one listed id has been purged.
  if (runner_->json.load()) {
    Output o = PEPITA_TRY(run(runner_->squeue, {"--json", "--user=" + runner_->user}));
    if (o.exit_code == 0) {
      all = PEPITA_TRY(parse_squeue_json(o.out));
    } else if (o.err.find("json") != std::string::npos ||
               o.err.find("unrecognized") != std::string::npos) {
      runner_->json.store(false);
    } else {
      return fail(ErrorCode::Io, "squeue failed: " + first_line(o.err));
    }
  }
  if (!runner_->json.load()) {
    Output o =
        PEPITA_TRY(run(runner_->squeue, {"-h", "--user=" + runner_->user, "-o", "%i|%T|%r|%j"}));
    if (o.exit_code != 0) return fail(ErrorCode::Io, "squeue failed: " + first_line(o.err));
    all = PEPITA_TRY(parse_squeue_text(o.out));
  }
  std::map<JobId, JobState> mine;
  for (JobId id : ids) {
    if (auto it = all.find(id); it != all.end()) mine.insert(*it);
  }
  return mine;
}

Result<void> SlurmCommands::cancel(const std::vector<JobId>& ids) const {
  if (ids.empty()) return {};
  std::vector<std::string> args;
  for (JobId id : ids) args.push_back(std::to_string(id));
  Output o = PEPITA_TRY(run(runner_->scancel, std::move(args)));
  if (o.exit_code != 0) return fail(ErrorCode::Io, "scancel failed: " + first_line(o.err));
  return {};
}

}  // namespace pepita::slurm
