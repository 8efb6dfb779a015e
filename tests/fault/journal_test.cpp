#include "pepita/fault/journal.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "common/child.hpp"
#include "common/temp_dir.hpp"
#include "fault/journal_files.hpp"
#include "pepita/core/sha256.hpp"

namespace pepita::fault {
namespace {

using pepita::test::TempDir;
using test::make_frame;
using test::read_file;
using test::write_file;

namespace fs = std::filesystem;

JournalRecord finished(const std::string& name, int code) {
  JournalRecord r;
  r.type = RecordType::Finished;
  r.name = name;
  r.spec_digest = "d-" + name;
  r.attempt = 2;
  r.status = 1;
  r.exit_code = code;
  r.signal = 0;
  r.wall_ns = 123456789;
  r.cpu_ns = -1;
  r.max_rss_kb = 4096;
  r.stdout_data = "out of " + name + std::string(100, 'x');
  r.stderr_data = "err";
  r.error = "";
  return r;
}

TEST(Journal, RoundTripsAcrossReopen) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    JournalRecord sub;
    sub.name = "a";
    sub.spec_digest = "d-a";
    ASSERT_TRUE((*j)->append(sub));
    ASSERT_TRUE((*j)->append(finished("a", 0)));
    (*j)->commit();
    ASSERT_TRUE((*j)->sync());
  }
  auto j = Journal::open(path, Journal::Mode::Resume);
  ASSERT_TRUE(j) << j.error().message();
  ASSERT_EQ((*j)->recovered().size(), 2u);
  EXPECT_EQ((*j)->recovered()[0].name, "a");
  auto expect = finished("a", 0);
  const auto& got = (*j)->recovered()[1];
  EXPECT_EQ(got.stdout_data, expect.stdout_data);
  EXPECT_EQ(got.wall_ns, expect.wall_ns);
  EXPECT_EQ(got.cpu_ns, -1);
  EXPECT_EQ(got.output_digest.size(), 64u);  // SHA-256 of stdout filled in
  EXPECT_EQ((*j)->torn_bytes(), 0u);
  // Truncate mode forgets everything.
  auto fresh = Journal::open(path, Journal::Mode::Truncate);
  ASSERT_TRUE(fresh);
  EXPECT_TRUE((*fresh)->recovered().empty());
  EXPECT_EQ(read_journal(path)->records.size(), 0u);
}

TEST(Journal, TornLastRecordAtEveryOffsetIsDroppedAndAppendable) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  std::uint64_t before_last = 0;
  std::string full;  // the file as a crash would leave it: no End record
  {
    auto j = Journal::open(path, Journal::Mode::Truncate).value();
    ASSERT_TRUE(j->append(finished("a", 0)));
    ASSERT_TRUE(j->append(finished("b", 1)));
    ASSERT_TRUE(j->sync());
    before_last = fs::file_size(path);
    ASSERT_TRUE(j->append(finished("c", 2)));
    ASSERT_TRUE(j->sync());
    full = read_file(path);
  }
  ASSERT_GT(full.size(), before_last);
  const auto torn_path = dir.file("torn");
  for (std::size_t cut = before_last; cut <= full.size(); ++cut) {
    write_file(torn_path, std::string_view(full).substr(0, cut));
    auto rec = read_journal(torn_path);
    ASSERT_TRUE(rec) << "cut " << cut << ": " << rec.error().message();
    const bool whole = cut == full.size();
    ASSERT_EQ(rec->records.size(), whole ? 3u : 2u) << "cut " << cut;
    EXPECT_EQ(rec->records[1].name, "b");
    EXPECT_EQ(rec->torn_bytes, whole ? 0u : cut - before_last);
    // Reopen for resume: the torn tail is cut and a new record lands on a clean boundary.
    {
      auto j = Journal::open(torn_path, Journal::Mode::Resume);
      ASSERT_TRUE(j) << j.error().message();
      ASSERT_TRUE((*j)->append(finished("d", 3)));
    }
    auto again = read_journal(torn_path);
    ASSERT_TRUE(again);
    ASSERT_EQ(again->records.size(), whole ? 4u : 3u) << "cut " << cut;
    EXPECT_EQ(again->records.back().name, "d");
    EXPECT_EQ(again->torn_bytes, 0u);
  }
}

