#pragma once
// What `pepita run` says about resources (issue 22): each task's request, what its last attempt
// was given and what it used, as JSON (--json) and as the summary's "resources" table, and the
// line naming tasks killed by their memory limit.

#include <nlohmann/json.hpp>
#include <vector>

#include "pepita/executor/result.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/task.hpp"

namespace pepita::cli {

/// One task's request as run saw it (copied from the Task before submit moved it).
struct Requested {
  task::ResourceRequest request;
  std::vector<task::RetryOn> retry_on;
};

/// The "requested" object ({"text": "cpus=2 memory=4G*attempt", "cpus": 2, ...}), or null when
/// the task asked for nothing.
nlohmann::json requested_json(const Requested& r);
/// The "given" object (the allocation of the last attempt: attempt, cpus, cores, memory, gpus,
/// gpu_shares, resources, pids), or null when it had none.
nlohmann::json given_json(const executor::ExecutionResult& r);
/// The "used" object: peak_memory (the cgroup's), memory_limit, max_rss_kb, cpu_s, wall_s.
nlohmann::json used_json(const executor::ExecutionResult& r);

/// Prints, under the summary, requested vs given vs used for each task with a request, and one
/// line naming the tasks that ended "oom" with what to change. Nothing when no task asked.
/// `requested[i]` belongs to `results[i]` (submission order).
void print_resources(const std::vector<executor::ExecutionResult>& results,
                     const std::vector<Requested>& requested);

}  // namespace pepita::cli
