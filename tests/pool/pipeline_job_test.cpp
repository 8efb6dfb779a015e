// Pipelines and affinity through the pool and job files: `pipeline = [{command, args}, ...]`
// parses into a pipeline task (bad stages name the stage and key), the pool retries a pipeline
// as a whole, and the journal reuses a pipeline's result only while every stage is unchanged.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using pepita::test::TempDir;

namespace fs = std::filesystem;
using task::BinaryTask;
using task::CpuAffinity;
using Strings = std::vector<std::string>;

JobOptions opts() {
  return {.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = true};
}

int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

TEST(JobPipeline, ParsesStagesDefaultsAndAffinity) {
  auto job = parse_job(R"(
[defaults]
env = { LANG = "C" }
cwd = "work"
[[task]]
name = "count"
pipeline = [
  { command = "seq", args = ["1", "${i}"], stdin = "" },
  { command = "grep", args = ["7"], env = { LANG = "en" } },
  { command = "wc", args = ["-l"], cwd = "/" },
]
count = 2
timeout = 5
retries = 1
affinity = { cores = [0] }
[[task]]
name = "side"
pipeline = [{ command = "/bin/echo", args = ["a"] }, { command = "/bin/echo" }]
pipe_output = false
affinity = { numa_node = 0 }
deps = ["count-*"]
)",
                       "/jobs/p.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 3u);
  const task::Task& t = job->tasks[1];
  ASSERT_TRUE(t.is_pipeline());
  const auto& stages = t.as_pipeline()->stages;
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[0].path, "seq");
  EXPECT_EQ(stages[0].args, (Strings{"1", "1"}));  // ${i} expands per count
  EXPECT_EQ(stages[1].env.at("LANG"), "en");       // a stage's own env wins over [defaults]
  EXPECT_EQ(stages[2].env.at("LANG"), "C");
  EXPECT_EQ(stages[0].cwd, "/jobs/work");  // the defaults' cwd, against the job's directory
  EXPECT_EQ(stages[2].cwd, "/");
  EXPECT_TRUE(t.as_pipeline()->pipe_output);
  EXPECT_EQ(t.timeout(), std::chrono::seconds(5));
  EXPECT_EQ(t.max_retries(), 1u);
  EXPECT_EQ(t.affinity(), CpuAffinity::Cores({0}));
  const task::Task& side = job->tasks[2];
  EXPECT_FALSE(side.as_pipeline()->pipe_output);
  EXPECT_EQ(side.affinity(), CpuAffinity::NumaNode(0));
  EXPECT_EQ(side.dependencies().size(), 2u);
}

TEST(JobPipeline, AStagesRelativeCwdStartsAtTheJobsDirectory) {
  auto job = parse_job(R"(
[[task]]
name = "p"
pipeline = [
  { command = "/bin/echo", cwd = "sub/dir" },
  { command = "/bin/cat", cwd = "/abs" },
  { command = "/bin/cat", cwd = "" },
]
)",
                       "/jobs/p.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  const auto& stages = job->tasks[0].as_pipeline()->stages;
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[0].cwd, "/jobs/sub/dir");
  EXPECT_EQ(stages[1].cwd, "/abs");
  EXPECT_EQ(stages[2].cwd, "");  // none: the stage runs where the pool does
}

