// SlurmCommands against stand-in sbatch/squeue/scancel scripts (issue 29): what the commands do
// with Slurm's refusals and failures, without a cluster. Each case writes its own three scripts in
// a fresh directory and points SlurmCommands::locate at it.
#include "pepita/slurm/commands.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/child.hpp"

namespace pepita::slurm {
namespace {

namespace fs = std::filesystem;

// A directory holding sbatch, squeue and scancel shell scripts with the given bodies; removed
// when destroyed.
class FakeSlurm {
 public:
  FakeSlurm(const std::string& sbatch, const std::string& squeue, const std::string& scancel) {
    char tmpl[] = "/tmp/pepita-fake-slurm-XXXXXX";
    dir_ = ::mkdtemp(tmpl) != nullptr ? std::string(tmpl) : std::string();
    write("sbatch", sbatch);
    write("squeue", squeue);
    write("scancel", scancel);
  }
  ~FakeSlurm() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  FakeSlurm(const FakeSlurm&) = delete;
  FakeSlurm& operator=(const FakeSlurm&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  void write(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    ::chmod(path.c_str(), 0755);
  }
  std::string dir_;
};

bool contains(const std::string& text, const char* what) {
  return text.find(what) != std::string::npos;
}

TEST(SlurmCommandsFake, RefusedSubmissionCarriesSbatchsMessageOrItsExitCode) {
  FakeSlurm with_message("echo 'sbatch: error: Invalid account' >&2; exit 1", "exit 0", "exit 0");
  ASSERT_FALSE(with_message.dir().empty());
  auto c = SlurmCommands::locate(with_message.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto refused = c->submit({"--job-name=x"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(refused.error().message(),
                       "Slurm refused the worker job: sbatch: error: Invalid account"))
      << refused.error().message();

  FakeSlurm silent("exit 2", "exit 0", "exit 0");
  auto s = SlurmCommands::locate(silent.dir());
  ASSERT_TRUE(s) << s.error().to_string();
  auto no_message = s->submit({});
  ASSERT_FALSE(no_message);
  EXPECT_TRUE(contains(no_message.error().message(), "sbatch exited 2"))
      << no_message.error().message();
}

// An sbatch that exists but cannot be executed (its interpreter is missing) is NotFound naming
// the command, not a refused job; a moved-into SlurmCommands runs the other's commands.
TEST(SlurmCommandsFake, CommandThatCannotStartIsNotFoundNamingIt) {
  FakeSlurm broken("exit 0", "exit 0", "exit 0");
  ASSERT_FALSE(broken.dir().empty());
  std::ofstream(broken.dir() + "/sbatch") << "#!/nonexistent-interpreter\n";
  FakeSlurm ok("[ \"$1\" = --parsable ] && echo '77' || exit 3", "exit 0", "exit 0");
  auto c = SlurmCommands::locate(broken.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto r = c->submit({"--wrap=true"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_TRUE(contains(r.error().message(), "sbatch could not be started: "))
      << r.error().message();
  auto other = SlurmCommands::locate(ok.dir());
  ASSERT_TRUE(other) << other.error().to_string();
  *c = std::move(*other);
  auto id = c->submit({"--wrap=true"});
  ASSERT_TRUE(id) << id.error().to_string();
  EXPECT_EQ(*id, JobId{77});
}

TEST(SlurmCommandsFake, SubmitReturnsTheParsableJobId) {
  FakeSlurm ok("[ \"$1\" = --parsable ] && echo '4242;cluster' || exit 3", "exit 0", "exit 0");
  auto c = SlurmCommands::locate(ok.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto id = c->submit({"--wrap=true"});
  ASSERT_TRUE(id) << id.error().to_string();
  EXPECT_EQ(*id, JobId{4242});
}

TEST(SlurmCommandsFake, SqueueWithoutJsonFallsBackToTextAndKeepsOnlyTheAskedJobs) {
  FakeSlurm old_slurm("exit 0",
                      "if [ \"$1\" = --json ]; then echo \"squeue: unrecognized option '--json'\" "
                      ">&2; exit 1; fi\nprintf '12|RUNNING|None|pepita-worker\\n13|PENDING|"
                      "Priority|other\\n'",
                      "exit 0");
  auto c = SlurmCommands::locate(old_slurm.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  for (int round = 0; round < 2; ++round) {  // the second round goes to the text form directly
    auto states = c->states({12, 99});
    ASSERT_TRUE(states) << states.error().to_string();
    ASSERT_EQ(states->size(), 1u) << "round " << round;
    EXPECT_EQ(states->at(12).state, "RUNNING");
    EXPECT_EQ(states->at(12).name, "pepita-worker");
  }
}

TEST(SlurmCommandsFake, FailingSqueueAndScancelAreIoErrorsNamingTheirFirstLine) {
  FakeSlurm down("exit 0",
                 "echo '  slurm_load_jobs error: Unable to contact slurm controller' >&2; "
                 "echo 'second line' >&2; exit 1",
                 "echo 'scancel: error: Invalid job id 7' >&2; exit 1");
  auto c = SlurmCommands::locate(down.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto states = c->states({1});
  ASSERT_FALSE(states);
  EXPECT_EQ(states.error().code(), ErrorCode::Io);
  EXPECT_TRUE(contains(states.error().message(),
                       "squeue failed: slurm_load_jobs error: Unable to contact slurm controller"))
      << states.error().message();
  EXPECT_FALSE(contains(states.error().message(), "second line")) << states.error().message();
  auto cancelled = c->cancel({7});
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code(), ErrorCode::Io);
  EXPECT_TRUE(
      contains(cancelled.error().message(), "scancel failed: scancel: error: Invalid job id 7"))
      << cancelled.error().message();
  EXPECT_TRUE(c->cancel({})) << "nothing to cancel runs no scancel";
}

TEST(SlurmCommandsFake, TextSqueueWithAStrayLineIsAProtocolError) {
  FakeSlurm odd("exit 0",
                "if [ \"$1\" = --json ]; then echo 'unrecognized' >&2; exit 1; fi\necho garbage",
                "exit 0");
  auto c = SlurmCommands::locate(odd.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto states = c->states({1});
  ASSERT_FALSE(states);
  EXPECT_EQ(states.error().code(), ErrorCode::Protocol);
  EXPECT_TRUE(contains(states.error().message(), "garbage")) << states.error().message();
}

// squeue --json where Slurm has it: asked for this user's jobs, parsed, and only the asked ids
// kept; an error naming json (not "unrecognized") also falls back to the text form.
TEST(SlurmCommandsFake, SqueueJsonIsAskedForThisUsersJobs) {
  FakeSlurm json("exit 0",
                 "[ \"$1\" = --json ] && [ \"$2\" = \"--user=$(id -un)\" ] || exit 9\n"
                 "echo '{\"jobs\": [{\"job_id\": 5, \"job_state\": [\"RUNNING\", \"COMPLETING\"], "
                 "\"state_reason\": \"None\", \"name\": \"w\"}, {\"job_id\": 6, \"job_state\": "
                 "\"PENDING\"}]}'",
                 "exit 0");
  auto c = SlurmCommands::locate(json.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto states = c->states({5, 7});
  ASSERT_TRUE(states) << states.error().to_string();
  ASSERT_EQ(states->size(), 1u);
  EXPECT_EQ(states->at(5).state, "RUNNING");
  EXPECT_EQ(states->at(5).reason, "None");
  EXPECT_EQ(states->at(5).name, "w");

  FakeSlurm no_plugin("exit 0",
                      "if [ \"$1\" = --json ]; then echo 'squeue: error: json plugin not found' "
                      ">&2; exit 1; fi\n"
                      "[ \"$1 $2 $3 $4\" = \"-h --user=$(id -un) -o %i|%T|%r|%j\" ] || exit 9\n"
                      "echo '12|RUNNING|None|w'",
                      "exit 0");
  auto text = SlurmCommands::locate(no_plugin.dir());
  ASSERT_TRUE(text) << text.error().to_string();
  auto listed = text->states({12});
  ASSERT_TRUE(listed) << listed.error().to_string();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(12).state, "RUNNING");
}

// A bad --json document is a Protocol error; squeue printing one is not retried as text.
TEST(SlurmCommandsFake, SqueueJsonWithoutJobsIsAProtocolError) {
  FakeSlurm odd("exit 0", "[ \"$1\" = --json ] && echo '{}' || echo '12|RUNNING|None|w'", "exit 0");
  auto c = SlurmCommands::locate(odd.dir());
  ASSERT_TRUE(c) << c.error().to_string();
  auto states = c->states({12});
  ASSERT_FALSE(states);
  EXPECT_EQ(states.error().code(), ErrorCode::Protocol);
}

// Without a bin dir each command is the first one on PATH (in a child: PATH is the process's);
// one that no PATH directory holds is NotFound saying so.
TEST(SlurmCommandsFake, WithoutABinDirTheCommandsAreFoundOnPath) {
  FakeSlurm on_path("echo 31", "exit 0", "exit 0");
  FakeSlurm missing("echo 32", "exit 0", "exit 0");
  ::unlink((missing.dir() + "/scancel").c_str());
  const auto code = test::run_forked([&] {
    ::setenv("PATH", ("::" + on_path.dir() + ":" + missing.dir()).c_str(), 1);
    auto c = SlurmCommands::locate("");
    ASSERT_TRUE(c) << c.error().to_string();
    auto id = c->submit({});
    ASSERT_TRUE(id) << id.error().to_string();
    EXPECT_EQ(*id, JobId{31}) << "the first PATH directory's sbatch";
    ::setenv("PATH", missing.dir().c_str(), 1);
    auto none = SlurmCommands::locate("");
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code(), ErrorCode::NotFound);
    EXPECT_TRUE(contains(none.error().message(), "scancel not found on PATH"))
        << none.error().message();
  });
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace pepita::slurm
