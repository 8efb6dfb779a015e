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

}  // namespace
}  // namespace pepita::slurm
