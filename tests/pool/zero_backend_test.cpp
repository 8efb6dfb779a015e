// Issue 27: the "zero" backend (HyperQueue's zero-worker mode) through the whole path — a job
// file, the pool, placement on the host's resources, the journal and the results — with nothing
// run; JobOptions::force_backend (`pepita run --zero-worker`); and the combinations it refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/executor/zero.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using executor::zero_backend;
using test::TempDir;

JobOptions options_with_builtins(const std::string& state_dir) {
  executor::Registry registry;
  EXPECT_TRUE(executor::register_builtins(registry));
  JobOptions jo{.pepita_dir = "/opt/pepita", .state_dir = state_dir};
  jo.backends.assign(task::kBuiltinBackends.begin(), task::kBuiltinBackends.end());
  for (const auto& name : registry.names())
    if (std::find(jo.backends.begin(), jo.backends.end(), name) == jo.backends.end())
      jo.backends.push_back(name);
  return jo;
}

executor::ExecutorFactory zero_factory() {
  executor::Registry registry;
  EXPECT_TRUE(executor::register_builtins(registry));
  return registry.factory(zero_backend(), {});
}

TEST(ZeroBackend, AJobOfCountTasksCompletesEveryTaskAndJournalsEachResult) {
  TempDir dir{"zero-job"};
  auto job = parse_job(R"(
[[task]]
name = "z"
count = 2000
backend = "zero"
command = "a-binary-that-does-not-exist"
args = ["${i}"]
)",
                       dir.file("job.toml"), options_with_builtins(dir.path()));
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 2000u);
  EXPECT_EQ(job->tasks[0].backend(), zero_backend());

  const std::string journal = dir.file("journal");
  {
    auto pool = job->pool_builder().executor(zero_factory()).journal(journal).build();
    ASSERT_TRUE(pool) << pool.error().message();
    ASSERT_TRUE(pool->submit_all(job->tasks));
    const auto results = pool->wait_all();
    pool->shutdown();
    ASSERT_EQ(results.size(), 2000u);
    for (const auto& r : results)
      ASSERT_EQ(r.status, Status::Succeeded) << r.name << ": " << r.error;
    EXPECT_EQ(pool->stats().succeeded, 2000u);
    EXPECT_FALSE(pool->journal_error());
  }

  auto recovered = fault::read_journal(journal);
  ASSERT_TRUE(recovered) << recovered.error().message();
  std::map<std::string, int> finished;
  for (const auto& rec : recovered->records) {
    if (rec.type != fault::RecordType::Finished) continue;
    EXPECT_EQ(rec.status, static_cast<std::uint8_t>(Status::Succeeded)) << rec.name;
    ++finished[rec.name];
  }
  EXPECT_EQ(finished.size(), 2000u);
  EXPECT_EQ(finished["z-0"], 1);
  EXPECT_EQ(finished["z-1999"], 1);
}

TEST(ZeroBackend, ResumingAZeroJobTakesEveryResultFromTheJournal) {
  TempDir dir{"zero-resume"};
  auto job = parse_job("[[task]]\nname = \"z\"\ncount = 50\nbackend = \"zero\"\ncommand = \"x\"\n",
                       dir.file("job.toml"), options_with_builtins(dir.path()));
  ASSERT_TRUE(job) << job.error().message();
  const std::string journal = dir.file("journal");
  {
    auto pool = job->pool_builder().executor(zero_factory()).journal(journal).build();
    ASSERT_TRUE(pool);
    ASSERT_TRUE(pool->submit_all(job->tasks));
    (void)pool->wait_all();
  }
  auto again = job->pool_builder().executor(zero_factory()).journal(journal, true).build();
  ASSERT_TRUE(again) << again.error().message();
  ASSERT_TRUE(again->submit_all(job->tasks));
  const auto results = again->wait_all();
  ASSERT_EQ(results.size(), 50u);
  for (const auto& r : results) EXPECT_TRUE(r.from_journal) << r.name;
}

