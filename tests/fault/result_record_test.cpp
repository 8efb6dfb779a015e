// ExecutionResult <-> journal record: every field the journal keeps survives finished_record,
// the on-disk encoding and replayed_result (example and property).
#include "pepita/fault/result_record.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "common/execution_result.hpp"

namespace pepita::fault {
namespace {

using executor::ExecutionResult;
using executor::Status;

::testing::AssertionResult same_outcome(const ExecutionResult& a, const ExecutionResult& b) {
  if (a.attempts != b.attempts) return ::testing::AssertionFailure() << "attempts differs";
  return pepita::test::same_outcome_fields(a, b);
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

TEST(ResultRecord, MetadataSurvivesTheJournal) {
  ExecutionResult r;
  r.name = "labelled";
  r.status = Status::Succeeded;
  r.metadata = {{"team", "ml"}, {"run", "42"}};
  const ExecutionResult back = through_journal(r);
  EXPECT_EQ(back.metadata, r.metadata);
}

TEST(ResultRecord, ProvenanceSurvivesTheJournal) {
  // Issue 24: where it ran, what ran and what it read and wrote are kept with the result.
  ExecutionResult r;
  r.name = "traced";
  r.status = Status::Succeeded;
  r.host = "worker-3.example:7070";
  r.binary_sha256 = std::string(64, 'b');
  r.input_hashes = {{"corpus.txt", std::string(64, 'c')}};
  r.output_hashes = {{"model.bin", std::string(64, 'd')}};
  const JournalRecord rec = finished_record(r, "d");
  EXPECT_EQ(rec.host, "worker-3.example:7070");
  const ExecutionResult back = through_journal(r);
  EXPECT_EQ(back.host, "worker-3.example:7070");
  EXPECT_EQ(back.binary_sha256, r.binary_sha256);
  EXPECT_EQ(back.input_hashes, r.input_hashes);
  EXPECT_EQ(back.output_hashes, r.output_hashes);
  EXPECT_FALSE(back.from_cache);
}

TEST(ResultRecord, FormatTwoBodiesWithAndWithoutMetadataStillDecode) {
  // Format 2 bodies end after the byte counts, or after a non-empty metadata trailer; format 3
  // always appends the metadata count and the provenance (41 bytes when all are empty).
  JournalRecord plain = finished_record(ExecutionResult{}, "d");
  plain.started_unix_ns = plain.finished_unix_ns = 0;
  std::string v2 = encode_record(plain);
  v2.resize(v2.size() - 41);
  auto back = decode_record(v2);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, plain);
  std::string labelled = v2;
  labelled += std::string("\x01\0\0\0\x01\0\0\0k\x01\0\0\0v", 14);
  auto with_labels = decode_record(labelled);
  ASSERT_TRUE(with_labels) << with_labels.error().message();
  EXPECT_EQ(with_labels->metadata, (std::map<std::string, std::string>{{"k", "v"}}));
}

TEST(ResultRecord, MalformedMetadataTrailerIsCorrupted) {
  const JournalRecord plain = finished_record(ExecutionResult{}, "d");
  // A zero count is never written; three stray bytes are not a count; a count with no labels.
  for (const std::string& tail :
       {std::string(4, '\0'), std::string(3, '\1'), std::string("\x02\0\0\0", 4)}) {
    auto back = decode_record(encode_record(plain) + tail);
    ASSERT_FALSE(back);
    EXPECT_EQ(back.error().code(), ErrorCode::Corrupted);
  }
}

TEST(ResultRecord, StartIsTheEndMinusTheWallTimeAndNeverOverflows) {
  ExecutionResult r;
  r.wall = std::chrono::seconds(3);
  JournalRecord rec = finished_record(r, "d");
  EXPECT_EQ(rec.finished_unix_ns - rec.started_unix_ns, 3'000'000'000);
  // Impossible wall times (negative, or longer than the clock has run; a property test's random
  // results have them) start at the end rather than overflow.
  for (auto wall : {std::chrono::nanoseconds::min(), std::chrono::nanoseconds(-1),
                    std::chrono::nanoseconds::max()}) {
    r.wall = wall;
    rec = finished_record(r, "d");
    EXPECT_EQ(rec.started_unix_ns, rec.finished_unix_ns) << wall.count();
    EXPECT_EQ(rec.wall_ns, wall.count());
  }
  r.wall = std::chrono::seconds(3);
  r.from_cache = true;
  rec = finished_record(r, "d");
  EXPECT_EQ(rec.started_unix_ns, rec.finished_unix_ns);
}

TEST(ResultRecord, AllocationIsWrittenAsOneLineOfProvenance) {
  ExecutionResult r;
  r.name = "placed";
  r.allocation =
      task::Allocation{.attempt = 2,
                       .cpus = 2,
                       .cores = {0, 1},
                       .memory = 1 << 20,
                       .gpus = {{.id = "0", .fraction = 1.0}, {.id = "1", .fraction = 0.5}},
                       .named = {{"licenses", 1}},
                       .pids = 64};
  EXPECT_EQ(finished_record(r, "d").resources,
            "attempt=2 cpus=2.000000 cores=0,1 memory=1048576 gpus=0,1 licenses=1.000000 pids=64");
  // Only what was given is listed: an attempt with no resources names its attempt alone.
  r.allocation = task::Allocation{};
  EXPECT_EQ(finished_record(r, "d").resources, "attempt=1");
  // No allocation at all (a cached or replayed result): the field stays empty.
  r.allocation.reset();
  EXPECT_EQ(finished_record(r, "d").resources, "");
}

RC_GTEST_PROP(ResultRecord, RandomResultSurvivesTheJournal, ()) {
  ExecutionResult r = pepita::test::arbitrary_outcome();
  r.attempts = *rc::gen::arbitrary<std::uint32_t>();
  RC_ASSERT(same_outcome(through_journal(r), r));
}

}  // namespace
}  // namespace pepita::fault
