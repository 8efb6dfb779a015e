// The AI example (issue 30, examples/sweep) end to end with the real pepita, Debian's torch and
// sklearn: the small variant (4 trials, 1 epoch) on the local pool checks the selected accuracy
// and the prediction count; a rerun is all cached; one changed learning rate re-runs exactly its
// trial and the stages after it (by name, from --explain); and the trials on a real
// `pepita worker`, their weights staged back. Each test runs in a copy of examples/sweep, so
// editing the job file changes nothing else (${job_dir} is the copy).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli/run_fixture.hpp"
#include "common/require.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using pepita::test::line_of;
using pepita::test::names_where;
using pepita::test::parse;
using pepita::test::slurp;

class SweepCli : public pepita::test::RunFixture {
 public:
  void SetUp() override {
    RunFixture::SetUp();
    fs::create_directories(dir_ / "sweep");
    for (const char* f : {"sweep.py", "job-small.toml", "job-small-remote.toml"}) {
      fs::copy_file(fs::path(PEPITA_SOURCE_DIR) / "examples/sweep" / f, dir_ / "sweep" / f);
    }
  }
  std::string job(const std::string& name = "job-small.toml") const {
    return (dir_ / "sweep" / name).string();
  }
  json read_json(const std::string& name) const {
    return json::parse(slurp(fs::path(state()) / name), nullptr, false);
  }
  // Every prediction the infer shards wrote, checked to tile the infer split.
  std::size_t prediction_count(int shards) const {
    std::size_t count = 0, next = 0;
    for (int i = 0; i < shards; ++i) {
      const json p = read_json("preds-" + std::to_string(i) + ".json");
      EXPECT_FALSE(p.is_discarded()) << "preds-" << i << ".json";
      if (p.is_discarded()) return 0;
      EXPECT_EQ(p["begin"].get<std::size_t>(), next) << "shard " << i;
      next = p["end"].get<std::size_t>();
      count += p["predictions"].size();
    }
    return count;
  }
};

std::set<std::string> small_names() {
  return {"prepare",  "trial-00", "trial-01", "trial-02", "trial-03",
          "evaluate", "select",   "infer-0",  "infer-1",  "check"};
}

TEST_F(SweepCli, SmallSweepLocallySelectsAModelAboveTheThresholdAndPredictsEveryInferRow) {
  PEPITA_REQUIRE_CAPABILITY(torch);
  PEPITA_REQUIRE_CAPABILITY(cgroup);  // every task asks for cpus and memory
  auto r = finish(spawn({"run", "--json", "--state-dir", state(), job()}, "run"), "run",
                  std::chrono::seconds(280));
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json j = parse(r);
  EXPECT_EQ(names_where(j, false), small_names());
  const json best = read_json("best.json");
  ASSERT_FALSE(best.is_discarded());
  EXPECT_GE(best["val_accuracy"].get<double>(), 0.75) << best.dump();
  const json scores = read_json("eval.json");
  ASSERT_EQ(scores.size(), 4u);
  for (const auto& s : scores) EXPECT_LE(s["val_accuracy"], best["val_accuracy"]) << s.dump();
  EXPECT_EQ(prediction_count(2), 497u);  // 1797 digits - 1000 train - 300 val
  for (const auto& t : j["tasks"]) {
    if (t["name"] == "check") {
      EXPECT_NE(t["stdout"].get<std::string>().find("predictions: 497"), std::string::npos);
      EXPECT_NE(t["stdout"].get<std::string>().find("goal: val accuracy >= 0.75: met"),
                std::string::npos);
    }
    if (t["name"].get<std::string>().starts_with("trial-")) {
      EXPECT_EQ(t["given"]["cpus"], 1.0) << t.dump();
      EXPECT_NE(t["stdout"].get<std::string>().find("(1 thread(s)"), std::string::npos)
          << t["stdout"];  // torch kept to the task's one cpu
    }
  }
  EXPECT_TRUE(fs::exists(fs::path(state()) / "trial-02/model.pt"));
}