TEST(ZeroBackend, DependenciesHoldAcrossZeroAndProcessTasks) {
  TempDir dir{"zero-deps"};
  auto job = parse_job(R"(
[[task]]
name = "a"
backend = "zero"
command = "x"

[[task]]
name = "b"
backend = "zero"
command = "x"
deps = ["a"]

[[task]]
name = "fails"
command = "/bin/false"
deps = ["b"]

[[task]]
name = "after-failure"
backend = "zero"
command = "x"
deps = ["fails"]
)",
                       dir.file("job.toml"), options_with_builtins(dir.path()));
  ASSERT_TRUE(job) << job.error().message();
  std::mutex mu;
  std::vector<std::string> order;  // Started and Finished, as the pool reported them
  auto pool = job->pool_builder()
                  .executor(zero_factory())
                  .on_event([&](const Event& e) {
                    std::lock_guard lock(mu);
                    order.push_back((e.kind == Event::Kind::Started ? "start " : "end ") + e.name);
                  })
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();
  ASSERT_TRUE(pool->submit_all(job->tasks));
  std::map<std::string, ExecutionResult> by;
  for (auto& r : pool->wait_all()) by[r.name] = r;
  pool->shutdown();
  EXPECT_EQ(by["a"].status, Status::Succeeded);
  EXPECT_EQ(by["b"].status, Status::Succeeded);
  EXPECT_EQ(by["fails"].status, Status::Failed);
  EXPECT_EQ(by["after-failure"].status, Status::Skipped);  // its dependency failed: never ran
  const auto at = [&](const std::string& what) {
    return std::find(order.begin(), order.end(), what) - order.begin();
  };
  EXPECT_LT(at("end a"), at("start b"));
  EXPECT_LT(at("end b"), at("start fails"));
  EXPECT_EQ(at("start after-failure"), static_cast<std::ptrdiff_t>(order.size()));
}

TEST(ZeroBackend, ResourceRequestsArePlacedOnTheHostAndNeverOversubscribed) {
  TempDir dir{"zero-res"};
  auto job = parse_job(
      "[[task]]\nname = \"r\"\ncount = 40\nbackend = \"zero\"\n"
      "command = \"x\"\ncpus = 2\n",
      dir.file("job.toml"), options_with_builtins(dir.path()));
  ASSERT_TRUE(job) << job.error().message();
  task::Inventory host;
  host.cpus = {0, 1};
  host.memory = 1ULL << 30;
  std::mutex mu;
  int running = 0, most = 0;
  auto pool = job->pool_builder()
                  .executor(zero_factory())
                  .resources(host)
                  .on_event([&](const Event& e) {
                    std::lock_guard lock(mu);
                    if (e.kind == Event::Kind::Started) most = std::max(most, ++running);
                    if (e.kind == Event::Kind::Finished) --running;
                  })
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();
  ASSERT_TRUE(pool->submit_all(job->tasks));
  const auto results = pool->wait_all();
  ASSERT_EQ(results.size(), 40u);
  for (const auto& r : results) {
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    ASSERT_TRUE(r.allocation) << r.name << " ran without its 2 CPUs";
    EXPECT_EQ(r.allocation->cpus, 2);
  }
  EXPECT_EQ(most, 1);  // each holds both CPUs: one at a time

  // A request this host can never meet is refused at submit, as for a process task.
  auto big = Task::binary("x").name("big").backend(zero_backend());
  task::ResourceRequest four_cpus;
  four_cpus.cpus = 4;
  big.resources(four_cpus);
  auto refused = pool->submit(big.build().value());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("big"), std::string::npos) << refused.error().message();
}

TEST(ZeroBackend, ForceBackendRunsAFileOfProcessTasksOnZeroCheckedAsWritten) {
  TempDir dir{"zero-force"};
  JobOptions jo = options_with_builtins(dir.path());
  jo.force_backend = zero_backend();
  const std::string text = R"(
[[task]]
name = "p"
count = 3
command = "/bin/false"
sandbox = "strict"
)";
  auto job = parse_job(text, dir.file("job.toml"), jo);
  ASSERT_TRUE(job) << job.error().message();
  for (const auto& t : job->tasks) {
    EXPECT_EQ(t.backend(), zero_backend());
    EXPECT_FALSE(t.sandbox().enabled());  // nothing runs, so nothing to confine
  }
  auto pool = job->pool_builder().executor(zero_factory()).build();
  ASSERT_TRUE(pool) << pool.error().message();
  ASSERT_TRUE(pool->submit_all(job->tasks));
  for (const auto& r : pool->wait_all()) EXPECT_EQ(r.status, Status::Succeeded) << r.name;

  // Still checked as written: a binary that does not exist is the file's error.
  auto missing = parse_job("[[task]]\nname = \"m\"\ncommand = \"/no/such/binary\"\n",
                           dir.file("job.toml"), jo);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("/no/such/binary"), std::string::npos)
      << missing.error().message();
}

