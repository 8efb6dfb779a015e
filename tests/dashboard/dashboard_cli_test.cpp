// The CLI side of the dashboard, with a real HTTP client: `pepita run --dashboard` on a
// non-loopback address prints a generated token once and refuses requests without it; /metrics
// of a run and of `pepita worker --metrics` scraped and checked; bad flags are usage errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "dashboard_helpers.hpp"

namespace pepita::test::dash {
namespace {

TEST(DashboardCli, ANonLoopbackDashboardRefusesRequestsWithoutTheGeneratedToken) {
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(120));
  BackgroundPepita run(
      {"run", dir / "job.toml", "--state-dir", dir / "state", "--dashboard", "0.0.0.0:0"},
      dir / "out", dir / "err");
  const std::string url = dashboard_url(run);
  ASSERT_FALSE(url.empty()) << run.err();
  const Url u = split(url);
  ASSERT_EQ(u.token.size(), 32u) << url;
  EXPECT_NE(run.err().find("dashboard token " + u.token), std::string::npos) << run.err();
  httplib::Client c("127.0.0.1", u.port);
  c.set_read_timeout(30, 0);
  for (const char* path : {"/", "/metrics", "/api/snapshot"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
  }
  auto ok = c.Get("/metrics", {{"X-Pepita-Token", u.token}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // Read-only: no cancel without --dashboard-control, token or not.
  auto cancel = c.Post("/api/tasks/1/cancel", {{"X-Pepita-Token", u.token}}, "", "text/plain");
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 403);
  EXPECT_EQ(run.kill_and_wait(SIGINT), 130);
}

TEST(DashboardCli, MetricsOfARunningJobAreScrapedWithCountsByState) {
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(120));
  BackgroundPepita run(
      {"run", dir / "job.toml", "--state-dir", dir / "state", "--dashboard", "127.0.0.1:0"},
      dir / "out", dir / "err");
  const std::string url = dashboard_url(run);
  ASSERT_FALSE(url.empty()) << run.err();
  const Url u = split(url);
  wait_until(u, [](const nlohmann::json& s) {
    return state_of(s, "broken") == "failed" && state_of(s, "slow") == "running";
  });
  httplib::Client c("127.0.0.1", u.port);
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("pepita_tasks{state=\"failed\"} 1\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("pepita_tasks{state=\"running\"} 1\n"), std::string::npos);
  EXPECT_NE(r->body.find("pepita_retries_total 1\n"), std::string::npos);
  EXPECT_NE(r->body.find("pepita_slots{backend=\"process\"} 2\n"), std::string::npos);
  EXPECT_NE(r->body.find("pepita_slots_used{backend=\"process\"} 1\n"), std::string::npos);
  EXPECT_NE(r->body.find("pepita_attempt_duration_seconds_bucket{le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_EQ(run.kill_and_wait(SIGINT), 130);
}

TEST(DashboardCli, AWorkersMetricsAreScraped) {
  ScratchDir dir;
  ASSERT_EQ(run_pepita("worker --gen-key " + (dir / "key")).exit_code, 0);
  BackgroundPepita worker({"worker", "--key", dir / "key", "--listen", "127.0.0.1:0", "--cache",
                           dir / "cache", "--slots", "3", "--metrics", "127.0.0.1:0"},
                          dir / "out", dir / "err");
  static const std::regex at(R"(metrics at http://127\.0\.0\.1:(\d+)/metrics)");
  std::smatch m;
  std::string err;
  for (int i = 0; i < 600 && !std::regex_search(err, m, at); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    err = worker.err();
  }
  ASSERT_TRUE(std::regex_search(err, m, at)) << err;
  httplib::Client c("127.0.0.1", std::stoi(m[1]));
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("# TYPE pepita_worker_tasks_run_total counter\n"), std::string::npos);
  EXPECT_NE(r->body.find("pepita_worker_slots 3\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("pepita_bytes_staged_total 0\n"), std::string::npos);
  EXPECT_EQ(c.Get("/")->status, 404);  // a worker serves metrics only
  worker.kill_and_wait(SIGTERM);
}

TEST(DashboardCli, WithControlThePageCancelsARunningTaskThroughThePool) {
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(120));
  BackgroundPepita run({"run", dir / "job.toml", "--state-dir", dir / "state", "--dashboard",
                        "127.0.0.1:0", "--dashboard-control", "--dashboard-token", "letmein"},
                       dir / "out", dir / "err");
  const std::string url = dashboard_url(run);
  ASSERT_FALSE(url.empty()) << run.err();
  const Url u = split(url);
  EXPECT_EQ(u.token, "letmein");  // printed in the URL, to be opened in a browser
  const auto snap = wait_until(u, [](const nlohmann::json& s) {
    return state_of(s, "slow") == "running" && state_of(s, "broken") == "failed";
  });
  ASSERT_EQ(state_of(snap, "slow"), "running") << snap.dump();
  std::uint64_t id = 0;
  for (const auto& t : snap["tasks"])
    if (t[1] == "slow") id = t[0];
  httplib::Client c("127.0.0.1", u.port);
  c.set_read_timeout(30, 0);
  const std::string path = "/api/tasks/" + std::to_string(id) + "/cancel";
  EXPECT_EQ(c.Post(path, "", "text/plain")->status, 401);  // no token, no cancel
  auto r = c.Post(path, {{"X-Pepita-Token", "letmein"}}, "", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  // The run ends without waiting out the 120 s sleep: the task was cancelled through the pool.
  EXPECT_TRUE(run.wait_for_stdout("5 tasks:", std::chrono::seconds(60))) << run.err();
  EXPECT_NE(run.out().find("CANCELLED"), std::string::npos) << run.out();
  EXPECT_EQ(run.kill_and_wait(SIGTERM), 1);  // it had exited: a task did not succeed
}

TEST(DashboardCli, BadDashboardFlagsAreUsageErrors) {
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(1));
  auto bad = run_pepita("run " + (dir / "job.toml") + " --dashboard nonsense");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("HOST:PORT"), std::string::npos) << bad.output;
  auto orphan = run_pepita("run " + (dir / "job.toml") + " --dashboard-control");
  EXPECT_EQ(orphan.exit_code, 2) << orphan.output;
  EXPECT_NE(orphan.output.find("--dashboard"), std::string::npos);
  auto report = run_pepita("report " + (dir / "nowhere") + " -o " + (dir / "x.html"));
  EXPECT_EQ(report.exit_code, 2);
  EXPECT_NE(report.output.find("no journal at"), std::string::npos) << report.output;
  auto worker = run_pepita("worker --key /nonexistent --metrics bad");
  EXPECT_EQ(worker.exit_code, 2);
}

// A dashboard address another program holds: the run fails before any task starts, saying so.
TEST(DashboardCli, ADashboardAddressInUseFailsTheRunBeforeAnyTaskRuns) {
  ScratchDir dir;
  const HeldLoopbackPort held;
  ASSERT_FALSE(held.address.empty()) << "cannot hold a loopback port";
  const std::string marker = dir / "ran";
  write_file(
      dir / "job.toml",
      "[[task]]\nname = \"t\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"touch " + marker + "\"]\n");
  auto r = run_pepita("run " + (dir / "job.toml") + " --state-dir " + (dir / "state") +
                      " --dashboard " + held.address);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita run: --dashboard: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("in use"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(marker)) << "a task ran without its dashboard";
}

// `pepita report` of a journal it cannot read, or to a file it cannot write: exit 1 with the
// reason, and no report (nor its temporary file) left behind.
TEST(DashboardCli, AReportOfADamagedJournalOrToAnUnusablePathFailsAndLeavesNoFile) {
  ScratchDir dir;
  std::filesystem::create_directory(dir / "damaged");
  write_file(dir / "damaged/journal", "this is not a pepita journal, only text long enough\n");
  auto damaged = run_pepita("report " + (dir / "damaged") + " -o " + (dir / "d.html"));
  EXPECT_EQ(damaged.exit_code, 1) << damaged.output;
  EXPECT_NE(damaged.output.find("pepita report: cannot read the journal"), std::string::npos)
      << damaged.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "d.html"));

