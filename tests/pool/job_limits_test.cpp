// Job files at their edges (issue 29): every integer and duration key accepts both ends of its
// range and refuses one past each, naming the key and the range at its position; a value of the
// wrong type at its position; what a file that leaves a setting out gets; the characters a name
// may hold; ${...} at its edges; count members found by their decimal index; where a command is
// looked for and on which backends; and a chain of dependencies built deepest first.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/core/format.hpp"
#include "pepita/pool/job.hpp"

namespace pepita::pool {
namespace {

JobOptions opts() {
  return {.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = true};
}

const std::string kTask = "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n";

Result<Job> parse(const std::string& text) { return parse_job(text, "f.toml", opts()); }

// The message of a parse that must fail (empty, and a test failure, when it parses).
std::string error_of(const std::string& text) {
  auto job = parse(text);
  EXPECT_FALSE(job) << text;
  return job ? std::string() : job.error().message();
}

// One integer key: `text(v)` is a job file setting it to v, at `where` ("f.toml:L:C: ").
struct IntKey {
  std::string key;  // as the message names it
  std::int64_t lo, hi;
  std::function<std::string(std::int64_t)> text;
  std::string where;
};

std::string pool_key(const std::string& key, std::int64_t v) {
  return "[pool]\n" + key + " = " + std::to_string(v) + "\n" + kTask;
}
std::string task_key(const std::string& key, const std::string& v) {
  return kTask + key + " = " + v + "\n";
}

TEST(JobLimits, EveryIntegerKeyRefusesOnePastEachEndNamingItsRange) {
  const auto pool = [](const std::string& key) {
    return [key](std::int64_t v) { return pool_key(key, v); };
  };
  const auto task = [](const std::string& key) {
    return [key](std::int64_t v) { return task_key(key, std::to_string(v)); };
  };
  const std::vector<IntKey> keys = {
      {"process_slots", 1, 4096, pool("process_slots"), "f.toml:2:17: "},
      {"cpu_workers", 1, 4096, pool("cpu_workers"), "f.toml:2:15: "},
      {"retries", 0, 1000, pool("retries"), "f.toml:2:11: "},
      {"breaker_threshold", 1, 1000000, pool("breaker_threshold"), "f.toml:2:21: "},
      {"retries", 0, 1000, task("retries"), "f.toml:4:11: "},
      {"output_cap", 1, 64 << 20, task("output_cap"), "f.toml:4:14: "},
      {"priority", -1000000, 1000000, task("priority"), "f.toml:4:12: "},
      {"count", 1, 10'000'000, task("count"), "f.toml:4:9: "},
      {"affinity.numa_node", 0, 4095,
       [](std::int64_t v) {
         return task_key("affinity", "{ numa_node = " + std::to_string(v) + " }");
       },
       "f.toml:4:26: "},
      {"affinity.cores", 0, 65535,
       [](std::int64_t v) {
         return task_key("affinity", "{ cores = [" + std::to_string(v) + "] }");
       },
       "f.toml:4:23: "},
  };
  for (const auto& k : keys) {
    const std::string range =
        k.where + pepita::fmt("'{}' must be an integer from {} to {}", k.key, k.lo, k.hi);
    for (std::int64_t bad : {k.lo - 1, k.hi + 1}) {
      EXPECT_NE(error_of(k.text(bad)).find(range), std::string::npos)
          << k.text(bad) << "\nexpected: " << range;
    }
    // Both ends pass the range check (a NUMA node or core this machine lacks fails later, in
    // the task's builder; a count of ten million is not expanded here).
    for (std::int64_t good : {k.lo, k.hi}) {
      if (k.key == "count" && good == k.hi) continue;
      auto job = parse(k.text(good));
      if (!job) {
        EXPECT_EQ(job.error().message().find("must be an integer"), std::string::npos)
            << k.text(good) << "\n -> " << job.error().message();
      }
    }
  }
}

TEST(JobLimits, IntegerKeysAtTheirUpperEndLandInTheJobAndTask) {
  auto pool = parse(
      "[pool]\nprocess_slots = 4096\ncpu_workers = 4096\nretries = 1000\n"
      "breaker_threshold = 1000000\n" +
      kTask + "output_cap = 67108864\npriority = 1000000\nretries = 1000\n");
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ(pool->process_slots, 4096u);
  EXPECT_EQ(pool->cpu_workers, 4096u);
  EXPECT_EQ(pool->retry.max_attempts(), 1001u);
  EXPECT_EQ(pool->breaker.failure_threshold, 1000000u);
  const Task& t = pool->tasks.at(0);
  EXPECT_EQ(t.output_cap(), std::size_t{64} << 20);
  EXPECT_EQ(t.priority(), 1000000);
  EXPECT_EQ(t.max_retries(), 1000u);
  auto low = parse(kTask + "priority = -1000000\n");
  ASSERT_TRUE(low) << low.error().message();
  EXPECT_EQ(low->tasks.at(0).priority(), -1000000);
}

TEST(JobLimits, SecondsRunFromZeroToTenMillionAndMustBeANumber) {
  const std::string range = "'timeout' must be a number of seconds from 0 to 10000000 (0 = none)";
  auto ends = parse(kTask + "timeout = 0\ndeadline = 10000000\n");
  ASSERT_TRUE(ends) << ends.error().message();
  EXPECT_EQ(ends->tasks.at(0).timeout(), std::chrono::nanoseconds(0));
  EXPECT_EQ(ends->tasks.at(0).deadline(), std::chrono::seconds(10'000'000));
  for (const char* bad : {"10000000.5", "-0.001", "\"5\"", "true"}) {
    EXPECT_NE(error_of(task_key("timeout", bad)).find("f.toml:4:11: " + range), std::string::npos)
        << bad;
  }
}

TEST(JobLimits, AFileThatLeavesSettingsOutGetsTheDefaults) {
  auto bare = parse_job(kTask, "/jobs/nightly.toml", opts());
  ASSERT_TRUE(bare) << bare.error().message();
  EXPECT_EQ(bare->name, "nightly");  // the file's stem
  EXPECT_EQ(bare->file, "/jobs/nightly.toml");
  EXPECT_EQ(bare->journal, "/tmp/state/journal");
  EXPECT_EQ(bare->retry.max_attempts(), 1u);                            // no retries
  EXPECT_EQ(bare->tasks.at(0).timeout(), std::chrono::nanoseconds(0));  // no timeout
  EXPECT_FALSE(bare->tasks.at(0).max_retries());                        // the pool's
  // A [pool] that sets neither delay keeps 100 ms and 10 s; an empty journal is no journal.
  auto pool = parse_job("[pool]\njournal = \"\"\n" + kTask, "/jobs/nightly.toml", opts());
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ(pool->retry.base_delay(), std::chrono::milliseconds(100));
  EXPECT_EQ(pool->retry.max_delay(), std::chrono::seconds(10));
  EXPECT_EQ(pool->retry.max_attempts(), 1u);
  EXPECT_EQ(pool->journal, "");
  auto no_state = parse_job(kTask, "/jobs/nightly.toml",
                            {.pepita_dir = "", .state_dir = "", .check_binaries = true});
  ASSERT_TRUE(no_state) << no_state.error().message();
  EXPECT_EQ(no_state->journal, "");  // no state directory, no journal
}

TEST(JobLimits, PoolDurationsLandInTheJobAndItsPoolBuilder) {
  auto job = parse(
      "[pool]\nretry_delay = 0.5\nretry_max_delay = 4\nkill_grace = 1.5\n"
      "breaker_threshold = 7\nbreaker_cooldown = 3\njournal = \"/var/j\"\n" +
      kTask);
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->retry.max_delay(), std::chrono::seconds(4));
  EXPECT_EQ(job->kill_grace, std::chrono::milliseconds(1500));
  EXPECT_EQ(job->breaker.cool_down, std::chrono::seconds(3));
  EXPECT_EQ(job->journal, "/var/j");  // absolute: kept
  const auto config = job->pool_builder().config();
  EXPECT_EQ(config.kill_grace, std::chrono::milliseconds(1500));
  EXPECT_EQ(config.retry_policy.max_delay(), std::chrono::seconds(4));
  EXPECT_EQ(config.circuit_breaker.failure_threshold, 7u);
  EXPECT_EQ(config.circuit_breaker.cool_down, std::chrono::seconds(3));
}

TEST(JobLimits, NamesTakeLettersDigitsDotDashAndUnderscoreAndNothingNextToThem) {
  const std::string edges = "azAZ09._-";
  auto job = parse("[job]\nname = \"" + edges + "\"\n[[task]]\nname = \"" + edges +
                   "\"\ncommand = \"/bin/true\"\n");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->name, edges);
  EXPECT_EQ(job->tasks.at(0).name(), edges);
  // The characters just outside each range: '`' '{' '@' '[' '/' ':'.
  for (char c : std::string("`{@[/:")) {
    const std::string name = std::string("a") + c;
    EXPECT_NE(error_of("[[task]]\nname = \"" + name + "\"\ncommand = \"/bin/true\"\n")
                  .find("f.toml:2:8: task name '" + name + "' must be 1-200 of [A-Za-z0-9._-]"),
              std::string::npos)
        << name;
  }
}

