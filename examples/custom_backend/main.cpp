// A backend pepita does not know, registered by a program: "shout" tasks upper-case their
// arguments on the shared BlockingRunner. The program registers it in an executor::Registry next
// to the built-ins, reads a job file whose tasks name it (with a dependency between them), runs
// the job on a Pool and checks what each task printed. Exit status 0 when all went as expected.
//
//   build/examples/pepita-custom-backend      # prints the two tasks' output, then "ok"
#include <cctype>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"

namespace {

using pepita::Result;
using pepita::executor::BackendOptions;
using pepita::executor::BlockingRunner;
using pepita::executor::ExecutionResult;
using pepita::executor::Executor;
using pepita::executor::Status;
using pepita::task::Backend;

// The executor: all a blocking backend writes is the body of one attempt.
class ShoutExecutor final : public Executor {
 public:
  static Result<std::shared_ptr<Executor>> create(Backend name, const BackendOptions& options) {
    PEPITA_TRY_VOID(options.expect_only({"suffix"}));
    auto self = std::shared_ptr<ShoutExecutor>(new ShoutExecutor(name, options));
    self->runner_ = PEPITA_TRY(BlockingRunner::create(
        {.threads = self->slots(), .name = "shout executor"},
        [suffix = options.string_or("suffix", "!")](const BlockingRunner::Attempt& a) {
          std::string out = a.task.process()->path;
          for (const auto& arg : a.task.process()->args) out.append(" ").append(arg);
          for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
          ExecutionResult r =
              pepita::executor::result_for(a.task, Status::Succeeded, "", a.started);
          r.stdout_data = out.append(suffix).append("\n");
          r.stdout_bytes = r.stdout_data.size();
          return r;
        }));
    return self;
  }

  Backend backend() const noexcept override { return name_; }
  std::size_t slots() const noexcept override { return slots_; }
  Result<void> start(const pepita::task::Task& task, std::stop_token stop,
                     pepita::executor::Completion done) override {
    return runner_->submit(task, std::move(stop), std::move(done));
  }
  void shutdown() override { runner_->shutdown(); }

 private:
  ShoutExecutor(Backend name, const BackendOptions& options)
      : name_(name), slots_(options.slots ? options.slots : 2) {}
  Backend name_;
  std::size_t slots_;
  std::unique_ptr<BlockingRunner> runner_;
};

constexpr const char* kJob = R"(
[[task]]
name = "greet"
backend = "shout"
command = "hello"
args = ["from", "a", "registered", "backend"]

[[task]]
name = "answer"
backend = "shout"
command = "and"
args = ["goodbye"]
deps = ["greet"]
)";

int run() {
  const Backend shout = Backend::named("shout").value();
  pepita::executor::Registry registry;
  if (auto r = pepita::executor::register_builtins(registry); !r) {
    std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
    return 1;
  }
  auto added = registry.add(
      shout, [shout](const BackendOptions& o) { return ShoutExecutor::create(shout, o); },
      "upper-cases its arguments");
  if (!added) {
    std::fprintf(stderr, "%s\n", added.error().to_string().c_str());
    return 1;
  }

  // The job file may name every registered backend.
  pepita::pool::JobOptions jo{.pepita_dir = ".", .state_dir = "/tmp", .check_binaries = true};
  jo.backends = registry.names();
  auto job = pepita::pool::parse_job(kJob, "shout.toml", jo);
  if (!job) {
    std::fprintf(stderr, "%s\n", job.error().message().c_str());
    return 1;
  }
  BackendOptions options;
  options.set("suffix", "!");
  auto pool = job->pool_builder().executor(registry.factory(shout, options)).build();
  if (!pool) {
    std::fprintf(stderr, "%s\n", pool.error().to_string().c_str());
    return 1;
  }
  if (auto submitted = pool->submit_all(job->tasks); !submitted) {
    std::fprintf(stderr, "%s\n", submitted.error().to_string().c_str());
    return 1;
  }
  std::string all;
  for (const ExecutionResult& r : pool->wait_all()) {
    if (!r.ok()) {
      std::fprintf(stderr, "task %s: %s\n", r.name.c_str(), r.error.c_str());
      return 1;
    }
    std::printf("%s: %s", r.name.c_str(), r.stdout_data.c_str());
    all += r.stdout_data;
  }
  const bool ok = all == "HELLO FROM A REGISTERED BACKEND!\nAND GOODBYE!\n";
  std::printf("%s\n", ok ? "ok" : "unexpected output");
  return ok ? 0 : 1;
}

}  // namespace

int main() { return run(); }
