// Runs a process task and a function task on an installed pepita's Pool and prints their output;
// the install test compares what it prints.
#include <cstdio>
#include <string>

#include "pepita/pool/pool.hpp"

int main() {
  using pepita::pool::Pool;
  using pepita::task::Task;
  auto pool = Pool::builder().process_slots(2).build();
  if (!pool) {
    std::fprintf(stderr, "consumer: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  auto echo = Task::binary("/bin/echo").args({"from", "a", "process"}).build();
  auto fn = Task::function([] { return std::string("from a function"); }).build();
  if (!echo || !fn || !pool->submit(*echo) || !pool->submit(*fn)) {
    std::fprintf(stderr, "consumer: could not build or submit the tasks\n");
    return 1;
  }
  for (const auto& r : pool->wait_all()) {
    if (r.status != pepita::pool::Status::Succeeded) {
      std::fprintf(stderr, "consumer: a task failed: %s\n", r.error.c_str());
      return 1;
    }
    std::printf("%s%s", r.stdout_data.c_str(), r.stdout_data.ends_with('\n') ? "" : "\n");
  }
  return 0;
}
