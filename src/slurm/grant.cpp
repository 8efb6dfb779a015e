// apply_grant: a Slurm job's allocation (environment) narrowing the detected inventory.
#include "pepita/slurm/grant.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pepita::slurm {
namespace {

// A positive decimal count; InvalidArgument naming `name` otherwise.
Result<std::uint64_t> count_of(const char* name, std::string_view text) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  // SLURM_CPUS_ON_NODE can read "4(x2)" on heterogeneous jobs: the count before it counts.
  if (ec != std::errc{} || v == 0 || (end != text.data() + text.size() && *end != '(')) {
    return fail(ErrorCode::InvalidArgument,
                std::string(name).append("='").append(text).append(
                    "' is not a positive count (is this the environment of a Slurm job?)"));
  }
  return v;
}

// "0,1", "2" (or "gpu:0,1" forms some sites print): the ids; InvalidArgument on an empty item.
Result<std::vector<std::string>> ids_of(const char* name, std::string_view text) {
  std::vector<std::string> out;
  if (auto colon = text.rfind(':'); colon != std::string_view::npos) text.remove_prefix(colon + 1);
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (item.empty()) {
      return fail(ErrorCode::InvalidArgument,
                  std::string(name).append("='").append(text).append(
                      "' has an empty GPU id; expected ids such as 0,1"));
    }
    out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

bool in_slurm_job(const EnvLookup& env) {
  const char* id = env("SLURM_JOB_ID");
  return id != nullptr && *id != '\0';
}

Result<void> apply_grant(task::Inventory& inventory, const EnvLookup& env) {
  if (!in_slurm_job(env)) return {};
  auto get = [&env](const char* name) -> const char* {
    const char* v = env(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  std::uint64_t cpus = 0;
  if (const char* v = get("SLURM_CPUS_PER_TASK")) {
    cpus = PEPITA_TRY(count_of("SLURM_CPUS_PER_TASK", v));
  } else if (const char* on = get("SLURM_CPUS_ON_NODE")) {
    cpus = PEPITA_TRY(count_of("SLURM_CPUS_ON_NODE", on));
  }
  if (cpus > 0 && cpus < inventory.cpus.size()) {
    inventory.cpus.resize(static_cast<std::size_t>(cpus));
    for (auto it = inventory.numa.begin(); it != inventory.numa.end();) {
      std::erase_if(it->second, [&](unsigned c) {
        return !std::binary_search(inventory.cpus.begin(), inventory.cpus.end(), c);
      });
      it = it->second.empty() ? inventory.numa.erase(it) : std::next(it);
    }
  }
  constexpr std::uint64_t kMiB = 1u << 20;
  std::uint64_t memory = 0;
  if (const char* v = get("SLURM_MEM_PER_NODE")) {
    memory = PEPITA_TRY(count_of("SLURM_MEM_PER_NODE", v)) * kMiB;
  } else if (const char* per_cpu = get("SLURM_MEM_PER_CPU")) {
    const std::uint64_t n = cpus > 0 ? cpus : std::max<std::size_t>(1, inventory.cpus.size());
    memory = PEPITA_TRY(count_of("SLURM_MEM_PER_CPU", per_cpu)) * kMiB * n;
  }
  // Never more than the node has (a grant is an upper bound, not a promise of more).
  if (memory > 0)
    inventory.memory = inventory.memory > 0 ? std::min(inventory.memory, memory) : memory;
  // CUDA_VISIBLE_DEVICES first: the ids a task sees under the job's device constraint are
  // what its own CUDA_VISIBLE_DEVICES must name (Slurm renumbers them from 0 there).
  if (const char* cuda = get("CUDA_VISIBLE_DEVICES")) {
    inventory.gpus = PEPITA_TRY(ids_of("CUDA_VISIBLE_DEVICES", cuda));
  } else if (const char* v = get("SLURM_JOB_GPUS")) {
    inventory.gpus = PEPITA_TRY(ids_of("SLURM_JOB_GPUS", v));
  }
  return {};
}

}  // namespace pepita::slurm