TEST(JobPipeline, BadStagesNameTheStageAndKey) {
  struct Case {
    const char* body;
    const char* expect;
  };
  const Case cases[] = {
      {"command = \"true\"\npipeline = [{ command = \"true\" }]", "both 'command' and 'pipeline'"},
      {"pipeline = []", "'pipeline' must be a non-empty array of stages"},
      {"pipeline = [\"true\"]", "'pipeline' must be a non-empty array of stages"},
      {"pipeline = [{ command = \"true\" }, { args = [\"x\"] }]",
       "pipeline stage 1 of task 'p' has no 'command'"},
      {"pipeline = [{ command = \"true\", timeout = 3 }]",
       "unknown key 'timeout' in pipeline stage 0 of task 'p'"},
      {"pipeline = [{ command = \"true\" }, { command = \"cat\", stdin = \"x\" }]",
       "pipeline stage 1 of task 'p': 'stdin' is for stage 0 only"},
      {"pipeline = [{ command = \"true\" }, { command = \"no-such-tool-xyz\" }]",
       "command 'no-such-tool-xyz' not found"},
      {"pipeline = [{ command = \"\" }]", "pipeline stage 0 of task 'p': 'command' is empty"},
      {"pipeline = [{ command = \"true\" }]\nargs = [\"x\"]",
       "'args' belongs in each pipeline stage"},
      {"command = \"true\"\npipe_output = false", "'pipe_output' must be true or false, on a task"},
      {"pipeline = [{ command = \"true\" }]\naffinity = { cores = [60000] }",
       "core 60000 does not exist"},
      {"pipeline = [{ command = \"true\" }]\naffinity = { numa_node = 4095 }",
       "NUMA node 4095 does not exist"},
      {"command = \"true\"\naffinity = [0]", "'affinity' must be { cores = [0, 1] }"},
      {"pipeline = [{ command = \"true\" }]\nbackend = \"gpu\"",
       "a pipeline runs on the process backend"},
  };
  for (const Case& c : cases) {
    auto job = parse_job(std::string("[[task]]\nname = \"p\"\n") + c.body + "\n", "/jobs/bad.toml",
                         opts());
    ASSERT_FALSE(job) << c.body;
    EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(job.error().message().find(c.expect), std::string::npos)
        << c.body << "\n -> " << job.error().message();
    EXPECT_NE(job.error().message().find("/jobs/bad.toml:"), std::string::npos);
  }
}

TEST(PoolPipeline, RunsAndRetriesThePipelineAsAWhole) {
  TempDir dir{"pipejob"};
  const std::string counter = dir.file("attempts");
  fault::RetryPolicy policy;
  policy.max_attempts(3).base_delay(std::chrono::milliseconds(1)).jitter(false);
  auto pool = Pool::builder().retry_policy(policy).build();
  ASSERT_TRUE(pool) << pool.error().message();
  // The middle stage fails on the first attempt only: the whole pipeline runs again.
  auto t = task::Task::pipeline()
               .add_stage(BinaryTask("seq").with_args({"1", "20"}))
               .add_stage(BinaryTask("/bin/sh").with_args(
                   {"-c", "echo x >> " + counter + "; [ $(wc -l < " + counter +
                              ") -ge 2 ] || exit 5; grep 1"}))
               .add_stage(BinaryTask("wc").with_args({"-l"}))
               .max_retries(2)
               .build()
               .value();
  auto h = pool->submit(t);
  ASSERT_TRUE(h) << h.error().message();
  const ExecutionResult& r = h->wait();
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(std::stoi(r.stdout_data), 11);  // 1, 10..19
  EXPECT_EQ(count_lines(counter), 2);
}

TEST(PoolPipeline, JournalReusesAPipelineOnlyWhileEveryStageIsUnchanged) {
  TempDir dir{"pipejob"};
  const std::string journal = dir.file("journal"), runs = dir.file("runs");
  auto make = [&](const std::string& last_arg) {
    return task::Task::pipeline()
        .name("p")
        .add_stage(BinaryTask("/bin/sh").with_args({"-c", "echo run >> " + runs + "; seq 1 9"}))
        .add_stage(BinaryTask("tail").with_args({last_arg}))
        .build()
        .value();
  };
  auto run = [&](const std::string& last_arg, bool resume) {
    auto pool = Pool::builder().journal(journal, resume).build();
    EXPECT_TRUE(pool) << pool.error().message();
    auto h = pool->submit(make(last_arg));
    EXPECT_TRUE(h);
    return h->wait();
  };
  EXPECT_EQ(run("-2", false).stdout_data, "8\n9\n");
  const ExecutionResult same = run("-2", true);
  EXPECT_TRUE(same.from_journal);
  EXPECT_EQ(same.stdout_data, "8\n9\n");
  const ExecutionResult changed = run("-1", true);  // the last stage changed: run it again
  EXPECT_FALSE(changed.from_journal);
  EXPECT_EQ(changed.stdout_data, "9\n");
  EXPECT_EQ(count_lines(runs), 2);
}

}  // namespace
}  // namespace pepita::pool
