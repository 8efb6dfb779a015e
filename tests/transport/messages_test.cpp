// Message payload codecs: round trips and truncation/trailing-byte rejection.
#include "pepita/transport/messages.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace pepita::transport {
namespace {

SubmitMsg sample_submit() {
  SubmitMsg m;
  m.attempt = 2;
  m.path = "/bin/echo";
  m.args = {"a", "b c"};
  m.env = {{"K", "V"}};
  m.inherit_env = false;
  m.cwd = "/tmp";
  m.stdin_data = std::string("in\0put", 6);
  m.timeout_ns = 5'000'000'000;
  m.output_cap = 1024;
  m.files.push_back({.name = "data.txt", .sha256 = sha256(as_bytes("x")), .executable = true});
  return m;
}

TEST(Messages, SubmitRoundTripAndEveryTruncationFails) {
  SubmitMsg m = sample_submit();
  Bytes b = encode(m);
  auto back = decode_submit(b);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, m);
  for (std::size_t n = 0; n < b.size(); ++n) {
    auto r = decode_submit(ByteSpan(b).first(n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  }
  b.push_back(std::byte{0});
  EXPECT_FALSE(decode_submit(b));
}

TEST(Messages, HugeCountsAndLengthsAreRefusedWithoutAllocating) {
  Bytes b;
  put_u32(b, 0);
  b.push_back(std::byte{1});
  put_u32(b, 0xFFFFFFF0u);  // path length far past the end
  EXPECT_FALSE(decode_submit(b));
  Bytes r;
  put_u32(r, 4);
  put_u32(r, 0x7FFFFFFFu);  // backend count
  auto reg = decode_register(r);
  ASSERT_FALSE(reg);
  EXPECT_NE(reg.error().message().find("exceeds"), std::string::npos);
}

TEST(Messages, OtherMessagesRoundTrip) {
  RegisterMsg reg{
      .slots = 4, .backends = {"process", "cpu"}, .labels = {{"gpu", "no"}}, .name = "w1"};
  EXPECT_EQ(decode_register(encode(reg)).value(), reg);
  ResultMsg res{.attempt = 1,
                .status = TaskStatus::Signaled,
                .exit_code = -1,
                .signal = 9,
                .wall_ns = 123,
                .stdout_data = "out",
                .stderr_data = "err",
                .error = "e"};
  EXPECT_EQ(decode_result(encode(res)).value(), res);
  HeartbeatMsg hb{.sent_ns = 99, .free_slots = 2, .running = 1};
  EXPECT_EQ(decode_heartbeat(encode(hb)).value(), hb);
  UploadMsg up{.sha256 = sha256(as_bytes("blob")), .data = "blob"};
  EXPECT_EQ(decode_upload(encode(up)).value(), up);
  HaveBlobMsg have{.sha256 = up.sha256, .present = true};
  EXPECT_EQ(decode_have_blob(encode(have)).value(), have);
  ErrorMsg err{.code = 3, .reason = "nope"};
  EXPECT_EQ(decode_error(encode(err)).value(), err);
  EXPECT_EQ(decode_started(encode(StartedMsg{7})).value().attempt, 7u);
  Bytes bad_status = encode(res);
  bad_status[4] = std::byte{99};
  EXPECT_FALSE(decode_result(bad_status));
}

RC_GTEST_PROP(MessagesProp, SubmitRoundTrips,
              (std::string path, std::vector<std::string> args, std::string input,
               std::uint64_t timeout)) {
  SubmitMsg m;
  m.path = path;
  m.args = args;
  m.stdin_data = input;
  m.timeout_ns = timeout;
  auto back = decode_submit(encode(m));
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == m);
}

RC_GTEST_PROP(MessagesProp, GarbageNeverCrashes, (std::vector<std::uint8_t> raw)) {
  Bytes b(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) b[i] = std::byte{raw[i]};
  (void)decode_submit(b);
  (void)decode_result(b);
  (void)decode_register(b);
  (void)decode_upload(b);
  RC_SUCCEED("no crash");
}

}  // namespace
}  // namespace pepita::transport
