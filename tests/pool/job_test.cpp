#include "pepita/pool/job.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

namespace pepita::pool {
namespace {

JobOptions opts() {
  return {.pepita_dir = "/opt/pepita", .state_dir = "/tmp/state", .check_binaries = true};
}

TEST(Job, ParsesEverySettingAndExpandsCounts) {
  auto job = parse_job(R"(
[job]
name = "demo"
[pool]
process_slots = 3
cpu_workers = 2
retries = 2
retry_delay = 0.5
retry_max_delay = 4
kill_grace = 1
reserve_after = 0.25
breaker_threshold = 7
breaker_cooldown = 3
journal = "j.log"
[defaults]
timeout = 9
env = { A = "1" }
cwd = "${state_dir}"
[[task]]
name = "gen"
count = 3
command = "/bin/echo"
args = ["shard", "${i}", "${pepita_dir}"]
[[task]]
name = "sum"
command = "sh"
args = ["-c", "true"]
deps = ["gen-*"]
retries = 0
timeout = 0.25
priority = 5
env = { B = "2" }
stdin = "input"
output_cap = 100
show_output = true
)",
                       "/jobs/demo.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->name, "demo");
  EXPECT_EQ(job->process_slots, 3u);
  EXPECT_EQ(job->cpu_workers, 2u);
  EXPECT_EQ(job->retry.max_attempts(), 3u);
  EXPECT_EQ(job->retry.base_delay(), std::chrono::milliseconds(500));
  EXPECT_EQ(job->breaker.failure_threshold, 7u);
  EXPECT_EQ(job->reserve_after, std::chrono::milliseconds(250));
  EXPECT_EQ(job->pool_builder().config().reserve_after, std::chrono::milliseconds(250));
  EXPECT_EQ(job->journal, "/jobs/j.log");
  ASSERT_EQ(job->tasks.size(), 4u);
  EXPECT_EQ(job->tasks[1].name(), "gen-1");
  EXPECT_EQ(job->tasks[1].process()->args, (std::vector<std::string>{"shard", "1", "/opt/pepita"}));
  EXPECT_EQ(job->tasks[1].process()->cwd, "/tmp/state");
  EXPECT_EQ(job->tasks[1].process()->env.at("A"), "1");
  EXPECT_EQ(job->tasks[1].timeout(), std::chrono::seconds(9));
  const auto& sum = job->tasks[3];
  EXPECT_EQ(sum.dependencies().size(), 3u);
  EXPECT_EQ(sum.dependencies()[0], job->tasks[0].id());
  EXPECT_EQ(sum.max_retries(), 0u);
  EXPECT_EQ(sum.timeout(), std::chrono::milliseconds(250));
  EXPECT_EQ(sum.priority(), 5);
  EXPECT_EQ(sum.process()->env.at("B"), "2");
  EXPECT_EQ(sum.process()->stdin_data, "input");
  EXPECT_EQ(sum.output_cap(), 100u);
  EXPECT_EQ(job->show_output, (std::vector<bool>{false, false, false, true}));
}

TEST(Job, DependenciesMayPointForward) {
  auto job = parse_job(
      "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\ndeps = [\"a\"]\n"
      "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
      "f.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].name(), "b");
  EXPECT_EQ(job->tasks[0].dependencies(), std::vector<task::TaskId>{job->tasks[1].id()});
}

struct BadCase {
  const char* text;
  const char* expect;
};

TEST(Job, DefaultBackendAppliesUnlessATaskNamesItsOwn) {
  auto job = parse_job(
      "[defaults]\nbackend = \"remote\"\n"
      "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n"
      "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\nbackend = \"process\"\n"
      "[[task]]\nname = \"c\"\ncommand = \"saxpy\"\nbackend = \"gpu\"\n",
      "f.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].backend(), task::Backend::Remote);
  EXPECT_EQ(job->tasks[1].backend(), task::Backend::Process);
  EXPECT_EQ(job->tasks[2].backend(), task::Backend::Gpu);  // a kernel name, not a binary
  auto cpu =
      parse_job("[defaults]\nbackend = \"cpu\"\n[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
                "f.toml", opts());
  ASSERT_FALSE(cpu);
  EXPECT_NE(cpu.error().message().find("f.toml:2:11: backend 'cpu'"), std::string::npos)
      << cpu.error().message();
}

TEST(Job, AcceptsRegisteredBackendNames) {
  JobOptions o = opts();
  o.backends = {task::Backend::Process, task::Backend::named("echo").value()};
  // A registered backend's command is its executor's business, not a file checked here.
  auto job =
      parse_job("[[task]]\nname = \"a\"\ncommand = \"hello\"\nbackend = \"echo\"\n", "f.toml", o);
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].backend().name(), "echo");
  auto unknown = parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nbackend = \"gpu\"\n",
                           "f.toml", o);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("f.toml:4:11: unknown backend 'gpu'; valid backends: "
                                           "process, echo"),
            std::string::npos)
      << unknown.error().message();
  // Without a list, only the built-ins are known.
  auto builtin = parse_job("[[task]]\nname = \"a\"\ncommand = \"hello\"\nbackend = \"echo\"\n",
                           "f.toml", opts());
  ASSERT_FALSE(builtin);
  EXPECT_NE(builtin.error().message().find("valid backends: cpu, process, remote, microvm, gpu"),
            std::string::npos);
}

