// `pepita run` as a user runs it: the bundled example, bad job files (exit 2 with
// file:line:column), failures (exit 1), timeouts, retries, Ctrl-C, and kill -9 of the driver
// followed by --resume (every task finishes exactly once).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/run_fixture.hpp"
#include "common/child.hpp"
#include "common/require.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using pepita::test::CliResult;
using pepita::test::parse;
using pepita::test::slurp;

using RunCli = pepita::test::RunFixture;

TEST_F(RunCli, ExampleWordCountRunsAndResumes) {
  const std::string job = std::string(PEPITA_SOURCE_DIR) + "/examples/wordcount/job.toml";
  auto r = run({"run", "--json", "--state-dir", state(), job});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  auto j = parse(r);
  EXPECT_TRUE(j["ok"].get<bool>());
  ASSERT_EQ(j["tasks"].size(), 17u);
  const auto& reduce = j["tasks"][16];
  EXPECT_EQ(reduce["name"], "reduce");
  EXPECT_NE(reduce["stdout"].get<std::string>().find("8000000 words in 8 shards"),
            std::string::npos)
      << reduce["stdout"];
  EXPECT_TRUE(fs::exists(fs::path(state()) / "wordcount.tsv"));

  auto again = run({"run", "--json", "--resume", "--state-dir", state(), job});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto j2 = parse(again);
  EXPECT_EQ(j2["stats"]["from_journal"], 17);
  EXPECT_EQ(j2["tasks"][16]["stdout"], reduce["stdout"]);

  // Human output: summary table and the reducer's result.
  auto text = run({"run", "--state-dir", state(), job});
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("reduce"), std::string::npos);
  EXPECT_NE(text.out.find("--- reduce output ---"), std::string::npos);
  EXPECT_NE(text.out.find("17 tasks: 17 succeeded"), std::string::npos) << text.out;
}