TEST_F(SweepCli, RerunIsAllCachedAndOneChangedLearningRateReRunsExactlyItsTrialAndDownstream) {
  PEPITA_REQUIRE_CAPABILITY(torch);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  auto first = finish(spawn({"run", "--json", "--state-dir", state(), job()}, "first"), "first",
                      std::chrono::seconds(280));
  ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
  const json best1 = read_json("best.json");

  auto again = run({"run", "--json", "--state-dir", state(), job()});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const json j2 = parse(again);
  EXPECT_EQ(names_where(j2, true), small_names()) << again.out;
  EXPECT_EQ(j2["stats"]["cached"], 10);

  // trial-03 (lr 0.03, width 16) is the best; a new lr changes its weights, so what is selected
  // changes and the inference shards and the check must run again; the other trials must not.
  const std::string text = slurp(job());
  const std::string from = R"("--lr", "0.03", "--width", "16")";
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << "job-small.toml no longer has trial-03's " << from;
  std::string edited = text;
  edited.replace(at, from.size(), R"("--lr", "0.035", "--width", "16")");  // val 0.82: still best
  std::ofstream(job(), std::ios::trunc) << edited;

  auto changed = finish(spawn({"run", "--explain", "--state-dir", state(), job()}, "changed"),
                        "changed", std::chrono::seconds(280));
  ASSERT_EQ(changed.exit_code, 0) << changed.err << changed.out;
  const std::set<std::string> reran{"trial-03", "evaluate", "select",
                                    "infer-0",  "infer-1",  "check"};
  for (const std::string& name : small_names()) {
    const std::string line = line_of(changed.out, name);
    if (reran.contains(name)) {
      EXPECT_NE(line.find(" ran: "), std::string::npos) << name << ": " << line;
    } else {
      EXPECT_TRUE(line.ends_with(" cached")) << name << ": " << line;
    }
  }
  EXPECT_NE(line_of(changed.out, "trial-03").find("ran: "), std::string::npos);
  EXPECT_NE(line_of(changed.out, "evaluate").find("dependency trial-03 re-ran"), std::string::npos)
      << line_of(changed.out, "evaluate");
  EXPECT_NE(changed.out.find("10 tasks: 10 succeeded (4 cached)"), std::string::npos)
      << changed.out;
  EXPECT_NE(read_json("best.json"), best1);
}

TEST_F(SweepCli, SmallSweepWithRemoteTrialsRunsThemOnARealWorkerAndStagesTheWeightsBack) {
  PEPITA_REQUIRE_CAPABILITY(torch);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const std::string key = (dir_ / "w.key").string();
  ASSERT_EQ(run({"worker", "--gen-key", key}).exit_code, 0);
  const std::string address = "127.0.0.1:" + std::to_string(21000 + ::getpid() % 20000);
  const std::string worker_cache = (dir_ / "worker-cache").string();
  // The worker builds a sandboxed task's root as uid 65534: it must reach the cache through the
  // test's directory (mkdtemp makes it 0700).
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const pid_t worker = spawn(
      {"worker", "--listen", address, "--key", key, "--slots", "2", "--cache-dir", worker_cache},
      "worker");
  auto r = finish(spawn({"run", "--json", "--state-dir", state(), "--worker", address, "--key", key,
                         job("job-small-remote.toml")},
                        "remote"),
                  "remote", std::chrono::seconds(280));
  ::kill(worker, SIGTERM);
  const auto w = finish(worker, "worker");
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out << "\nworker:\n" << w.err;
  const json j = parse(r);
  EXPECT_EQ(names_where(j, false), small_names());
  for (const auto& t : j["tasks"]) {
    const std::string name = t["name"];
    if (!name.starts_with("trial-")) continue;
    // sweep.py prints where it ran: a directory of the worker's, not the driver's state dir.
    const std::string out = t["stdout"];
    EXPECT_NE(out.find("ran in " + worker_cache), std::string::npos) << name << ": " << out;
    EXPECT_TRUE(fs::is_regular_file(fs::path(state()) / name / "model.pt")) << name;
    EXPECT_TRUE(fs::is_regular_file(fs::path(state()) / name / "metrics.json")) << name;
  }
  const json best = read_json("best.json");
  ASSERT_FALSE(best.is_discarded());
  EXPECT_GE(best["val_accuracy"].get<double>(), 0.75) << best.dump();
  EXPECT_EQ(prediction_count(2), 497u);
}

}  // namespace
