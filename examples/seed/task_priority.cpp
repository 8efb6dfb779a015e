// The reference crate's task module example (task.rs), as written there: a binary task with
// arguments and High priority, checked to be a binary task, then run by a pool.
#include <cstdio>

#include "pepita/pepita.hpp"

int main() {
  using pepita::pool::Pool;
  using pepita::task::Task;
  using pepita::task::TaskPriority;

  auto task =
      Task::binary("./worker").args({"--input", "data.bin"}).priority(TaskPriority::High).build();
  if (!task) {
    std::fprintf(stderr, "task: %s\n", task.error().to_string().c_str());
    return 1;
  }
  std::printf("binary %d priority %d\n", task->is_binary() ? 1 : 0, task->priority());
  auto pool = Pool::builder().cpu_workers(1).build();
  if (!pool) {
    std::fprintf(stderr, "pool: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  auto result = pool->run(*task);
  if (!result) {
    std::fprintf(stderr, "run: %s\n", result.error().to_string().c_str());
    return 1;
  }
  std::printf("%ssuccess %d\n", result->stdout_string().c_str(), result->is_success() ? 1 : 0);
  return result->is_success() ? 0 : 1;
}