TEST(JobLimits, VariablesAtTheirEdges) {
  const std::vector<std::pair<std::string, std::string>> vars{{"a", "1"}};
  EXPECT_EQ(expand_variables("cost$", vars).value(), "cost$");  // a '$' at the very end
  EXPECT_EQ(expand_variables("$", vars).value(), "$");
  // A '$' that ends the text, even where the memory after the view holds "{a}".
  const std::string longer = "cost${a}";
  EXPECT_EQ(expand_variables(std::string_view(longer).substr(0, 5), vars).value(), "cost$");
  auto empty = expand_variables("${}", vars);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message(), "unknown variable '${}'; known: ${a}, ${env:NAME}");
  // ${i} is a count member's index: a task without count has none.
  EXPECT_NE(error_of(task_key("args", "[\"${i}\"]"))
                .find("f.toml:4:9: unknown variable '${i}'; known: ${job_dir}, ${pepita_dir}, "
                      "${state_dir}, ${env:NAME}"),
            std::string::npos);
}

TEST(JobLimits, CountMembersAreFoundByTheirDecimalIndex) {
  const std::string t = "command = \"/bin/true\"\n";
  const std::string group = "[[task]]\nname = \"a\"\ncount = 20\n" + t;
  // Member 12 by name; "a-1." only looks like one.
  auto job = parse(group + "[[task]]\nname = \"a-1.\"\n" + t +
                   "[[task]]\nname = \"b\"\ndeps = [\"a-12\", \"a-10\", \"a-19\", \"a-1.\"]\n" + t);
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 22u);
  EXPECT_EQ(job->tasks[21].dependencies(),
            (std::vector<task::TaskId>{job->tasks[12].id(), job->tasks[10].id(),
                                       job->tasks[19].id(), job->tasks[20].id()}));
  // A task named as a later group's member, with an index of two digits that ends in 9.
  EXPECT_NE(error_of("[[task]]\nname = \"a-19\"\n" + t + group)
                .find("f.toml:5:8: task name 'a-19' is used twice"),
            std::string::npos);
}

