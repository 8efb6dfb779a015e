// `pepita run`'s result cache (issue 24) on the bundled word-count job, with the real pepita and
// pepita-wordcount: a second run is all cached, rewriting one shard re-runs exactly its counter
// and the reducer, --no-cache runs everything, --explain says why; `pepita cache gc`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "cli/run_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pepita::test::line_of;
using pepita::test::names_where;
using pepita::test::parse;

using RunCacheCli = pepita::test::RunFixture;

const std::string& wordcount_job() {
  static const std::string job = std::string(PEPITA_SOURCE_DIR) + "/examples/wordcount/job.toml";
  return job;
}

std::set<std::string> all_names() {
  std::set<std::string> out{"reduce"};
  for (int i = 0; i < 8; ++i) {
    out.insert("generate-" + std::to_string(i));
    out.insert("count-" + std::to_string(i));
  }
  return out;
}

TEST_F(RunCacheCli, WordCountSecondRunIsAllCachedAndOneRewrittenShardReRunsItsCounterAndReducer) {
  auto first = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
  auto j1 = parse(first);
  EXPECT_EQ(names_where(j1, false), all_names());
  const std::string top = j1["tasks"][16]["stdout"];

  auto second = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto j2 = parse(second);
  EXPECT_EQ(names_where(j2, true), all_names()) << second.out;
  EXPECT_EQ(j2["stats"]["cached"], 17);
  EXPECT_EQ(j2["tasks"][16]["stdout"], top);  // the cached run's output, not a new one
  for (const auto& t : j2["tasks"]) EXPECT_EQ(t["cache_reason"], "cached") << t["name"];

  // Rewrite one shard: exactly its counter and the reducer run again.
  std::ofstream(fs::path(state()) / "corpus-3.txt", std::ios::trunc)
      << "pepita pepita pepita cache cache explain\n";
  auto third = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  auto j3 = parse(third);
  EXPECT_EQ(names_where(j3, false), (std::set<std::string>{"count-3", "reduce"})) << third.out;
  EXPECT_NE(j3["tasks"][16]["stdout"], top);
  for (const auto& t : j3["tasks"]) {
    const std::string why = t["cache_reason"];
    if (t["name"] == "count-3") {
      EXPECT_TRUE(why.starts_with("ran: input corpus-3.txt changed (hash ")) << why;
    } else if (t["name"] == "reduce") {
      EXPECT_NE(why.find("dependency count-3 re-ran"), std::string::npos) << why;
    } else if (t["name"] == "generate-3") {
      EXPECT_TRUE(why.starts_with("cached (output corpus-3.txt edited since")) << why;
    }
  }

  // --explain in text: one line per task with its reason.
  std::ofstream(fs::path(state()) / "corpus-3.txt", std::ios::trunc) << "other words now\n";
  auto explained = run({"run", "--explain", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(explained.exit_code, 0) << explained.err;
  EXPECT_NE(line_of(explained.out, "count-3").find("ran: input corpus-3.txt changed (hash "),
            std::string::npos)
      << explained.out;
  EXPECT_TRUE(line_of(explained.out, "count-0").ends_with(" cached")) << explained.out;
  EXPECT_NE(explained.out.find("17 tasks: 17 succeeded (15 cached)"), std::string::npos)
      << explained.out;

  // --no-cache runs everything (and regenerates the shard).
  auto uncached = run({"run", "--json", "--no-cache", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(uncached.exit_code, 0) << uncached.err;
  auto j4 = parse(uncached);
  EXPECT_EQ(names_where(j4, false), all_names());
  EXPECT_EQ(j4["tasks"][16]["stdout"], top);
}

TEST_F(RunCacheCli, CacheDirMovesTheCacheAndGcRemovesStaleEntries) {
  const std::string cache = (dir_ / "elsewhere").string();
  auto first =
      run({"run", "--json", "--cache-dir", cache, "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(fs::is_directory(cache + "/entries"));
  EXPECT_FALSE(fs::exists(fs::path(state()) / "cache"));
  fs::remove(fs::path(state()) / "counts-5.tsv");
  auto gc = run({"cache", "gc", cache});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("removed count-5 "), std::string::npos) << gc.out;
  EXPECT_NE(gc.out.find("counts-5.tsv missing"), std::string::npos) << gc.out;
  EXPECT_NE(gc.out.find("1 entries removed, 16 kept"), std::string::npos) << gc.out;
  auto all = run({"cache", "gc", cache, "--max-size", "1"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.out.find("16 entries removed, 0 kept"), std::string::npos) << all.out;
  auto bad = run({"cache", "gc", cache, "--max-age", "soon"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--max-age 'soon'"), std::string::npos) << bad.err;
  auto aged = run({"cache", "gc", cache, "--max-age", "7d"});
  EXPECT_EQ(aged.exit_code, 0) << aged.err;
  EXPECT_NE(aged.out.find("0 entries removed, 0 kept"), std::string::npos) << aged.out;
  auto huge = run({"cache", "gc", cache, "--max-size", "lots"});
  EXPECT_EQ(huge.exit_code, 2);
  EXPECT_NE(huge.err.find("--max-size 'lots': "), std::string::npos) << huge.err;
  EXPECT_NE(huge.err.find("Usage: pepita cache gc"), std::string::npos) << huge.err;
  auto none = run({"cache", "gc", (dir_ / "no-such").string()});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("holds no result cache"), std::string::npos) << none.err;
}

TEST_F(RunCacheCli, DamagedCacheIndexesAreAWarningAndTheRunIsStillCorrectlyCached) {
  auto first = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // Past the indexes' "racily clean" margin, so the second run records every file and entry.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto second = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const fs::path cache = fs::path(state()) / "cache";
  for (const char* name : {"files.idx", "entries.idx"}) {
    ASSERT_TRUE(fs::exists(cache / name)) << name;
    const auto size = fs::file_size(cache / name);
    fs::resize_file(cache / name, size / 2);  // torn
  }
  auto third = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find("warning: result cache in"), std::string::npos) << third.err;
  EXPECT_NE(third.err.find("files.idx is"), std::string::npos) << third.err;
  EXPECT_NE(third.err.find("entries.idx is"), std::string::npos) << third.err;
  EXPECT_EQ(names_where(parse(third), true), all_names()) << third.out;
  auto fourth = run({"run", "--json", "--state-dir", state(), wordcount_job()});
  ASSERT_EQ(fourth.exit_code, 0) << fourth.err;
  EXPECT_EQ(fourth.err.find("warning"), std::string::npos) << fourth.err;  // rewritten whole
  EXPECT_EQ(names_where(parse(fourth), true), all_names()) << fourth.out;
}

TEST_F(RunCacheCli, UnwritableCacheDirWarnsAndRunsUncached) {
  const auto blocker = write("blocker", "a file where the cache directory should go");
  const auto job = write("one.toml", R"(
[defaults]
cwd = "${state_dir}"
[[task]]
name = "w"
command = "/bin/sh"
args = ["-c", "echo hi > out.txt"]
outputs = ["out.txt"]
)");
  auto r = run({"run", "--json", "--cache-dir", (blocker / "cache").string(), "--state-dir",
                state(), job.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: cannot create the result cache directory"), std::string::npos)
      << r.err;
  EXPECT_TRUE(fs::exists(fs::path(state()) / "out.txt"));
}

TEST_F(RunCacheCli, BadDeclaredFilesExitTwoBeforeAnythingRuns) {
  const auto job = write("bad.toml", R"(
[defaults]
cwd = "${state_dir}"
[[task]]
name = "w"
command = "/bin/true"
outputs = ["../outside.txt"]
)");
  auto r = run({"run", "--state-dir", state(), job.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("bad.toml:7:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("outside the state directory"), std::string::npos) << r.err;
  const auto missing = write("missing.toml", R"(
[defaults]
cwd = "${state_dir}"
[[task]]
name = "r"
command = "/bin/true"
inputs = ["absent.txt"]
)");
  auto m = run({"run", "--state-dir", state(), missing.string()});
  EXPECT_EQ(m.exit_code, 2) << m.err;
  EXPECT_NE(m.err.find("input 'absent.txt' does not exist"), std::string::npos) << m.err;
  EXPECT_FALSE(fs::exists(fs::path(state()) / "journal"));
}

}  // namespace
