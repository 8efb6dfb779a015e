// The one place that knows which backend adapter libraries the CLI links (see backends.hpp).
#include "backends.hpp"

#include "pepita/slurm/slurm_executor.hpp"
#include "pepita/vmm/microvm_executor.hpp"
#if PEPITA_HAVE_GPU
#include "pepita/gpu/gpu_executor.hpp"
#endif

namespace pepita::cli {

Result<void> register_linked_backends(executor::Registry& registry) {
  PEPITA_TRY_VOID(executor::register_builtins(registry));
  PEPITA_TRY_VOID(vmm::register_microvm(registry));
  PEPITA_TRY_VOID(slurm::register_slurm(registry));
#if PEPITA_HAVE_GPU
  PEPITA_TRY_VOID(gpu::register_gpu(registry));
#endif
  return {};
}

}  // namespace pepita::cli
