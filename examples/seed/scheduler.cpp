// The reference crate's scheduler module example (scheduler.rs) in C++: a work-stealing
// scheduler with 4 workers runs a submitted task that yields 42, on one of its workers. pepita's
// scheduler runs closures rather than queueing bare values, so "submit 42, pop 42" becomes "submit
// a task producing 42, wait for it".
#include <atomic>
#include <cstdio>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::scheduler;
  auto scheduler = Scheduler::create({.workers = 4});
  if (!scheduler) {
    std::fprintf(stderr, "scheduler: %s\n", scheduler.error().to_string().c_str());
    return 1;
  }
  std::printf("workers %u\n", (*scheduler)->worker_count());
  std::atomic<int> value{0};
  std::atomic<int> worker{-1};
  TaskGroup group(**scheduler);
  group.run([&] {
    worker = Scheduler::current_worker_index();
    value = 42;
  });
  if (auto done = group.wait(); !done) {
    std::fprintf(stderr, "task: %s\n", done.error().to_string().c_str());
    return 1;
  }
  const bool on_worker = worker.load() >= 0 && worker.load() < 4;
  std::printf("task %d on a worker %d\n", value.load(), on_worker ? 1 : 0);
  return value == 42 && on_worker ? 0 : 1;
}
