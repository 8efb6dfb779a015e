// Job files' resource keys (issue 22): cpus, pin_cpus, memory, gpus, resources, pids and
// retry_on, per task and in [defaults], into task::ResourceRequest / RetryOn; every bad value
// an error at its file:line:column; Job::check_fit against an inventory.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <string>

#include "pepita/pool/job.hpp"
#include "pepita/task/resources.hpp"

namespace pepita::pool {
namespace {

using task::Growth;
using task::RetryOn;

JobOptions opts() {
  return {.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = false};
}

// A job whose one task carries `keys` on the lines from 5 on:
//   1 [pool]  2 retries = 2  3 [[task]]  4 name = "t"  5.. keys  then command.
Result<Job> one_task(const std::string& keys, const std::string& more = "") {
  return parse_job(
      "[pool]\nretries = 2\n[[task]]\nname = \"t\"\n" + keys + "\ncommand = \"/bin/true\"\n" + more,
      "job.toml", opts());
}

constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr std::uint64_t kMiB = 1ULL << 20;

TEST(JobResources, EveryKeyLandsInTheTasksRequest) {
  auto job = one_task(
      "cpus = 2\npin_cpus = true\nmemory = \"4G\"\ngpus = [\"0\", \"2\"]\n"
      "resources = { license = 1, ssd_gb = 100 }\npids = 256\n"
      "retry_on = [\"oom\", \"timeout\", \"exit:137\"]");
  ASSERT_TRUE(job) << job.error().message();
  const auto& r = job->tasks[0].resources();
  EXPECT_EQ(r.cpus, 2);
  EXPECT_TRUE(r.pin_cpus);
  EXPECT_EQ(r.memory, 4 * kGiB);
  EXPECT_EQ(r.gpu_ids, (std::vector<std::string>{"0", "2"}));
  EXPECT_EQ(r.gpus, 0);
  EXPECT_EQ(r.named, (std::map<std::string, double>{{"license", 1}, {"ssd_gb", 100}}));
  EXPECT_EQ(r.pids, 256u);
  EXPECT_EQ(r.cpus_growth, Growth::Fixed);
  EXPECT_EQ(job->tasks[0].retry_on(),
            (std::vector<RetryOn>{RetryOn::oom(), RetryOn::timeout(), RetryOn::exit(137)}));
  // Where each key was written, for messages about them.
  EXPECT_EQ(job->resource_at[0].at("cpus"), "job.toml:5:8");
  EXPECT_EQ(job->resource_at[0].at("memory"), "job.toml:7:10");
  EXPECT_EQ(job->resource_at[0].at("resources.ssd_gb"), "job.toml:9:37");
}

TEST(JobResources, AttemptStringsGrowPerAttempt) {
  auto job =
      one_task("cpus = \"2 * attempt\"\nmemory = \"512M * attempt\"\ngpus = \"1 * attempt\"");
  ASSERT_TRUE(job) << job.error().message();
  const auto& r = job->tasks[0].resources();
  EXPECT_EQ(r.cpus, 2);
  EXPECT_EQ(r.cpus_growth, Growth::PerAttempt);
  EXPECT_EQ(r.memory, 512 * kMiB);
  EXPECT_EQ(r.memory_growth, Growth::PerAttempt);
  EXPECT_EQ(r.gpus, 1);
  EXPECT_EQ(r.gpus_growth, Growth::PerAttempt);
  EXPECT_EQ(r.at_attempt(2).memory, 1024 * kMiB);
}

TEST(JobResources, FractionalCpusAndGpusOnAProcessTask) {
  auto job = one_task("cpus = 0.5\ngpus = 0.5\nmemory = 1048576");
  ASSERT_TRUE(job) << job.error().message();
  const auto& r = job->tasks[0].resources();
  EXPECT_EQ(r.cpus, 0.5);
  EXPECT_EQ(r.gpus, 0.5);
  EXPECT_EQ(r.memory, kMiB);
}

TEST(JobResources, TasksWithoutKeysRequestNothing) {
  auto job = one_task("timeout = 5");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_TRUE(job->tasks[0].resources().empty());
  EXPECT_TRUE(job->tasks[0].retry_on().empty());
  EXPECT_TRUE(job->resource_at[0].empty());
}

TEST(JobResources, DefaultsApplyAndEachTaskKeyReplacesItsDefault) {
  auto job = parse_job(R"([pool]
retries = 1
[defaults]
memory = "1G"
cpus = 1
resources = { license = 1 }
retry_on = ["oom"]
[[task]]
name = "plain"
command = "/bin/true"
[[task]]
name = "own"
command = "/bin/true"
memory = "2G * attempt"
gpus = 1
resources = { ssd_gb = 10, license = 0 }
retry_on = ["exit:1"]
)",
                       "job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  const auto& plain = job->tasks[0].resources();
  EXPECT_EQ(plain.memory, kGiB);
  EXPECT_EQ(plain.cpus, 1);
  EXPECT_EQ(plain.named, (std::map<std::string, double>{{"license", 1}}));
  EXPECT_EQ(job->tasks[0].retry_on(), std::vector<RetryOn>{RetryOn::oom()});
  EXPECT_EQ(job->resource_at[0].at("memory"), "job.toml:4:10");  // in [defaults]

  const auto& own = job->tasks[1].resources();
  EXPECT_EQ(own.memory, 2 * kGiB);
  EXPECT_EQ(own.memory_growth, Growth::PerAttempt);
  EXPECT_EQ(own.cpus, 1);
  EXPECT_EQ(own.gpus, 1);
  EXPECT_EQ(own.named, (std::map<std::string, double>{{"ssd_gb", 10}}));  // license = 0 drops it
  EXPECT_EQ(job->tasks[1].retry_on(), std::vector<RetryOn>{RetryOn::exit(1)});
  EXPECT_EQ(job->resource_at[1].at("memory"), "job.toml:14:10");
}

struct BadCase {
  const char* keys;
  const char* position;  // where the message must start
  const char* mentions;  // a word the message must hold
};

TEST(JobResources, BadValuesAreErrorsAtTheirPosition) {
  const BadCase cases[] = {
      {"memory = \"lots\"", "job.toml:5:10: ", "memory"},
      {"memory = 0", "job.toml:5:10: ", "memory"},
      {"memory = true", "job.toml:5:10: ", "memory"},
      {"gpus = -1", "job.toml:5:8: ", "gpus"},
      {"gpus = 1.5", "job.toml:5:8: ", "whole"},
      {"gpus = []", "job.toml:5:8: ", "gpus"},
      {"gpus = [\"0\", \"0\"]", "job.toml:5:14: ", "twice"},
      {"gpus = [\"0\", -3]", "job.toml:5:14: ", "GPU id"},
      {"cpus = 0", "job.toml:5:8: ", "more than 0"},
      {"cpus = -2", "job.toml:5:8: ", "cpus"},
      {"cpus = \"many\"", "job.toml:5:8: ", "cpus"},
      {"cpus = 0.5\npin_cpus = true", "job.toml:6:12: ", "whole"},
      {"pin_cpus = \"yes\"", "job.toml:5:12: ", "pin_cpus"},
      {"pids = 0", "job.toml:5:8: ", "pids"},
      {"retry_on = [\"oom\", \"sometimes\"]", "job.toml:5:20: ", "retry_on"},
      {"retry_on = \"oom\"", "job.toml:5:12: ", "array"},
      {"resources = { Bad-Name = 1 }", "job.toml:5:15: ", "resource name"},
      {"resources = { gpus = 2 }", "job.toml:5:15: ", "resource name"},
      {"resources = { license = -1 }", "job.toml:5:25: ", "license"},
      {"resources = 3", "job.toml:5:13: ", "resources"},
  };
  for (const auto& c : cases) {
    auto job = one_task(c.keys);
    ASSERT_FALSE(job) << c.keys;
    const std::string& m = job.error().message();
    EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument) << c.keys;
    EXPECT_TRUE(m.starts_with(c.position)) << c.keys << " -> " << m;
    EXPECT_NE(m.find(c.mentions), std::string::npos) << c.keys << " -> " << m;
  }
}

TEST(JobResources, AmountsNoMachineHasAndBadGpuIdsAreErrorsAtTheirPosition) {
  const BadCase cases[] = {
      {"cpus = 2000000", "job.toml:5:8: ", "is more than any machine has"},
      {"gpus = 5000", "job.toml:5:8: ", "is more than any machine has"},
      // More bytes than a request can hold; the message names a size that parses.
      {"memory = 2e19", "job.toml:5:10: ",
       "'memory' is too large: a machine has less than 16 EiB; use at most \"16777215T\""},
      {"gpus = [\"0\", \"\"]", "job.toml:5:14: ", "GPU id '' must be non-empty and hold no comma"},
      {"gpus = [\"0,1\"]", "job.toml:5:9: ", "GPU id '0,1' must be non-empty and hold no comma"},
      // Passes the key's own check, not the request's: reported at the task.
      {"gpus = [\"a b\"]", "job.toml:3:1: ", "task 't': resources: gpu id 'a b' is empty or holds"},
  };
  for (const auto& c : cases) {
    auto job = one_task(c.keys);
    ASSERT_FALSE(job) << c.keys;
    const std::string& m = job.error().message();
    EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument) << c.keys;
    EXPECT_TRUE(m.starts_with(c.position)) << c.keys << " -> " << m;
    EXPECT_NE(m.find(c.mentions), std::string::npos) << c.keys << " -> " << m;
  }
  auto most = one_task("memory = \"16777215T\"");
  ASSERT_TRUE(most) << "the size the too-large message suggests is accepted: "
                    << most.error().message();
  EXPECT_EQ(most->tasks[0].resources().memory, 16777215 * (1ULL << 40));
  auto ints = one_task("gpus = [1, 3]");
  ASSERT_TRUE(ints) << ints.error().message();
  EXPECT_EQ(ints->tasks[0].resources().gpu_ids, (std::vector<std::string>{"1", "3"}));
}