TEST(JobLimits, ACommandIsAnExecutableFileNotADirectory) {
  test::TempDir dir{"joblimits"};
  ASSERT_EQ(::mkdir(dir.file("bin").c_str(), 0755), 0);
  const std::string tool = dir.file("bin/tool");
  std::ofstream(tool) << "#!/bin/sh\n";
  ASSERT_EQ(::chmod(tool.c_str(), 0755), 0);
  const std::string file = dir.file("job.toml");
  const auto command = [&](const std::string& c) {
    return parse_job("[[task]]\nname = \"a\"\ncommand = \"" + c + "\"\n", file, opts());
  };
  // A relative path starts at the job file's directory.
  auto relative = command("bin/tool");
  ASSERT_TRUE(relative) << relative.error().message();
  EXPECT_EQ(relative->tasks.at(0).process()->path, tool);
  // A directory is searchable, not executable: refused, as is a missing file, saying where.
  for (const std::string& c : {std::string("./bin"), dir.path(), std::string("bin/none")}) {
    auto bad = command(c);
    ASSERT_FALSE(bad) << c;
    EXPECT_NE(bad.error().message().find(
                  "command '" + c +
                  "' not found or not executable (relative paths start at the job file's "
                  "directory)"),
              std::string::npos)
        << bad.error().message();
  }
  auto bare = command("no-such-tool-xyz");
  ASSERT_FALSE(bare);
  EXPECT_NE(bare.error().message().find(
                "command 'no-such-tool-xyz' not found or not executable (searched PATH)"),
            std::string::npos)
      << bare.error().message();
  // Unchecked, a bare name is left to PATH at spawn, not put under the job's directory.
  JobOptions unchecked = opts();
  unchecked.check_binaries = false;
  auto left = parse_job("[[task]]\nname = \"a\"\ncommand = \"tool\"\n", file, unchecked);
  ASSERT_TRUE(left) << left.error().message();
  EXPECT_EQ(left->tasks.at(0).process()->path, "tool");
}