TEST(Journal, FlippedBitInTailIsTornButInMiddleIsCorruption) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  std::string data;  // as a crash leaves it (no End record)
  {
    auto j = Journal::open(path, Journal::Mode::Truncate).value();
    ASSERT_TRUE(j->append(finished("a", 0)));
    ASSERT_TRUE(j->append(finished("b", 0)));
    ASSERT_TRUE(j->sync());
    data = read_file(path);
  }
  std::string tail = data;
  tail[tail.size() - 3] ^= 0x10;
  write_file(path, tail);
  auto rec = read_journal(path);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->records.size(), 1u);

  std::string middle = data;
  middle[8 + 8 + 3] ^= 0x10;  // inside the first record's payload
  write_file(path, middle);
  auto bad = read_journal(path);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::Corrupted);
  EXPECT_FALSE(Journal::open(path, Journal::Mode::Resume));

  // Zero fill after the last record (delayed allocation after a crash) is a torn tail.
  write_file(path, data + std::string(100, '\0'));
  auto zero = read_journal(path);
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->records.size(), 2u);
  EXPECT_EQ(zero->torn_bytes, 100u);
}

TEST(Journal, RejectsForeignFilesAndToleratesMissing) {
  TempDir dir{"journal"};
  auto missing = read_journal(dir.file("nope"));
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->records.empty());
  write_file(dir.file("foreign"), "hello world, not a journal");
  auto foreign = Journal::open(dir.file("foreign"), Journal::Mode::Resume);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message().find("not a pepita journal"), std::string::npos);
  write_file(dir.file("short"), "PEPJ");  // magic torn at creation
  auto j = Journal::open(dir.file("short"), Journal::Mode::Resume);
  ASSERT_TRUE(j) << j.error().message();
  EXPECT_TRUE((*j)->recovered().empty());
  EXPECT_FALSE(Journal::open("", Journal::Mode::Resume));
  EXPECT_FALSE(Journal::open("/nonexistent-dir/j", Journal::Mode::Truncate));
}

RC_GTEST_PROP(Journal, DecodeNeverCrashesOnGarbage, (std::string payload)) {
  auto r = decode_record(payload);
  if (!r) return;
  // Older formats re-encode as format 3 (byte counts, metadata and provenance added); what the
  // re-encoding decodes to is the same record.
  auto again = decode_record(encode_record(*r));
  RC_ASSERT(again.has_value());
  RC_ASSERT(*again == *r);
}

// A journal written before format 2 ("PEPJRNL1", Finished records without byte counts) still
// resumes: its records load with the counts read as the output sizes, the file is rewritten as
// format 3 (hash-chained), and records appended after it load too.
TEST(Journal, FormatOneJournalStillLoadsAndResumes) {
  TempDir dir{"journal"};
  const auto path = dir.file("old");
  JournalRecord old_rec = finished("a", 3);
  old_rec.output_digest = std::string(64, 'f');
  std::string payload = encode_record(old_rec);
  // Format 3's trailer of a record without metadata or provenance: metadata count (4), from_cache
  // (1), host, binary (4 + 4), two empty maps (4 + 4), resources (4), two times (8 + 8).
  constexpr std::size_t kV3Trailer = 41;
  payload.resize(payload.size() - kV3Trailer - 16);  // format 1 ends after `error`
  write_file(path, "PEPJRNL1" + make_frame(payload));

  auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  EXPECT_EQ(rec->format, 1u);
  ASSERT_EQ(rec->records.size(), 1u);
  JournalRecord expect = old_rec;
  expect.stdout_bytes = expect.stdout_data.size();
  expect.stderr_bytes = expect.stderr_data.size();
  EXPECT_EQ(rec->records[0], expect);
  {
    auto j = Journal::open(path, Journal::Mode::Resume);
    ASSERT_TRUE(j) << j.error().message();
    ASSERT_EQ((*j)->recovered().size(), 1u);
    JournalRecord now = finished("b", 0);
    now.stdout_bytes = 1 << 20;
    ASSERT_TRUE((*j)->append(now));
    ASSERT_TRUE((*j)->sync());
  }
  EXPECT_EQ(read_file(path).substr(0, 8), "PEPJRNL3");
  auto after = read_journal(path);
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->format, 3u);
  ASSERT_EQ(after->records.size(), 2u);
  EXPECT_EQ(after->records[0], expect);
  EXPECT_EQ(after->records[1].stdout_bytes, 1u << 20);
}

