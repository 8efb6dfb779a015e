// Pipelines and CPU affinity on the process executor, with real binaries: kernel pipes between
// stages (back-pressure, SIGPIPE), pipefail with the failing stage named, the whole process group
// stopped on failure, timeout and cancel, and sched_setaffinity seen by the child itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "common/temp_dir.hpp"
#include "executor/process_test_util.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/task/affinity.hpp"

namespace pepita::executor {
namespace {

using test::make;
using test::process_running;
using test::run_one;
using test::wait_for_file;

using pepita::test::TempDir;

using namespace std::chrono_literals;
using task::BinaryTask;
using task::CpuAffinity;
using task::PipelineTask;
using task::Task;
namespace fs = std::filesystem;

BinaryTask sh(std::string script) { return BinaryTask("/bin/sh").with_args({"-c", script}); }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

TEST(Pipeline, StagesAreConnectedByPipes) {
  auto exec = make();
  auto t = Task::pipeline()
               .add_stage(BinaryTask("seq").with_args({"1", "100000"}))
               .add_stage(BinaryTask("grep").with_args({"7"}))
               .add_stage(BinaryTask("wc").with_args({"-l"}))
               .build();
  ASSERT_TRUE(t) << t.error().message();
  auto r = run_one(*exec, *t);
  int expected = 0;
  for (int i = 1; i <= 100000; ++i) expected += std::to_string(i).find('7') != std::string::npos;
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(std::stoi(r.stdout_data), expected);
  EXPECT_GT(r.cpu, 0ns);  // summed over the stages
}

TEST(Pipeline, StdinFeedsTheFirstStageAndStderrOfEveryStageIsKept) {
  auto exec = make();
  auto t = Task::pipeline()
               .add_stage(sh("echo first >&2; cat"))
               .add_stage(BinaryTask("sort"))
               .add_stage(sh("cat; echo last >&2"))
               .stdin("b\nc\na\n")
               .build()
               .value();
  auto r = run_one(*exec, t);
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "a\nb\nc\n");
  EXPECT_NE(r.stderr_data.find("first\n"), std::string::npos) << r.stderr_data;
  EXPECT_NE(r.stderr_data.find("last\n"), std::string::npos) << r.stderr_data;
}

TEST(Pipeline, EachStageGetsItsOwnArgsEnvWorkingDirAndStdin) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(sh("cat; pwd; echo \"$WHO\"")
                                             .with_env({{"WHO", "first"}})
                                             .with_working_dir("/")
                                             .with_stdin("zero\n"))
                              .add_stage(BinaryTask("/bin/sh")
                                             .with_args({"-c", "cat; pwd; echo \"$WHO\""})
                                             .with_env({{"WHO", "second"}})
                                             .with_working_dir("/tmp"))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "zero\n/\nfirst\n/tmp\nsecond\n");
}

TEST(Pipeline, FastProducerBlocksOnSlowConsumer) {
  // 4 MiB cannot fit in a 64 KiB pipe: the producer can only finish writing once the consumer,
  // which sleeps first, reads. Had pepita buffered in between, the producer would finish first.
  TempDir dir{"pipeline"};
  const std::string produced = dir.file("produced"), reading = dir.file("reading");
  auto exec = make();
  auto t = Task::pipeline()
               .add_stage(sh("head -c 4194304 /dev/zero; date +%s%N > " + produced))
               .add_stage(sh("sleep 1; date +%s%N > " + reading + "; wc -c"))
               .build()
               .value();
  auto r = run_one(*exec, t);
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(std::stoll(r.stdout_data), 4194304);
  const long long done_writing = std::stoll(read_text(produced));
  const long long started_reading = std::stoll(read_text(reading));
  EXPECT_GE(done_writing, started_reading);
}

TEST(Pipeline, EarlyExitingConsumerEndsProducerWithSigpipeAndSucceeds) {
  auto exec = make();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(BinaryTask("yes"))
                              .add_stage(BinaryTask("head").with_args({"-n", "3"}))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;  // `yes` died of SIGPIPE: not a failure
  EXPECT_EQ(r.stdout_data, "y\ny\ny\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Pipeline, FailingMiddleStageFailsThePipelineNamingIt) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(BinaryTask("seq").with_args({"1", "1000000"}))
                              .add_stage(sh("head -n 1; exit 3"))
                              .add_stage(BinaryTask("cat"))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "pipeline stage 1 ('sh') exited with status 3; the other stages were stopped");
  // `cat` is stopped as soon as stage 1 fails, so it may or may not have copied the "1" through.
  EXPECT_TRUE(r.stdout_data.empty() || r.stdout_data == "1\n") << r.stdout_data;

  auto killed = run_one(*exec, Task::pipeline()
                                   .add_stage(BinaryTask("/bin/echo").with_args({"x"}))
                                   .add_stage(sh("kill -KILL $$"))
                                   .build()
                                   .value());
  EXPECT_EQ(killed.status, Status::Signaled);
  EXPECT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(killed.exit_code, -1);
  EXPECT_EQ(killed.error,
            "pipeline stage 1 ('sh') killed by signal 9 (KILL); the other stages were stopped");
}