TEST(JobResources, FractionalCpusOnABackendThatCannotSplitOneIsAnError) {
  auto job =
      parse_job("[[task]]\nname = \"k\"\nbackend = \"gpu\"\ncommand = \"saxpy\"\ncpus = 0.5\n",
                "job.toml", opts());
  ASSERT_FALSE(job);
  EXPECT_TRUE(job.error().message().starts_with("job.toml:5:8: ")) << job.error().message();
  EXPECT_NE(job.error().message().find("cannot split"), std::string::npos);
  // Whole CPUs are fine there.
  EXPECT_TRUE(
      parse_job("[[task]]\nname = \"k\"\nbackend = \"gpu\"\ncommand = \"saxpy\"\ncpus = 1\n",
                "job.toml", opts()));
}

TEST(JobResources, BadDefaultsAreErrorsInDefaults) {
  auto job = parse_job("[defaults]\nmemory = \"lots\"\n[[task]]\nname = \"t\"\ncommand = \"x\"\n",
                       "job.toml", opts());
  ASSERT_FALSE(job);
  EXPECT_TRUE(job.error().message().starts_with("job.toml:2:10: ")) << job.error().message();
}

TEST(JobResources, RetryOnWithoutRetriesIsAnError) {
  auto job = parse_job("[[task]]\nname = \"t\"\ncommand = \"x\"\nretry_on = [\"oom\"]\n",
                       "job.toml", opts());
  ASSERT_FALSE(job);
  EXPECT_TRUE(job.error().message().starts_with("job.toml:4:12: ")) << job.error().message();
  EXPECT_NE(job.error().message().find("retries"), std::string::npos);
  // With retries on the task it is fine.
  EXPECT_TRUE(
      parse_job("[[task]]\nname = \"t\"\ncommand = \"x\"\nretries = 1\nretry_on = [\"oom\"]\n",
                "job.toml", opts()));
}

