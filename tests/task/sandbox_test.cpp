// task::SandboxPolicy as a value: the levels, parsing, what a level decides, and which tasks may
// carry a sandbox (the mechanism is the executor's: tests/executor/sandbox_test.cpp).
#include "pepita/task/sandbox.hpp"

#include <gtest/gtest.h>

#include "pepita/task/task.hpp"

namespace pepita::task {
namespace {

TEST(SandboxPolicyValue, LevelsTurnOnTheirParts) {
  const SandboxPolicy none = SandboxPolicy::none();
  EXPECT_FALSE(none.enabled());
  EXPECT_FALSE(none.user_ns || none.mount_ns || none.pid_ns || none.seccomp);
  const SandboxPolicy standard = SandboxPolicy::standard();
  EXPECT_TRUE(standard.enabled());
  EXPECT_TRUE(standard.user_ns && standard.mount_ns && standard.pid_ns && standard.ipc_uts_ns &&
              standard.no_new_privs && standard.seccomp);
  EXPECT_EQ(standard.network, SandboxNetwork::Host);
  EXPECT_FALSE(standard.disk.has_value());
  const SandboxPolicy strict = SandboxPolicy::strict();
  EXPECT_EQ(strict.network, SandboxNetwork::None);
  EXPECT_EQ(strict.disk, std::uint64_t{1} << 30);
  EXPECT_LT(strict.max_processes, standard.max_processes);
}

TEST(SandboxPolicyValue, ParseKnowsTheThreeLevelsAndNamesThemOnAnError) {
  EXPECT_EQ(SandboxPolicy::parse("none").value(), SandboxPolicy::none());
  EXPECT_EQ(SandboxPolicy::parse("standard").value(), SandboxPolicy::standard());
  EXPECT_EQ(SandboxPolicy::parse("strict").value(), SandboxPolicy::strict());
  for (const char* bad : {"", "Strict", "custom", "strict "}) {
    auto p = SandboxPolicy::parse(bad);
    ASSERT_FALSE(p) << bad;
    EXPECT_EQ(p.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(p.error().message().find("none, standard or strict"), std::string::npos);
  }
  EXPECT_EQ(to_string(SandboxLevel::Custom), "custom");
}

TEST(SandboxPolicyValue, SamePartsIgnoresTheNameAndTheBindsButNothingElse) {
  SandboxPolicy p = SandboxPolicy::standard();
  p.level = SandboxLevel::Custom;
  p.read_only = {"/data"};
  p.writable = {"/out"};
  EXPECT_TRUE(p.same_parts_as(SandboxPolicy::standard()));
  EXPECT_FALSE(p.same_parts_as(SandboxPolicy::strict()));
  p.network = SandboxNetwork::None;
  EXPECT_FALSE(p.same_parts_as(SandboxPolicy::standard()));
  SandboxPolicy q = SandboxPolicy::strict();
  q.max_open_files = 10;
  EXPECT_FALSE(q.same_parts_as(SandboxPolicy::strict()));
}

TEST(SandboxPolicyValue, OnlyProcessTasksTakeASandbox) {
  auto binary = Task::binary("/bin/true").sandbox(SandboxPolicy::strict()).build();
  ASSERT_TRUE(binary) << binary.error().message();
  EXPECT_EQ(binary->sandbox(), SandboxPolicy::strict());
  EXPECT_EQ(binary->with_sandbox(SandboxPolicy::none()).sandbox(), SandboxPolicy::none());
  EXPECT_EQ(binary->with_sandbox(SandboxPolicy::none()).id(), binary->id());
  auto function =
      Task::function([] { return Result<void>{}; }).sandbox(SandboxPolicy::standard()).build();
  ASSERT_FALSE(function);
  EXPECT_NE(function.error().message().find("only a binary or pipeline task runs in a sandbox"),
            std::string::npos);
}

}  // namespace
}  // namespace pepita::task
