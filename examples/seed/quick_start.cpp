// The reference crate's front-page "distributed computing" quick start (lib.rs) and the pool
// module's example (pool.rs), as written there: a pool of 4 CPU workers runs ./worker on data.bin
// — once with Backend::Cpu, once with the default backend — and returns each result
// synchronously. Run from the directory holding ./worker and data.bin.
#include <cstdio>

#include "pepita/pepita.hpp"

int main() {
  using pepita::executor::Backend;
  using pepita::pool::Pool;
  using pepita::task::Task;

  auto pool = Pool::builder().cpu_workers(4).build();
  if (!pool) {
    std::fprintf(stderr, "pool: %s\n", pool.error().to_string().c_str());
    return 1;
  }
  // lib.rs
  auto task = Task::binary("./worker").args({"--input", "data.bin"}).backend(Backend::Cpu).build();
  // pool.rs: the same without naming a backend (the pool picks one that runs binaries).
  auto plain = Task::binary("./worker").args({"--input", "data.bin"}).build();
  int failures = 0;
  for (auto* built : {&task, &plain}) {
    if (!*built) {
      std::fprintf(stderr, "task: %s\n", built->error().to_string().c_str());
      return 1;
    }
    auto result = pool->run(**built);
    if (!result) {
      std::fprintf(stderr, "run: %s\n", result.error().to_string().c_str());
      return 1;
    }
    std::printf("%sexit %d success %d\n", result->stdout_string().c_str(), result->exit_code,
                result->is_success() ? 1 : 0);
    failures += result->is_success() ? 0 : 1;
  }
  return failures == 0 ? 0 : 1;
}
