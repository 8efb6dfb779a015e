// Runs a process task, a function task and a task on a backend this program registers (after
// the process task: a dependency) on an installed pepita's Pool and prints their output; the
// install test compares what it prints.
#include <cctype>
#include <cstdio>
#include <memory>
#include <string>

#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/pepita.hpp"  // the umbrella header installs and compiles on its own
#include "pepita/pool/pool.hpp"

// The reference crate's front-page ABI asserts, through the installed umbrella header.
static_assert(sizeof(pepita::UblkCtrlCmd) == 32 && sizeof(pepita::IoUringSqe) == 64);

namespace {

using pepita::executor::BlockingRunner;

// "upper": prints its arguments upper-cased.
class Upper final : public pepita::executor::Executor {
 public:
  explicit Upper(pepita::task::Backend name) : name_(name) {}
  pepita::Result<void> init() {
    runner_ = PEPITA_TRY(BlockingRunner::create({}, [](const BlockingRunner::Attempt& a) {
      auto r =
          pepita::executor::result_for(a.task, pepita::executor::Status::Succeeded, "", a.started);
      for (const auto& arg : a.task.process()->args) {
        if (!r.stdout_data.empty()) r.stdout_data += ' ';
        for (char c : arg) r.stdout_data += static_cast<char>(std::toupper(c));
      }
      return r;
    }));
    return {};
  }
  pepita::task::Backend backend() const noexcept override { return name_; }
  std::size_t slots() const noexcept override { return 1; }
  pepita::Result<void> start(const pepita::task::Task& t, std::stop_token stop,
                             pepita::executor::Completion done) override {
    return runner_->submit(t, std::move(stop), std::move(done));
  }
  void shutdown() override { runner_->shutdown(); }

 private:
  pepita::task::Backend name_;
  std::unique_ptr<BlockingRunner> runner_;
};

}  // namespace

int main() {
  using pepita::pool::Pool;
  using pepita::task::Task;
  const auto upper = pepita::task::Backend::named("upper").value();
  pepita::executor::Registry registry;
  auto added = registry.add(upper,
                            [upper](const pepita::executor::BackendOptions&)
                                -> pepita::Result<std::shared_ptr<pepita::executor::Executor>> {
                              auto e = std::make_shared<Upper>(upper);
                              PEPITA_TRY_VOID(e->init());
                              return e;
                            });
  if (!added) {
    std::fprintf(stderr, "consumer: %s\n", added.error().to_string().c_str());
    return 1;
  }
  auto pool = Pool::builder().process_slots(2).executor(registry.factory(upper, {})).build();
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
  auto custom = Task::binary("upper")
                    .args({"from", "a", "custom", "backend"})
                    .backend(upper)
                    .depends_on({echo->id()})
                    .build();
  if (!custom || !pool->submit(*custom)) {
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
