// Job files' `sandbox` key (issue 23): a level name or a table of task::SandboxPolicy parts, per
// task and in [defaults], with JobOptions::default_sandbox (`pepita run --sandbox`) under both;
// every bad value an error at its file:line:column. What the sandbox does is the executor's
// (tests/executor/sandbox*_test.cpp); these tests check what a job file asks for.
#include <gtest/gtest.h>

#include <string>

#include "pepita/pool/job.hpp"
#include "pepita/task/sandbox.hpp"

namespace pepita::pool {
namespace {

using task::SandboxLevel;
using task::SandboxNetwork;
using task::SandboxPolicy;

JobOptions opts() {
  return {.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = false};
}

// A job whose one task carries `keys` from line 3 on: 1 [[task]]  2 name = "t"  3.. keys.
Result<Job> one_task(const std::string& keys, const std::string& before = "",
                     JobOptions o = opts()) {
  return parse_job(before + "[[task]]\nname = \"t\"\n" + keys + "\ncommand = \"/bin/true\"\n",
                   "/jobs/job.toml", o);
}

void expect_error(const Result<Job>& job, const std::string& where, const std::string& words) {
  ASSERT_FALSE(job) << "the job file was accepted";
  EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(job.error().message().starts_with(where)) << job.error().message();
  EXPECT_NE(job.error().message().find(words), std::string::npos) << job.error().message();
}

TEST(JobSandbox, ALevelNameGivesThatLevelsPolicy) {
  for (const char* level : {"none", "standard", "strict"}) {
    auto job = one_task(std::string("sandbox = \"") + level + "\"");
    ASSERT_TRUE(job) << job.error().message();
    EXPECT_EQ(job->tasks[0].sandbox(), *SandboxPolicy::parse(level)) << level;
  }
}

TEST(JobSandbox, ATaskWithoutTheKeyRunsWithoutASandbox) {
  auto job = one_task("timeout = 5");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_FALSE(job->tasks[0].sandbox().enabled());
}

TEST(JobSandbox, AnUnknownLevelIsAnErrorAtTheValue) {
  expect_error(one_task("sandbox = \"paranoid\""),
               "/jobs/job.toml:3:11:", "use none, standard or strict");
  expect_error(one_task("sandbox = 3"), "/jobs/job.toml:3:11:", "must be a level or a table");
}

TEST(JobSandbox, ATableStartsFromItsLevelAndOverridesParts) {
  auto job = one_task(
      "sandbox = { level = \"standard\", network = \"none\", disk = \"2G\", "
      "read_only = [\"data/\", \"/models\"], writable = [\"out\"], max_open_files = 256, "
      "max_file_size = \"64M\", max_processes = 32, id = 1000 }");
  ASSERT_TRUE(job) << job.error().message();
  const SandboxPolicy& p = job->tasks[0].sandbox();
  EXPECT_EQ(p.level, SandboxLevel::Custom);
  EXPECT_TRUE(p.user_ns && p.mount_ns && p.pid_ns && p.ipc_uts_ns && p.no_new_privs && p.seccomp);
  EXPECT_EQ(p.network, SandboxNetwork::None);
  EXPECT_EQ(p.disk, std::uint64_t{2} << 30);
  // Relative paths start at the job file's directory, like a task's cwd.
  EXPECT_EQ(p.read_only, (std::vector<std::string>{"/jobs/data", "/models"}));
  EXPECT_EQ(p.writable, (std::vector<std::string>{"/jobs/out"}));
  EXPECT_EQ(p.max_open_files, 256u);
  EXPECT_EQ(p.max_file_size, std::uint64_t{64} << 20);
  EXPECT_EQ(p.max_processes, 32u);
  EXPECT_EQ(p.id, 1000u);
}

TEST(JobSandbox, ATableThatOnlyAddsBindsKeepsItsLevelsName) {
  auto job = one_task("sandbox = { level = \"strict\", read_only = [\"/data\"] }");
  ASSERT_TRUE(job) << job.error().message();
  SandboxPolicy want = SandboxPolicy::strict();
  want.read_only = {"/data"};
  EXPECT_EQ(job->tasks[0].sandbox(), want);
  EXPECT_EQ(job->tasks[0].sandbox().level, SandboxLevel::Strict);
}

TEST(JobSandbox, ATableWithoutALevelStartsFromNone) {
  auto job = one_task("sandbox = { no_new_privs = true, seccomp = true }");
  ASSERT_TRUE(job) << job.error().message();
  const SandboxPolicy& p = job->tasks[0].sandbox();
  EXPECT_EQ(p.level, SandboxLevel::Custom);
  EXPECT_TRUE(p.enabled());
  EXPECT_TRUE(p.no_new_privs);
  EXPECT_TRUE(p.seccomp);
  EXPECT_FALSE(p.user_ns);
  EXPECT_FALSE(p.mount_ns);
}

TEST(JobSandbox, ATableTurningEveryPartOffIsNone) {
  auto job = one_task(
      "sandbox = { level = \"standard\", user_ns = false, mount_ns = false, pid_ns = false, "
      "ipc_uts_ns = false, no_new_privs = false, seccomp = false, max_processes = 0 }");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_FALSE(job->tasks[0].sandbox().enabled());
}

TEST(JobSandbox, ATableRestatingItsLevelKeepsTheName) {
  auto job = one_task("sandbox = { level = \"strict\", network = \"none\", seccomp = true }");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].sandbox(), SandboxPolicy::strict());
}

