// Declared files in job files (issue 24): inputs/outputs resolved against the task's cwd, globs,
// dependencies inferred from files, and every bad input refused at its position.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/temp_dir.hpp"
#include "pepita/pool/job.hpp"

namespace pepita::pool {
namespace {

namespace fs = std::filesystem;

struct JobFiles : ::testing::Test {
  test::TempDir state{"jobfiles"};
  JobOptions opts() const {
    return {.pepita_dir = "/opt/pepita", .state_dir = state.path(), .check_binaries = true};
  }
  Result<Job> parse(const std::string& body) const {
    return parse_job("[defaults]\ncwd = \"${state_dir}\"\n" + body, "/jobs/files.toml", opts());
  }
  const Task& task(const Job& job, const std::string& name) const {
    auto it = std::find_if(job.tasks.begin(), job.tasks.end(),
                           [&](const Task& t) { return t.name() == name; });
    EXPECT_NE(it, job.tasks.end()) << name;
    return *it;
  }
  static bool depends(const Task& reader, const Task& writer) {
    const auto& d = reader.dependencies();
    return std::find(d.begin(), d.end(), writer.id()) != d.end();
  }
};

TEST_F(JobFiles, InputThatIsAnotherTasksOutputMakesItADependency) {
  auto job = parse(R"(
[[task]]
name = "gen"
count = 2
command = "/bin/true"
outputs = ["corpus-${i}.txt"]
[[task]]
name = "count"
count = 2
command = "/bin/true"
inputs = ["corpus-${i}.txt"]
outputs = ["counts-${i}.tsv"]
)");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_TRUE(depends(task(*job, "count-1"), task(*job, "gen-1")));
  EXPECT_FALSE(depends(task(*job, "count-1"), task(*job, "gen-0")));
  EXPECT_EQ(task(*job, "count-1").inputs(), std::vector<std::string>{state.file("corpus-1.txt")});
  EXPECT_EQ(task(*job, "count-1").outputs(), std::vector<std::string>{state.file("counts-1.tsv")});
}

TEST_F(JobFiles, GlobInputMatchesOtherTasksOutputsAndDependsOnEachWriter) {
  auto job = parse(R"(
[[task]]
name = "count"
count = 3
command = "/bin/true"
outputs = ["counts-${i}.tsv"]
[[task]]
name = "reduce"
command = "/bin/true"
inputs = ["counts-*.tsv"]
outputs = ["total.tsv"]
)");
  ASSERT_TRUE(job) << job.error().message();
  const Task& reduce = task(*job, "reduce");
  EXPECT_EQ(reduce.inputs().size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(depends(reduce, task(*job, "count-" + std::to_string(i)))) << i;
  }
}

TEST_F(JobFiles, GlobInputExpandsAgainstTheFilesystemRelativeToTheCwd) {
  fs::create_directories(state.file("model"));
  std::ofstream(state.file("model/a.bin")) << "a";
  std::ofstream(state.file("model/b.bin")) << "b";
  std::ofstream(state.file("model/c.txt")) << "c";
  auto job = parse(R"(
[[task]]
name = "train"
command = "/bin/true"
inputs = ["model/*.bin"]
)");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_EQ(job->tasks[0].inputs(),
            (std::vector<std::string>{state.file("model/a.bin"), state.file("model/b.bin")}));
}

TEST_F(JobFiles, ExplicitDepsStillWorkAlongsideInferredOnes) {
  auto job = parse(R"(
[[task]]
name = "a"
command = "/bin/true"
outputs = ["a.txt"]
[[task]]
name = "b"
command = "/bin/true"
[[task]]
name = "c"
command = "/bin/true"
inputs = ["a.txt"]
deps = ["b", "a"]
)");
  ASSERT_TRUE(job) << job.error().message();
  EXPECT_TRUE(depends(task(*job, "c"), task(*job, "a")));
  EXPECT_TRUE(depends(task(*job, "c"), task(*job, "b")));
  EXPECT_EQ(task(*job, "c").dependencies().size(), 2u);
}

TEST_F(JobFiles, TwoTasksWritingOneOutputIsAnErrorNamingBoth) {
  auto job = parse(R"(
[[task]]
name = "first"
command = "/bin/true"
outputs = ["same.txt"]
[[task]]
name = "second"
command = "/bin/true"
outputs = ["./same.txt"]
)");
  ASSERT_FALSE(job);
  const std::string m = job.error().message();
  EXPECT_TRUE(m.starts_with("/jobs/files.toml:11:")) << m;
  EXPECT_NE(m.find("'first'"), std::string::npos) << m;
  EXPECT_NE(m.find("'second'"), std::string::npos) << m;
  EXPECT_NE(m.find("same.txt"), std::string::npos) << m;
}

TEST_F(JobFiles, CycleThroughInferredDependenciesNamesTheTasksAndFiles) {
  auto job = parse(R"(
[[task]]
name = "ping"
command = "/bin/true"
inputs = ["pong.txt"]
outputs = ["ping.txt"]
[[task]]
name = "pong"
command = "/bin/true"
inputs = ["ping.txt"]
outputs = ["pong.txt"]
)");
  ASSERT_FALSE(job);
  // Every link of the cycle, each with the file that makes it, at the first member's name.
  EXPECT_EQ(job.error().message(),
            "/jobs/files.toml:5:8: dependency cycle: ping -> pong -> ping (ping reads " +
                state.file("pong.txt") + ", an output of pong, pong reads " +
                state.file("ping.txt") + ", an output of ping); remove one of these dependencies");
}

TEST_F(JobFiles, InputThatDoesNotExistAndNoTaskWritesIsAnError) {
  auto job = parse(R"(
[[task]]
name = "reader"
command = "/bin/true"
inputs = ["nowhere.txt"]
)");
  ASSERT_FALSE(job);
  const std::string m = job.error().message();
  EXPECT_TRUE(m.starts_with("/jobs/files.toml:7:")) << m;
  EXPECT_NE(m.find("'nowhere.txt' does not exist"), std::string::npos) << m;
  EXPECT_NE(m.find("'reader'"), std::string::npos) << m;
}

// Issue 30: a remote task's files are staged into its directory on the worker, which takes them
// relative to its cwd (the remote executor refuses absolute paths); a local task keeps absolute.
TEST_F(JobFiles, RemoteTaskCarriesItsFilesRelativeToItsCwdAndStillDependsOnTheirWriter) {
  auto job = parse(R"(
[[task]]
name = "gen"
command = "/bin/true"
outputs = ["data/split.npz"]
[[task]]
name = "train"
command = "/bin/true"
backend = "remote"
inputs = ["data/split.npz"]
outputs = ["trial-0/model.pt"]
)");
  ASSERT_TRUE(job) << job.error().message();
  const Task& train = task(*job, "train");
  EXPECT_EQ(train.inputs(), std::vector<std::string>{"data/split.npz"});
  EXPECT_EQ(train.outputs(), std::vector<std::string>{"trial-0/model.pt"});
  EXPECT_TRUE(depends(train, task(*job, "gen")));
  EXPECT_EQ(task(*job, "gen").outputs(), std::vector<std::string>{state.file("data/split.npz")});
}

TEST_F(JobFiles, RemoteTaskWithAFileOutsideItsCwdIsAnErrorAtItsName) {
  test::TempDir elsewhere{"jobfiles-elsewhere"};
  std::ofstream(elsewhere.file("script.py")) << "print('hi')\n";
  auto job = parse(R"(
[[task]]
name = "train"
command = "/bin/true"
backend = "remote"
inputs = [")" + elsewhere.file("script.py") +
                   R"("]
)");
  ASSERT_FALSE(job);
  const std::string m = job.error().message();
  EXPECT_TRUE(m.starts_with("/jobs/files.toml:5:")) << m;
  EXPECT_NE(m.find("task 'train' runs on a worker"), std::string::npos) << m;
  EXPECT_NE(m.find("is outside its directory"), std::string::npos) << m;
}

TEST_F(JobFiles, GlobThatMatchesNothingIsAnError) {
  auto job = parse(R"(
[[task]]
name = "reader"
command = "/bin/true"
inputs = ["shards/*.bin"]
)");
  ASSERT_FALSE(job);
  EXPECT_NE(job.error().message().find("matches no file"), std::string::npos)
      << job.error().message();
}

TEST_F(JobFiles, OutputEscapingTheStateDirectoryIsAnError) {
  for (const char* path : {"../escape.txt", "/etc/pepita-escape.txt", "sub/../../x.txt"}) {
    auto job = parse(std::string("[[task]]\nname = \"w\"\ncommand = \"/bin/true\"\noutputs = [\"") +
                     path + "\"]\n");
    ASSERT_FALSE(job) << path;
    const std::string m = job.error().message();
    EXPECT_TRUE(m.starts_with("/jobs/files.toml:6:")) << m;
    EXPECT_NE(m.find("outside the state directory"), std::string::npos) << m;
  }
}

TEST_F(JobFiles, OutputThroughASymlinkPointingOutsideIsAnError) {
  test::TempDir outside{"jobfiles-outside"};
  ASSERT_EQ(::symlink(outside.path().c_str(), state.file("link").c_str()), 0);
  auto job = parse(R"(
[[task]]
name = "w"
command = "/bin/true"
outputs = ["link/out.txt"]
)");
  ASSERT_FALSE(job);
  const std::string m = job.error().message();
  EXPECT_NE(m.find("through a symlink"), std::string::npos) << m;
  EXPECT_NE(m.find(outside.path()), std::string::npos) << m;
}

TEST_F(JobFiles, EmptyPathAndPatternOutputAreErrors) {
  auto empty = parse("[[task]]\nname = \"w\"\ncommand = \"/bin/true\"\ninputs = [\"\"]\n");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("empty path"), std::string::npos);
  auto pattern = parse("[[task]]\nname = \"w\"\ncommand = \"/bin/true\"\noutputs = [\"*.txt\"]\n");
  ASSERT_FALSE(pattern);
  EXPECT_NE(pattern.error().message().find("is a pattern"), std::string::npos);
  auto wrong_type = parse("[[task]]\nname = \"w\"\ncommand = \"/bin/true\"\ninputs = \"a\"\n");
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().message().find("'inputs' must be an array of strings"),
            std::string::npos);
}

TEST_F(JobFiles, InputAndOutputOfTheSameTaskIsAnError) {
  auto job = parse(R"(
[[task]]
name = "self"
command = "/bin/true"
inputs = ["x.txt"]
outputs = ["x.txt"]
)");
  ASSERT_FALSE(job);
  EXPECT_NE(job.error().message().find("both an input and an output"), std::string::npos)
      << job.error().message();
}

}  // namespace
}  // namespace pepita::pool
