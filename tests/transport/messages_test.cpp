// Message payload codecs: round trips and truncation/trailing-byte rejection, each bound at its
// last accepted and first refused value with the message a peer or user reads, and
// check_staged_path's reasons.
#include "pepita/transport/messages.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>

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

// The error a decoder gives for `b`, or "accepted"; every refusal is a Protocol error.
template <typename Decode>
std::string decode_error_of(Decode decode, ByteSpan b) {
  auto r = decode(b);
  if (r) return "accepted";
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol) << r.error().message();
  return r.error().message();
}

TEST(Messages, EveryDecoderRefusesTrailingBytesNamingItsMessageAndTheirCount) {
  const auto trailing = [](Bytes b, auto decode) {
    b.insert(b.end(), 3, std::byte{0});
    return decode_error_of(decode, b);
  };
  EXPECT_EQ(trailing(encode(RegisterMsg{}), decode_register),
            "register payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(SubmitMsg{}), decode_submit), "submit payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(StartedMsg{}), decode_started), "started payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(LogMsg{.stream = 1}), decode_log), "log payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(ResultMsg{}), decode_result), "result payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(FetchBlobMsg{.length = 1}), decode_fetch_blob),
            "fetch-blob payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(BlobChunkMsg{}), decode_blob_chunk),
            "blob-chunk payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(OutputChunkMsg{}), decode_output_chunk),
            "output-chunk payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(HeartbeatMsg{}), decode_heartbeat),
            "heartbeat payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(UploadMsg{}), decode_upload), "upload payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(HaveBlobMsg{}), decode_have_blob),
            "have-blob payload has 3 trailing bytes");
  EXPECT_EQ(trailing(encode(ErrorMsg{}), decode_error), "error payload has 3 trailing bytes");
}

TEST(Messages, AListOfExactly65536ItemsIsTakenAndOneMoreIsRefusedNamingBoth) {
  RegisterMsg reg;
  reg.backends.resize(std::size_t{1} << 16);
  auto back = decode_register(encode(reg));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->backends.size(), std::size_t{1} << 16);
  reg.backends.emplace_back();
  EXPECT_EQ(decode_error_of(decode_register, encode(reg)),
            "register: list of 65537 items exceeds 65536");
}

TEST(Messages, SubmitTakesBothTaskKindsAndRefusesOthersByNumber) {
  SubmitMsg m = sample_submit();
  m.kind = TaskKind::Function;
  EXPECT_EQ(decode_submit(encode(m)).value(), m);
  for (std::uint8_t kind : {0, 3}) {
    Bytes b = encode(m);
    b[4] = std::byte{kind};  // after the u32 attempt
    EXPECT_EQ(decode_error_of(decode_submit, b),
              "submit: unknown task kind " + std::to_string(kind));
  }
}

TEST(Messages, SubmitCarriesInheritEnvAndAnExecutableBitOfEitherValue) {
  SubmitMsg m = sample_submit();
  m.inherit_env = true;
  m.files.push_back({.name = "plain.txt", .sha256 = sha256(as_bytes("y")), .executable = false});
  auto back = decode_submit(encode(m));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_TRUE(back->inherit_env);
  ASSERT_EQ(back->files.size(), 2u);
  EXPECT_TRUE(back->files[0].executable);
  EXPECT_FALSE(back->files[1].executable);
}

TEST(Messages, HaveBlobSaysAbsentAsWellAsPresent) {
  for (bool present : {false, true}) {
    HaveBlobMsg have{.sha256 = sha256(as_bytes("blob")), .present = present};
    EXPECT_EQ(decode_have_blob(encode(have)).value(), have) << present;
  }
}

TEST(Messages, EveryTaskStatusRoundTripsAndTheNextIsRefusedByNumber) {
  for (std::uint8_t s = 0; s <= kMaxTaskStatus; ++s) {
    const ResultMsg res{.attempt = 1, .status = static_cast<TaskStatus>(s)};
    EXPECT_EQ(decode_result(encode(res)).value(), res) << to_string(res.status);
  }
  Bytes b = encode(ResultMsg{});
  b[4] = std::byte{kMaxTaskStatus + 1};  // after the u32 attempt
  EXPECT_EQ(decode_error_of(decode_result, b),
            "result: unknown status " + std::to_string(kMaxTaskStatus + 1));
}

TEST(Messages, LogTakesStdoutAndStderrAndRefusesStreamZeroNamingIt) {
  const LogMsg out{.stream = 1, .data = "line\n"};
  EXPECT_EQ(decode_log(encode(out)).value(), out);
  EXPECT_EQ(decode_error_of(decode_log, encode(LogMsg{.stream = 0, .data = "x"})),
            "log frame names stream 0; only 1 (stdout) and 2 (stderr) exist");
}

