// The dashboard in a real browser (headless Chromium, capability `chromium`): the live page of
// a running job, the report written at the end, the report rebuilt from a crashed run's journal
// (opened with networking cut off), and a 100k-task report that stays responsive. Assertions are
// on the DOM: a row per task with its state, a timeline bar per attempt, the failure with its
// stderr tail. Screenshots go to <build>/test-artifacts/dashboard/.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "common/require.hpp"
#include "dashboard_helpers.hpp"
#include "dashboard_model.hpp"
#include "dashboard_run.hpp"

namespace pepita::test::dash {
namespace {

// No network at all: unresolvable names and a proxy that refuses, so any fetch would fail.
constexpr const char* kOffline =
    "--host-resolver-rules='MAP * ~NOTFOUND' --proxy-server=127.0.0.1:9 "
    "--proxy-bypass-list='<-loopback>'";

void expect_job_dom(const std::string& dom, const std::string& slow_state) {
  EXPECT_EQ(row_state(dom, "quick-0"), "succeeded");
  EXPECT_EQ(row_state(dom, "quick-1"), "succeeded");
  EXPECT_EQ(row_state(dom, "quick-2"), "succeeded");
  EXPECT_EQ(row_state(dom, "broken"), "failed");
  EXPECT_EQ(row_state(dom, "slow"), slow_state);
  EXPECT_EQ(all(dom, "<tr (data-task)=").size(), 5u);
  // One bar per attempt: quick x3, broken twice (a retry), slow once.
  const auto bars = all(dom, "<rect class=\"bar[^\"]*\"[^>]*data-task=\"([^\"]+)\"");
  EXPECT_EQ(bars.size(), 6u);
  EXPECT_EQ(std::count(bars.begin(), bars.end(), "broken"), 2);
  EXPECT_EQ(all(dom, "data-attempt=\"(2)\"").size(), 1u);
  // The failure with its stderr tail, as text (the markup in it escaped, not parsed).
  const auto failure = dom.find("<div class=\"failure\" data-task=\"broken\"");
  ASSERT_NE(failure, std::string::npos);
  const auto stderr_tail = dom.find("<pre class=\"stderr\">", failure);
  ASSERT_NE(stderr_tail, std::string::npos);
  EXPECT_NE(dom.find("disk on fire: &lt;b&gt;not markup&lt;/b&gt;", stderr_tail),
            std::string::npos);
  EXPECT_EQ(dom.find("<b>not markup</b>"), std::string::npos);
}

TEST(Browser, TheLiveDashboardOfARunningJobShowsRowsBarsAndTheFailure) {
  PEPITA_REQUIRE_CAPABILITY(chromium);
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(120));
  BackgroundPepita run(
      {"run", dir / "job.toml", "--state-dir", dir / "state", "--dashboard", "127.0.0.1:0"},
      dir / "out", dir / "err");
  const std::string url = dashboard_url(run);
  ASSERT_FALSE(url.empty()) << run.err();
  const Url u = split(url);
  const auto snap = wait_until(u, [](const nlohmann::json& s) {
    return state_of(s, "quick-2") == "succeeded" && state_of(s, "broken") == "failed" &&
           state_of(s, "slow") == "running";
  });
  ASSERT_EQ(state_of(snap, "slow"), "running") << snap.dump();
  const std::string dom = chromium_dom(url + "#once", 5000, artifact_dir() + "/live.png");
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos) << dom.substr(0, 2000);
  EXPECT_NE(dom.find("data-finished=\"0\""), std::string::npos);
  EXPECT_NE(dom.find("data-deltas=\"1\""), std::string::npos);  // the snapshot, then a delta
  EXPECT_NE(dom.find("<tr data-backend=\"process\""), std::string::npos);  // the workers' load
  expect_job_dom(dom, "running");
  EXPECT_EQ(run.kill_and_wait(SIGINT), 130);
}

