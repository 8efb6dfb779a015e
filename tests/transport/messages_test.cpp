// Message payload codecs: round trips and truncation/trailing-byte rejection.
#include "pepita/transport/messages.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <limits>
#include <map>

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

task::Inventory sample_inventory() {
  task::Inventory inv;
  inv.cpus = {0, 1, 2, 3};
  inv.numa = {{0, {0, 1}}, {1, {2, 3}}};
  inv.memory = 4ull << 30;
  inv.gpus = {"0", "1"};
  inv.named = {{"license", 2}, {"ssd_gb", 100.5}};
  return inv;
}

task::Allocation sample_allocation() {
  task::Allocation a;
  a.attempt = 3;
  a.cpus = 2;
  a.cores = {4, 5};
  a.memory = 1ull << 30;
  a.gpus = {{"1", 0.5}};
  a.named = {{"license", 1}};
  a.pids = 128;
  return a;
}

TEST(Messages, RegisterCarriesTheWorkersInventory) {
  RegisterMsg reg{.slots = 8, .backends = {"process"}, .name = "gpu-box"};
  reg.inventory = sample_inventory();
  Bytes b = encode(reg);
  auto back = decode_register(b);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->inventory, reg.inventory);
  EXPECT_EQ(*back, reg);
  for (std::size_t n = 0; n < b.size(); ++n) {
    auto r = decode_register(ByteSpan(b).first(n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  }
}

TEST(Messages, SubmitCarriesTheAllocationAndEveryTruncationFails) {
  SubmitMsg m = sample_submit();
  m.allocation = sample_allocation();
  Bytes b = encode(m);
  auto back = decode_submit(b);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->allocation, m.allocation);
  for (std::size_t n = 0; n < b.size(); ++n) ASSERT_FALSE(decode_submit(ByteSpan(b).first(n))) << n;
  // Without one, the presence byte says so.
  m.allocation.reset();
  EXPECT_EQ(decode_submit(encode(m)).value().allocation, std::nullopt);
}

TEST(Messages, ResultCarriesPeakMemoryLimitAndAllocation) {
  ResultMsg res{.attempt = 2, .status = TaskStatus::OutOfMemory, .exit_code = -1, .signal = 9};
  res.peak_memory = 300ull << 20;
  res.memory_limit = 200ull << 20;
  res.allocation = sample_allocation();
  EXPECT_EQ(decode_result(encode(res)).value(), res);
}

TEST(Messages, NegativeOrNotANumberAmountsAreProtocolErrors) {
  for (double bad :
       {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    SubmitMsg m = sample_submit();
    m.allocation = sample_allocation();
    m.allocation->cpus = bad;
    auto r = decode_submit(encode(m));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
    EXPECT_NE(r.error().message().find("bad amount"), std::string::npos) << r.error().message();
    RegisterMsg reg;
    reg.inventory.named["license"] = bad;
    EXPECT_FALSE(decode_register(encode(reg))) << bad;
  }
}

RC_GTEST_PROP(MessagesProp, InventoryAndAllocationRoundTrip,
              (std::vector<unsigned> cpus, std::uint64_t memory, std::vector<std::string> gpus,
               std::map<std::string, std::uint16_t> named)) {
  RegisterMsg reg;
  reg.inventory.cpus = cpus;
  reg.inventory.numa[0] = cpus;
  reg.inventory.memory = memory;
  reg.inventory.gpus = gpus;
  for (const auto& [k, v] : named) reg.inventory.named[k] = v / 4.0;
  auto back = decode_register(encode(reg));
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == reg);
  SubmitMsg m;
  task::Allocation a;
  a.cores = cpus;
  a.memory = memory;
  for (const auto& g : gpus) a.gpus.push_back({g, 0.25});
  a.named = reg.inventory.named;
  m.allocation = a;
  auto sub = decode_submit(encode(m));
  RC_ASSERT(sub.has_value());
  RC_ASSERT(*sub == m);
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

TEST(Messages, EachTaskStatusHasItsOwnName) {
  const std::map<TaskStatus, std::string_view> names = {
      {TaskStatus::Succeeded, "succeeded"}, {TaskStatus::Failed, "failed"},
      {TaskStatus::Signaled, "signaled"},   {TaskStatus::TimedOut, "timed-out"},
      {TaskStatus::Cancelled, "cancelled"}, {TaskStatus::SpawnError, "spawn-error"},
      {TaskStatus::Returned, "returned"},   {TaskStatus::Skipped, "skipped"},
      {TaskStatus::Rejected, "rejected"},   {TaskStatus::OutOfMemory, "oom"},
      {TaskStatus::Sandboxed, "sandbox"}};
  ASSERT_EQ(names.size(), kMaxTaskStatus + 1u) << "a status without a name here";
  for (const auto& [status, name] : names) EXPECT_EQ(to_string(status), name);
  EXPECT_EQ(to_string(static_cast<TaskStatus>(kMaxTaskStatus + 1)), "unknown");
}

}  // namespace
}  // namespace pepita::transport