TEST(JobSandbox, NetworkHostKeepsTheHostsNetwork) {
  auto job = one_task("sandbox = { level = \"standard\", network = \"host\" }");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].sandbox().network, SandboxNetwork::Host);
}

TEST(JobSandbox, BadTableValuesAreErrorsAtTheirPosition) {
  // Line 3, `sandbox = { ` is 12 columns: the first key starts at column 13.
  expect_error(one_task("sandbox = { levle = \"strict\" }"),
               "/jobs/job.toml:3:13:", "unknown key 'levle' in sandbox; valid keys: level,");
  expect_error(one_task("sandbox = { level = \"max\" }"),
               "/jobs/job.toml:3:21:", "'sandbox.level': unknown sandbox 'max'");
  expect_error(one_task("sandbox = { level = 2 }"),
               "/jobs/job.toml:3:21:", "'sandbox.level' must be a string");
  expect_error(one_task("sandbox = { network = \"bridge\" }"),
               "/jobs/job.toml:3:23:", "'sandbox.network' must be \"host\"");
  expect_error(one_task("sandbox = { seccomp = \"yes\" }"),
               "/jobs/job.toml:3:23:", "'sandbox.seccomp' must be true or false");
  expect_error(one_task("sandbox = { level = \"strict\", disk = \"lots\" }"),
               "/jobs/job.toml:3:38:", "'sandbox.disk':");
  expect_error(one_task("sandbox = { level = \"strict\", disk = 0 }"),
               "/jobs/job.toml:3:38:", "more than 0 bytes");
  expect_error(one_task("sandbox = { level = \"strict\", disk = -1 }"),
               "/jobs/job.toml:3:38:", "'sandbox.disk' must be a size such as \"1G\" or \"512M\"");
  expect_error(one_task("sandbox = { level = \"standard\", id = 0 }"),
               "/jobs/job.toml:3:38:", "'sandbox.id' must be an integer from 1");
  expect_error(one_task("sandbox = { level = \"standard\", read_only = \"data\" }"),
               "/jobs/job.toml:3:45:", "must be an array of paths");
  expect_error(one_task("sandbox = { level = \"standard\", writable = [\"\"] }"),
               "/jobs/job.toml:3:45:", "non-empty strings");
  expect_error(one_task("sandbox = { level = \"standard\", max_processes = -1 }"),
               "/jobs/job.toml:3:49:", "'sandbox.max_processes' must be an integer from 0");
}

TEST(JobSandbox, BindsAndDiskWithoutAMountNamespaceAreErrors) {
  expect_error(one_task("sandbox = { read_only = [\"/data\"] }"),
               "/jobs/job.toml:3:25:", "needs a mount namespace");
  expect_error(one_task("sandbox = { level = \"strict\", mount_ns = false }"),
               "/jobs/job.toml:3:42:", "needs a mount namespace");
  // Standard has no disk quota, so turning its mount namespace off is fine.
  auto job = one_task("sandbox = { level = \"standard\", mount_ns = false }");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_FALSE(job->tasks[0].sandbox().mount_ns);
  EXPECT_EQ(job->tasks[0].sandbox().level, SandboxLevel::Custom);
}

