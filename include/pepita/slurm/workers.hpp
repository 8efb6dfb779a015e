#pragma once
// Kept for code that includes the old name: SlurmExecutor and slurm::workers() live in
// pepita/slurm/slurm_executor.hpp (library pepita_slurm_executor).
#include "pepita/slurm/slurm_executor.hpp"
