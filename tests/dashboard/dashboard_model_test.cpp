// RunModel: events become rows, attempts and lanes; deltas carry only what changed; a journal
// (finished or crashed) rebuilds the same model; the page inlines data without letting it out.
#include "dashboard_model.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli/cli_runner.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/task/task.hpp"

namespace pepita::cli::dashboard {
namespace {

using executor::ExecutionResult;
using executor::Status;

pool::Event started(std::uint64_t id, const std::string& name, std::uint32_t attempt) {
  return {.kind = pool::Event::Kind::Started, .id = id, .name = name, .attempt = attempt};
}

pool::Event finished(const ExecutionResult& r) {
  return {.kind = pool::Event::Kind::Finished,
          .id = r.id,
          .name = r.name,
          .attempt = r.attempts,
          .result = &r};
}

ExecutionResult result(std::uint64_t id, const std::string& name, Status status,
                       std::string stderr_data = {}) {
  ExecutionResult r;
  r.id = id;
  r.name = name;
  r.status = status;
  r.exit_code = status == Status::Succeeded ? 0 : 3;
  r.stderr_data = std::move(stderr_data);
  r.attempts = 1;
  r.wall = std::chrono::milliseconds(5);
  return r;
}

TEST(RunModel, EventsBecomeRowsAttemptsAndLanes) {
  RunModel m("job");
  m.on_event(started(1, "a", 1));
  m.on_event(started(2, "b", 1));
  const auto ra = result(1, "a", Status::Succeeded);
  m.on_event(finished(ra));
  m.on_event(started(3, "c", 1));  // takes the lane "a" freed
  const auto snap = m.snapshot();
  ASSERT_EQ(snap["tasks"].size(), 3u);
  EXPECT_EQ(snap["tasks"][0][3], "succeeded");
  EXPECT_EQ(snap["tasks"][1][3], "running");
  ASSERT_EQ(snap["attempts"].size(), 3u);
  EXPECT_EQ(snap["attempts"][0][5], "succeeded");
  EXPECT_GE(snap["attempts"][0][4].get<double>(), snap["attempts"][0][3].get<double>());
  EXPECT_EQ(snap["attempts"][1][4].get<double>(), -1.0);      // still running
  EXPECT_EQ(snap["attempts"][2][2], snap["attempts"][0][2]);  // same lane, reused
  EXPECT_EQ(snap["lanes"].size(), 2u);
}

TEST(RunModel, RetryClosesTheFailedAttemptAndKeepsTheStderrTail) {
  RunModel m("job");
  m.on_event(started(1, "flaky", 1));
  auto failed = result(1, "flaky", Status::Failed, std::string(5000, 'x') + "the end");
  pool::Event retry{.kind = pool::Event::Kind::Retrying,
                    .id = 1,
                    .name = "flaky",
                    .attempt = 1,
                    .result = &failed};
  m.on_event(retry);
  m.on_event(started(1, "flaky", 2));
  failed.attempts = 2;
  m.on_event(finished(failed));
  const auto snap = m.snapshot();
  ASSERT_EQ(snap["attempts"].size(), 2u);
  EXPECT_EQ(snap["attempts"][0][5], "failed");
  EXPECT_EQ(snap["attempts"][1][1], 2);
  EXPECT_EQ(snap["tasks"][0][3], "failed");
  EXPECT_EQ(snap["tasks"][0][4], 2);
  const std::string tail = snap["failures"]["0"];
  EXPECT_EQ(tail.size(), kStderrTail);
  EXPECT_TRUE(tail.ends_with("the end"));
}

TEST(RunModel, DeltaSinceAVersionCarriesOnlyWhatChanged) {
  RunModel m("job");
  m.on_event(started(1, "a", 1));
  m.on_event(started(2, "b", 1));
  const std::uint64_t v = m.version();
  const auto rb = result(2, "b", Status::Failed, "oops");
  m.on_event(finished(rb));
  const auto d = m.delta_since(v);
  EXPECT_EQ(d["tasks"].size(), 1u);
  EXPECT_TRUE(d["tasks"].contains("1"));
  EXPECT_EQ(d["tasks"]["1"][3], "failed");
  EXPECT_EQ(d["attempts"].size(), 1u);
  EXPECT_EQ(d["failures"]["1"], "oops");
  EXPECT_EQ(d["version"].get<std::uint64_t>(), m.version());
  EXPECT_TRUE(m.delta_since(m.version())["tasks"].empty());
}

TEST(RunModel, FinishStopsTheClockAndShowsInTheNextDelta) {
  RunModel m("job");
  m.on_event(started(1, "a", 1));
  const auto v = m.version();
  m.finish(true);  // crashed: the open attempt is interrupted
  const auto d = m.delta_since(v);
  EXPECT_TRUE(d["finished"].get<bool>());
  EXPECT_TRUE(d["crashed"].get<bool>());
  EXPECT_EQ(m.snapshot()["tasks"][0][3], "interrupted");
  EXPECT_EQ(m.snapshot()["now_ms"], m.snapshot()["now_ms"]);  // the clock stopped
}

// An event under an id the model has not seen, for a task it lists by name (a task added before
// the pool gave it its id), updates that task's row instead of adding one.
TEST(RunModel, AnEventForAKnownNameUnderANewIdUpdatesThatRow) {
  auto t = task::Task::binary("/bin/true").name("a").build();
  ASSERT_TRUE(t.has_value()) << t.error().message();
  RunModel m("job");
  m.add_tasks({*t});
  m.on_event(started(t->id() + 1000, "a", 1));
  const auto snap = m.snapshot();
  ASSERT_EQ(snap["tasks"].size(), 1u);
  EXPECT_EQ(snap["tasks"][0][3], "running");
  const auto r = result(t->id() + 1000, "a", Status::Succeeded);
  m.on_event(finished(r));
  EXPECT_EQ(m.snapshot()["tasks"].size(), 1u);
  EXPECT_EQ(m.snapshot()["tasks"][0][3], "succeeded");
}

// A Finished event without a result (the pool lost it) still ends the task, as failed.
TEST(RunModel, AFinishedEventWithoutAResultEndsTheTaskAsFailed) {
  RunModel m("job");
  m.on_event(started(1, "a", 1));
  m.on_event({.kind = pool::Event::Kind::Finished, .id = 1, .name = "a", .attempt = 1});
  const auto snap = m.snapshot();
  EXPECT_EQ(snap["tasks"][0][3], "failed");
  ASSERT_EQ(snap["attempts"].size(), 1u);
  EXPECT_EQ(snap["attempts"][0][5], "failed");
  EXPECT_GE(snap["attempts"][0][4].get<double>(), 0.0);  // closed
}

TEST(RunModel, FinishedIsFalseUntilFinishThenTrue) {
  RunModel m("job");
  m.on_event(started(1, "a", 1));
  EXPECT_FALSE(m.finished());
  m.finish(false);
  EXPECT_TRUE(m.finished());
  const auto v = m.version();
  m.finish(true);  // a second finish changes nothing
  EXPECT_EQ(m.version(), v);
  EXPECT_FALSE(m.snapshot()["crashed"].get<bool>());
}

fault::JournalRecord record(fault::RecordType type, const std::string& name,
                            std::uint32_t attempt = 0) {
  fault::JournalRecord r;
  r.type = type;
  r.name = name;
  r.attempt = attempt;
  return r;
}

void write_journal(const std::string& path, bool crash) {
  auto j = fault::Journal::open(path, fault::Journal::Mode::Truncate);
  ASSERT_TRUE(j.has_value()) << j.error().message();
  using fault::RecordType;
  for (const char* name : {"ok", "bad", "hung"})
    ASSERT_TRUE((*j)->append(record(RecordType::Submitted, name)).has_value());
  ASSERT_TRUE((*j)->append(record(RecordType::Started, "ok", 1)).has_value());
  ASSERT_TRUE((*j)->append(record(RecordType::Started, "bad", 1)).has_value());
  auto ok = record(RecordType::Finished, "ok", 1);
  ok.status = static_cast<std::uint8_t>(Status::Succeeded);
  ok.wall_ns = 20'000'000;
  ASSERT_TRUE((*j)->append(ok).has_value());
  ASSERT_TRUE((*j)->append(record(RecordType::Started, "bad", 2)).has_value());
  ASSERT_TRUE((*j)->append(record(RecordType::Started, "hung", 1)).has_value());
  auto bad = record(RecordType::Finished, "bad", 2);
  bad.status = static_cast<std::uint8_t>(Status::Failed);
  bad.exit_code = 3;
  bad.wall_ns = 10'000'000;
  bad.stderr_data = "disk on fire\n";
  bad.error = "exited with status 3";
  ASSERT_TRUE((*j)->append(bad).has_value());
  if (!crash) {
    auto hung = record(RecordType::Finished, "hung", 1);
    hung.status = static_cast<std::uint8_t>(Status::Succeeded);
    hung.wall_ns = 50'000'000;
    ASSERT_TRUE((*j)->append(hung).has_value());
  }
  ASSERT_TRUE((*j)->sync().has_value());
}

TEST(RunModel, FromJournalRebuildsTasksAttemptsAndFailures) {
  test::ScratchDir dir;
  write_journal(dir / "journal", false);
  auto m = RunModel::from_journal(dir / "journal", "job");
  ASSERT_TRUE(m.has_value()) << m.error().message();
  const auto snap = (*m)->snapshot();
  ASSERT_EQ(snap["tasks"].size(), 3u);
  EXPECT_EQ(snap["tasks"][0][3], "succeeded");
  EXPECT_EQ(snap["tasks"][1][3], "failed");
  EXPECT_EQ(snap["tasks"][1][4], 2);
  EXPECT_EQ(snap["tasks"][2][3], "succeeded");
  EXPECT_EQ(snap["attempts"].size(), 4u);  // bad ran twice
  EXPECT_EQ(snap["failures"]["1"], "disk on fire\n");
  EXPECT_FALSE(snap["crashed"].get<bool>());
  EXPECT_TRUE(snap["finished"].get<bool>());
}

TEST(RunModel, FromAJournalWithoutAnEndTheOpenTasksAreInterrupted) {
  test::ScratchDir dir;
  write_journal(dir / "journal", true);
  auto m = RunModel::from_journal(dir / "journal", "job");
  ASSERT_TRUE(m.has_value()) << m.error().message();
  const auto snap = (*m)->snapshot();
  EXPECT_TRUE(snap["crashed"].get<bool>());
  EXPECT_EQ(snap["tasks"][2][3], "interrupted");
  EXPECT_EQ(snap["attempts"].back()[5], "interrupted");
}

// A resumed run journals a task's Submitted again after its earlier attempts: the rebuilt row is
// pending again, then shows the resumed attempt.
TEST(RunModel, FromTheJournalOfAResumedRunATaskSubmittedAgainRunsAgain) {
  test::ScratchDir dir;
  {
    auto j = fault::Journal::open(dir / "journal", fault::Journal::Mode::Truncate);
    ASSERT_TRUE(j.has_value()) << j.error().message();
    using fault::RecordType;
    ASSERT_TRUE((*j)->append(record(RecordType::Submitted, "t")).has_value());
    ASSERT_TRUE((*j)->append(record(RecordType::Started, "t", 1)).has_value());
    ASSERT_TRUE((*j)->append(record(RecordType::Submitted, "t")).has_value());  // resumed
    ASSERT_TRUE((*j)->append(record(RecordType::Started, "t", 1)).has_value());
    auto done = record(RecordType::Finished, "t", 1);
    done.status = static_cast<std::uint8_t>(Status::Succeeded);
    done.wall_ns = 10'000'000;
    ASSERT_TRUE((*j)->append(done).has_value());
    ASSERT_TRUE((*j)->sync().has_value());
  }
  auto m = RunModel::from_journal(dir / "journal", "job");
  ASSERT_TRUE(m.has_value()) << m.error().message();
  const auto snap = (*m)->snapshot();
  ASSERT_EQ(snap["tasks"].size(), 1u);
  EXPECT_EQ(snap["tasks"][0][3], "succeeded");
  ASSERT_EQ(snap["attempts"].size(), 2u);  // the first run's attempt and the resumed one
  EXPECT_EQ(snap["attempts"][1][5], "succeeded");
}

TEST(RunModel, FromJournalRefusesAFileThatIsNotAJournal) {
  test::ScratchDir dir;
  {
    std::FILE* f = std::fopen((dir / "journal").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("this is not a pepita journal, just text that is long enough", f);
    std::fclose(f);
  }
  auto m = RunModel::from_journal(dir / "journal", "job");
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.error().message().find("cannot read the journal"), std::string::npos);
}

TEST(RenderPage, TheLivePageHasNoDataAndConnectsToEvents) {
  const std::string page = render_page(nullptr);
  EXPECT_EQ(page.find("id=\"pepita-data\""), std::string::npos);
  EXPECT_NE(page.find("new EventSource"), std::string::npos);
  EXPECT_EQ(page.find("/*PEPITA_"), std::string::npos);  // every marker replaced
}

TEST(RenderPage, InlinedDataCannotCloseItsScriptElement) {
  RunModel m("</script><script>alert(1)</script>");
  m.add_synthetic("<!--x", "process", 0, 0, 10, "failed", "</script>");
  const auto snap = m.snapshot();
  const std::string page = render_page(&snap);
  const auto open = page.find("<script id=\"pepita-data\"");
  ASSERT_NE(open, std::string::npos);
  const auto close = page.find("</script>", open);
  const std::string data = page.substr(open, close - open);
  EXPECT_EQ(data.find('<', 1), std::string::npos) << data;
  EXPECT_NE(data.find("\\u003c/script>\\u003cscript>alert(1)"), std::string::npos);
}

TEST(RenderPage, TheReportFetchesNothingFromTheNetwork) {
  RunModel m("job");
  m.add_synthetic("a", "process", 0, 0, 10, "succeeded");
  const auto snap = m.snapshot();
  const std::string page = render_page(&snap);
  for (const char* fetch : {"src=\"http", "href=\"http", "src=\"//", "@import", "url(http"})
    EXPECT_EQ(page.find(fetch), std::string::npos) << fetch;
}

}  // namespace
}  // namespace pepita::cli::dashboard
