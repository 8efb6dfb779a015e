// `pepita run` with resource requests (issue 22), as a user runs it: a fake GPU inventory hands
// four 1-GPU tasks disjoint ids, --json shows requested/given/used, bad requests exit 2 at
// their file:line:column before anything runs, the bundled example runs (its OOM task retried
// with twice the memory), and kill -9 of pepita leaves no task process and, after the next run,
// no cgroup behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_runner.hpp"
#include "cli/run_fixture.hpp"
#include "common/child.hpp"
#include "common/private_cgroup.hpp"
#include "common/require.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using pepita::test::CliResult;
using pepita::test::own_cgroup_dirs;
using pepita::test::parse;
using pepita::test::PrivateCgroup;
using pepita::test::slurp;

// Directories named pepita-<pid>-* anywhere below our own cgroups.
std::vector<std::string> cgroups_of(pid_t pid) {
  const std::string prefix = "pepita-" + std::to_string(pid) + "-";
  std::vector<std::string> found;
  for (const auto& dir : own_cgroup_dirs()) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && it->path().filename().string().starts_with(prefix))
        found.push_back(it->path().string());
    }
  }
  return found;
}

// Live processes (not zombies) whose command line is exactly `argv`.
std::vector<pid_t> processes_running(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want.append(a).push_back('\0');
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (slurp(e.path() / "cmdline") != want) continue;
    const std::string stat = slurp(e.path() / "stat");
    const auto close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') continue;
    pids.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return pids;
}

using RunResources = pepita::test::RunFixture;

