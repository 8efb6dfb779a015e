// ExecutionResult's crate helpers (issue 21): the success/failure constructors, the crate's
// states of each Status, and stdout_string()'s lossy UTF-8 (example and property).
#include "pepita/executor/result.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

namespace pepita::executor {
namespace {

using namespace std::chrono_literals;
using task::TaskState;

TEST(ExecutionResult, SuccessAndFailureConstructors) {
  const auto ok = ExecutionResult::success(7, 2ms);
  EXPECT_EQ(ok.id, 7u);
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.wall, 2ms);
  EXPECT_TRUE(ok.is_success());
  EXPECT_FALSE(ok.is_failure());
  EXPECT_EQ(ok.state(), TaskState::Completed);

  const auto bad = ExecutionResult::failure(8, "disk full", 3ms);
  EXPECT_EQ(bad.id, 8u);
  EXPECT_EQ(bad.error, "disk full");
  EXPECT_FALSE(bad.is_success());
  EXPECT_TRUE(bad.is_failure());
  EXPECT_EQ(bad.state(), TaskState::Failed);
}

TEST(ExecutionResult, EveryStatusHasTheCrateState) {
  EXPECT_EQ(task_state(Status::Succeeded), TaskState::Completed);
  EXPECT_EQ(task_state(Status::TimedOut), TaskState::TimedOut);
  EXPECT_EQ(task_state(Status::Cancelled), TaskState::Cancelled);
  for (auto s : {Status::Failed, Status::Signaled, Status::LaunchFailed, Status::Skipped,
                 Status::Rejected}) {
    EXPECT_EQ(task_state(s), TaskState::Failed) << to_string(s);
  }
  ExecutionResult timed_out;
  timed_out.status = Status::TimedOut;
  EXPECT_FALSE(timed_out.is_success());
  EXPECT_FALSE(timed_out.is_failure());  // as in the crate: only the Failed state is a failure
}

TEST(ExecutionResult, EveryStatusHasAStableNameAndOomOrSandboxIsFailed) {
  const std::pair<Status, std::string_view> names[] = {{Status::Succeeded, "succeeded"},
                                                       {Status::Failed, "failed"},
                                                       {Status::Signaled, "signaled"},
                                                       {Status::TimedOut, "timed-out"},
                                                       {Status::LaunchFailed, "launch-failed"},
                                                       {Status::Cancelled, "cancelled"},
                                                       {Status::Skipped, "skipped"},
                                                       {Status::Rejected, "rejected"},
                                                       {Status::OutOfMemory, "oom"},
                                                       {Status::Sandboxed, "sandbox"}};
  for (const auto& [status, name] : names) EXPECT_EQ(to_string(status), name);
  EXPECT_EQ(task_state(Status::OutOfMemory), TaskState::Failed);
  EXPECT_EQ(task_state(Status::Sandboxed), TaskState::Failed);
}

TEST(ExecutionResult, StdoutStringReplacesInvalidUtf8) {
  ExecutionResult r;
  r.stdout_data = "ok \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";  // é € 😀: kept
  EXPECT_EQ(r.stdout_string(), r.stdout_data);
  r.stderr_data =
      "a\xFF"
      "b\xC0\xAF"
      "\xED\xA0\x80"
      "\xE2\x82";
  // 0xFF; an overlong '/'; a surrogate; a truncated sequence: each byte becomes U+FFFD.
#define FFFD "\xEF\xBF\xBD"
  EXPECT_EQ(r.stderr_string(), "a" FFFD "b" FFFD FFFD FFFD FFFD FFFD FFFD FFFD);
#undef FFFD
  EXPECT_EQ(utf8_lossy(std::string("\0x", 2)), std::string("\0x", 2));  // NUL is valid UTF-8
}

// RFC 3629's table at each of its edges: the first and last code point a lead byte may start
// are kept; one step past (an overlong form, a surrogate, above U+10FFFF, a lead byte that is
// never valid) is replaced, each of its bytes by U+FFFD.
TEST(ExecutionResult, Utf8TableEdgesAreKeptAndOneStepPastIsReplaced) {
  for (const char* kept : {"\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",
                           "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_EQ(utf8_lossy(kept), kept) << testing::PrintToString(std::string(kept));
  }
  const std::string fffd = "\xEF\xBF\xBD";
  for (const char* replaced : {"\xC1\xBF", "\xE0\x9F\xBF", "\xED\xA0\x80", "\xF0\x8F\xBF\xBF",
                               "\xF4\x90\x80\x80", "\xF5\x80\x80\x80"}) {
    std::string want;
    for (std::size_t i = 0; i < std::string_view(replaced).size(); ++i) want += fffd;
    EXPECT_EQ(utf8_lossy(replaced), want) << testing::PrintToString(std::string(replaced));
  }
}

RC_GTEST_PROP(ExecutionResult, LossyTextIsValidAndKeepsValidInput, (const std::string& bytes)) {
  const std::string text = utf8_lossy(bytes);
  RC_ASSERT(utf8_lossy(text) == text);  // the output is valid UTF-8: a second pass keeps it
  RC_ASSERT(text.size() >= bytes.size());
  if (text.size() == bytes.size()) RC_ASSERT(text == bytes);  // nothing replaced: unchanged
}

}  // namespace
}  // namespace pepita::executor
