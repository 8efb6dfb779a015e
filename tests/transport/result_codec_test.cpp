// ExecutionResult <-> wire: every field survives a round trip (example and property), statuses
// map one-to-one, and truncated payloads (a protocol-1 Result among them) are Protocol errors.
#include "pepita/transport/result_codec.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "common/execution_result.hpp"

namespace pepita::transport {
namespace {

using executor::ExecutionResult;
using executor::Status;

::testing::AssertionResult same(const ExecutionResult& a, const ExecutionResult& b) {
  auto diff = [](const char* f) { return ::testing::AssertionFailure() << f << " differs"; };
  if (a.id != b.id) return diff("id");
  if (a.output_truncated() != b.output_truncated()) return diff("output_truncated()");
  return pepita::test::same_outcome_fields(a, b);
}

ExecutionResult sample() {
  ExecutionResult r;
  r.id = 42;
  r.name = "burn";
  r.status = Status::Signaled;
  r.exit_code = -1;
  r.signal = 9;
  r.wall = std::chrono::nanoseconds(1'234'567'890);
  r.cpu = std::chrono::nanoseconds(987'654'321);
  r.max_rss_kb = 65'536;
  r.stdout_data = std::string("out\0put", 7);
  r.stderr_data = "err";
  r.stdout_bytes = 1'000'000;  // the cap dropped the rest
  r.stderr_bytes = 3;
  r.error = "killed";
  return r;
}

TEST(ResultCodec, EveryFieldRoundTrips) {
  const ExecutionResult r = sample();
  auto back = decode_execution_result(encode_result(r, 3), r.id, r.name);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(same(*back, r));
  EXPECT_TRUE(back->output_truncated());
  const ResultMsg m = to_result_msg(r, 3);
  EXPECT_EQ(m.attempt, 3u);
  EXPECT_EQ(m.cpu_ns, 987'654'321);
  EXPECT_EQ(m.max_rss_kb, 65'536);
}

TEST(ResultCodec, StatusesMapOneToOne) {
  for (std::uint8_t s = 0; s < executor::kStatusCount; ++s) {
    const auto st = static_cast<Status>(s);
    EXPECT_EQ(to_executor_status(to_wire_status(st)), st) << executor::to_string(st);
  }
  EXPECT_EQ(to_executor_status(TaskStatus::Returned), Status::LaunchFailed);
  EXPECT_EQ(to_wire_status(Status::LaunchFailed), TaskStatus::SpawnError);
}

TEST(ResultCodec, TruncatedPayloadIsAProtocolErrorAtEveryLength) {
  const Bytes b = encode_result(sample(), 1);
  for (std::size_t n = 0; n < b.size(); ++n) {
    auto r = decode_execution_result(ByteSpan(b).first(n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
    EXPECT_NE(r.error().message().find("truncated"), std::string::npos) << r.error().message();
  }
  Bytes longer = b;
  longer.push_back(std::byte{0});
  auto t = decode_execution_result(longer);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message().find("trailing"), std::string::npos);
}

// A protocol-1 peer's Result stops after `error`. Such a frame is refused by its header version
// first (frame_test); should its payload ever reach the decoder, it is an error, never a result
// with cpu and rss silently read as zero.
TEST(ResultCodec, ProtocolOneResultPayloadIsRefused) {
  const Bytes v3 = encode_result(sample(), 1);  // no allocation: its presence byte only
  // Without cpu, rss and the two byte counts (protocol 2), and peak, limit and allocation (3).
  const std::size_t v1_size = v3.size() - 4 * 8 - (2 * 8 + 1);
  auto r = decode_execution_result(ByteSpan(v3).first(v1_size));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  EXPECT_NE(r.error().message().find("result payload truncated"), std::string::npos);
}

// A protocol-2 Result stops after the byte counts: refused, never read as "no allocation".
TEST(ResultCodec, ProtocolTwoResultPayloadIsRefused) {
  const Bytes v3 = encode_result(sample(), 1);
  auto r = decode_execution_result(ByteSpan(v3).first(v3.size() - (2 * 8 + 1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  EXPECT_NE(r.error().message().find("result payload truncated"), std::string::npos);
}

TEST(ResultCodec, PeakMemoryLimitAndAllocationRoundTrip) {
  ExecutionResult r = sample();
  r.status = Status::OutOfMemory;
  r.peak_memory = 314'572'800;
  r.memory_limit = 209'715'200;
  task::Allocation a;
  a.attempt = 2;
  a.cpus = 1.5;
  a.cores = {2, 3};
  a.memory = 209'715'200;
  a.gpus = {{"0", 0.5}, {"3", 1.0}};
  a.named = {{"license", 1}};
  a.pids = 64;
  r.allocation = a;
  auto back = decode_execution_result(encode_result(r, 2), r.id, r.name);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(same(*back, r));
  EXPECT_TRUE(pepita::test::same_resource_fields(*back, r));
  EXPECT_EQ(back->status, Status::OutOfMemory);
  ASSERT_TRUE(back->allocation.has_value());
  EXPECT_EQ(back->allocation->gpu_list(), "0,3");
}

TEST(ResultCodec, DriverMadeResultsWithoutCountsReadTheOutputSize) {
  ResultMsg m{.status = TaskStatus::Cancelled, .stdout_data = "abc"};
  auto r = to_execution_result(m, 1, "t");
  EXPECT_EQ(r.stdout_bytes, 3u);
  EXPECT_FALSE(r.output_truncated());
}

RC_GTEST_PROP(ResultCodec, RandomResultSurvivesTheWire, ()) {
  ExecutionResult r = pepita::test::arbitrary_outcome();
  r.id = *rc::gen::arbitrary<task::TaskId>();
  const auto attempt = *rc::gen::arbitrary<std::uint32_t>();
  const Bytes wire = encode_result(r, attempt);
  RC_ASSERT(decode_result(wire).value().attempt == attempt);
  auto back = decode_execution_result(wire, r.id, r.name);
  RC_ASSERT(back.has_value());
  RC_ASSERT(same(*back, r));
}

}  // namespace
}  // namespace pepita::transport

namespace pepita::transport {
namespace {

RC_GTEST_PROP(ResultCodec, RandomResultWithResourcesSurvivesTheWire, ()) {
  ExecutionResult r = pepita::test::arbitrary_outcome_with_resources();
  const auto attempt = *rc::gen::arbitrary<std::uint32_t>();
  auto back = decode_execution_result(encode_result(r, attempt), r.id, r.name);
  RC_ASSERT(back.has_value());
  RC_ASSERT(same(*back, r));
  RC_ASSERT(pepita::test::same_resource_fields(*back, r));
}

}  // namespace
}  // namespace pepita::transport
