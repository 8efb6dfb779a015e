// ExecutionResult <-> journal record: every field the journal keeps survives finished_record,
// the on-disk encoding and replayed_result (example and property).
#include "pepita/fault/result_record.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace pepita::fault {
namespace {

using executor::ExecutionResult;
using executor::Status;

::testing::AssertionResult same_outcome(const ExecutionResult& a, const ExecutionResult& b) {
  auto diff = [](const char* f) { return ::testing::AssertionFailure() << f << " differs"; };
  if (a.name != b.name) return diff("name");
  if (a.status != b.status) return diff("status");
  if (a.exit_code != b.exit_code) return diff("exit_code");
  if (a.signal != b.signal) return diff("signal");
  if (a.wall != b.wall) return diff("wall");
  if (a.cpu != b.cpu) return diff("cpu");
  if (a.max_rss_kb != b.max_rss_kb) return diff("max_rss_kb");
  if (a.stdout_data != b.stdout_data) return diff("stdout_data");
  if (a.stderr_data != b.stderr_data) return diff("stderr_data");
  if (a.stdout_bytes != b.stdout_bytes) return diff("stdout_bytes");
  if (a.stderr_bytes != b.stderr_bytes) return diff("stderr_bytes");
  if (a.error != b.error) return diff("error");
  if (a.attempts != b.attempts) return diff("attempts");
  return ::testing::AssertionSuccess();
}

ExecutionResult through_journal(const ExecutionResult& r) {
  const JournalRecord rec = finished_record(r, "digest");
  auto back = decode_record(encode_record(rec));
  EXPECT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->spec_digest, "digest");
  EXPECT_EQ(back->type, RecordType::Finished);
  return replayed_result(*back);
}

TEST(ResultRecord, EveryFieldSurvivesTheJournal) {
  ExecutionResult r;
  r.id = 7;
  r.name = "t";
  r.status = Status::TimedOut;
  r.exit_code = -1;
  r.signal = 15;
  r.wall = std::chrono::seconds(3);
  r.cpu = std::chrono::milliseconds(310);
  r.max_rss_kb = 12'345;
  r.stdout_data = "head";
  r.stderr_data = "e";
  r.stdout_bytes = 1 << 20;  // truncated by the cap
  r.stderr_bytes = 1;
  r.error = "timed out";
  r.attempts = 2;
  const ExecutionResult back = through_journal(r);
  EXPECT_TRUE(same_outcome(back, r));
  EXPECT_TRUE(back.from_journal);
  EXPECT_TRUE(back.output_truncated());
  EXPECT_EQ(back.id, 0u);  // the pool's to assign
}

TEST(ResultRecord, OutOfRangeStatusReadsAsFailed) {
  JournalRecord rec;
  rec.type = RecordType::Finished;
  rec.status = 200;
  EXPECT_EQ(replayed_result(rec).status, Status::Failed);
}

RC_GTEST_PROP(ResultRecord, RandomResultSurvivesTheJournal, ()) {
  ExecutionResult r;
  r.name = *rc::gen::arbitrary<std::string>();
  r.status = static_cast<Status>(*rc::gen::inRange<int>(0, executor::kStatusCount));
  r.exit_code = *rc::gen::arbitrary<int>();
  r.signal = *rc::gen::arbitrary<int>();
  r.wall = std::chrono::nanoseconds(*rc::gen::arbitrary<std::int64_t>());
  r.cpu = std::chrono::nanoseconds(*rc::gen::arbitrary<std::int64_t>());
  r.max_rss_kb = *rc::gen::arbitrary<std::int64_t>();
  r.stdout_data = *rc::gen::arbitrary<std::string>();
  r.stderr_data = *rc::gen::arbitrary<std::string>();
  r.stdout_bytes = r.stdout_data.size() + *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
  r.stderr_bytes = r.stderr_data.size() + *rc::gen::inRange<std::uint64_t>(0, 1u << 30);
  r.error = *rc::gen::arbitrary<std::string>();
  r.attempts = *rc::gen::arbitrary<std::uint32_t>();
  RC_ASSERT(same_outcome(through_journal(r), r));
}

}  // namespace
}  // namespace pepita::fault
