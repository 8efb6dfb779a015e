// Issue 27: `pepita run --zero-worker` (every task on the "zero" backend: nothing runs, the job
// file, pool, journal and summary do), backend = "zero" in a job file next to process tasks, a
// job sent to a `pepita worker --zero-worker`, and the combinations refused with exit 2.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/run_fixture.hpp"
#include "pepita/fault/journal.hpp"

namespace {

using nlohmann::json;
using pepita::test::parse;
using RunZero = pepita::test::RunFixture;

TEST_F(RunZero, ZeroWorkerCompletesEveryTaskWithoutRunningItAndJournalsThem) {
  const auto job = write("touch.toml", R"(
[[task]]
name = "t"
count = 300
command = "/bin/sh"
args = ["-c", "touch ${state_dir}/ran-${i}"]
)");
  auto r = run({"run", "--zero-worker", "--json", "--state-dir", state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 300u);
  for (const auto& t : j["tasks"]) ASSERT_EQ(t["status"], "succeeded") << t.dump();
  EXPECT_EQ(j["stats"]["succeeded"], 300);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state" / "ran-0"));  // nothing was spawned
  auto journal = pepita::fault::read_journal((dir_ / "state" / "journal").string());
  ASSERT_TRUE(journal) << journal.error().message();
  int finished = 0;
  for (const auto& rec : journal->records)
    finished += rec.type == pepita::fault::RecordType::Finished ? 1 : 0;
  EXPECT_EQ(finished, 300);
}

TEST_F(RunZero, ZeroBackendTasksAndProcessTasksShareOneJobWithDependencies) {
  const auto job = write("mixed.toml", R"(
[[task]]
name = "planned"
backend = "zero"
command = "not-a-binary-anywhere"

[[task]]
name = "real"
command = "/bin/echo"
args = ["after-zero"]
deps = ["planned"]
)");
  auto r = run({"run", "--json", "--no-journal", "--state-dir", state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = parse(r);  // named: a temporary's ["tasks"] would dangle in the loop
  std::map<std::string, json> by;
  for (const auto& t : j["tasks"]) by[t["name"]] = t;
  EXPECT_EQ(by["planned"]["status"], "succeeded");
  EXPECT_EQ(by["real"]["stdout"], "after-zero\n") << by["real"].dump();
}

TEST_F(RunZero, ARemoteJobRunsOnAZeroWorker) {
  const std::string key = (dir_ / "z.key").string();
  ASSERT_EQ(run({"worker", "--gen-key", key}).exit_code, 0);
  const std::string address = "127.0.0.1:" + std::to_string(22000 + ::getpid() % 20000);
  const pid_t worker = spawn({"worker", "--zero-worker", "--listen", address, "--key", key,
                              "--sandbox", "none", "--cache-dir", (dir_ / "wc").string()},
                             "worker");
  const auto job = write("remote.toml", R"(
[[task]]
name = "r"
count = 200
backend = "remote"
command = "/bin/false"
)");
  auto r = run(
      {"run", "--json", "--state-dir", state(), "--worker", address, "--key", key, job.string()});
  ::kill(worker, SIGTERM);
  auto w = finish(worker, "worker");
  ASSERT_EQ(r.exit_code, 0) << r.err << w.err;
  auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 200u);
  for (const auto& t : j["tasks"]) ASSERT_EQ(t["status"], "succeeded") << t.dump();  // not run
  EXPECT_NE(w.err.find("--zero-worker"), std::string::npos) << w.err;
}

TEST_F(RunZero, ZeroWorkerWithRemoteWorkersIsAUsageError) {
  const auto job = write("one.toml", "[[task]]\nname = \"t\"\ncommand = \"/bin/true\"\n");
  auto r = run({"run", "--zero-worker", "--worker", "127.0.0.1:1", "--key", "k", job.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("excludes"), std::string::npos) << r.err;
  auto s = run({"run", "--zero-worker", "--slurm", job.string()});
  EXPECT_EQ(s.exit_code, 2) << s.err;
}

TEST_F(RunZero, ASandboxOnAZeroTaskIsABadJobFile) {
  const auto job = write("bad.toml",
                         "[[task]]\nname = \"t\"\nbackend = \"zero\"\n"
                         "command = \"x\"\nsandbox = \"strict\"\n");
  auto r = run({"run", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("backend 'zero'"), std::string::npos) << r.err;
}

}  // namespace