// A record whose CRC32C matches but whose bytes do not decode (a format-1 journal: no chain to
// check first) is a torn tail when it is the last record, and damage when intact data follows.
TEST(Journal, RecordWithAGoodCrcThatDoesNotDecodeIsTornAtTheEndAndCorruptionBefore) {
  TempDir dir{"journal"};
  const auto path = dir.file("old");
  const std::string good = make_frame(encode_record(finished("a", 0)));
  const std::string junk = make_frame(std::string(5, '\xff'));  // no record type is 0xff

  write_file(path, "PEPJRNL1" + good + junk);
  auto torn = read_journal(path);
  ASSERT_TRUE(torn) << torn.error().message();
  ASSERT_EQ(torn->records.size(), 1u);
  EXPECT_EQ(torn->records[0].name, "a");
  EXPECT_EQ(torn->valid_bytes, 8 + good.size());
  EXPECT_EQ(torn->torn_bytes, junk.size());

  write_file(path, "PEPJRNL1" + junk + good);
  auto damaged = read_journal(path);
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().code(), ErrorCode::Corrupted);
  EXPECT_NE(damaged.error().message().find(": record at byte 8 does not decode and intact data "
                                           "follows; the journal is damaged. Move it away or run "
                                           "without --resume"),
            std::string::npos)
      << damaged.error().message();
  EXPECT_EQ(read_file(path), "PEPJRNL1" + junk + good) << "reading changes nothing";
}

RC_GTEST_PROP(Journal, EncodeDecodeRoundTrip,
              (std::string name, std::string out, std::int32_t code, std::uint32_t attempt)) {
  JournalRecord r = finished(name, code);
  r.stdout_data = out;
  r.attempt = attempt;
  auto back = decode_record(encode_record(r));
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == r);
}

// The record type is the body's first byte: 1 to 3 decode, any other value is Corrupted.
TEST(Journal, DecodeRefusesARecordTypeOutsideOneToThree) {
  JournalRecord started;
  started.type = RecordType::Started;
  started.name = "a";
  started.attempt = 2;
  std::string payload = encode_record(started);
  auto back = decode_record(payload);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, started);
  for (const int type : {0, 4, 255}) {
    payload[0] = static_cast<char>(type);
    auto bad = decode_record(payload);
    ASSERT_FALSE(bad) << "type " << type;
    EXPECT_EQ(bad.error().code(), ErrorCode::Corrupted) << "type " << type;
  }
}