// SIGPIPE is forgiven only to a stage that writes into the next one: the last stage dying of it
// fails the pipeline.
TEST(Pipeline, LastStageKilledBySigpipeFailsThePipeline) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(BinaryTask("/bin/echo").with_args({"x"}))
                              .add_stage(sh("cat >/dev/null; kill -PIPE $$"))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Signaled) << r.error;
  EXPECT_EQ(r.signal, SIGPIPE);
  EXPECT_EQ(r.error,
            "pipeline stage 1 ('sh') killed by signal 13 (PIPE); the other stages were stopped");
}

// With no other stage to stop, the error names the failing stage and says nothing of others.
TEST(Pipeline, ASingleFailingStageIsNamedAlone) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline().add_stage(sh("exit 3")).build().value());
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "pipeline stage 0 ('sh') exited with status 3");
}

TEST(Pipeline, OneStageFailingStopsTheOthers) {
  // The first stage would run 30 s; the second fails at once, so the group is stopped.
  TempDir dir{"pipeline"};
  const std::string pid_file = dir.file("pid");
  auto exec = make(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(sh("echo $$ > " + pid_file + "; exec sleep 30"))
                              .add_stage(sh("sleep 0.2; exit 4"))
                              .build()
                              .value());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.error.find("pipeline stage 1 ('sh') exited with status 4; the other stages were "
                         "stopped"),
            std::string::npos)
      << r.error;
  EXPECT_FALSE(process_running(std::stoi(read_text(pid_file))));
}

// A cancel that comes while a failed pipeline's other stages are being stopped changes nothing:
// the result is still the failing stage's.
TEST(Pipeline, ACancelWhileTheOtherStagesAreStoppedKeepsTheFailure) {
  TempDir dir{"pipeline"};
  const std::string ready = dir.file("ready");
  const std::string termed = dir.file("termed");
  auto exec = make(1s);
  std::stop_source stop;
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  // Stage 0 notes the SIGTERM that stage 1's failure brings, and runs on until the SIGKILL.
  auto t = Task::pipeline()
               .add_stage(sh("trap 'touch " + termed + "' TERM; touch " + ready +
                             "; while :; do sleep 0.05; done"))
               .add_stage(sh("while [ ! -e " + ready + " ]; do sleep 0.01; done; exit 4"))
               .build()
               .value();
  ASSERT_TRUE(
      exec->start(t, stop.get_token(), [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  ASSERT_TRUE(wait_for_file(termed));
  stop.request_stop();
  const ExecutionResult r = f.get();
  EXPECT_EQ(r.status, Status::Failed) << r.error;
  EXPECT_EQ(r.error, "pipeline stage 1 ('sh') exited with status 4; the other stages were stopped");
}

TEST(Pipeline, TimeoutAndCancelStopEveryStage) {
  TempDir dir{"pipeline"};
  auto exec = make(200ms);
  auto stages = [&](const std::string& tag) {
    return PipelineTask()
        .add_stage(sh("echo $$ > " + dir.file(tag + "0") + "; exec sleep 30"))
        .add_stage(sh("echo $$ > " + dir.file(tag + "1") + "; sleep 30 & wait"));
  };
  // Long enough for both shells to write their pid on a loaded machine; a stage stopped before
  // it wrote one cannot be checked (and is not running).
  auto r = run_one(*exec, Task::pipeline(stages("t")).timeout(2s).build().value());
  EXPECT_EQ(r.status, Status::TimedOut);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.error, "timed out after 2.000000 s; all 2 pipeline stages were stopped");
  for (const char* f : {"t0", "t1"}) {
    const std::string pid = read_text(dir.file(f));
    if (!pid.empty()) {
      EXPECT_FALSE(process_running(std::stoi(pid))) << f;
    }
  }

  // The cancel comes once both stages have written their pid.
  std::stop_source stop;
  std::thread canceller([&] {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while ((read_text(dir.file("c0")).empty() || read_text(dir.file("c1")).empty()) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    stop.request_stop();
  });
  auto c = run_one(*exec, Task::pipeline(stages("c")).build().value(), stop.get_token());
  canceller.join();
  EXPECT_EQ(c.status, Status::Cancelled);
  EXPECT_EQ(c.exit_code, -1);
  EXPECT_EQ(c.signal, 0);
  EXPECT_EQ(c.error, "cancelled; all 2 pipeline stages were stopped");
  for (const char* f : {"c0", "c1"}) {
    EXPECT_FALSE(process_running(std::stoi(read_text(dir.file(f))))) << f;
  }
}

TEST(Pipeline, StageThatCannotStartIsNamedAndEarlierStagesAreReaped) {
  TempDir dir{"pipeline"};
  const std::string pid_file = dir.file("pid");
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(sh("echo $$ > " + pid_file + "; exec sleep 30"))
                              .add_stage(BinaryTask("/no/such/binary"))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("cannot start pipeline stage 1 ('binary') '/no/such/binary'"),
            std::string::npos)
      << r.error;
  // The first stage may have been killed before its shell wrote the file.
  const std::string pid = read_text(pid_file);
  if (!pid.empty()) {
    EXPECT_FALSE(process_running(std::stoi(pid)));
  }
}

TEST(Pipeline, UnpipedStagesRunSideBySideIntoOneStdout) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline(PipelineTask()
                                             .add_stage(BinaryTask("/bin/echo").with_args({"one"}))
                                             .add_stage(BinaryTask("cat"))  // reads /dev/null
                                             .add_stage(BinaryTask("/bin/echo").with_args({"two"}))
                                             .with_pipe_output(false))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data.size(), 8u);
  EXPECT_NE(r.stdout_data.find("one\n"), std::string::npos);
  EXPECT_NE(r.stdout_data.find("two\n"), std::string::npos);
}