TEST(JobLimits, AnEmptyJobFileHasNoTasksRatherThanBeingUnreadable) {
  test::TempDir dir{"joblimits"};
  const std::string file = dir.file("empty.toml");
  std::ofstream(file) << "";
  auto job = load_job(file, opts());
  ASSERT_FALSE(job);
  EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(job.error().message(),
            file + ": no tasks; add at least one [[task]] with a name and a command");
}

TEST(JobLimits, EveryValueOfTheWrongTypeIsAnErrorAtItsPosition) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"job = 3\n" + kTask, "f.toml:1:7: [job] must be a table"},
      {"pool = 3\n" + kTask, "f.toml:1:8: [pool] must be a table"},
      {"defaults = 3\n" + kTask, "f.toml:1:12: [defaults] must be a table"},
      {"[[task]]\nname = 3\ncommand = \"/bin/true\"\n", "f.toml:2:8: 'name' must be a string"},
      {task_key("env", "3"),
       "f.toml:4:7: 'env' must be a table of strings, e.g. env = { LANG = \"C\" }"},
      {task_key("args", "\"x\""), "f.toml:4:8: 'args' must be an array of strings"},
      {task_key("clear_env", "1"), "f.toml:4:13: 'clear_env' must be true or false"},
      {task_key("show_output", "1"), "f.toml:4:15: 'show_output' must be true or false"},
      {task_key("affinity", "{ foo = 1 }"),
       "f.toml:4:12: 'affinity' must be { cores = [0, 1] } or { numa_node = 0 }"},
      {task_key("affinity", "{ cores = 3 }"),
       "f.toml:4:12: 'affinity' must be { cores = [0, 1] } or { numa_node = 0 }"},
  };
  for (const auto& [text, expect] : cases) {
    EXPECT_NE(error_of(text).find(expect), std::string::npos) << text << "\nexpected: " << expect;
  }
}

// A task with dependencies is built once their ids exist; a builder's refusal there is still the
// job's error at that task.
TEST(JobLimits, ATaskWithDependenciesThatCannotBeBuiltIsAnErrorAtItsTable) {
  EXPECT_NE(error_of(kTask + "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\ndeps = [\"a\"]\n"
                             "affinity = { numa_node = 4000 }\n")
                .find("f.toml:4:1: invalid task 'b'"),
            std::string::npos);
}

TEST(JobLimits, EveryBackendThatRunsABinaryHasItsCommandChecked) {
  for (const char* backend : {"process", "any", "remote", "microvm"}) {
    EXPECT_NE(error_of("[[task]]\nname = \"a\"\ncommand = \"./no-such-tool\"\nbackend = \"" +
                       std::string(backend) + "\"\n")
                  .find("f.toml:3:11: task 'a': command './no-such-tool' not found or not "
                        "executable"),
              std::string::npos)
        << backend;
  }
}

TEST(JobLimits, ClearEnvTrueDropsTheInheritedEnvironmentAndFalseKeepsIt) {
  for (bool clear : {true, false}) {
    auto job = parse(task_key("clear_env", clear ? "true" : "false"));
    ASSERT_TRUE(job) << job.error().message();
    EXPECT_EQ(job->tasks.at(0).process()->inherit_env, !clear);
  }
}

// Listed dependents first, each a dependency of the one before: the deepest is built first even
// where the dependency order is found from the top of the chain.
TEST(JobLimits, AChainListedDependentFirstIsBuiltDeepestFirst) {
  const std::string t = "command = \"/bin/true\"\n";
  auto job = parse("[[task]]\nname = \"a\"\ndeps = [\"b\"]\n" + t +
                   "[[task]]\nname = \"b\"\ndeps = [\"c\"]\n" + t +
                   "[[task]]\nname = \"c\"\ndeps = [\"d\"]\n" + t + "[[task]]\nname = \"d\"\n" + t);
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 4u);
  for (std::size_t i = 0; i + 1 < 4; ++i) {
    EXPECT_EQ(job->tasks[i].dependencies(), std::vector<task::TaskId>{job->tasks[i + 1].id()});
    EXPECT_GT(job->tasks[i].id(), job->tasks[i + 1].id());
  }
}

}  // namespace
}  // namespace pepita::pool