// A body cut anywhere is malformed, except where an older format ends: after `error` (format 1:
// the byte counts read as the output sizes) and after the byte counts (format 2 without labels).
// A zero label count is never written, so a body that ends with one is malformed too.
TEST(Journal, ACutRecordBodyIsMalformedExceptWhereAnOlderFormatEnds) {
  JournalRecord r = finished("cut", 7);
  r.output_digest = std::string(64, 'e');
  r.stdout_bytes = 1000;
  r.stderr_bytes = 2000;
  r.from_cache = true;
  r.host = "h";
  r.input_hashes = {{"in", "1"}};
  r.started_unix_ns = 5;
  r.finished_unix_ns = 6;
  const std::string body = encode_record(r);
  JournalRecord v2 = r;
  v2.from_cache = false;
  v2.host.clear();
  v2.input_hashes.clear();
  v2.started_unix_ns = v2.finished_unix_ns = 0;
  // Without labels or provenance, format 3's trailer is 41 bytes (FormatOneJournalStillLoads...).
  const std::size_t v2_end = encode_record(v2).size() - 41;
  const std::size_t v1_end = v2_end - 16;
  JournalRecord v1 = v2;
  v1.stdout_bytes = r.stdout_data.size();
  v1.stderr_bytes = r.stderr_data.size();
  for (std::size_t n = 0; n < body.size(); ++n) {
    const auto back = decode_record(std::string_view(body).substr(0, n));
    if (n == v1_end || n == v2_end) {
      ASSERT_TRUE(back) << "cut at " << n << ": " << back.error().message();
      EXPECT_EQ(*back, n == v1_end ? v1 : v2) << "cut at " << n;
    } else {
      ASSERT_FALSE(back) << "cut at " << n << " of " << body.size() << " decoded";
      EXPECT_EQ(back.error().code(), ErrorCode::Corrupted);
    }
  }
  const auto whole = decode_record(body);
  ASSERT_TRUE(whole) << whole.error().message();
  EXPECT_EQ(*whole, r);
}

// The encoder sizes its buffer from the name and the outputs: a long name with no output, and a
// large stderr with a short name and no stdout, encode and decode whole.
TEST(Journal, LongNamesAndLargeStderrWithoutStdoutRoundTrip) {
  JournalRecord long_name = finished(std::string(300, 'n'), 0);
  long_name.stdout_data.clear();
  long_name.stderr_data.clear();
  JournalRecord large_stderr = finished("e", 1);
  large_stderr.stdout_data.clear();
  large_stderr.stderr_data = std::string(1000, 'e');
  for (const JournalRecord& r : {long_name, large_stderr}) {
    const auto back = decode_record(encode_record(r));
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, r);
  }
}

// Issue 27: stage() buffers records (none reach the file) until flush() writes them with one
// write(2), in order with append()ed ones; the chain holds across the batch and across reopen.
TEST(Journal, StagedRecordsReachTheFileOnlyAtFlushInOrderAndChained) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    JournalRecord sub;
    sub.name = "a";
    sub.spec_digest = "d-a";
    ASSERT_TRUE((*j)->append(sub));
    const auto size_after_append = fs::file_size(path);
    ASSERT_TRUE((*j)->stage(finished("a", 0)));
    sub.name = "b";
    ASSERT_TRUE((*j)->stage(sub));
    EXPECT_EQ(fs::file_size(path), size_after_append);  // staged: nothing written yet
    EXPECT_EQ(read_journal(path)->records.size(), 1u);
    ASSERT_TRUE((*j)->flush());
    EXPECT_GT(fs::file_size(path), size_after_append);
    EXPECT_EQ(read_journal(path)->records.size(), 3u);
    ASSERT_TRUE((*j)->flush());  // nothing staged: nothing written
    // An append after staged records writes them first, then itself.
    ASSERT_TRUE((*j)->stage(finished("b", 3)));
    JournalRecord c;
    c.name = "c";
    ASSERT_TRUE((*j)->append(c));
    EXPECT_EQ(read_journal(path)->records.size(), 5u);
    // sync() and close() write what is staged too.
    ASSERT_TRUE((*j)->stage(finished("c", 0)));
    ASSERT_TRUE((*j)->sync());
    EXPECT_EQ(read_journal(path)->records.size(), 6u);
    ASSERT_TRUE((*j)->stage(finished("d", 0)));
  }  // the destructor closes: the staged record, then the End record
  const auto verified = verify_journal(path);
  ASSERT_TRUE(verified) << verified.error().message();
  EXPECT_TRUE(verified->valid) << verified->reason;
  EXPECT_TRUE(verified->ended);
  EXPECT_EQ(verified->records, 7u);
  auto j = Journal::open(path, Journal::Mode::Resume);
  ASSERT_TRUE(j) << j.error().message();
  const auto& got = (*j)->recovered();
  ASSERT_EQ(got.size(), 7u);
  const std::vector<std::pair<std::string, RecordType>> want = {
      {"a", RecordType::Submitted}, {"a", RecordType::Finished},  {"b", RecordType::Submitted},
      {"b", RecordType::Finished},  {"c", RecordType::Submitted}, {"c", RecordType::Finished},
      {"d", RecordType::Finished}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].first) << i;
    EXPECT_EQ(got[i].type, want[i].second) << i;
  }
  EXPECT_EQ(got[3].exit_code, 3);
  // The output digest is filled in for staged records as for appended ones.
  EXPECT_EQ(got[1].output_digest, sha256_hex(finished("a", 0).stdout_data));
}