TEST(Messages, FetchBlobTakesLengthsFromOneToTheLargestChunk) {
  for (std::uint32_t length : {1u, kMaxChunk}) {
    const FetchBlobMsg m{.sha256 = sha256(as_bytes("b")), .offset = 9, .length = length};
    EXPECT_EQ(decode_fetch_blob(encode(m)).value(), m) << length;
  }
  for (std::uint32_t length : {0u, kMaxChunk + 1}) {
    EXPECT_EQ(decode_error_of(decode_fetch_blob, encode(FetchBlobMsg{.length = length})),
              "fetch-blob: length " + std::to_string(length) + " is not in 1..4194304");
  }
}

// BlobChunk and OutputChunk share their bounds: at most kMaxChunk bytes, lying inside [0, size].
template <typename Chunk, typename Decode>
void expect_chunk_bounds(Decode decode, const std::string& what) {
  const auto chunk = [](std::uint64_t offset, std::uint64_t size, std::string data) {
    Chunk c;
    c.offset = offset;
    c.size = size;
    c.data = std::move(data);
    return c;
  };
  const auto accepts = [&](const Chunk& c) {
    auto back = decode(encode(c));
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, c);
  };
  accepts(chunk(0, kMaxChunk, std::string(kMaxChunk, 'x')));  // the largest chunk
  accepts(chunk(1, 5, "bcde"));                               // exactly to the end
  accepts(chunk(7, 7, ""));                                   // empty, at the end
  EXPECT_EQ(
      decode_error_of(decode, encode(chunk(0, 2 * kMaxChunk, std::string(kMaxChunk + 1, 'x')))),
      what + ": 4194305 bytes at offset 0 do not fit a " +
          (what == "blob-chunk" ? "blob" : "file") + " of 8388608 bytes");
  EXPECT_EQ(decode_error_of(decode, encode(chunk(1, 5, "bcdef"))),
            what + ": 5 bytes at offset 1 do not fit a " +
                (what == "blob-chunk" ? "blob" : "file") + " of 5 bytes");
  EXPECT_NE(decode_error_of(decode, encode(chunk(8, 7, ""))), "accepted");
}

TEST(Messages, BlobChunksTakeUpToTheLargestChunkInsideTheBlob) {
  expect_chunk_bounds<BlobChunkMsg>(decode_blob_chunk, "blob-chunk");
}

TEST(Messages, OutputChunksTakeUpToTheLargestChunkInsideTheFile) {
  expect_chunk_bounds<OutputChunkMsg>(decode_output_chunk, "output-chunk");
}

// check_staged_path's message for `path` (as an output), or "accepted".
std::string staged_path_error(std::string_view path) {
  auto r = check_staged_path(path, "output");
  if (r) return "accepted";
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << r.error().message();
  const std::string prefix = "output path '" + std::string(path) + "' ";
  EXPECT_EQ(r.error().message().substr(0, prefix.size()), prefix);
  return r.error().message().substr(std::min(prefix.size(), r.error().message().size()));
}

TEST(Messages, StagedPathsAreRefusedWithTheReasonAndUpTo4096BytesTaken) {
  for (const char* ok : {"a", "a/b.txt", "..a/b.", ".hidden/x..y"}) {
    EXPECT_EQ(staged_path_error(ok), "accepted") << ok;
  }
  EXPECT_EQ(staged_path_error(std::string(4096, 'a')), "accepted");
  EXPECT_EQ(staged_path_error(std::string(4097, 'a')), "is longer than 4096 bytes");
  EXPECT_EQ(staged_path_error(""), "is empty; declare a file relative to the task's directory");
  EXPECT_EQ(staged_path_error(std::string_view("a\0b", 3)), "contains a NUL byte");
  EXPECT_EQ(staged_path_error("/etc/passwd"),
            "is absolute; declare it relative to the task's working directory");
  for (const char* up : {"../b", "a/..", "a/../b"}) {
    EXPECT_EQ(staged_path_error(up), "has a '..' component: it would leave the task's directory")
        << up;
  }
  for (const char* dot : {"./b", "a/./b", "a/."}) {
    EXPECT_EQ(staged_path_error(dot), "has a '.' component; write it without") << dot;
  }
  EXPECT_EQ(staged_path_error("a//b"), "has an empty component ('//')");
  EXPECT_EQ(staged_path_error("dir/"), "ends in '/': declare files, not directories");
}

}  // namespace
}  // namespace pepita::transport
