// Task kinds and the pipeline builder: the crate's BinaryTask / PipelineTask / TaskKind names,
// stage defaults, the digest over every stage, and bad stage wiring. Running pipelines is tested
// in tests/executor/pipeline_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pepita/task/task.hpp"

namespace pepita::task {
namespace {

using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

void expect_invalid(const Result<Task>& t, const std::string& needle) {
  ASSERT_FALSE(t) << "expected an error containing: " << needle;
  EXPECT_EQ(t.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(t.error().message().find(needle), std::string::npos) << t.error().message();
}

TEST(BinaryTask, CrateSpellingFillsTheProcessSpec) {
  const BinaryTask b = BinaryTask("/bin/cat")
                           .with_args({"-n"})
                           .with_env({{"LANG", "C"}})
                           .with_working_dir("/tmp")
                           .with_stdin("hi");
  EXPECT_EQ(b.path, "/bin/cat");
  EXPECT_EQ(b.args, Strings{"-n"});
  EXPECT_EQ(b.env.at("LANG"), "C");
  EXPECT_EQ(b.cwd, "/tmp");
  EXPECT_EQ(b.stdin_data, "hi");
  BinaryTask lvalue("/bin/echo");
  lvalue.with_args({"a"}).with_args({"b"});  // each with_* replaces, like the crate's
  EXPECT_EQ(lvalue.args, Strings{"b"});
}

TEST(PipelineTask, AddStageCountsAndPipeOutput) {
  PipelineTask p;
  EXPECT_TRUE(p.is_empty());
  EXPECT_TRUE(p.pipe_output);  // the crate's default
  p.add_stage(BinaryTask("seq")).add_stage(BinaryTask("head"));
  EXPECT_EQ(p.num_stages(), 2u);
  EXPECT_FALSE(p.is_empty());
  EXPECT_FALSE(PipelineTask().with_pipe_output(false).pipe_output);
}

TEST(Task, KindAccessorsMatchTheCrate) {
  auto bin = Task::binary("/bin/true").build().value();
  auto fn = Task::function([] {}).build().value();
  auto pipe = Task::pipeline().add_stage(BinaryTask("/bin/true")).build().value();
  EXPECT_EQ(bin.kind(), TaskKind::Binary);
  EXPECT_TRUE(bin.is_binary());
  EXPECT_FALSE(bin.is_pipeline());
  ASSERT_NE(bin.as_binary(), nullptr);
  EXPECT_EQ(bin.as_binary()->path, "/bin/true");
  EXPECT_EQ(bin.as_pipeline(), nullptr);
  EXPECT_EQ(fn.kind(), TaskKind::Callable);
  EXPECT_FALSE(fn.is_binary());
  EXPECT_EQ(fn.as_binary(), nullptr);
  EXPECT_EQ(pipe.kind(), TaskKind::Pipeline);
  EXPECT_TRUE(pipe.is_pipeline());
  EXPECT_FALSE(pipe.is_binary());
  EXPECT_EQ(pipe.as_binary(), nullptr);
  EXPECT_EQ(pipe.process(), nullptr);
  ASSERT_NE(pipe.as_pipeline(), nullptr);
  EXPECT_EQ(pipe.as_pipeline()->num_stages(), 1u);
  EXPECT_EQ(pipe.backend(), Backend::Process);
}

TEST(Task, CanRetryUsesTheTasksOwnLimitElseThePoolDefault) {
  auto limited = Task::binary("/bin/true").max_retries(2).build().value();
  EXPECT_TRUE(limited.can_retry(0));
  EXPECT_TRUE(limited.can_retry(1));
  EXPECT_FALSE(limited.can_retry(2));
  EXPECT_FALSE(limited.can_retry(2, 10));  // its own limit wins over the pool's
  auto unset = Task::binary("/bin/true").build().value();
  EXPECT_FALSE(unset.can_retry(0));  // the pool default 0: no retries
  EXPECT_TRUE(unset.can_retry(2, 3));
  EXPECT_FALSE(unset.can_retry(3, 3));
}

TEST(TaskBuilder, CrateNameIsTheBuilder) {
  TaskBuilder b = Task::pipeline();
  b.add_stage(BinaryTask("/bin/true")).affinity(CpuAffinity::Any());
  EXPECT_TRUE(b.build().has_value());
}

TEST(TaskBuilder, PipelineStagesFromBinaryTasksAndBuiltTasks) {
  auto t = Task::pipeline()
               .name("count")
               .add_stage(BinaryTask("seq").with_args({"1", "5"}))
               .add_stage(Task::binary("grep").args({"-v", "3"}).build())
               .add_stage(*Task::binary("wc").arg("-l").build())
               .env("LANG", "C")
               .cwd("/tmp")
               .timeout(5s)
               .build();
  ASSERT_TRUE(t) << t.error().message();
  const PipelineTask& p = *t->as_pipeline();
  ASSERT_EQ(p.num_stages(), 3u);
  EXPECT_EQ(p.stages[0].path, "seq");
  EXPECT_EQ(p.stages[1].args, (Strings{"-v", "3"}));
  EXPECT_EQ(p.stages[2].args, Strings{"-l"});
  for (const auto& st : p.stages) {
    EXPECT_EQ(st.env.at("LANG"), "C");  // pipeline-level env and cwd are every stage's default
    EXPECT_EQ(st.cwd, "/tmp");
  }
  EXPECT_EQ(t->timeout(), 5s);

  // A stage's own env and cwd win over the pipeline's; stdin() feeds stage 0.
  auto own = Task::pipeline()
                 .add_stage(BinaryTask("cat").with_env({{"LANG", "en"}}).with_working_dir("/"))
                 .add_stage(BinaryTask("wc"))
                 .env("LANG", "C")
                 .cwd("/tmp")
                 .stdin("abc")
                 .build()
                 .value();
  EXPECT_EQ(own.as_pipeline()->stages[0].env.at("LANG"), "en");
  EXPECT_EQ(own.as_pipeline()->stages[0].cwd, "/");
  EXPECT_EQ(own.as_pipeline()->stages[0].stdin_data, "abc");
  EXPECT_EQ(own.as_pipeline()->stages[1].cwd, "/tmp");

  // Task::pipeline(PipelineTask) keeps a value built the crate's way.
  auto unpiped = Task::pipeline(PipelineTask()
                                    .add_stage(BinaryTask("/bin/echo"))
                                    .add_stage(BinaryTask("/bin/echo"))
                                    .with_pipe_output(false))
                     .build()
                     .value();
  EXPECT_FALSE(unpiped.as_pipeline()->pipe_output);
}

TEST(TaskBuilder, PipelineDigestCoversEveryStage) {
  auto make = [](std::string last_arg, bool piped = true) {
    return Task::pipeline(PipelineTask()
                              .add_stage(BinaryTask("seq").with_args({"1", "9"}))
                              .add_stage(BinaryTask("head").with_args({std::move(last_arg)}))
                              .with_pipe_output(piped))
        .build()
        .value()
        .spec_digest();
  };
  EXPECT_EQ(make("-3"), make("-3"));
  EXPECT_NE(make("-3"), make("-4"));  // a later stage's argument changes the digest
  EXPECT_NE(make("-3"), make("-3", false));
  // A one-stage pipeline is not the same spec as the binary itself (different kind).
  EXPECT_NE(Task::pipeline().add_stage(BinaryTask("seq")).build()->spec_digest(),
            Task::binary("seq").build()->spec_digest());
}

TEST(TaskBuilder, BadPipelineWiringNamesTheStageAndField) {
  expect_invalid(Task::pipeline().build(), "pipeline has no stages");
  expect_invalid(Task::pipeline().add_stage(BinaryTask("")).build(), "pipeline stage 0: path");
  expect_invalid(Task::pipeline()
                     .add_stage(BinaryTask("seq"))
                     .add_stage(BinaryTask("cat").with_stdin("x"))
                     .build(),
                 "pipeline stage 1 ('cat'): stdin is set");
  expect_invalid(Task::pipeline()
                     .add_stage(BinaryTask("seq"))
                     .add_stage(BinaryTask("/bin/cat").with_env({{"A=B", "1"}}))
                     .build(),
                 "pipeline stage 1 ('cat'): env name 'A=B'");
  expect_invalid(Task::pipeline()
                     .add_stage(BinaryTask("seq"))
                     .add_stage(Task::function([] {}).name("fn").build())
                     .build(),
                 "pipeline stage 1 (task 'fn'): is not a binary");
  auto dep = Task::binary("/bin/true").build().value();
  expect_invalid(
      Task::pipeline().add_stage(Task::binary("seq").depends_on({dep.id()}).build()).build(),
      "pipeline stage 0 (task 'task-");
  expect_invalid(
      Task::pipeline().add_stage(Task::binary("seq").depends_on({dep.id()}).build()).build(),
      "has dependencies");
  expect_invalid(Task::pipeline().add_stage(Task::binary("seq").timeout(1s).build()).build(),
                 "has its own timeout");
  expect_invalid(Task::pipeline().add_stage(Task::binary("seq").max_retries(1).build()).build(),
                 "has its own max_retries");
  expect_invalid(Task::pipeline()
                     .add_stage(Task::binary("seq").affinity(CpuAffinity::Core(0)).build())
                     .build(),
                 "has its own affinity");
  expect_invalid(Task::pipeline().add_stage(Task::binary("").build()).build(),
                 "pipeline stage 0: invalid task");
  expect_invalid(Task::pipeline().add_stage(BinaryTask("seq")).arg("-x").build(),
                 "args() applies to each stage");
  expect_invalid(Task::pipeline().add_stage(BinaryTask("cat").with_stdin("a")).stdin("b").build(),
                 "stdin is set both on the stage and on the pipeline");
  expect_invalid(Task::pipeline().add_stage(BinaryTask("seq")).backend(Backend::Gpu).build(),
                 "a pipeline runs on the process backend, not 'gpu'");
  expect_invalid(Task::binary("seq").add_stage(BinaryTask("head")).build(),
                 "add_stage() applies to pipeline tasks");
}

TEST(TaskBuilder, ClearEnvOnAPipelineClearsEveryStagesInheritedEnvironment) {
  auto kept = Task::pipeline().add_stage(BinaryTask("seq")).add_stage(BinaryTask("wc")).build();
  ASSERT_TRUE(kept) << kept.error().message();
  for (const auto& st : kept->as_pipeline()->stages) EXPECT_TRUE(st.inherit_env);
  auto cleared =
      Task::pipeline().add_stage(BinaryTask("seq")).add_stage(BinaryTask("wc")).clear_env().build();
  ASSERT_TRUE(cleared) << cleared.error().message();
  for (const auto& st : cleared->as_pipeline()->stages) EXPECT_FALSE(st.inherit_env);
  EXPECT_NE(cleared->spec_digest(), kept->spec_digest());
}

TEST(TaskBuilder, APipelineRunsOnProcessCpuOrAnyAndTakesAnAffinityThere) {
  for (Backend on : {Backend::Process, Backend::Cpu, Backend::Any}) {
    auto t = Task::pipeline()
                 .add_stage(BinaryTask("seq"))
                 .backend(on)
                 .affinity(CpuAffinity::Core(0))
                 .sandbox(SandboxPolicy::standard())
                 .build();
    ASSERT_TRUE(t) << on << ": " << t.error().message();
    EXPECT_EQ(t->backend(), on);
    EXPECT_EQ(t->affinity(), CpuAffinity::Core(0));
  }
  expect_invalid(Task::pipeline().add_stage(BinaryTask("seq")).backend(Backend::MicroVm).build(),
                 "invalid task: a pipeline runs on the process backend, not 'microvm'");
}

TEST(TaskBuilder, BadStageFieldsAreNamedWithTheStageAndItsProgram) {
  const std::string nul("a\0b", 3);
  const auto second = [](BinaryTask st) {
    return Task::pipeline().add_stage(BinaryTask("/bin/seq")).add_stage(std::move(st)).build();
  };
  expect_invalid(second(BinaryTask("")), "invalid task: pipeline stage 1: path is empty");
  expect_invalid(second(BinaryTask("/usr/bin/" + nul)), "pipeline stage 1 ('");
  expect_invalid(second(BinaryTask("/usr/bin/" + nul)), "'): path holds a NUL byte");
  expect_invalid(second(BinaryTask("tr").with_args({"x", nul})),
                 "invalid task: pipeline stage 1 ('tr'): an argument holds a NUL byte");
  expect_invalid(second(BinaryTask("tr").with_working_dir(nul)),
                 "invalid task: pipeline stage 1 ('tr'): cwd holds a NUL byte");
  expect_invalid(second(BinaryTask("tr").with_env({{"K", nul}})),
                 "invalid task: pipeline stage 1 ('tr'): env name 'K' is invalid");
  expect_invalid(second(BinaryTask("tr").with_env({{"", "v"}})),
                 "invalid task: pipeline stage 1 ('tr'): env name '' is invalid");
  expect_invalid(Task::pipeline(PipelineTask()
                                    .add_stage(BinaryTask("seq"))
                                    .add_stage(BinaryTask("/bin/tr").with_stdin("x"))
                                    .with_pipe_output(false))
                     .build(),
                 "invalid task: pipeline stage 1 ('tr'): stdin is set; only stage 0 may have stdin "
                 "(the others read /dev/null)");
  expect_invalid(Task::pipeline()
                     .add_stage(BinaryTask("seq"))
                     .add_stage(BinaryTask("/bin/tr").with_stdin("x"))
                     .build(),
                 "invalid task: pipeline stage 1 ('tr'): stdin is set, but this stage reads the "
                 "previous stage's output; only stage 0 may have stdin");
  // Stage 0 may have stdin of its own.
  EXPECT_TRUE(Task::pipeline().add_stage(BinaryTask("cat").with_stdin("x")).build());
}

TEST(TaskBuilder, APipelineLevelEnvWithABadNameIsRefusedAndAGoodOneIsEachStagesDefault) {
  expect_invalid(Task::pipeline().add_stage(BinaryTask("seq")).env("A=B", "1").build(),
                 "invalid task: environment variable name 'A=B' is invalid");
  expect_invalid(Task::pipeline().add_stage(BinaryTask("seq")).env("", "1").build(),
                 "environment variable name '' is invalid");
  expect_invalid(
      Task::pipeline().add_stage(BinaryTask("seq")).env("K", std::string("a\0b", 3)).build(),
      "environment variable name 'K' is invalid");
  auto t = Task::pipeline().add_stage(BinaryTask("seq")).env("K", "v").stdin("in").build();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->as_pipeline()->stages[0].env.at("K"), "v");
  EXPECT_EQ(t->as_pipeline()->stages[0].stdin_data, "in");
}

TEST(TaskBuilder, AStageRefusedLaterInThePipelineIsNamedByItsIndex) {
  expect_invalid(
      Task::pipeline().add_stage(BinaryTask("seq")).add_stage(Task::binary("").build()).build(),
      "invalid task: pipeline stage 1: invalid task: binary path is empty");
  expect_invalid(Task::pipeline()
                     .add_stage(BinaryTask("seq"))
                     .add_stage(BinaryTask("tr"))
                     .add_stage(Task::binary("wc").name("w").deadline(1s).build())
                     .build(),
                 "invalid task: pipeline stage 2 (task 'w'): has its own deadline; set it on the "
                 "pipeline");
  // A built task added to a binary's builder: refused as a pipeline-only call.
  expect_invalid(Task::binary("seq").add_stage(Task::binary("wc").build()).build(),
                 "add_stage() applies to pipeline tasks: start with Task::pipeline()");
  expect_invalid(Task::binary("seq").add_stage(Task::function([] {}).name("f").build()).build(),
                 "invalid task: pipeline stage 0 (task 'f'): is not a binary");
  expect_invalid(Task::binary("seq").add_stage(Task::binary("").build()).build(),
                 "invalid task: pipeline stage 0: invalid task: binary path is empty");
}

}  // namespace
}  // namespace pepita::task