TEST_F(RunResources, FakeGpuInventoryGivesFourOneGpuTasksDisjointIds) {
  // Each task waits (up to 10 s) until all four have started, so all four hold a GPU at once.
  const auto job =
      write("gpus.toml",
            "[pool]\nprocess_slots = 4\n[defaults]\ncwd = \"${state_dir}\"\n"
            "[[task]]\nname = \"g\"\ncount = 4\ngpus = 1\ncommand = \"sh\"\n"
            "args = [\"-c\", \"touch started-${i}; n=0; while [ $(ls started-* | wc -l) -lt 4 ] && "
            "[ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; echo $PEPITA_GPUS\"]\n");
  auto r =
      run({"run", "--json", "--resources", "gpus=0,1,2,3", "--state-dir", state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 4u);
  std::set<std::string> ids;
  for (const auto& t : j["tasks"]) {
    std::string out = t["stdout"];
    while (!out.empty() && out.back() == '\n') out.pop_back();
    ids.insert(out);
    ASSERT_TRUE(t["given"].is_object()) << t.dump();
    EXPECT_EQ(t["given"]["gpus"], json::array({out})) << t.dump();
    EXPECT_EQ(t["requested"]["gpus"], 1) << t.dump();
  }
  EXPECT_EQ(ids, (std::set<std::string>{"0", "1", "2", "3"}));
}

TEST_F(RunResources, JsonShowsRequestedGivenAndUsedPerTask) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);  // a memory limit is enforced or the task is refused
  const auto job = write("json.toml",
                         "[[task]]\nname = \"asks\"\ncpus = 1\nmemory = \"64M * attempt\"\n"
                         "resources = { license = 1 }\ncommand = \"/bin/true\"\n"
                         "[[task]]\nname = \"plain\"\ncommand = \"/bin/true\"\n");
  auto r = run({"run", "--json", "--resources", "license=1", "--state-dir", state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 2u);
  const auto& asks = j["tasks"][0];
  ASSERT_TRUE(asks["requested"].is_object()) << asks.dump();
  EXPECT_EQ(asks["requested"]["memory"], 64u << 20);
  EXPECT_EQ(asks["requested"]["memory_growth"], "attempt");
  EXPECT_EQ(asks["requested"]["cpus"], 1);
  EXPECT_EQ(asks["requested"]["resources"]["license"], 1);
  EXPECT_NE(asks["requested"]["text"].get<std::string>().find("memory="), std::string::npos);
  ASSERT_TRUE(asks["given"].is_object()) << asks.dump();
  EXPECT_EQ(asks["given"]["attempt"], 1);
  EXPECT_EQ(asks["given"]["memory"], 64u << 20);
  EXPECT_EQ(asks["given"]["resources"]["license"], 1);
  ASSERT_TRUE(asks["used"].is_object());
  EXPECT_GT(asks["used"]["wall_s"].get<double>(), 0);
  EXPECT_TRUE(asks["used"].contains("peak_memory"));
  EXPECT_TRUE(asks["used"].contains("max_rss_kb"));
  EXPECT_TRUE(asks["used"].contains("cpu_s"));
  const auto& plain = j["tasks"][1];
  EXPECT_TRUE(plain["requested"].is_null()) << plain.dump();
  EXPECT_TRUE(plain["given"].is_null()) << plain.dump();

  // The human summary shows requested vs given vs used for the task that asked.
  auto text = run({"run", "--resources", "license=1", "--state-dir", state(), job.string()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("requested"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("license=1"), std::string::npos) << text.out;
}

TEST_F(RunResources, BadRequestsExitTwoAtTheirPositionBeforeAnythingRuns) {
  struct Case {
    std::string name, keys, flags, expect;
  };
  const std::vector<Case> cases = {
      {"lots", "memory = \"lots\"", "", ":4:10: "},
      {"neg_gpus", "gpus = -1", "", ":4:8: "},
      {"zero_cpus", "cpus = 0", "", ":4:8: "},
      {"bad_retry", "retries = 1\nretry_on = [\"never\"]", "", ":5:13: "},
      {"bad_name", "resources = { \"no such\" = 1 }", "", ":4:15: "},
      {"no_host_has", "resources = { fpga = 1 }", "", ":4:22: task 'a' can never run here"},
      {"too_many_gpus", "gpus = 4", "gpus=0,1", ":4:8: task 'a' can never run here"},
  };
  for (const auto& c : cases) {
    const auto file = write(c.name + ".toml",
                            "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n" + c.keys + "\n");
    std::vector<std::string> args{"run", "--state-dir", state()};
    if (!c.flags.empty()) args.insert(args.end(), {"--resources", c.flags});
    for (const bool check : {false, true}) {
      auto a = args;
      if (check) a.push_back("--check");
      a.push_back(file.string());
      auto r = run(a);
      EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
      EXPECT_NE(r.err.find(c.name + ".toml" + c.expect), std::string::npos)
          << c.name << ": " << r.err;
      EXPECT_FALSE(fs::exists(fs::path(state()) / "journal")) << c.name << ": ran something";
    }
  }
  const auto ok = write("ok.toml", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n");
  auto bad_flag = run({"run", "--resources", "gpus", "--state-dir", state(), ok.string()});
  EXPECT_EQ(bad_flag.exit_code, 2) << bad_flag.err;
  EXPECT_NE(bad_flag.err.find("--resources 'gpus'"), std::string::npos) << bad_flag.err;
}

// A host whose memory cannot be read (an empty /proc/meminfo, in a mount namespace of its own)
// cannot place resource requests: the run fails before anything runs and says what to give.
TEST_F(RunResources, UndetectableHostResourcesFailARunThatRequestsThem) {
  PEPITA_REQUIRE_CAPABILITY(root);
  if (!pepita::test::detail::on_path("unshare"))
    GTEST_SKIP() << "util-linux's unshare is not installed";
  const auto job = write("job.toml", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ncpus = 1\n");
  const auto r = pepita::test::run_pepita(
      "run --state-dir " + state() + " " + job.string(),
      pepita::test::in_mount_namespace("mount --bind /dev/null /proc/meminfo"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita run: cannot detect this machine's CPUs, memory and GPUs for the "
                          "tasks' resource requests: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("/proc/meminfo"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(state())) << "the run went on without an inventory";
}

TEST_F(RunResources, ExampleJobRunsAndRetriesItsOomTaskWithMoreMemory) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const std::string job = std::string(PEPITA_SOURCE_DIR) + "/examples/resources/job.toml";
  auto r = run({"run", "--json", "--resources", "gpus=0,1,license=1", "--state-dir", state(), job});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const auto j = parse(r);
  std::map<std::string, json> by_name;
  for (const auto& t : j["tasks"]) by_name[t["name"]] = t;
  ASSERT_EQ(by_name.size(), 6u);
  for (const auto& [name, t] : by_name) EXPECT_EQ(t["status"], "succeeded") << t.dump();
  EXPECT_EQ(by_name["prepare"]["stdout"], "prepared on 1 core\n");
  // Two half-GPU tasks share one id.
  EXPECT_EQ(by_name["shard-0"]["given"]["gpus"], by_name["shard-1"]["given"]["gpus"]);
  const auto& grow = by_name["grow"];
  EXPECT_NE(grow["stdout"].get<std::string>().find("allocated 150 MiB"), std::string::npos);
  // Killed at 96M by its cgroup ("oom", retried as retry_on says), then given 192M.
  EXPECT_EQ(grow["attempts"], 2) << grow.dump();
  EXPECT_EQ(grow["given"]["attempt"], 2) << grow.dump();
  EXPECT_EQ(grow["given"]["memory"], 192u << 20) << grow.dump();
  EXPECT_EQ(grow["used"]["memory_limit"], 192u << 20) << grow.dump();
  EXPECT_GT(grow["used"]["peak_memory"].get<std::uint64_t>(), 150u << 20) << grow.dump();
}

TEST_F(RunResources, TaskOverItsMemoryLimitEndsOomAndTheSummaryNamesIt) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const auto job = write("oom.toml",
                         "[[task]]\nname = \"big\"\nmemory = \"32M\"\ncommand = \"python3\"\n"
                         "args = [\"-c\", \"b = bytearray(100 << 20)\"]\n"
                         "[[task]]\nname = \"small\"\ncommand = \"python3\"\n"
                         "args = [\"-c\", \"b = bytearray(100 << 20)\"]\n");
  auto r = run({"run", "--json", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  const auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 2u);
  const auto& big = j["tasks"][0];
  EXPECT_EQ(big["status"], "oom") << big.dump();
  EXPECT_NE(big["error"].get<std::string>().find("32M"), std::string::npos) << big.dump();
  EXPECT_EQ(big["used"]["memory_limit"], 32u << 20) << big.dump();
  EXPECT_GE(big["used"]["peak_memory"].get<std::uint64_t>(), 30u << 20) << big.dump();
  EXPECT_EQ(j["tasks"][1]["status"], "succeeded") << j["tasks"][1].dump();  // no limit

  auto text = run({"run", "--state-dir", state(), job.string()});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_NE(text.out.find("OOM"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("out of memory: big"), std::string::npos) << text.out;
}

// Starts `pepita run` of two `sleep` tasks, waits until both sleep, kill -9s pepita and
// returns its pid once the sleeps are gone (each a test failure if not).
pid_t kill_run_while_two_sleep(RunResources& t, const std::string& tag) {
  const std::string seconds = std::to_string(100000 + ::getpid());  // ours alone
  const auto job = t.write(tag + ".toml",
                           "[[task]]\nname = \"s\"\ncount = 2\ncommand = "
                           "\"sleep\"\nargs = [\"" +
                               seconds + "\"]\n");
  const pid_t pid = t.spawn({"run", "--quiet", "--state-dir", t.state(), job.string()}, tag);
  const std::vector<std::string> sleep_argv{"sleep", seconds};
  for (int i = 0; i < 1000 && processes_running(sleep_argv).size() < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(processes_running(sleep_argv).size(), 2u) << slurp(t.dir_ / (tag + ".err"));
  EXPECT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(t.finish(pid, tag).exit_code, 128 + SIGKILL);
  // Both sleeps die with their driver; polled, since the machine may be loaded.
  for (int i = 0; i < 500 && !processes_running(sleep_argv).empty(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const auto left = processes_running(sleep_argv);
  for (pid_t p : left) ::kill(p, SIGKILL);  // do not leave them to the next test
  EXPECT_TRUE(left.empty()) << left.size() << " sleep task(s) outlived kill -9 of pepita run";
  return pid;
}

// Issue 22's "no orphans": kill -9 of `pepita run` while two sleeps run takes the sleeps with
// it (PR_SET_PDEATHSIG from the executor's reactor thread).
TEST_F(RunResources, KillMinusNineOfRunTakesItsTasksWithIt) {
  kill_run_while_two_sleep(*this, "killed");
  // Leave no cgroup of the killed run behind for others to find.
  const auto next = write("next.toml", "[[task]]\nname = \"n\"\ncommand = \"/bin/true\"\n");
  EXPECT_EQ(run({"run", "--state-dir", (dir_ / "state2").string(), next.string()}).exit_code, 0);
}

// ... and the next `pepita run` ends and removes whatever the killed run left in its cgroups,
// saying so on one line.
TEST_F(RunResources, NextRunRemovesTheCgroupsOfAKilledRun) {
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const PrivateCgroup own;
  const pid_t pid = kill_run_while_two_sleep(*this, "killed");
  ASSERT_FALSE(cgroups_of(pid).empty()) << "the killed run left no cgroup to remove";
  const auto next = write("next.toml", "[[task]]\nname = \"n\"\ncommand = \"/bin/true\"\n");
  auto r = run({"run", "--state-dir", (dir_ / "state2").string(), next.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(cgroups_of(pid), std::vector<std::string>{}) << r.err;
  EXPECT_NE(r.err.find("ended the tasks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(pid)), std::string::npos) << r.err;
}

}  // namespace
