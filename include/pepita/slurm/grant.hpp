#pragma once
// What Slurm granted a job (issue 22): a worker started inside a Slurm job advertises the CPUs,
// memory and GPUs of its allocation, not the whole node's. Read from the job's environment as
// sbatch(1) documents it: SLURM_CPUS_PER_TASK / SLURM_CPUS_ON_NODE, SLURM_MEM_PER_NODE /
// SLURM_MEM_PER_CPU (megabytes), CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS.
//
//   auto inv = PEPITA_TRY(task::Inventory::detect());
//   PEPITA_TRY_VOID(slurm::apply_grant(inv, [](const char* n) { return std::getenv(n); }));

#include <functional>

#include "pepita/error.hpp"
#include "pepita/task/resources.hpp"

namespace pepita::slurm {

/// Reads one environment variable (nullptr when unset); std::getenv in production.
using EnvLookup = std::function<const char*(const char*)>;

/// True when `env` shows a Slurm job (SLURM_JOB_ID is set).
bool in_slurm_job(const EnvLookup& env);

/// Narrows `inventory` (what the node has) to what the Slurm job was granted: the first N
/// usable cores for N = SLURM_CPUS_PER_TASK, else SLURM_CPUS_ON_NODE (NUMA nodes keep only
/// those); memory = SLURM_MEM_PER_NODE MB, else SLURM_MEM_PER_CPU MB x the CPUs (never above
/// what the node has); GPUs = CUDA_VISIBLE_DEVICES ids (what tasks see under the job's device
/// constraint), else SLURM_JOB_GPUS. A variable that is unset leaves that kind as
/// detected; outside a Slurm job nothing changes. InvalidArgument naming the variable when one
/// is malformed (not a number, a bad id list).
Result<void> apply_grant(task::Inventory& inventory, const EnvLookup& env);

}  // namespace pepita::slurm
