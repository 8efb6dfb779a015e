// `pepita run` with pipeline tasks as a user writes them: --check accepts a good pipeline and
// rejects bad stage wiring with file:line (exit 2, nothing run); a run pipes the stages and
// reports a failing stage by index and binary (exit 1).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cli_runner.hpp"

namespace {

using pepita::test::run_pepita;
using pepita::test::ScratchDir;

std::string write(const ScratchDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir / name;
  std::ofstream(path) << text;
  return path;
}

TEST(RunPipelineCli, ExampleChecksAndRunsItsPipelines) {
  ScratchDir dir;
  const std::string job = std::string(PEPITA_SOURCE_DIR) + "/examples/pipeline/job.toml";
  auto check = run_pepita("run --check --state-dir " + (dir / "state") + " " + job);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  auto r = run_pepita("run --json --state-dir " + (dir / "state") + " " + job);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // 7, 17, 27, ..., 97 and 70..79: 19 numbers in 1..100 hold a 7.
  EXPECT_NE(r.output.find("\"stdout\": \"19\\n\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 a\\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"stdout\": \"pepita\\npepita\\n\""), std::string::npos) << r.output;
}

TEST(RunPipelineCli, CheckRejectsBadStageWiringWithItsPosition) {
  ScratchDir dir;
  struct Case {
    const char* name;
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {"empty", "[[task]]\nname = \"p\"\npipeline = []\n",
       "empty.toml:3:12: task 'p': 'pipeline' must be a non-empty array"},
      {"stdin",
       "[[task]]\nname = \"p\"\npipeline = [{ command = \"seq\" },\n"
       "  { command = \"cat\", stdin = \"x\" }]\n",
       "pipeline stage 1 of task 'p': 'stdin' is for stage 0 only"},
      {"missing", "[[task]]\nname = \"p\"\npipeline = [{ command = \"no-such-tool-xyz\" }]\n",
       "command 'no-such-tool-xyz' not found"},
      {"both", "[[task]]\nname = \"p\"\ncommand = \"true\"\npipeline = [{ command = \"true\" }]\n",
       "both 'command' and 'pipeline'"},
      {"core", "[[task]]\nname = \"p\"\ncommand = \"true\"\naffinity = { cores = [4000] }\n",
       "core 4000 does not exist"},
  };
  for (const Case& c : cases) {
    const std::string job = write(dir, std::string(c.name) + ".toml", c.text);
    auto r = run_pepita("run --check --state-dir " + (dir / "state") + " " + job);
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.name << ": " << r.output;
  }
}

TEST(RunPipelineCli, FailingStageIsNamedInTheReport) {
  ScratchDir dir;
  const std::string job = write(dir, "fail.toml", R"([[task]]
name = "p"
pipeline = [
  { command = "seq", args = ["1", "1000000"] },
  { command = "sh", args = ["-c", "head -n 2; exit 3"] },
  { command = "cat" },
]
)");
  auto r = run_pepita("run --json --state-dir " + (dir / "state") + " " + job);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pipeline stage 1 ('sh') exited with status 3"), std::string::npos)
      << r.output;
}

}  // namespace
