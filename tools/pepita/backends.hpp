#pragma once
// The executor backends this binary links, registered by name for `pepita run` (which builds the
// ones a job's tasks need, in a loop over the registry) and `pepita info`.

#include "pepita/error.hpp"
#include "pepita/executor/registry.hpp"

namespace pepita::cli {

/// Registers cpu and process (executor), microvm (vmm), slurm (worker jobs submitted with
/// sbatch; `pepita run` passes it the --slurm sizing flags and the run's state directory) and gpu
/// (when built with Vulkan). The remote backend is not here: its workers come from `pepita run`'s
/// --worker or --slurm flags.
Result<void> register_linked_backends(executor::Registry& registry);

}  // namespace pepita::cli