// Finished records with no stdout carry the SHA-256 of no bytes.
TEST(Journal, EmptyStdoutGetsTheDigestOfNoBytes) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    JournalRecord r = finished("e", 0);
    r.stdout_data.clear();
    ASSERT_TRUE((*j)->stage(r));
    ASSERT_TRUE((*j)->append(finished("f", 0)));
  }
  auto rec = read_journal(path);
  ASSERT_TRUE(rec);
  ASSERT_EQ(rec->records.size(), 2u);
  EXPECT_EQ(rec->records[0].output_digest, sha256_hex(""));
  EXPECT_EQ(rec->records[1].output_digest, sha256_hex(finished("f", 0).stdout_data));
}

// append() fills in the output digest only of a Finished record that has none: a digest the
// caller set is kept, and a Submitted or Started record gets none.
TEST(Journal, OnlyAFinishedRecordWithoutAnOutputDigestGetsOne) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  JournalRecord sub;
  sub.name = "s";
  JournalRecord start;
  start.type = RecordType::Started;
  start.name = "s";
  start.attempt = 1;
  JournalRecord given = finished("g", 0);
  given.output_digest = std::string(64, 'c');
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    for (const JournalRecord& r : {sub, start, given}) ASSERT_TRUE((*j)->append(r));
  }
  auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 3u);
  EXPECT_EQ(rec->records[0], sub);
  EXPECT_EQ(rec->records[1], start);
  EXPECT_EQ(rec->records[2], given);
}

// Staged records are written as soon as the batch reaches 256 KiB (one record whose frame is
// exactly that), not before (a record one byte short of it waits for flush()); the journal, well
// over one 64 KiB read, reads back whole.
TEST(Journal, AStagedBatchIsWrittenWhenItReaches256KiB) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  constexpr std::size_t kLimit = 256 << 10;
  // A Submitted record's frame: 8 (frame) + 41 (chain header) + 1 + 4 + name + 4 + 0 + 4.
  auto with_frame_of = [](std::size_t frame) {
    JournalRecord r;
    r.name = std::string(frame - 8 - 41 - 13, 'x');
    return r;
  };
  auto j = Journal::open(path, Journal::Mode::Truncate);
  ASSERT_TRUE(j) << j.error().message();
  ASSERT_TRUE((*j)->stage(with_frame_of(kLimit)));
  EXPECT_EQ(fs::file_size(path), 8 + kLimit) << "a batch of 256 KiB waited for flush()";
  ASSERT_TRUE((*j)->stage(with_frame_of(kLimit - 1)));
  EXPECT_EQ(fs::file_size(path), 8 + kLimit) << "a batch under 256 KiB was written";
  ASSERT_TRUE((*j)->flush());
  EXPECT_EQ(fs::file_size(path), 8 + 2 * kLimit - 1);
  ASSERT_TRUE((*j)->close());
  const auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 2u);
  EXPECT_EQ(rec->records[0], with_frame_of(kLimit));
  EXPECT_EQ(rec->records[1], with_frame_of(kLimit - 1));
  EXPECT_TRUE(rec->ended);
}

