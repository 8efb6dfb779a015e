// A backend registered from outside the library: an executor::Registry entry built into a Pool,
// a job file naming it, dependencies across it and the built-in process backend.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>

#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using executor::BackendOptions;
using executor::BlockingRunner;
using task::Backend;

// "rev": prints its command reversed; a command "fail" fails. Counts the attempts it ran.
class Reverser final : public executor::Executor {
 public:
  static Result<std::shared_ptr<executor::Executor>> create(Backend name, const BackendOptions& o,
                                                            std::atomic<int>* ran) {
    PEPITA_TRY_VOID(o.expect_only({"prefix"}));
    auto self = std::shared_ptr<Reverser>(new Reverser(name));
    self->runner_ = PEPITA_TRY(BlockingRunner::create(
        {.threads = 2, .name = "rev executor"},
        [prefix = o.string_or("prefix", ""), ran](const BlockingRunner::Attempt& a) {
          ++*ran;
          const std::string& cmd = a.task.process()->path;
          if (cmd == "fail")
            return executor::result_for(a.task, Status::Failed, "asked to fail", a.started);
          auto r = executor::result_for(a.task, Status::Succeeded, "", a.started);
          r.stdout_data = prefix + std::string(cmd.rbegin(), cmd.rend());
          return r;
        }));
    return self;
  }
  Backend backend() const noexcept override { return name_; }
  std::size_t slots() const noexcept override { return 2; }
  Result<void> start(const Task& t, std::stop_token stop, executor::Completion done) override {
    return runner_->submit(t, std::move(stop), std::move(done));
  }
  void shutdown() override { runner_->shutdown(); }

 private:
  explicit Reverser(Backend name) : name_(name) {}
  Backend name_;
  std::unique_ptr<BlockingRunner> runner_;
};

TEST(CustomBackend, RegisteredBackendRunsAJobWithDependencies) {
  const Backend rev = Backend::named("rev").value();
  std::atomic<int> ran{0};
  executor::Registry registry;
  ASSERT_TRUE(executor::register_builtins(registry));
  ASSERT_TRUE(
      registry.add(rev, [&](const BackendOptions& o) { return Reverser::create(rev, o, &ran); }));

  JobOptions jo{.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = true};
  jo.backends = registry.names();
  auto job = parse_job(R"(
[[task]]
name = "a"
backend = "rev"
command = "olleh"

[[task]]
name = "b"
command = "/bin/sh"
args = ["-c", "echo after-a"]
deps = ["a"]

[[task]]
name = "c"
backend = "rev"
command = "dlrow"
deps = ["a", "b"]

[[task]]
name = "d"
backend = "rev"
command = "fail"
retries = 0

[[task]]
name = "e"
backend = "rev"
command = "never"
deps = ["d"]
)",
                       "rev.toml", jo);
  ASSERT_TRUE(job) << job.error().message();

  BackendOptions options;
  options.set("prefix", ">");
  auto pool = job->pool_builder().executor(registry.factory(rev, options)).build();
  ASSERT_TRUE(pool) << pool.error().message();
  ASSERT_TRUE(pool->submit_all(job->tasks));
  std::map<std::string, ExecutionResult> by;
  for (auto& r : pool->wait_all()) by[r.name] = r;
  pool->shutdown();

  ASSERT_EQ(by.size(), 5u);
  EXPECT_EQ(by["a"].status, Status::Succeeded);
  EXPECT_EQ(by["a"].stdout_data, ">hello");
  EXPECT_EQ(by["b"].status, Status::Succeeded);  // a process task after a "rev" one
  EXPECT_EQ(by["b"].stdout_data, "after-a\n");
  EXPECT_EQ(by["c"].stdout_data, ">world");
  EXPECT_EQ(by["d"].status, Status::Failed);
  EXPECT_EQ(by["d"].error, "asked to fail");
  EXPECT_EQ(by["e"].status, Status::Skipped);  // its dependency failed: never ran
  EXPECT_EQ(ran.load(), 3);                    // a, c, d
}

TEST(CustomBackend, BadSettingsFailTheBuildNamingTheBackend) {
  const Backend rev = Backend::named("rev").value();
  std::atomic<int> ran{0};
  executor::Registry registry;
  ASSERT_TRUE(
      registry.add(rev, [&](const BackendOptions& o) { return Reverser::create(rev, o, &ran); }));
  BackendOptions options;
  options.set("colour", "red");
  auto pool = Pool::builder().executor(registry.factory(rev, options)).build();
  ASSERT_FALSE(pool);
  EXPECT_NE(pool.error().message().find("backend 'rev'"), std::string::npos);
  EXPECT_NE(pool.error().message().find("unknown backend setting colour"), std::string::npos)
      << pool.error().message();
}

}  // namespace
}  // namespace pepita::pool