TEST_F(RunCli, BadJobFilesExitTwoWithPositions) {
  struct Case {
    std::string name, text, expect;
  };
  const std::vector<Case> cases = {
      {"syntax", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\n", ":3:"},
      {"cycle",
       "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeps = [\"b\"]\n"
       "[[task]]\nname = \"b\"\ncommand = \"/bin/true\"\ndeps = [\"a\"]\n",
       "dependency cycle: a -> b -> a"},
      {"missing", "[[task]]\nname = \"a\"\ncommand = \"/no/such/binary\"\n",
       ":3:11: task 'a': command"},
      {"unknown_dep", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ndeps = [\"zz\"]\n",
       "unknown task 'zz'"},
      {"bad_retries", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nretries = -1\n", ":4:11:"},
      {"bad_timeout", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\ntimeout = \"soon\"\n",
       "'timeout' must be a number of seconds"},
      {"typo", "[[task]]\nname = \"a\"\ncomand = \"/bin/true\"\n", "unknown key 'comand'"},
      {"dup",
       "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n[[task]]\nname = \"a\"\ncommand = "
       "\"/bin/true\"\n",
       "used twice"},
      {"no_tasks", "[pool]\nprocess_slots = 2\n", "no tasks"},
      {"bad_slots", "[pool]\nprocess_slots = 0\n[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
       ":2:17:"},
      {"bad_var", "[[task]]\nname = \"a\"\ncommand = \"${nope}/x\"\n",
       "unknown variable '${nope}'"},
      {"bad_backend", "[[task]]\nname = \"a\"\ncommand = \"/bin/true\"\nbackend = \"quantum\"\n",
       "unknown backend"},
  };
  for (const auto& c : cases) {
    const auto file = write(c.name + ".toml", c.text);
    auto r = run({"run", "--state-dir", state(), file.string()});
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.name + ".toml"), std::string::npos) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_FALSE(fs::exists(fs::path(state()) / "journal")) << c.name << ": ran something";
  }
  auto missing_file = run({"run", (dir_ / "absent.toml").string()});
  EXPECT_EQ(missing_file.exit_code, 2);
  EXPECT_NE(missing_file.err.find("cannot read job file"), std::string::npos);
  auto no_arg = run({"run"});
  EXPECT_EQ(no_arg.exit_code, 2);
  auto ok = run({"run", "--check",
                 write("ok.toml", "[[task]]\nname = \"a\"\ncommand = \"true\"\n").string()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(RunCli, FailuresTimeoutsAndRetries) {
  const auto job = write("mixed.toml", R"(
[pool]
retry_delay = 0.05
kill_grace = 0.2

[defaults]
cwd = "${state_dir}"

[[task]]
name = "flaky"      # fails twice, then succeeds
command = "/bin/sh"
args = ["-c", "echo x >> flaky.count; [ $(wc -l < flaky.count) -ge 3 ]"]
retries = 3

[[task]]
name = "slow"
command = "/bin/sh"
args = ["-c", "sleep 30 & wait"]
timeout = 0.2

[[task]]
name = "bad"
command = "/bin/false"

[[task]]
name = "after-bad"
command = "/bin/true"
deps = ["bad"]
)");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run({"run", "--json", "--state-dir", state(), job.string()});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto j = parse(r);
  std::map<std::string, json> by;
  for (const auto& t : j["tasks"]) by[t["name"]] = t;
  EXPECT_EQ(by["flaky"]["status"], "succeeded");
  EXPECT_EQ(by["flaky"]["attempts"], 3);
  EXPECT_EQ(by["slow"]["status"], "timed-out");
  EXPECT_EQ(by["bad"]["status"], "failed");
  EXPECT_EQ(by["bad"]["exit_code"], 1);
  EXPECT_EQ(by["after-bad"]["status"], "skipped");
  EXPECT_EQ(j["stats"]["retries"], 2);
  EXPECT_FALSE(j["ok"].get<bool>());
}

// Tasks append their index to runs.log, then sleep; kill -9 the driver while they run.
std::string sleepy_job(int n) {
  return "[pool]\nprocess_slots = 4\n[defaults]\ncwd = \"${state_dir}\"\n"
         "[[task]]\nname = \"t\"\ncount = " +
         std::to_string(n) +
         "\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"sleep 0.15; echo ${i} >> runs.log\"]\n";
}

TEST_F(RunCli, KillMinusNineThenResumeFinishesEveryTaskOnce) {
  constexpr int kTasks = 40;
  const auto job = write("sleepy.toml", sleepy_job(kTasks));
  const pid_t pid = spawn({"run", "--quiet", "--state-dir", state(), job.string()}, "first");
  const fs::path log = fs::path(state()) / "runs.log";
  // Wait until some, not all, tasks have finished.
  for (int i = 0; i < 400; ++i) {
    std::ifstream in(log);
    int lines = 0;
    for (std::string l; std::getline(in, l);) ++lines;
    if (lines >= 10) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto first = finish(pid, "first");
  ASSERT_EQ(first.exit_code, 128 + SIGKILL);
  std::this_thread::sleep_for(300ms);  // orphaned children of the killed driver finish

  auto r = run({"run", "--json", "--resume", "--state-dir", state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), static_cast<std::size_t>(kTasks));
  std::map<std::string, int> seen;
  int replayed = 0;
  for (const auto& t : j["tasks"]) {
    ++seen[t["name"]];
    EXPECT_EQ(t["status"], "succeeded") << t.dump();
    replayed += t["from_journal"].get<bool>();
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kTasks));
  for (const auto& [name, n] : seen) EXPECT_EQ(n, 1) << name;
  EXPECT_GE(replayed, 1);
  EXPECT_LT(replayed, kTasks);
  // A task replayed from the journal ran exactly once; the others at most twice (if the kill
  // caught them running).
  std::map<std::string, int> runs;
  std::ifstream in(log);
  for (std::string l; std::getline(in, l);) ++runs["t-" + l];
  for (const auto& t : j["tasks"]) {
    const std::string name = t["name"];
    if (t["from_journal"].get<bool>()) {
      EXPECT_EQ(runs[name], 1) << name;
    } else {
      EXPECT_GE(runs[name], 1) << name;
      EXPECT_LE(runs[name], 2) << name;
    }
  }
}

// Issue 19: tasks that ignore SIGTERM, with a long kill_grace. A second SIGINT exits at once;
// without it, --stop-timeout bounds the stop. Either way the report names the tasks not
// confirmed stopped, their process groups get SIGKILL, and the status is 128 + the signal.
TEST_F(RunCli, SecondSignalOrStopDeadlineEndsTheRunPromptly) {
  const auto job = write("stubborn.toml",
                         "[pool]\nprocess_slots = 2\nkill_grace = 60\n"
                         "[[task]]\nname = \"stubborn\"\ncount = 2\ncommand = \"/bin/sh\"\n"
                         "args = [\"-c\", \"trap '' TERM; echo $$ >> " +
                             (dir_ / "pids").string() + "; sleep 60\"]\n");
  auto started = [&] {
    for (int i = 0; i < 100; ++i) {
      std::ifstream in(dir_ / "pids");
      std::string a, b;
      if (in >> a >> b) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  // Task processes still running: a zombie (killed, not yet reaped by whoever inherited it once
  // pepita exited) is dead. Polls up to 2 s, for the kernel to deliver the SIGKILLs under load.
  auto alive = [&] {
    int n = 0;
    for (int i = 0; i < 40; ++i) {
      std::ifstream in(dir_ / "pids");
      n = 0;
      for (pid_t p; in >> p;) {
        std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
        std::string pid_field, comm, state;
        if (::kill(p, 0) == 0 && stat >> pid_field >> comm >> state && state != "Z") ++n;
      }
      if (n == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return n;
  };
  {
    const pid_t pid = spawn({"run", "-q", "--state-dir", state(), job.string()}, "twice");
    ASSERT_TRUE(started());
    ASSERT_EQ(::kill(pid, SIGINT), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(pid, SIGINT), 0);
    auto r = finish(pid, "twice", std::chrono::seconds(20));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
    EXPECT_EQ(r.exit_code, 130) << r.err;
    EXPECT_NE(r.err.find("second signal"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not confirmed stopped: stubborn-0, stubborn-1"), std::string::npos)
        << r.err;
    EXPECT_EQ(alive(), 0) << "task processes outlived the forced exit";
  }
  fs::remove(dir_ / "pids");
  {
    const pid_t pid = spawn(
        {"run", "-q", "--stop-timeout", "1", "--state-dir", state(), job.string()}, "deadline");
    ASSERT_TRUE(started());
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(pid, SIGTERM), 0);
    auto r = finish(pid, "deadline", std::chrono::seconds(20));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
    EXPECT_EQ(r.exit_code, 143) << r.err;
    EXPECT_NE(r.err.find("stop deadline of 1.00s passed"), std::string::npos) << r.err;
    EXPECT_EQ(alive(), 0) << "task processes outlived the forced exit";
  }
}

TEST_F(RunCli, InterruptCancelsCleanlyAndLeavesResumableJournal) {
  // Each long task notes its start; the signal goes only once both slots run one (so the quick,
  // higher-priority task has finished and pepita's handlers are surely installed, however slow
  // the machine is).
  const auto started = dir_ / "started";
  const auto job = write("long.toml",
                         "[pool]\nprocess_slots = 2\nkill_grace = 0.2\n"
                         "[[task]]\nname = \"long\"\ncount = 4\ncommand = \"/bin/sh\"\n"
                         "args = [\"-c\", \"echo x >> " +
                             started.string() +
                             "; exec sleep 30\"]\n[[task]]\nname = \"quick\"\n"
                             "command = \"/bin/true\"\npriority = 10\n");
  const pid_t pid = spawn({"run", "--json", "--state-dir", state(), job.string()}, "int");
  auto both_running = [&] {
    for (int i = 0; i < 400; ++i) {
      std::ifstream in(started);
      std::string a, b;
      if (in >> a >> b) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };
  ASSERT_TRUE(both_running()) << "the long tasks did not start within 20 s";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  auto r = finish(pid, "int");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(r.exit_code, 130) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos);
  auto j = parse(r);
  EXPECT_TRUE(j["interrupted"].get<bool>());
  std::map<std::string, std::string> status;
  for (const auto& t : j["tasks"]) status[t["name"]] = t["status"];
  EXPECT_EQ(status["quick"], "succeeded");
  EXPECT_EQ(status["long-0"], "cancelled");
  // The journal is resumable: the same job with the long tasks shortened (a changed spec is run
  // again) replays the quick task and runs the rest.
  const auto fixed = write("long.toml",
                           "[pool]\nprocess_slots = 2\n"
                           "[[task]]\nname = \"long\"\ncount = 4\ncommand = \"/bin/sleep\"\n"
                           "args = [\"0\"]\n[[task]]\nname = \"quick\"\ncommand = \"/bin/true\"\n"
                           "priority = 10\n");
  auto resumed = run({"run", "--json", "--resume", "--state-dir", state(), fixed.string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  auto j2 = parse(resumed);
  for (const auto& t : j2["tasks"]) {
    EXPECT_EQ(t["status"], "succeeded") << t.dump();
    EXPECT_EQ(t["from_journal"].get<bool>(), t["name"] == "quick") << t.dump();
  }
}

}  // namespace

namespace {

// `pepita run --worker`: tasks with backend = "remote" run on a real `pepita worker` process.
TEST_F(RunCli, RemoteTasksRunOnAWorker) {
  const std::string key = (dir_ / "w.key").string();
  ASSERT_EQ(run({"worker", "--gen-key", key}).exit_code, 0);
  const std::string address = "127.0.0.1:" + std::to_string(20000 + ::getpid() % 20000);
  const pid_t worker =
      spawn({"worker", "--listen", address, "--key", key, "--slots", "2"}, "worker");
  const auto job = write("remote.toml", R"(
[[task]]
name = "remote-echo"
command = "/bin/echo"
args = ["hello-remote"]
backend = "remote"

[[task]]
name = "local-after"
command = "/bin/true"
deps = ["remote-echo"]
)");
  auto r = run({"run", "--json", "--no-journal", "--worker", address, "--key", key, job.string()});
  ::kill(worker, SIGTERM);
  finish(worker, "worker");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r);
  std::map<std::string, json> by;
  for (const auto& t : j["tasks"]) by[t["name"]] = t;
  EXPECT_EQ(by["remote-echo"]["status"], "succeeded");
  EXPECT_EQ(by["remote-echo"]["stdout"], "hello-remote\n") << by["remote-echo"].dump();
  EXPECT_EQ(by["local-after"]["status"], "succeeded");
}

// --tls on both sides, and [defaults] backend = "remote" sending the whole job there.
TEST_F(RunCli, RemoteTasksRunOverTlsWhenBothSidesAskForIt) {
  const std::string key = (dir_ / "t.key").string();
  ASSERT_EQ(run({"worker", "--gen-key", key}).exit_code, 0);
  const std::string address = "127.0.0.1:" + std::to_string(20001 + ::getpid() % 20000);
  const pid_t worker =
      spawn({"worker", "--listen", address, "--key", key, "--slots", "2", "--tls"}, "worker");
  const auto job = write("tls.toml", R"(
[defaults]
backend = "remote"

[[task]]
name = "echo"
count = 3
command = "/bin/echo"
args = ["over-tls-${i}"]
)");
  auto r = run(
      {"run", "--json", "--no-journal", "--worker", address, "--key", key, "--tls", job.string()});
  ::kill(worker, SIGTERM);
  finish(worker, "worker");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 3u);
  for (const auto& t : j["tasks"]) {
    const std::string name = t["name"];
    EXPECT_EQ(t["stdout"], "over-tls-" + name.substr(5) + "\n") << t.dump();
  }
}

// Before anything is created: no state directory is left behind.
TEST_F(RunCli, WorkerWithoutKeyIsAUsageErrorThatCreatesNothing) {
  const auto job = write("one.toml", "[[task]]\nname = \"t\"\ncommand = \"/bin/true\"\n");
  auto r = run({"run", "--state-dir", state(), "--worker", "127.0.0.1:1", job.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--worker needs --key FILE"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(state())) << "a usage error created the state directory";
}

}  // namespace

namespace {

// backend = "microvm": the task's command is a freestanding guest run in a KVM micro-VM.
TEST_F(RunCli, MicroVmTasksRunInAVm) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  const std::string guest = std::string(PEPITA_BINARY_DIR) + "/guest/hello.elf";
  const auto job = write("vm.toml", "[[task]]\nname = \"hello-vm\"\ncommand = \"" + guest +
                                        "\"\nbackend = \"microvm\"\ntimeout = 10\n");
  auto r = run({"run", "--json", "--no-journal", job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  auto j = parse(r);
  ASSERT_EQ(j["tasks"].size(), 1u);
  EXPECT_EQ(j["tasks"][0]["status"], "succeeded");
  EXPECT_EQ(j["tasks"][0]["exit_code"], 0) << j["tasks"][0].dump();
  EXPECT_EQ(j["tasks"][0]["stdout"], "hello from a pepita micro-VM\n") << j["tasks"][0].dump();
}

// On a terminal, progress is one line redrawn in place (a bar, the counts, the rate and an ETA),
// failures are printed above it, and the line ends at the totals once the run is over.
TEST_F(RunCli, ProgressOnATerminalIsOneRedrawnLineThatEndsAtTheTotals) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string terminal = ::ptsname(master);
  ASSERT_EQ(::fcntl(master, F_SETFL, O_NONBLOCK), 0);
  const auto job = write("job.toml",
                         "[pool]\nprocess_slots = 1\n"
                         "[[task]]\nname = \"nap\"\ncount = 3\ncommand = \"/bin/sh\"\n"
                         "args = [\"-c\", \"sleep 0.3\"]\n"
                         "[[task]]\nname = \"bad\"\ncommand = \"/bin/sh\"\n"
                         "args = [\"-c\", \"exit 3\"]\n");
  const pid_t pid = pepita::test::spawn_child(
      {PEPITA_CLI_PATH, "run", "--no-cache", "--state-dir", state(), job.string()},
      (dir_ / "run.out").string(), terminal);
  ASSERT_GT(pid, 0);
  // Read the terminal while pepita runs, so that its writes never block on a full one.
  std::string screen;
  auto drain = [&] {
    char buf[4096];
    for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;) screen.append(buf, n);
  };
  std::optional<int> code;
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (!code && std::chrono::steady_clock::now() < give_up) {
    drain();
    code = pepita::test::wait_child(pid, 20ms);
  }
  drain();
  ::close(master);
  if (!code) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  ASSERT_TRUE(code.has_value()) << "pepita still running after 120 s:\n" << screen;
  EXPECT_EQ(*code, 1) << screen;
  EXPECT_NE(screen.find("\x1b[K["), std::string::npos) << "the line is never redrawn:\n" << screen;
  EXPECT_NE(screen.find("FAILED  bad"), std::string::npos) << screen;
  EXPECT_NE(screen.find("[############################] 4/4 done  1 failed  0 running"),
            std::string::npos)
      << screen;
  EXPECT_NE(screen.find("ETA 0s"), std::string::npos) << screen;
  // The per-event lines of a pipe are not printed on a terminal: only the failure was.
  EXPECT_EQ(screen.find("ok  nap-0"), std::string::npos) << screen;
  EXPECT_NE(slurp(dir_ / "run.out").find("4 tasks: 3 succeeded"), std::string::npos);
}

// Each way a task can end has its label in the summary: a task killed by a signal, one whose
// binary is gone by the time it starts, and one the open circuit breaker refused to start.
TEST_F(RunCli, SummaryLabelsSignaledUnlaunchedAndRejectedTasks) {
  const auto killed = write("killed.toml",
                            "[[task]]\nname = \"killed\"\ncommand = \"/bin/sh\"\n"
                            "args = [\"-c\", \"kill -9 $$\"]\n");
  const auto k = run({"run", "-q", "--no-cache", "--state-dir", state(), killed.string()});
  EXPECT_EQ(k.exit_code, 1) << k.err;
  const std::string row = pepita::test::line_of(k.out, "killed");
  EXPECT_NE(row.find("SIGNALED"), std::string::npos) << k.out;
  EXPECT_NE(row.find("sig 9"), std::string::npos) << k.out;

  const fs::path tool = dir_ / "tool";
  fs::copy_file("/bin/true", tool);
  const auto gone = write("gone.toml",
                          "[pool]\nprocess_slots = 1\nretries = 0\nbreaker_threshold = 1\n"
                          "breaker_cooldown = 600\n"
                          "[[task]]\nname = \"rm\"\ncommand = \"/bin/rm\"\nargs = [\"" +
                              tool.string() +
                              "\"]\n"
                              "[[task]]\nname = \"use\"\ncount = 2\ncommand = \"" +
                              tool.string() + "\"\ndeps = [\"rm\"]\n");
  const auto g = run({"run", "-q", "--no-cache", "--state-dir", state() + "-2", gone.string()});
  EXPECT_EQ(g.exit_code, 1) << g.err;
  const std::string rows =
      pepita::test::line_of(g.out, "use-0") + "\n" + pepita::test::line_of(g.out, "use-1");
  EXPECT_NE(rows.find("NO-LAUNCH"), std::string::npos) << g.out;
  EXPECT_NE(rows.find("REJECTED"), std::string::npos) << g.out;
  EXPECT_NE(rows.find("circuit breaker is open"), std::string::npos) << g.out;
}

// Past 60 tasks the summary lists only those that did not succeed, and says how many it left out.
TEST_F(RunCli, SummaryOfManyTasksListsOnlyTheFailedOnes) {
  const auto job = write("many.toml",
                         "[[task]]\nname = \"ok\"\ncount = 61\ncommand = \"/bin/true\"\n"
                         "[[task]]\nname = \"bad\"\ncommand = \"/bin/sh\"\n"
                         "args = [\"-c\", \"exit 3\"]\n");
  const auto r = run({"run", "-q", "--no-cache", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(pepita::test::line_of(r.out, "bad").find("FAILED"), std::string::npos) << r.out;
  EXPECT_EQ(pepita::test::line_of(r.out, "ok-0"), "") << r.out;
  EXPECT_NE(r.out.find("... and 61 more tasks that succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("62 tasks: 61 succeeded"), std::string::npos) << r.out;
}

TEST_F(RunCli, ExplainSaysADependentOfAFailedTaskWasSkipped) {
  const auto job =
      write("skip.toml",
            "[[task]]\nname = \"first\"\ncommand = \"/bin/sh\"\n"
            "args = [\"-c\", \"exit 3\"]\n"
            "[[task]]\nname = \"then\"\ncommand = \"/bin/true\"\ndeps = [\"first\"]\n");
  const auto r =
      run({"run", "-q", "--no-cache", "--explain", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string why = pepita::test::line_of(r.out, "then");
  EXPECT_NE(why.find("skipped: "), std::string::npos) << r.out;
  EXPECT_NE(why.find("first"), std::string::npos) << r.out;
}

// A state directory that cannot be made (a file is in the way): exit 1 naming it, before any task
// ran, and the file is untouched.
TEST_F(RunCli, AStateDirectoryBlockedByAFileFailsBeforeAnyTaskRuns) {
  const auto file = write("taken", "not a directory\n");
  const std::string marker = (dir_ / "ran").string();
  const auto job =
      write("job.toml",
            "[[task]]\nname = \"t\"\ncommand = \"/bin/touch\"\nargs = [\"" + marker + "\"]\n");
  for (const std::string& state_dir : {file.string(), file.string() + "/sub"}) {
    const auto r = run({"run", "--state-dir", state_dir, job.string()});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("pepita run: cannot create state directory " + state_dir + ": "),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.out, "");
  }
  EXPECT_FALSE(fs::exists(marker)) << "a task ran without a state directory";
  EXPECT_EQ(slurp(file), "not a directory\n");
}

// sbatch arguments reach backend = "slurm" tasks joined by commas, so one holding a comma is a
// usage error naming it (and the way that takes it: --slurm with backend = "remote"), before
// anything is created: no state directory is left behind.
TEST_F(RunCli, AnSbatchArgWithACommaForSlurmTasksIsAUsageErrorThatCreatesNothing) {
  const auto job =
      write("slurm.toml", "[[task]]\nname = \"s\"\nbackend = \"slurm\"\ncommand = \"/bin/true\"\n");
  const auto r = run({"run", "--state-dir", state(), "--sbatch-arg=--qos=low",
                      "--sbatch-arg=--comment=a,b", job.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("pepita run: --sbatch-arg '--comment=a,b': tasks with backend = \"slurm\" "
                       "take sbatch arguments without commas"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--slurm"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(fs::exists(state())) << "a usage error created the state directory";
}

TEST_F(RunCli, CheckRefusesWhatTheRunWouldRefuseInTheExecutorsSettings) {
  const auto job =
      write("slurm.toml", "[[task]]\nname = \"s\"\nbackend = \"slurm\"\ncommand = \"/bin/true\"\n");
  const auto bad =
      run({"run", "--check", "--state-dir", state(), "--sbatch-arg=--comment=a,b", job.string()});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--sbatch-arg '--comment=a,b'"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.out, "");
  const auto good =
      run({"run", "--check", "--state-dir", state(), "--sbatch-arg=--qos=low", job.string()});
  EXPECT_EQ(good.exit_code, 0) << good.err;
  EXPECT_EQ(good.out, job.string() + ": ok, 1 tasks\n");
  EXPECT_FALSE(fs::exists(state())) << "--check created the state directory";
}

}  // namespace

// Issue 27: `run --quiet` installs no pool observer (no per-task events); what it prints and
// keeps must not depend on one: the summary names the failed task, the counts line is right,
// live logs are written, and --resume finds every succeeded task in the journal.
TEST_F(RunCli, QuietRunReportsFailuresWritesLogsAndResumesWithoutEvents) {
  const auto job = write("quiet.toml", R"(
[[task]]
name = "hello"
command = "/bin/echo"
args = ["hi"]

[[task]]
name = "ok"
command = "/bin/true"
count = 5

[[task]]
name = "bad"
command = "/bin/false"
)");
  const auto r = run({"run", "--quiet", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_NE(r.out.find("bad "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("7 tasks: 6 succeeded"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("[1/7]"), std::string::npos) << r.err;  // quiet: no per-task lines

  const auto logs = run({"logs", state(), "hello"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "--- pepita: attempt 1 ---\nhi\n");

  const auto again = run({"run", "--json", "-q", "--resume", "--state-dir", state(), job.string()});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  const auto j = parse(again);
  EXPECT_EQ(j["stats"]["from_journal"], 6) << again.out;
  EXPECT_EQ(j["stats"]["failed"], 1) << again.out;
}