TEST(Job, ErrorsCarryPositions) {
  const BadCase cases[] = {
      {"[[task]]\nname = \"a\"\ncommand = [\n", "f.toml:"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeps = [\"a\"]\n",
       "f.toml:4:9: task 'a' depends on itself"},
      {"[[task]]\nname = \"a b\"\ncommand = \"/bin/true\"\n", "f.toml:2:8: task name 'a b'"},
      {"[[task]]\nname = \"a\"\n", "has no 'command'"},
      {"[[task]]\ncommand = \"/bin/true\"\n", "has no 'name'"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ncount = 0\n", "f.toml:4:9: 'count'"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nargs = [1]\n",
       "f.toml:4:9: 'args' must be"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nenv = { \"A=B\" = \"x\" }\n",
       "is invalid"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nbackend = \"cpu\"\n", "use 'process'"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeps = [\"x-*\"]\n",
       "no task matches 'x-*'"},
      {"[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nargs = [\"${oops\"]\n", "unterminated"},
      {"task = 3\n", "must be an array of tables"},
      {"[pool]\nretry_delay = -1\n[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
       "f.toml:2:15:"},
      {"[bogus]\n", "unknown key 'bogus'"},
  };
  for (const auto& c : cases) {
    auto job = parse_job(c.text, "f.toml", opts());
    ASSERT_FALSE(job) << c.text;
    EXPECT_EQ(job.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(job.error().message().find(c.expect), std::string::npos)
        << "input:\n"
        << c.text << "\nmessage: " << job.error().message();
  }
}

TEST(Job, BadJobNameAndBadDeadlineNameTheField) {
  auto name =
      parse_job("[job]\nname = \"my job\"\n[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
                "f.toml", opts());
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(name.error().message().find("f.toml:2:8: job name must be 1-200 of [A-Za-z0-9._-]"),
            std::string::npos)
      << name.error().message();
  auto deadline = parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeadline = -3\n",
                            "f.toml", opts());
  ASSERT_FALSE(deadline);
  EXPECT_NE(deadline.error().message().find("f.toml:4:12: "), std::string::npos)
      << deadline.error().message();
  EXPECT_NE(deadline.error().message().find("deadline"), std::string::npos)
      << deadline.error().message();
  auto ok = parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeadline = 2.5\n", "f.toml",
                      opts());
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->tasks[0].deadline(), std::chrono::milliseconds(2500));
}

TEST(Job, PoolBuilderCarriesThePoolSettingsAndBuilds) {
  auto job = parse_job(
      "[pool]\nprocess_slots = 1\ncpu_workers = 1\nkill_grace = 0.5\n"
      "[[task]]\nname = \"a\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"echo ran\"]\n",
      "f.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  auto pool = job->pool_builder().build();
  ASSERT_TRUE(pool) << pool.error().message();
  auto r = pool->run(job->tasks[0]);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->stdout_data, "ran\n");
}

TEST(Job, LoadingADirectoryIsAnErrorNamingIt) {
  char tmpl[] = "/tmp/pepita-job-dir-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  auto job = load_job(tmpl, opts());
  ::rmdir(tmpl);
  ASSERT_FALSE(job);
  EXPECT_EQ(job.error().code(), ErrorCode::NotFound);
  EXPECT_NE(job.error().message().find(std::string("cannot read job file '") + tmpl + "': "),
            std::string::npos)
      << job.error().message();
  EXPECT_NE(job.error().message().find(std::strerror(EISDIR)), std::string::npos)
      << job.error().message();
}

TEST(Job, LoadsAJobFileLargerThanOneRead) {
  char tmpl[] = "/tmp/pepita-job-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  // Over 64 KiB (one read) of comments, then the task.
  std::string text;
  while (text.size() < 200'000) text += "# a comment line that pads the job file past one read\n";
  text += "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  auto job = load_job(tmpl, opts());
  ::unlink(tmpl);
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 1u);
  EXPECT_EQ(job->tasks[0].name(), "a");
}

TEST(Job, MissingBinariesAndLongCyclesAreFoundBeforeRunning) {
  auto missing =
      parse_job("[[task]]\nname = \"a\"\ncommand = \"./no-such-tool\"\n", "/x/f.toml", opts());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("not found or not executable"), std::string::npos);
  auto unchecked = parse_job("[[task]]\nname = \"a\"\ncommand = \"./no-such-tool\"\n", "/x/f.toml",
                             {.pepita_dir = "", .state_dir = "", .check_binaries = false});
  ASSERT_TRUE(unchecked);
  EXPECT_EQ(unchecked->tasks[0].process()->path, "/x/./no-such-tool");
  std::string chain;
  for (int i = 0; i < 50; ++i) {
    chain += "[[task]]\nname = \"t" + std::to_string(i) +
             "\"\ncommand = \"/bin/true\"\ndeps = [\"t" + std::to_string((i + 1) % 50) + "\"]\n";
  }
  auto cyc = parse_job(chain, "c.toml", opts());
  ASSERT_FALSE(cyc);
  EXPECT_NE(cyc.error().message().find("dependency cycle: t0 -> t1 -> t2"), std::string::npos)
      << cyc.error().message();
  auto absent = load_job("/nonexistent/job.toml", opts());
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.error().code(), ErrorCode::NotFound);
}

