#pragma once
// Dependency-graph checks for a batch of tasks: every dependency must name a task in the batch
// (or one already known to the caller), and the graph must be acyclic. Kahn's algorithm gives a
// topological order; a failure names the offending tasks so a user can fix the job.

#include <functional>
#include <span>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/task.hpp"

namespace pepita::task {

/// Returns the tasks' ids in an order where each task follows all of its dependencies (ties
/// broken by input order). `is_known` says whether an id outside the batch is acceptable (a task
/// submitted earlier); by default none is.
/// Errors: InvalidArgument for a duplicate id, NotFound for a dependency on an unknown id
/// ("task 'link' depends on unknown task id 17"), InvalidArgument for a cycle, naming its
/// members in order ("dependency cycle: a -> b -> c -> a").
Result<std::vector<TaskId>> topological_order(std::span<const Task> tasks,
                                              const std::function<bool(TaskId)>& is_known = {});

/// Finds one cycle in a graph given as adjacency lists over dense indices (edge i -> j means i
/// depends on j) and returns its members in order, first repeated at the end; empty if acyclic.
std::vector<std::size_t> find_cycle(const std::vector<std::vector<std::size_t>>& edges);

}  // namespace pepita::task
