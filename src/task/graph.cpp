// Topological ordering and cycle reporting for task batches (Kahn's algorithm, then a DFS that
// recovers one concrete cycle for the error message).
#include "pepita/task/graph.hpp"

#include <deque>
#include <unordered_map>

namespace pepita::task {

std::vector<std::size_t> find_cycle(const std::vector<std::vector<std::size_t>>& edges) {
  enum : std::uint8_t { kWhite, kGrey, kBlack };
  const std::size_t n = edges.size();
  std::vector<std::uint8_t> color(n, kWhite);
  // Iterative DFS: a deep chain of thousands of tasks must not blow the stack.
  for (std::size_t root = 0; root < n; ++root) {
    if (color[root] != kWhite) continue;
    std::vector<std::pair<std::size_t, std::size_t>> stack{{root, 0}};
    color[root] = kGrey;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next == edges[node].size()) {
        color[node] = kBlack;
        stack.pop_back();
        continue;
      }
      const std::size_t to = edges[node][next++];
      if (color[to] == kGrey) {
        std::vector<std::size_t> cycle;
        for (const auto& frame : stack) cycle.push_back(frame.first);
        std::size_t start = 0;
        while (cycle[start] != to) ++start;
        cycle.erase(cycle.begin(), cycle.begin() + static_cast<std::ptrdiff_t>(start));
        cycle.push_back(to);
        return cycle;
      }
      if (color[to] == kWhite) {
        color[to] = kGrey;
        stack.emplace_back(to, 0);
      }
    }
  }
  return {};
}

Result<std::vector<TaskId>> topological_order(std::span<const Task> tasks,
                                              const std::function<bool(TaskId)>& is_known) {
  std::unordered_map<TaskId, std::size_t> index;
  index.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!index.emplace(tasks[i].id(), i).second) {
      return fail(ErrorCode::InvalidArgument,
                  "task '" + tasks[i].name() + "' (id " + std::to_string(tasks[i].id()) +
                      ") appears twice in the batch; submit each task once");
    }
  }
  std::vector<std::vector<std::size_t>> deps(tasks.size());
  std::vector<std::vector<std::size_t>> dependents(tasks.size());
  std::vector<std::size_t> pending(tasks.size(), 0);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    for (TaskId dep : tasks[i].dependencies()) {
      auto it = index.find(dep);
      if (it == index.end()) {
        if (is_known && is_known(dep)) continue;
        return fail(ErrorCode::NotFound, "task '" + tasks[i].name() +
                                             "' depends on unknown task id " + std::to_string(dep) +
                                             "; submit the dependency first or in the same batch");
      }
      deps[i].push_back(it->second);
      dependents[it->second].push_back(i);
      ++pending[i];
    }
  }
  std::deque<std::size_t> ready;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  std::vector<TaskId> order;
  order.reserve(tasks.size());
  while (!ready.empty()) {
    const std::size_t i = ready.front();
    ready.pop_front();
    order.push_back(tasks[i].id());
    for (std::size_t d : dependents[i]) {
      if (--pending[d] == 0) ready.push_back(d);
    }
  }
  if (order.size() != tasks.size()) {
    const auto cycle = find_cycle(deps);
    std::string text;
    for (std::size_t k = 0; k < cycle.size(); ++k) {
      if (k) text += " -> ";
      text += tasks[cycle[k]].name();
    }
    return fail(ErrorCode::InvalidArgument,
                "dependency cycle: " + text + "; remove one of these dependencies");
  }
  return order;
}

}  // namespace pepita::task