// The payload limit (chain header and body, 256 MiB): a record one byte over it is refused before
// anything is written, naming the record and what to lower, and the journal goes on; a record of
// exactly the limit is written and reads back.
TEST(Journal, ARecordOver256MiBIsRefusedAndOneOfExactly256MiBIsWritten) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  constexpr std::size_t kMax = std::size_t{256} << 20;
  // A Submitted record's payload: 41 (chain header) + 1 + 4 + name (3) + 4 + spec_digest + 4.
  auto with_payload_of = [](std::size_t payload) {
    JournalRecord r;
    r.name = "big";
    r.spec_digest = std::string(payload - 41 - 13 - 3, 's');
    return r;
  };
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    const auto over = (*j)->append(with_payload_of(kMax + 1));
    ASSERT_FALSE(over) << "a record over 256 MiB was written";
    EXPECT_EQ(over.error().code(), ErrorCode::ResourceExhausted);
    EXPECT_EQ(over.error().message(),
              "journal record for 'big' is over 256 MiB; lower the output cap");
    EXPECT_EQ(fs::file_size(path), 8u);
    ASSERT_TRUE((*j)->append(with_payload_of(kMax)));
    EXPECT_EQ(fs::file_size(path), 8 + 8 + kMax);
  }
  const auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 1u);
  EXPECT_EQ(rec->records[0].spec_digest.size(), kMax - 57);
  EXPECT_TRUE(rec->ended);
}

// The chain links each record to the SHA-256 of the payload before it (sha256_raw keeps one
// OpenSSL context per thread, issue 27): checked here against core's Sha256.
TEST(Journal, EachStagedRecordCarriesTheSha256OfThePayloadBeforeIt) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*j)->stage(finished("t" + std::to_string(i), i)));
    ASSERT_TRUE((*j)->flush());
  }
  const std::string data = read_file(path);
  // Frames after the 8-byte magic: [u32 len][u32 crc][payload]; payload = [u8 keyed][u64 seq]
  // [32 bytes: SHA-256 of the previous payload]...
  std::vector<std::string_view> payloads;
  for (std::size_t pos = 8; pos + 8 <= data.size();) {
    std::uint32_t len = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      len |= std::uint32_t{static_cast<unsigned char>(data[pos + i])} << (8 * i);
    }
    payloads.push_back(std::string_view(data).substr(pos + 8, len));
    pos += 8 + len;
  }
  ASSERT_EQ(payloads.size(), 4u);  // 3 records + End
  for (std::size_t i = 1; i < payloads.size(); ++i) {
    Sha256 h;
    h.update(payloads[i - 1]);
    const Sha256Digest d = h.finish();
    // SAFETY: std::byte and char alias; the digest is 32 bytes.
    const std::string want(reinterpret_cast<const char*>(d.data()), d.size());
    EXPECT_EQ(payloads[i].substr(9, 32), want) << "record " << i;
  }
}

