#pragma once
// Slurm through its command-line tools — sbatch, squeue, scancel — which are the interface Slurm
// keeps stable across versions (libslurm's API changes with every release). Output parsing is
// pure and tested on its own: `squeue --json` where the version has it (Slurm >= 21.08; Debian
// 12 ships 22.05), its `-o` text format otherwise.
//
//   SlurmCommands slurm = PEPITA_TRY(SlurmCommands::locate(""));
//   JobId id = PEPITA_TRY(slurm.submit({"--job-name=w", "--wrap=sleep 60"}));
//   auto states = PEPITA_TRY(slurm.states({id}));   // states[id].state == "RUNNING" ...
//   PEPITA_TRY_VOID(slurm.cancel({id}));

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::slurm {

using JobId = std::uint64_t;

/// What squeue says about one job.
struct JobState {
  std::string state;   // PENDING, RUNNING, COMPLETING, CANCELLED, TIMEOUT, PREEMPTED, ...
  std::string reason;  // why it is pending or ended ("Resources", "None", ...)
  std::string name;
};

/// True for states after which the job runs no more (COMPLETED, CANCELLED, FAILED, TIMEOUT,
/// PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE).
bool is_finished(std::string_view state) noexcept;

/// Parses `sbatch --parsable` output: "<id>" or "<id>;<cluster>". Protocol error otherwise.
Result<JobId> parse_sbatch_parsable(std::string_view out);
/// Parses `squeue --json`: the "jobs" array's job_id, job_state (a string, or a list of strings
/// in newer Slurm), state_reason and name. Protocol error for text that is not that document.
Result<std::map<JobId, JobState>> parse_squeue_json(std::string_view json);
/// Parses `squeue -h -o "%i|%T|%r|%j"` lines. Protocol error for a malformed line.
Result<std::map<JobId, JobState>> parse_squeue_text(std::string_view text);

/// Runs the Slurm commands. Thread-safe.
class SlurmCommands {
 public:
  /// Finds sbatch, squeue and scancel in `bin_dir`, or on PATH when empty. NotFound, naming the
  /// missing command and what to install, when one is absent.
  static Result<SlurmCommands> locate(const std::string& bin_dir);
  SlurmCommands(SlurmCommands&&) noexcept;
  SlurmCommands& operator=(SlurmCommands&&) noexcept;
  ~SlurmCommands();

  /// `sbatch --parsable ARGS...`; the job id. A refused submission is InvalidArgument carrying
  /// Slurm's own message ("sbatch: error: invalid partition specified: gpu").
  Result<JobId> submit(const std::vector<std::string>& sbatch_args) const;
  /// State of each job in `ids` that squeue still lists; jobs it no longer knows are absent.
  Result<std::map<JobId, JobState>> states(const std::vector<JobId>& ids) const;
  /// `scancel IDS...` (unknown or finished ids are not an error).
  Result<void> cancel(const std::vector<JobId>& ids) const;

 private:
  struct Output {
    int exit_code = -1;
    std::string out, err;
  };
  struct Runner;
  explicit SlurmCommands(std::unique_ptr<Runner> runner);
  Result<Output> run(const std::string& path, std::vector<std::string> args) const;

  std::unique_ptr<Runner> runner_;
};

}  // namespace pepita::slurm