TEST(Browser, TheReportOpensOfflineWithTheSamePage) {
  PEPITA_REQUIRE_CAPABILITY(chromium);
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(1));
  const auto r = run_pepita("run " + (dir / "job.toml") + " --state-dir " + (dir / "state") +
                            " --report " + (dir / "run.html"));
  ASSERT_EQ(r.exit_code, 1) << r.output;  // broken failed
  const std::string page = read_file(dir / "run.html");
  ASSERT_NE(page.find("id=\"pepita-data\""), std::string::npos);
  const std::string dom =
      chromium_dom("file://" + (dir / "run.html"), 3000, artifact_dir() + "/report.png", kOffline);
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos) << dom.substr(0, 2000);
  EXPECT_NE(dom.find("data-finished=\"1\""), std::string::npos);
  expect_job_dom(dom, "succeeded");

  // `pepita report` rebuilds the same page from the journal.
  const auto rebuilt = run_pepita("report " + (dir / "state") + " -o " + (dir / "again.html"));
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.output;
  const std::string dom2 = chromium_dom("file://" + (dir / "again.html"), 3000, "", kOffline);
  expect_job_dom(dom2, "succeeded");
}

TEST(Browser, AReportOfACrashedRunShowsItsUnfinishedTasksAsInterrupted) {
  PEPITA_REQUIRE_CAPABILITY(chromium);
  ScratchDir dir;
  write_file(dir / "job.toml", job_toml(120));
  BackgroundPepita run(
      {"run", dir / "job.toml", "--state-dir", dir / "state", "--dashboard", "127.0.0.1:0"},
      dir / "out", dir / "err");
  const std::string url = dashboard_url(run);
  ASSERT_FALSE(url.empty()) << run.err();
  const auto snap = wait_until(split(url), [](const nlohmann::json& s) {
    return state_of(s, "broken") == "failed" && state_of(s, "quick-2") == "succeeded" &&
           state_of(s, "slow") == "running";
  });
  ASSERT_EQ(state_of(snap, "slow"), "running");
  run.kill_and_wait(SIGKILL);  // a crash: the journal has no end
  const auto r = run_pepita("report " + (dir / "state") + " -o " + (dir / "crash.html"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("did not finish"), std::string::npos) << r.output;
  const std::string dom = chromium_dom("file://" + (dir / "crash.html"), 3000,
                                       artifact_dir() + "/crashed-report.png", kOffline);
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos);
  expect_job_dom(dom, "interrupted");
  EXPECT_NE(dom.find("ended without finishing"), std::string::npos);
}

TEST(Browser, AHundredThousandTaskReportRendersAndStaysResponsive) {
  PEPITA_REQUIRE_CAPABILITY(chromium);
  ScratchDir dir;
  cli::dashboard::RunModel model("big");
  constexpr int kTasks = 100'000, kLanes = 32;
  for (int i = 0; i < kTasks; ++i) {
    const double start = (i / kLanes) * 10.0;
    const bool failed = i % 1000 == 7;
    model.add_synthetic("task-" + std::to_string(i), "process", i % kLanes, start, start + 9.0,
                        failed ? "failed" : "succeeded", failed ? "stderr of a failure" : "");
  }
  ASSERT_TRUE(cli::dashboard::write_report(model, dir / "big.html").has_value());
  const std::string dom = chromium_dom("file://" + (dir / "big.html") + "#measure", 60000,
                                       artifact_dir() + "/report-100k.png", kOffline);
  ASSERT_NE(dom.find("data-ready=\"1\""), std::string::npos) << dom.substr(0, 1000);
  EXPECT_NE(dom.find("data-tasks=\"100000\""), std::string::npos);
  EXPECT_NE(dom.find("data-aggregated=\"1\""), std::string::npos);  // not 100k bars
  EXPECT_EQ(all(dom, "<tr (data-task)=").size(), 100u);             // one page of the table
  EXPECT_EQ(all(dom, "<div class=\"(failure)\"").size(), 50u);      // 100 failures, 50 shown
  const auto render_ms = all(dom, "data-render-ms=\"([0-9.]+)\"");
  const auto interaction_ms = all(dom, "data-interaction-ms=\"([0-9.]+)\"");
  ASSERT_EQ(render_ms.size(), 1u);
  ASSERT_EQ(interaction_ms.size(), 1u);
  // Generous budgets on a loaded 2-core machine; the point is "not minutes".
  EXPECT_LT(std::stod(render_ms[0]), 5000.0);
  EXPECT_LT(std::stod(interaction_ms[0]), 2000.0);
  std::printf("100k-task report: first render %s ms, slowest interaction %s ms\n",
              render_ms[0].c_str(), interaction_ms[0].c_str());
}

}  // namespace
}  // namespace pepita::test::dash