// Descriptor 0 is a descriptor like any other: with stdin closed the job file is opened as fd 0,
// and load_job must read it rather than take 0 for a failure.
TEST(Job, LoadsAJobFileOpenedAsDescriptorZero) {
  char path[] = "/tmp/pepita-job-fd0-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string text = "[[task]]\nname = \"only\"\ncommand = \"/bin/true\"\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  // In a child, so that closing stdin touches nothing of the test runner's. Exit 0: loaded one
  // task; 1: load_job failed; 2: another task count.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    ::close(0);
    JobOptions o = opts();
    o.check_binaries = false;
    auto job = load_job(path, o);
    if (!job) ::_exit(1);
    ::_exit(job->tasks.size() == 1 ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::unlink(path);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: load_job failed on fd 0";
}

TEST(Job, VariableExpansion) {
  const std::vector<std::pair<std::string, std::string>> vars{{"a", "1"}, {"bb", "two"}};
  EXPECT_EQ(expand_variables("x${a}y${bb}$z", vars).value(), "x1ytwo$z");
  ::setenv("PEPITA_JOB_TEST_VAR", "env!", 1);
  EXPECT_EQ(expand_variables("${env:PEPITA_JOB_TEST_VAR}", vars).value(), "env!");
  EXPECT_FALSE(expand_variables("${c}", vars));
  EXPECT_FALSE(expand_variables("${a", vars));
}

RC_GTEST_PROP(Job, ArbitraryTextNeverCrashes, (std::string text)) {
  auto job = parse_job(text, "fuzz.toml", opts());
  if (!job) RC_ASSERT(job.error().message().starts_with("fuzz.toml"));
}

// ---- issue 21: crate priority levels, metadata and backend "any" ----

TEST(Job, PriorityLevelsMetadataAndBackendAny) {
  auto job = parse_job(R"(
[defaults]
timeout = 7
[[task]]
name = "a"
command = "/bin/true"
priority = "critical"
metadata = { team = "ml", run = "${i}-x" }
count = 1
[[task]]
name = "b"
command = "/bin/true"
priority = -3
backend = "any"
)",
                       "/jobs/p.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 2u);
  EXPECT_EQ(job->tasks[0].priority(), task::priority_value(task::TaskPriority::Critical));
  EXPECT_EQ(job->tasks[0].metadata(),
            (std::map<std::string, std::string>{{"run", "0-x"}, {"team", "ml"}}));
  EXPECT_EQ(job->tasks[0].timeout(), std::chrono::seconds(7));  // [defaults] timeout
  EXPECT_EQ(job->tasks[1].priority(), -3);
  EXPECT_EQ(job->tasks[1].backend(), task::Backend::Any);
}

// Issue 27: a count-expanded group gets each task's own ${i} (name, args, env, metadata,
// outputs) at the first, second and last index, and a task reading two of its outputs depends
// on exactly those two.
TEST(Job, CountExpansionGivesEachTaskItsIndexAtFirstSecondAndLast) {
  auto job = parse_job(R"(
[[task]]
name = "gen"
count = 1000
command = "/bin/echo"
args = ["shard", "${i}"]
env = { SHARD = "s${i}" }
metadata = { index = "${i}" }
outputs = ["${state_dir}/out-${i}"]
[[task]]
name = "sum"
command = "/bin/true"
inputs = ["${state_dir}/out-0", "${state_dir}/out-999"]
[[task]]
name = "alone"
command = "/bin/true"
args = ["${job_dir}"]
)",
                       "/jobs/count.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 1002u);
  for (std::size_t i : {0UL, 1UL, 999UL}) {
    const auto& t = job->tasks[i];
    const std::string n = std::to_string(i);
    EXPECT_EQ(t.name(), "gen-" + n);
    ASSERT_NE(t.process(), nullptr);
    EXPECT_EQ(t.process()->args, (std::vector<std::string>{"shard", n}));
    EXPECT_EQ(t.process()->env.at("SHARD"), "s" + n);
    EXPECT_EQ(t.metadata().at("index"), n);
    EXPECT_EQ(t.outputs(), (std::vector<std::string>{"/tmp/state/out-" + n}));
    EXPECT_TRUE(t.dependencies().empty());
  }
  const auto& sum = job->tasks[1000];
  EXPECT_EQ(sum.name(), "sum");
  EXPECT_EQ(sum.dependencies(),
            (std::vector<task::TaskId>{job->tasks[0].id(), job->tasks[999].id()}));
  const auto& alone = job->tasks[1001];
  EXPECT_EQ(alone.process()->args, (std::vector<std::string>{"/jobs"}));  // no ${i} left over
  EXPECT_TRUE(alone.dependencies().empty());
  std::set<task::TaskId> ids;
  for (const auto& t : job->tasks) ids.insert(t.id());
  EXPECT_EQ(ids.size(), job->tasks.size());  // every task its own id
}

// Issue 27: tasks that can have no dependency are built as they are read; the others once the
// order is known. Either way a dependency's id is below its dependent's, the file order of the
// tasks is kept, and a bad task is still reported at its own position.
TEST(Job, DependenciesGetSmallerIdsWhetherBuiltEarlyOrLate) {
  auto job = parse_job(
      "[[task]]\nname = \"late\"\ncommand = \"/bin/true\"\ndeps = [\"mid\", \"early\"]\n"
      "[[task]]\nname = \"mid\"\ncommand = \"/bin/true\"\ndeps = [\"last\"]\n"
      "[[task]]\nname = \"early\"\ncommand = \"/bin/true\"\n"
      "[[task]]\nname = \"last\"\ncommand = \"/bin/true\"\n",
      "f.toml", opts());
  ASSERT_TRUE(job) << job.error().message();
  ASSERT_EQ(job->tasks.size(), 4u);
  const auto& late = job->tasks[0];
  const auto& mid = job->tasks[1];
  const auto& early = job->tasks[2];
  const auto& last = job->tasks[3];
  EXPECT_EQ(late.name(), "late");
  EXPECT_EQ(last.name(), "last");
  EXPECT_EQ(late.dependencies(), (std::vector<task::TaskId>{mid.id(), early.id()}));
  EXPECT_EQ(mid.dependencies(), (std::vector<task::TaskId>{last.id()}));
  EXPECT_LT(mid.id(), late.id());
  EXPECT_LT(early.id(), late.id());
  EXPECT_LT(last.id(), mid.id());

  auto bad = parse_job(
      "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeps = [\"b\"]\n"
      "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\naffinity = { numa_node = 4000 }\n",
      "f.toml", opts());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("f.toml:5:1: invalid task 'b'"), std::string::npos)
      << bad.error().message();
}