TEST(Pipeline, OutputCapAppliesToTheLastStage) {
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(BinaryTask("yes"))
                              .add_stage(BinaryTask("head").with_args({"-c", "100000"}))
                              .output_cap(1000)
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_EQ(r.stdout_bytes, 100000u);
}

// What the child itself sees: the kernel's view of its allowed CPUs.
const char* kShowCpus = "grep Cpus_allowed_list /proc/self/status";

std::string cpus_line(const std::string& list) { return "Cpus_allowed_list:\t" + list + "\n"; }

TEST(Affinity, ChildRunsOnlyOnTheRequestedCpus) {
  const std::vector<unsigned> online = task::online_cpus().value();
  const unsigned last = online.back();
  auto exec = make();
  auto one = run_one(*exec, Task::binary("/bin/sh")
                                .args({"-c", kShowCpus})
                                .affinity(CpuAffinity::Core(last))
                                .build()
                                .value());
  EXPECT_EQ(one.status, Status::Succeeded) << one.error;
  EXPECT_EQ(one.stdout_data, cpus_line(std::to_string(last)));

  auto node = run_one(*exec, Task::binary("/bin/sh")
                                 .args({"-c", kShowCpus})
                                 .affinity(CpuAffinity::NumaNode(0))
                                 .build()
                                 .value());
  std::ifstream node_list("/sys/devices/system/node/node0/cpulist");
  std::string expected;
  std::getline(node_list, expected);
  EXPECT_EQ(node.stdout_data, cpus_line(expected));

  // The reactor thread got its own mask back: an unpinned child sees what this process has.
  std::ifstream self("/proc/self/status");
  std::string line, mine;
  while (std::getline(self, line)) {
    if (line.starts_with("Cpus_allowed_list:")) mine = line + "\n";
  }
  auto free = run_one(*exec, Task::binary("/bin/sh").args({"-c", kShowCpus}).build().value());
  EXPECT_EQ(free.stdout_data, mine);
}

TEST(Affinity, EveryPipelineStageIsPinned) {
  const unsigned first = task::online_cpus().value().front();
  auto exec = make();
  auto r = run_one(*exec, Task::pipeline()
                              .add_stage(sh(kShowCpus))
                              .add_stage(sh(std::string("cat; ") + kShowCpus))
                              .affinity(CpuAffinity::Cores({first}))
                              .build()
                              .value());
  EXPECT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, cpus_line(std::to_string(first)) + cpus_line(std::to_string(first)));
}

}  // namespace
}  // namespace pepita::executor
