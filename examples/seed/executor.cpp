// The reference crate's executor module example (executor.rs) in C++: a CPU executor with 4
// workers next to the process executor, and a binary task executed on its backend's executor,
// synchronously, through the crate's ExecutorRegistry. Run from the directory holding ./worker.
#include <cstdio>
#include <memory>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::executor;
  using pepita::task::Task;

  ExecutorRegistry registry;
  // CpuExecutor::new(4): four scheduler workers for function tasks.
  auto cpu = CpuExecutor::create({.workers = 4});
  auto process = ProcessExecutor::create();
  if (!cpu || !process) {
    std::fprintf(stderr, "executor: %s\n",
                 (!cpu ? cpu.error() : process.error()).to_string().c_str());
    return 1;
  }
  for (std::shared_ptr<Executor> executor : {std::shared_ptr<Executor>(std::move(*cpu)),
                                             std::shared_ptr<Executor>(std::move(*process))}) {
    if (auto added = registry.register_executor(std::move(executor)); !added) {
      std::fprintf(stderr, "register: %s\n", added.error().to_string().c_str());
      return 1;
    }
  }
  std::printf("executors %zu\n", registry.size());

  // Task::binary("./worker").build(); executor.execute(task)
  auto task = Task::binary("./worker").args({"--input", "data.bin"}).build();
  auto function = Task::function([] { return std::string("6 x 7 = 42\n"); }).build();
  if (!task || !function) {
    std::fprintf(stderr, "task: %s\n",
                 (!task ? task.error() : function.error()).to_string().c_str());
    return 1;
  }
  int failures = 0;
  for (const Task* t : {&*task, &*function}) {
    auto result = registry.execute(*t);
    if (!result) {
      std::fprintf(stderr, "execute: %s\n", result.error().to_string().c_str());
      return 1;
    }
    std::printf("%s: %ssuccess %d\n", std::string(t->backend().name()).c_str(),
                result->stdout_string().c_str(), result->is_success() ? 1 : 0);
    failures += result->is_success() ? 0 : 1;
  }
  return failures == 0 ? 0 : 1;
}