// Issue 27: count groups are looked up as a whole ("base-k" is member k), so the name checks
// must still see a group against a single task in either order, two groups with one base, and
// names that only look alike; a dependency finds a member by its name.
TEST(Job, CountGroupNamesClashWithSingleTasksAndGroupsAsExpanded) {
  const auto parse = [](const std::string& text) { return parse_job(text, "f.toml", opts()); };
  const std::string t = "command = \"/bin/true\"\n";
  struct Clash {
    std::string text;
    std::string expect;
  };
  const std::vector<Clash> clashes = {
      {"[[task]]\nname = \"a-2\"\n" + t + "[[task]]\nname = \"a\"\ncount = 5\n" + t,
       "f.toml:5:8: task name 'a-2' is used twice"},
      {"[[task]]\nname = \"a\"\ncount = 5\n" + t + "[[task]]\nname = \"a-4\"\n" + t,
       "f.toml:6:8: task name 'a-4' is used twice"},
      {"[[task]]\nname = \"a\"\ncount = 2\n" + t + "[[task]]\nname = \"a\"\ncount = 9\n" + t,
       "f.toml:6:8: task name 'a-0' is used twice"},
      {"[[task]]\nname = \"a-7\"\n" + t + "[[task]]\nname = \"a-3\"\n" + t +
           "[[task]]\nname = \"a\"\ncount = 8\n" + t,
       "task name 'a-3' is used twice"},  // the first clash in expansion order
      {"[[task]]\nname = \"" + std::string(197, 'x') + "\"\ncount = 200\n" + t,
       "task name '" + std::string(197, 'x') + "-100' must be 1-200"},
  };
  for (const auto& c : clashes) {
    auto job = parse(c.text);
    ASSERT_FALSE(job) << c.text;
    EXPECT_NE(job.error().message().find(c.expect), std::string::npos)
        << job.error().message() << "\nexpected: " << c.expect;
  }
  // Alike but not equal: "a-07" is not member 7, "a-5" is past a count of 5, "a-1-0" is member 0
  // of the group "a-1", not of "a"; a dependency names a member, past the count is unknown.
  auto ok = parse("[[task]]\nname = \"a\"\ncount = 5\n" + t + "[[task]]\nname = \"a-07\"\n" + t +
                  "[[task]]\nname = \"a-5\"\n" + t + "[[task]]\nname = \"a-1\"\ncount = 1\n" + t +
                  "[[task]]\nname = \"b\"\ndeps = [\"a-3\", \"a-1-0\", \"a-07\"]\n" + t);
  ASSERT_TRUE(ok) << ok.error().message();
  ASSERT_EQ(ok->tasks.size(), 9u);
  EXPECT_EQ(ok->tasks[8].dependencies(),
            (std::vector<task::TaskId>{ok->tasks[3].id(), ok->tasks[7].id(), ok->tasks[5].id()}));
  auto unknown = parse("[[task]]\nname = \"a\"\ncount = 5\n" + t +
                       "[[task]]\nname = \"b\"\ndeps = [\"a-5\"]\n" + t);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message().find("depends on unknown task 'a-5'"), std::string::npos)
      << unknown.error().message();
}

TEST(Job, BadPriorityOrMetadataNamesTheField) {
  auto bad_level =
      parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\npriority = \"urgent\"\n",
                "/jobs/p.toml", opts());
  ASSERT_FALSE(bad_level);
  EXPECT_NE(bad_level.error().message().find("/jobs/p.toml:4:"), std::string::npos)
      << bad_level.error().message();
  EXPECT_NE(bad_level.error().message().find("'urgent'"), std::string::npos);
  auto bad_meta = parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nmetadata = 3\n",
                            "/jobs/p.toml", opts());
  ASSERT_FALSE(bad_meta);
  EXPECT_NE(bad_meta.error().message().find("'metadata' must be a table"), std::string::npos);
  auto bad_value =
      parse_job("[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nmetadata = { k = 1 }\n",
                "/jobs/p.toml", opts());
  ASSERT_FALSE(bad_value);
  EXPECT_NE(bad_value.error().message().find("'metadata.k' must be a string"), std::string::npos);
}

}  // namespace
}  // namespace pepita::pool
