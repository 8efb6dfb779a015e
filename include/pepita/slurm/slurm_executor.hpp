#pragma once
// pepita workers as Slurm jobs — the pilot-job model of Dask-jobqueue and Ray-on-Slurm: the
// driver asks Slurm for nodes (one `sbatch` job per worker), each job runs `pepita worker
// --connect` back to the driver (compute nodes need no inbound port), and the pool then
// schedules fine-grained tasks over pepita's own authenticated transport. Elastic: jobs are
// added while tasks wait and released when idle; a job Slurm ends (time limit, preemption,
// scancel) is a dead worker whose tasks are re-dispatched; shutdown cancels every job. The
// executor adapter library pepita_slurm_executor (src/slurm/executor/).
//
//   auto pool = PEPITA_TRY(pool::Pool::builder()
//                              .executor(slurm::workers({.nodes = 4, .partition = "cpu"}))
//                              .build());
//   pool.submit(PEPITA_TRY(task::Task::binary("/usr/bin/gzip").args({"-9", "/shared/a.txt"})
//                              .backend(task::Backend::Remote).build()));

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pepita/executor/executor.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/slurm/commands.hpp"

namespace pepita::slurm {

struct SlurmOptions {
  std::uint32_t nodes = 1;            // most worker jobs at once, one node each
  std::uint32_t min_nodes = 0;        // jobs kept while idle
  std::string partition;              // sbatch --partition; empty: the cluster's default
  std::string time_limit;             // sbatch --time ("30", "1:00:00", "2-0"); empty: partition's
  std::uint32_t cpus_per_worker = 1;  // --cpus-per-task, and the worker's slots
  std::uint32_t gpus = 0;             // --gpus per worker job
  /// --mem per worker job, bytes (sent as whole megabytes, rounded up); 0: the partition's
  /// default. The worker advertises what Slurm granted (slurm/grant.hpp), so a task asking for
  /// more memory, CPUs or GPUs than one worker job holds fails at submit.
  std::uint64_t memory = 0;
  std::string account;
  std::vector<std::string> extra_sbatch_args;  // passed to sbatch as they are, e.g. "--qos=low"
  std::string job_name = "pepita-worker";
  /// The pepita binary the jobs run; empty: this program. Must exist at that path on the
  /// compute nodes (a shared filesystem, as on most clusters).
  std::string worker_binary;
  /// Host name or address the workers dial; empty: this host's name.
  std::string driver_address;
  /// Where the driver accepts workers ("host:port", port 0 picks one).
  std::string listen = "0.0.0.0:0";
  /// Directory for the one-time key (removed at shutdown) and the jobs' logs; must be readable
  /// on the compute nodes. Empty: a fresh directory under $HOME/.pepita/slurm, removed at
  /// shutdown.
  std::string work_dir;
  std::string slurm_bin_dir;  // where sbatch/squeue/scancel are; empty: PATH
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds idle_release{30000};  // release jobs idle this long
  std::chrono::seconds worker_give_up{60};  // a worker exits when the driver is gone this long
  /// Jobs that may end before their worker connected (bad binary path, node trouble) before
  /// the driver stops submitting — a crash loop must not flood the queue. 0: nodes + 3.
  std::uint32_t max_failed_jobs = 0;
  bool tls = false;  // driver and workers talk TLS 1.3 (see docs/protocol.md)
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds dead_after{5000};  // a silent worker's tasks are re-dispatched
  std::function<void(std::string_view)> log;   // default: stderr
  /// When set, every job id submitted is appended to this file (one per line), and create()
  /// first scancels the ids a previous driver left there — a driver killed with SIGKILL cannot
  /// cancel its worker jobs, so the next run with the same state does — then empties it.
  std::string job_ids_file;
  /// The backend name the executor serves: Remote for `pepita run --slurm` (backend = "remote"
  /// tasks), slurm_backend() for the registered "slurm" backend. Tasks of another are refused.
  executor::Backend backend = executor::Backend::Remote;
};

/// One worker job as the driver tracks it.
struct WorkerJob {
  JobId id = 0;
  std::string state;  // squeue's (PENDING, RUNNING, ...), or "GONE" once squeue drops it
  std::string reason;
  bool connected = false;  // its worker has dialed in and authenticated
};

/// A RemoteExecutor (for SlurmOptions::backend: Remote or "slurm") whose workers are worker jobs
/// that this object submits and cancels.
class SlurmExecutor final : public executor::Executor {
 public:
  /// Checks the Slurm commands, writes the one-time key, starts listening and submits `nodes`
  /// worker jobs. NotFound when sbatch is missing; InvalidArgument with Slurm's message when it
  /// refuses the job (bad partition, account or limits). Nothing is left submitted on error.
  static Result<std::shared_ptr<SlurmExecutor>> create(SlurmOptions options);
  /// shutdown().
  ~SlurmExecutor() override;

  /// SlurmOptions::backend.
  executor::Backend backend() const noexcept override;
  std::size_t slots() const noexcept override;
  /// Process tasks of backend() (Task::binary(...).backend(Backend::Remote)); see
  /// transport::RemoteExecutor.
  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override;
  /// True: resource requests are placed on the worker jobs by what each advertised (what Slurm
  /// granted it), as transport::RemoteExecutor does.
  bool places_resources() const noexcept override { return true; }
  /// Whether a task asking `request` fits a worker job. Before any worker has connected it is
  /// judged against what a job is asked for (cpus_per_worker, memory and gpus when set);
  /// afterwards against what the workers advertised. "needs 8G memory; the largest worker has
  /// 4G".
  Result<void> can_ever_fit(const task::ResourceRequest& request) const override;
  /// Cancels every worker job (scancel), waits briefly until Slurm reports them ended, removes
  /// the key. Idempotent.
  void shutdown() override;
  /// A final scancel of every job submitted (waiting at most a few seconds for it) and the key
  /// removed, for a driver about to exit without a shutdown(). A scancel still running then
  /// owns what it uses: the executor may be destroyed meanwhile, and destroying it does not wait.
  void abandon() noexcept override;

  /// The worker jobs submitted so far that have not ended.
  std::vector<WorkerJob> jobs() const;
  /// Every job id ever submitted (for checking that none is left behind).
  std::vector<JobId> submitted() const;

  struct Impl;
  explicit SlurmExecutor(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

/// For Pool::Builder::executor: `Pool::builder().executor(slurm::workers({.nodes = 2}))`.
executor::ExecutorFactory workers(SlurmOptions options);

/// "slurm": the backend name of tasks that run on Slurm worker jobs through the registry.
executor::Backend slurm_backend();

/// Registers "slurm": a SlurmExecutor serving backend = "slurm" tasks (process tasks whose
/// command must exist on the compute nodes). Settings, named as `pepita run`'s --slurm flags:
/// nodes (1), min_nodes (0), partition, time_limit ("1:00:00"), cpus_per_worker (1), gpus (0),
/// memory (per worker job: "4G"; none),
/// account, sbatch_args (comma-separated, e.g. "--qos=low"), driver_address, job_name,
/// worker_binary, listen, work_dir, slurm_bin_dir, tls (false), idle_release (30s),
/// dead_after (5s), max_failed_jobs, and state_dir: a run's state directory, where the job ids
/// go (slurm-backend-jobs) so a later run with it scancels the jobs of one killed by SIGKILL.
/// BackendOptions::slots is not used (nodes x cpus_per_worker decide). An unknown setting or a
/// bad value is InvalidArgument naming it. AlreadyExists when "slurm" is taken.
Result<void> register_slurm(executor::Registry& registry);

}  // namespace pepita::slurm