// Runs `body` (in a forked child: the limit is the process's) with the file size limit `room`
// bytes past the end of `path`, SIGXFSZ ignored (it would end the child); lifts it afterwards.
template <class Body>
void with_file_size_limit(const std::string& path, rlim_t room, Body body) {
  ASSERT_NE(std::signal(SIGXFSZ, SIG_IGN), SIG_ERR);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const rlimit limit{static_cast<rlim_t>(fs::file_size(path)) + room, old.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  body();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
}

// The journal at `path` reads as exactly the records `names`, nothing torn, and verifies as a
// complete (ended) journal.
void expect_complete_journal(const std::string& path, const std::vector<std::string>& names) {
  const auto read = read_journal(path);
  ASSERT_TRUE(read) << read.error().message();
  ASSERT_EQ(read->records.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(read->records[i].name, names[i]) << i;
  EXPECT_EQ(read->torn_bytes, 0u);
  const auto verified = verify_journal(path);
  ASSERT_TRUE(verified) << verified.error().message();
  EXPECT_TRUE(verified->valid) << verified->reason;
  EXPECT_TRUE(verified->ended);
  EXPECT_EQ(verified->records, names.size());
}

// In a forked child: a journal at `path` holds record "a"; appending "b" with the file size
// limit `room` bytes past its end fails with EFBIG (SIGXFSZ ignored, as it would end the child),
// and `check(error, size_before)` runs while the limit holds. With the limit lifted, "c" follows
// and the journal reads and verifies as exactly "a", "c".
template <class Check>
void expect_append_past_size_limit(const std::string& path, rlim_t room, Check check) {
  const auto code = pepita::test::run_forked([&] {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    ASSERT_TRUE((*j)->append(finished("a", 0)));
    const auto size_before = fs::file_size(path);
    with_file_size_limit(path, room, [&] {
      const auto refused = (*j)->append(finished("b", 1));
      ASSERT_FALSE(refused) << "a write past the file size limit was reported as written";
      EXPECT_EQ(refused.error().sys_errno(), EFBIG);
      check(refused.error(), size_before);
    });
    ASSERT_TRUE((*j)->append(finished("c", 2)));
    ASSERT_TRUE((*j)->close());
    expect_complete_journal(path, {"a", "c"});
  });
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
}

// A write the file system refuses (here the file size limit: EFBIG) fails the append with the
// errno and the journal's path; the file keeps the records before it whole, and once there is
// room again the chain goes on from the last record written.
TEST(Journal, AWriteThatFailsReportsItsErrnoAndKeepsTheRecordsBefore) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  expect_append_past_size_limit(path, 0, [&](const Error& refused, std::uintmax_t) {
    EXPECT_NE(refused.message().find("write journal " + path), std::string::npos)
        << refused.message();
    const auto before = read_journal(path);
    ASSERT_TRUE(before) << before.error().message();
    ASSERT_EQ(before->records.size(), 1u);
    EXPECT_EQ(before->records[0].name, "a");
    EXPECT_EQ(before->torn_bytes, 0u);
  });
}

// Room for 10 bytes of the next record: the write stops partway, then fails with EFBIG; the part
// written is cut away, so the next record follows the last whole one.
TEST(Journal, AWriteCutShortLeavesNoPartOfItsRecordBeforeTheNext) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  expect_append_past_size_limit(path, 10, [&](const Error&, std::uintmax_t size_before) {
    EXPECT_EQ(fs::file_size(path), size_before) << "the part written of the failed record stayed";
  });
}

// close() that cannot write (the file size limit: the End record, or a record staged before it)
// fails with the errno and may be called again: once there is room, the retry writes the End
// record, and the journal is complete with the records written before it. A staged record that
// fits is written even when the End record after it does not; one that does not fit counts for
// nothing (as in flush()).
TEST(Journal, ACloseThatCannotWriteFailsAndARetryWritesTheEndRecord) {
  TempDir dir{"journal"};
  const auto path = dir.file("j");
  JournalRecord b = finished("b", 1);
  b.output_digest = sha256_hex(b.stdout_data);
  const rlim_t b_frame = 8 + 41 + encode_record(b).size();  // frame + chain header + body
  struct Case {
    bool stage_b;
    rlim_t room;
    std::vector<std::string> written;
  };
  for (const Case& c :
       {Case{false, 0, {"a"}}, Case{true, 0, {"a"}}, Case{true, b_frame, {"a", "b"}}}) {
    const auto code = pepita::test::run_forked([&] {
      auto j = Journal::open(path, Journal::Mode::Truncate);
      ASSERT_TRUE(j) << j.error().message();
      ASSERT_TRUE((*j)->append(finished("a", 0)));
      if (c.stage_b) {
        ASSERT_TRUE((*j)->stage(b));
      }
      with_file_size_limit(path, c.room, [&] {
        const auto refused = (*j)->close();
        ASSERT_FALSE(refused) << "a write past the file size limit was reported as written";
        EXPECT_EQ(refused.error().sys_errno(), EFBIG);
      });
      ASSERT_TRUE((*j)->close());
      EXPECT_FALSE((*j)->append(finished("c", 2))) << "an append after close() was written";
      expect_complete_journal(path, c.written);
    });
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 0) << "staged b: " << c.stage_b << ", room " << c.room;
  }
}

}  // namespace
}  // namespace pepita::fault