TEST(ZeroBackend, ASandboxOnAZeroTaskIsAClearErrorAtItsLine) {
  TempDir dir{"zero-bad"};
  auto job = parse_job(
      "[[task]]\nname = \"s\"\nbackend = \"zero\"\ncommand = \"x\"\n"
      "sandbox = \"strict\"\n",
      dir.file("job.toml"), options_with_builtins(dir.path()));
  ASSERT_FALSE(job);
  EXPECT_NE(job.error().message().find("job.toml:5:"), std::string::npos) << job.error().message();
  EXPECT_NE(job.error().message().find("backend 'zero'"), std::string::npos)
      << job.error().message();
}

TEST(ZeroBackend, AZeroTaskWithoutTheZeroExecutorFailsAtSubmitNamingTheBackend) {
  auto pool = Pool::builder().cpu_workers(1).build();
  ASSERT_TRUE(pool);
  auto t = Task::binary("x").name("orphan").backend(zero_backend()).build();
  ASSERT_TRUE(t);
  auto submitted = pool->submit(*t);
  ASSERT_FALSE(submitted);
  EXPECT_NE(submitted.error().message().find("zero"), std::string::npos)
      << submitted.error().message();
}

// Issue 27: the pool puts a zero batch's journal write and next starts off to the batch's end.
// Every task still runs once, the observer hears Started before Finished for each, the journal
// holds Submitted, Started, Finished per task as soon as wait_idle() returns, and a pool with a
// dependency chain (each task released by the completion before it, in the same batch) drains.
TEST(ZeroBackend, BatchedCompletionsKeepEventOrderAndAWholeJournalOnceIdle) {
  TempDir dir{"zero-batch"};
  const std::string journal = dir.file("journal");
  std::mutex mu;
  std::map<TaskId, std::vector<Event::Kind>> events;
  auto pool = Pool::builder()
                  .executor(zero_factory())
                  .journal(journal)
                  .retain_results(false)
                  .on_event([&](const Event& e) {
                    std::lock_guard lock(mu);
                    events[e.id].push_back(e.kind);
                  })
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();
  std::vector<Task> tasks;
  for (int i = 0; i < 3000; ++i) {
    auto b = Task::binary("never-run").name("z-" + std::to_string(i)).backend(zero_backend());
    // The last 100 form a chain: each one waits for the one before.
    if (i > 2900) b.depends_on({tasks.back().id()});
    tasks.push_back(b.build().value());
  }
  ASSERT_TRUE(pool->submit_all(tasks));
  pool->wait_idle();
  EXPECT_EQ(pool->stats().succeeded, 3000u);
  auto rec = fault::read_journal(journal);
  ASSERT_TRUE(rec) << rec.error().message();
  std::map<std::string, std::vector<fault::RecordType>> per_task;
  for (const auto& r : rec->records) per_task[r.name].push_back(r.type);
  ASSERT_EQ(per_task.size(), 3000u);
  using RT = fault::RecordType;
  for (const auto& [name, types] : per_task) {
    ASSERT_EQ(types, (std::vector<RT>{RT::Submitted, RT::Started, RT::Finished})) << name;
  }
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(events.size(), 3000u);
    for (const auto& [id, kinds] : events) {
      ASSERT_EQ(kinds, (std::vector<Event::Kind>{Event::Kind::Started, Event::Kind::Finished}))
          << id;
    }
  }
  EXPECT_FALSE(pool->journal_error());
  pool->shutdown();
}

}  // namespace
}  // namespace pepita::pool