TEST(JobSandbox, DefaultsGiveEveryProcessTaskItsSandbox) {
  auto job = parse_job(
      "[defaults]\nsandbox = \"strict\"\n"
      "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n"
      "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\nsandbox = \"standard\"\n"
      "[[task]]\nname = \"c\"\ncommand = \"/bin/true\"\nsandbox = \"none\"\n"
      "[[task]]\nname = \"g\"\ncommand = \"saxpy\"\nbackend = \"gpu\"\n",
      "/jobs/job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].sandbox(), SandboxPolicy::strict());
  EXPECT_EQ(job->tasks[1].sandbox(), SandboxPolicy::standard());
  // `sandbox = "none"` in a task is its explicit opt-out from the defaults.
  EXPECT_FALSE(job->tasks[2].sandbox().enabled());
  // A GPU task runs no process of ours: the default leaves it alone rather than failing.
  EXPECT_FALSE(job->tasks[3].sandbox().enabled());
}

TEST(JobSandbox, DefaultSandboxOptionAppliesUnderDefaultsAndTasks) {
  JobOptions o = opts();
  o.default_sandbox = SandboxPolicy::standard();
  auto plain = one_task("timeout = 1", "", o);
  ASSERT_TRUE(plain) << plain.error().message();
  EXPECT_EQ(plain->tasks[0].sandbox(), SandboxPolicy::standard());

  auto defaults = one_task("timeout = 1", "[defaults]\nsandbox = \"strict\"\n", o);
  ASSERT_TRUE(defaults) << defaults.error().message();
  EXPECT_EQ(defaults->tasks[0].sandbox(), SandboxPolicy::strict());

  auto own = one_task("sandbox = \"none\"", "", o);
  ASSERT_TRUE(own) << own.error().message();
  EXPECT_FALSE(own->tasks[0].sandbox().enabled());
}

TEST(JobSandbox, RemoteAndPipelineTasksCarryASandbox) {
  auto job = parse_job(
      "[[task]]\nname = \"r\"\ncommand = \"/bin/true\"\nbackend = \"remote\"\n"
      "sandbox = \"strict\"\n"
      "[[task]]\nname = \"p\"\nsandbox = \"standard\"\n"
      "pipeline = [{ command = \"/bin/echo\" }, { command = \"/bin/cat\" }]\n",
      "/jobs/job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].sandbox(), SandboxPolicy::strict());
  EXPECT_EQ(job->tasks[1].sandbox(), SandboxPolicy::standard());
}

TEST(JobSandbox, ASandboxOnAGpuOrMicrovmTaskIsAnError) {
  expect_error(parse_job("[[task]]\nname = \"g\"\ncommand = \"saxpy\"\nbackend = \"gpu\"\n"
                         "sandbox = \"strict\"\n",
                         "/jobs/job.toml", opts()),
               "/jobs/job.toml:5:11:", "backend 'gpu' does not run a process");
  expect_error(parse_job("[[task]]\nname = \"v\"\ncommand = \"/bin/true\"\nbackend = "
                         "\"microvm\"\nsandbox = \"standard\"\n",
                         "/jobs/job.toml", opts()),
               "/jobs/job.toml:5:11:", "isolated by its VM");
}

TEST(JobSandbox, BadDefaultsSandboxIsAnErrorAtItsPosition) {
  expect_error(parse_job("[defaults]\nsandbox = \"tight\"\n[[task]]\nname = \"a\"\ncommand = "
                         "\"/bin/true\"\n",
                         "/jobs/job.toml", opts()),
               "/jobs/job.toml:2:11:", "unknown sandbox 'tight'");
}

TEST(JobSandbox, BindPathsExpandVariables) {
  auto job = one_task("sandbox = { level = \"standard\", read_only = [\"${state_dir}/in\"] }");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].sandbox().read_only, (std::vector<std::string>{"/tmp/state/in"}));
}

}  // namespace
}  // namespace pepita::pool