task::Inventory two_gpu_host() {
  task::Inventory host;
  host.cpus = {0, 1, 2, 3};
  host.numa[0] = host.cpus;
  host.memory = 16 * kGiB;
  host.gpus = {"0", "1"};
  host.named["license"] = 2;
  return host;
}

TEST(JobResources, CheckFitNamesTheKeyNoHostCanMeet) {
  auto job = parse_job(R"([[task]]
name = "small"
command = "x"
gpus = 1
[[task]]
name = "train"
command = "x"
cpus = 2
gpus = 4
)",
                       "job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  auto fit = job->check_fit(two_gpu_host());
  ASSERT_FALSE(fit);
  const std::string& m = fit.error().message();
  EXPECT_TRUE(m.starts_with("job.toml:9:8: task 'train' can never run here")) << m;
  EXPECT_NE(m.find("--resources"), std::string::npos) << m;
}

TEST(JobResources, CheckFitNamesAnUnknownNamedResource) {
  auto job = parse_job("[[task]]\nname = \"t\"\ncommand = \"x\"\nresources = { fpga = 1 }\n",
                       "job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  auto fit = job->check_fit(two_gpu_host());
  ASSERT_FALSE(fit);
  EXPECT_TRUE(fit.error().message().starts_with("job.toml:4:22: task 't'"))
      << fit.error().message();
  EXPECT_NE(fit.error().message().find("fpga"), std::string::npos) << fit.error().message();
}

TEST(JobResources, CheckFitPassesWhatFitsAndLeavesRemoteTasksToTheirWorkers) {
  auto job = parse_job(R"([[task]]
name = "local"
command = "x"
cpus = 2
gpus = 2
resources = { license = 2 }
[[task]]
name = "far"
backend = "remote"
command = "x"
gpus = 8
)",
                       "job.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_TRUE(job->check_fit(two_gpu_host())) << job->check_fit(two_gpu_host()).error().message();
}

RC_GTEST_PROP(JobResources, MemorySizesInEveryUnitParseToBytes, ()) {
  const auto n = *rc::gen::inRange<std::uint64_t>(1, 4096);
  const auto shift = *rc::gen::element(10u, 20u, 30u);
  const char* unit = shift == 10 ? "K" : shift == 20 ? "M" : "G";
  const bool grows = *rc::gen::arbitrary<bool>();
  const std::string value = std::to_string(n) + unit + (grows ? " * attempt" : "");
  auto job = one_task("memory = \"" + value + "\"");
  RC_ASSERT(job.has_value());
  const auto& r = job->tasks[0].resources();
  RC_ASSERT(r.memory == (n << shift));
  RC_ASSERT(r.memory_growth == (grows ? Growth::PerAttempt : Growth::Fixed));
}

}  // namespace
}  // namespace pepita::pool