  write_file(dir / "job.toml", "[[task]]\nname = \"t\"\ncommand = \"/bin/true\"\n");
  auto ran = run_pepita("run -q " + (dir / "job.toml") + " --state-dir " + (dir / "state"));
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  auto no_dir = run_pepita("report " + (dir / "state") + " -o " + (dir / "missing/r.html"));
  EXPECT_EQ(no_dir.exit_code, 1) << no_dir.output;
  EXPECT_NE(no_dir.output.find("cannot write the report " + (dir / "missing/r.html.tmp") +
                               ": check that its directory exists and is writable"),
            std::string::npos)
      << no_dir.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "missing"));
  std::filesystem::create_directory(dir / "taken.html");  // a directory where the report goes
  auto taken = run_pepita("report " + (dir / "state") + " -o " + (dir / "taken.html"));
  EXPECT_EQ(taken.exit_code, 1) << taken.output;
  EXPECT_NE(taken.output.find("cannot move the report to " + (dir / "taken.html")),
            std::string::npos)
      << taken.output;
  EXPECT_TRUE(std::filesystem::is_empty(dir / "taken.html"));
  EXPECT_FALSE(std::filesystem::exists(dir / "taken.html.tmp")) << "the temporary report stayed";
}

}  // namespace
}  // namespace pepita::test::dash
