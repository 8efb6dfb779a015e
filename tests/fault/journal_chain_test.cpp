// Journal format 3: the hash chain, MACs, the End record and verify_journal (issue 24).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/temp_dir.hpp"
#include "fault/journal_files.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::fault {
namespace {

using pepita::test::TempDir;
using test::fix_crc;
using test::frames_of;
using test::kPrevAt;
using test::kUnkeyedBodyAt;
using test::make_frame;
using test::read_file;
using test::write_file;

const std::string kKey = "0123456789abcdef0123456789abcdef-journal-key";
const std::string kOtherKey = "fedcba9876543210fedcba9876543210-other-key!!";

JournalRecord finished(const std::string& name) {
  JournalRecord r;
  r.type = RecordType::Finished;
  r.name = name;
  r.spec_digest = "d-" + name;
  r.attempt = 1;
  r.stdout_data = "out of " + name;
  r.stdout_bytes = r.stdout_data.size();
  r.host = "host-a";
  r.binary_sha256 = std::string(64, 'b');
  r.input_hashes = {{"in/" + name, std::string(64, '1')}};
  r.output_hashes = {{"out/" + name, std::string(64, '2')}};
  r.resources = "cpus=1.000000";
  r.started_unix_ns = 1'700'000'000'000'000'000;
  r.finished_unix_ns = 1'700'000'001'000'000'000;
  return r;
}

// A closed journal of `n` Finished records "t0".."t{n-1}".
void write_journal(const std::string& path, int n, const std::optional<std::string>& key) {
  auto j = Journal::open(path, Journal::Mode::Truncate, key);
  ASSERT_TRUE(j) << j.error().message();
  for (int i = 0; i < n; ++i) ASSERT_TRUE((*j)->append(finished("t" + std::to_string(i))));
  ASSERT_TRUE((*j)->close());
}

JournalVerification verify(const std::string& path, const std::optional<std::string>& key) {
  auto v = verify_journal(path, key);
  EXPECT_TRUE(v) << v.error().message();
  return v ? *v : JournalVerification{};
}

// Writes a closed journal of `n` records to `path` (MACed with `key`), lets `edit` change its
// bytes (given its frames; it repairs CRCs itself where it wants them repaired), writes them
// back and verifies the file with `key`.
template <class Edit>
JournalVerification verify_edited(const std::string& path, int n,
                                  const std::optional<std::string>& key, Edit edit) {
  write_journal(path, n, key);
  std::string data = read_file(path);
  edit(data, frames_of(data));
  write_file(path, data);
  return verify(path, key);
}

class JournalChain : public ::testing::TestWithParam<bool> {
 protected:
  std::optional<std::string> key() const { return GetParam() ? std::optional(kKey) : std::nullopt; }
  TempDir dir_{"journal-chain"};
  std::string path_ = dir_.file("j");
};

TEST_P(JournalChain, GoodJournalVerifies) {
  write_journal(path_, 4, key());
  const auto v = verify(path_, key());
  EXPECT_TRUE(v.valid) << v.reason;
  EXPECT_EQ(v.records, 4u);
  EXPECT_TRUE(v.ended);
  EXPECT_EQ(v.keyed, GetParam());
  EXPECT_EQ(v.macs_checked, GetParam());
  EXPECT_FALSE(v.bad_record.has_value());
  EXPECT_EQ(read_file(path_).substr(0, 8), "PEPJRNL3");
}

TEST_P(JournalChain, EditedRecordWithFixedCrcIsNamed) {
  write_journal(path_, 4, key());
  std::string data = read_file(path_);
  const auto frames = frames_of(data);
  ASSERT_EQ(frames.size(), 5u);  // 4 records + End
  // Change the last byte of record 1's body (its finished time) and repair the CRC, as a careful
  // forger would.
  data[frames[1].offset + frames[1].size - 1] ^= 0x01;
  fix_crc(data, frames[1]);
  write_file(path_, data);
  const auto v = verify(path_, key());
  EXPECT_FALSE(v.valid);
  ASSERT_TRUE(v.bad_record.has_value());
  EXPECT_EQ(*v.bad_record, 1u) << v.reason;
  EXPECT_NE(v.reason.find("edited"), std::string::npos) << v.reason;
  if (GetParam()) {
    EXPECT_NE(v.reason.find("MAC mismatch"), std::string::npos) << v.reason;
  }
  // The journal no longer resumes: the damage is not a torn tail.
  EXPECT_FALSE(Journal::open(path_, Journal::Mode::Resume, key()));
}

TEST_P(JournalChain, EditedRecordWithoutCrcRepairIsNamed) {
  const auto v = verify_edited(path_, 3, key(), [](std::string& data, const auto& frames) {
    data[frames[1].offset + frames[1].size - 1] ^= 0x01;
  });
  EXPECT_FALSE(v.valid);
  ASSERT_TRUE(v.bad_record.has_value());
  EXPECT_EQ(*v.bad_record, 1u) << v.reason;
  EXPECT_NE(v.reason.find("edited"), std::string::npos) << v.reason;
}

TEST_P(JournalChain, RecordWithAnUnknownAuthByteAndFixedCrcIsAMalformedChainHeader) {
  const auto v = verify_edited(path_, 3, key(), [](std::string& data, const auto& frames) {
    // The chain header's first byte says whether a MAC follows: only 0 or 1 parse.
    data[frames[1].offset + 8] = '\2';
    fix_crc(data, frames[1]);
  });
  EXPECT_FALSE(v.valid);
  ASSERT_TRUE(v.bad_record.has_value());
  EXPECT_EQ(*v.bad_record, 1u) << v.reason;
  EXPECT_EQ(v.reason, "record 1: malformed chain header: edited");
  EXPECT_EQ(v.records, 1u);
  EXPECT_EQ(v.keyed, GetParam());
  EXPECT_FALSE(v.ended);
}

TEST_P(JournalChain, DroppedRecordIsNamed) {
  const auto v = verify_edited(path_, 4, key(), [](std::string& data, const auto& frames) {
    data.erase(frames[2].offset, frames[2].size);
  });
  EXPECT_FALSE(v.valid);
  ASSERT_TRUE(v.bad_record.has_value());
  EXPECT_EQ(*v.bad_record, 2u) << v.reason;
  EXPECT_NE(v.reason.find("dropped or reordered"), std::string::npos) << v.reason;
  EXPECT_EQ(v.records, 2u);
}

TEST_P(JournalChain, ReorderedRecordsAreNamed) {
  const auto v = verify_edited(path_, 4, key(), [](std::string& data, const auto& f) {
    const std::string one = data.substr(f[1].offset, f[1].size);
    const std::string two = data.substr(f[2].offset, f[2].size);
    data.replace(f[1].offset, f[1].size + f[2].size, two + one);
  });
  EXPECT_FALSE(v.valid);
  ASSERT_TRUE(v.bad_record.has_value());
  EXPECT_EQ(*v.bad_record, 1u) << v.reason;
  EXPECT_NE(v.reason.find("dropped or reordered"), std::string::npos) << v.reason;
}

TEST_P(JournalChain, CutTailIsToldApartFromACompleteJournal) {
  write_journal(path_, 3, key());
  const std::string data = read_file(path_);
  const auto f = frames_of(data);
  // Cut at a record boundary: the End record (and maybe more) is gone.
  for (std::size_t keep : {f[3].offset, f[2].offset}) {
    write_file(path_, std::string_view(data).substr(0, keep));
    const auto v = verify(path_, key());
    EXPECT_FALSE(v.valid);
    EXPECT_FALSE(v.ended);
    EXPECT_NE(v.reason.find("no end record"), std::string::npos) << v.reason;
    ASSERT_TRUE(v.bad_record.has_value());
    EXPECT_EQ(*v.bad_record, keep == f[3].offset ? 3u : 2u);
  }
  // Cut mid-record: torn, and still no end record.
  write_file(path_, std::string_view(data).substr(0, f[2].offset + 11));
  const auto torn = verify(path_, key());
  EXPECT_FALSE(torn.valid);
  EXPECT_NE(torn.reason.find("torn"), std::string::npos) << torn.reason;
  EXPECT_NE(torn.reason.find("no end record"), std::string::npos) << torn.reason;
  // The torn-tail rule still holds: the file resumes with its intact records.
  auto j = Journal::open(path_, Journal::Mode::Resume, key());
  ASSERT_TRUE(j) << j.error().message();
  EXPECT_EQ((*j)->recovered().size(), 2u);
  ASSERT_TRUE((*j)->append(finished("again")));
  ASSERT_TRUE((*j)->close());
  const auto resumed = verify(path_, key());
  EXPECT_TRUE(resumed.valid) << resumed.reason;
  EXPECT_EQ(resumed.records, 3u);
}

TEST_P(JournalChain, ResumeCutsTheEndRecordAndContinuesTheChain) {
  write_journal(path_, 2, key());
  {
    auto j = Journal::open(path_, Journal::Mode::Resume, key());
    ASSERT_TRUE(j) << j.error().message();
    EXPECT_EQ((*j)->recovered().size(), 2u);  // the End record is not a record
    ASSERT_TRUE((*j)->append(finished("t2")));
  }  // the destructor closes cleanly
  const auto v = verify(path_, key());
  EXPECT_TRUE(v.valid) << v.reason;
  EXPECT_EQ(v.records, 3u);
  auto rec = read_journal(path_, key());
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 3u);
  auto expect = finished("t2");
  expect.output_digest = rec->records[2].output_digest;
  EXPECT_EQ(rec->records[2], expect);
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutKey, JournalChain, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Keyed" : "Unkeyed";
                         });

TEST(JournalChain, FirstRecordWithAnEditedPrevHashIsTheChainBreak) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const auto v = verify_edited(path, 2, std::nullopt, [](std::string& data, const auto& f) {
    data[f[0].offset + 8 + kPrevAt] ^= 0x01;
    fix_crc(data, f[0]);
  });
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 0u) << v.reason;
  EXPECT_NE(v.reason.find("record 0: "), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("hash chain break"), std::string::npos) << v.reason;
  EXPECT_EQ(v.records, 0u);
}

TEST(JournalChain, EndRecordWithAnEditedCountOrHeadOrLengthIsNamed) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, std::nullopt);
  const std::string good = read_file(path);
  const auto f = frames_of(good);
  ASSERT_EQ(f.size(), 3u);  // 2 records + End
  // The End body: type, u64 count, chain head. Edit the count, then the head.
  for (std::size_t at : {std::size_t{1}, std::size_t{1 + 8}}) {
    std::string data = good;
    data[f[2].offset + 8 + kUnkeyedBodyAt + at] ^= 0x01;
    fix_crc(data, f[2]);
    write_file(path, data);
    const auto v = verify(path, std::nullopt);
    EXPECT_FALSE(v.valid);
    EXPECT_FALSE(v.ended);
    EXPECT_EQ(v.bad_record, 2u) << v.reason;
    EXPECT_NE(v.reason.find("count or chain head does not match"), std::string::npos) << v.reason;
    EXPECT_EQ(v.records, 2u);
  }
  // One byte too many: no longer an End record's shape.
  const std::string end = good.substr(f[2].offset + 8, f[2].size - 8) + "!";
  write_file(path, good.substr(0, f[2].offset) + make_frame(end));
  const auto v = verify(path, std::nullopt);
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 2u) << v.reason;
  EXPECT_EQ(v.reason, "record 2: malformed End record: edited");
}

TEST(JournalChain, RecordBodyThatDoesNotDecodeIsNamed) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const auto v = verify_edited(path, 3, std::nullopt, [](std::string& data, const auto& f) {
    data[f[1].offset + 8 + kUnkeyedBodyAt] = '\x09';  // record types are 1..3, End is 4
    fix_crc(data, f[1]);
  });
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 1u) << v.reason;
  EXPECT_EQ(v.reason, "record 1: its body does not decode: edited");
  EXPECT_EQ(v.records, 1u);
}

TEST(JournalChain, OneMacedRecordInAnUnkeyedJournalIsMixed) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const auto v = verify_edited(path, 3, std::nullopt, [](std::string& data, const auto& f) {
    data[f[1].offset + 8] = '\1';  // the auth byte: the body's first 32 bytes now read as a MAC
    fix_crc(data, f[1]);
  });
  EXPECT_FALSE(v.valid);
  EXPECT_FALSE(v.keyed);
  EXPECT_EQ(v.bad_record, 1u) << v.reason;
  EXPECT_NE(v.reason.find("MACed and unMACed records are mixed"), std::string::npos) << v.reason;
}

TEST(JournalChain, AOneByteFrameBetweenRecordsIsAMalformedChainHeader) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const auto v = verify_edited(path, 2, std::nullopt, [](std::string& data, const auto& f) {
    data.insert(f[1].offset, make_frame("x"));
  });
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 1u) << v.reason;
  EXPECT_EQ(v.reason, "record 1: malformed chain header: edited");
}

TEST(JournalChain, EditedFirstRecordOfAMacedJournalIsAMacMismatch) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const auto v = verify_edited(path, 2, kKey, [](std::string& data, const auto& f) {
    data[f[0].offset + f[0].size - 1] ^= 0x01;
    fix_crc(data, f[0]);
  });
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 0u) << v.reason;
  EXPECT_EQ(v.reason, "record 0: MAC mismatch: the record was edited");
}

TEST(JournalChain, AKeyOfExactlyTheMinimumLengthVerifies) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  const std::string key(kJournalKeyMinBytes, 'k');
  write_journal(path, 1, key);
  const auto v = verify(path, key);
  EXPECT_TRUE(v.valid) << v.reason;
  EXPECT_TRUE(v.macs_checked);
  auto shorter = verify_journal(path, key.substr(1));
  ASSERT_FALSE(shorter);
  EXPECT_EQ(shorter.error().code(), ErrorCode::InvalidArgument);
}

TEST(JournalChain, WrongKeyIsReported) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 3, kKey);
  const auto v = verify(path, kOtherKey);
  EXPECT_FALSE(v.valid);
  EXPECT_NE(v.reason.find("wrong key"), std::string::npos) << v.reason;
  EXPECT_EQ(v.bad_record, 0u);
  auto resume = Journal::open(path, Journal::Mode::Resume, kOtherKey);
  ASSERT_FALSE(resume);
  EXPECT_EQ(resume.error().code(), ErrorCode::Corrupted);
  EXPECT_NE(resume.error().message().find("key"), std::string::npos);
  // A MACed journal cannot be resumed without its key (new records would carry no MAC).
  auto keyless = Journal::open(path, Journal::Mode::Resume);
  ASSERT_FALSE(keyless);
  EXPECT_NE(keyless.error().message().find("--journal-key"), std::string::npos);
}

TEST(JournalChain, KeyedJournalWithoutKeyChecksTheChainOnly) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, kKey);
  const auto v = verify(path, std::nullopt);
  EXPECT_TRUE(v.valid) << v.reason;
  EXPECT_TRUE(v.keyed);
  EXPECT_FALSE(v.macs_checked);
}

TEST(JournalChain, UnkeyedJournalVerifiedWithAKeyIsInvalid) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, std::nullopt);
  const auto v = verify(path, kKey);
  EXPECT_FALSE(v.valid);
  EXPECT_NE(v.reason.find("without a key"), std::string::npos) << v.reason;
  EXPECT_EQ(v.bad_record, 0u);
}

TEST(JournalChain, ProvenanceFieldsRoundTrip) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  JournalRecord r = finished("p");
  r.from_cache = true;
  r.metadata = {{"team", "ml"}};
  write_journal(path, 0, std::nullopt);
  {
    auto j = Journal::open(path, Journal::Mode::Resume).value();
    ASSERT_TRUE(j->append(r));
  }
  auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 1u);
  r.output_digest = rec->records[0].output_digest;
  EXPECT_EQ(rec->records[0], r);
  EXPECT_TRUE(rec->ended);
}

TEST(JournalChain, AppendAfterCloseFails) {
  TempDir dir{"journal-chain"};
  auto j = Journal::open(dir.file("j"), Journal::Mode::Truncate).value();
  ASSERT_TRUE(j->close());
  auto r = j->append(finished("late"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("closed"), std::string::npos);
}

TEST(JournalChain, ShortKeyIsRefused) {
  TempDir dir{"journal-chain"};
  auto j = Journal::open(dir.file("j"), Journal::Mode::Truncate, std::string("short"));
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code(), ErrorCode::InvalidArgument);
}

TEST(JournalChain, KeyFileMustBeOwnerOnlyAndLongEnough) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("key");
  write_file(path, kKey + "\n");
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto open_mode = load_journal_key(path);
  ASSERT_FALSE(open_mode);
  EXPECT_EQ(open_mode.error().code(), ErrorCode::PermissionDenied);
  EXPECT_NE(open_mode.error().message().find("chmod 600"), std::string::npos);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto good = load_journal_key(path);
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_EQ(*good, kKey);  // trailing newline dropped
  write_file(path, "too short");
  auto short_key = load_journal_key(path);
  ASSERT_FALSE(short_key);
  EXPECT_EQ(short_key.error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(load_journal_key(dir.file("missing")));
}

TEST(JournalChain, VerifyRefusesForeignFilesShortKeysAndNamesOldFormats) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_file(path, "not a journal at all");
  auto foreign = verify_journal(path, std::nullopt);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code(), ErrorCode::Corrupted);
  EXPECT_NE(foreign.error().message().find("bad magic"), std::string::npos);
  // A missing file is an error of its own, not an empty (foreign) journal.
  auto missing = verify_journal(dir.file("missing"), std::nullopt);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound) << missing.error().message();
  EXPECT_NE(missing.error().message().find("open journal"), std::string::npos)
      << missing.error().message();
  // Formats 1 and 2 carry no chain: reported as unverifiable, not as an error.
  for (const char* magic : {"PEPJRNL1", "PEPJRNL2"}) {
    write_file(path, magic);
    auto old = verify_journal(path, std::nullopt);
    ASSERT_TRUE(old) << old.error().message();
    EXPECT_FALSE(old->valid);
    EXPECT_EQ(old->format, magic[7] == '1' ? 1u : 2u);
    EXPECT_NE(old->reason.find("predates the hash chain"), std::string::npos) << old->reason;
  }
  write_journal(path, 1, kKey);
  auto short_key = verify_journal(path, std::string("short"));
  ASSERT_FALSE(short_key);
  EXPECT_EQ(short_key.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(short_key.error().message().find("too short"), std::string::npos);
}

TEST(JournalChain, BytesAfterTheEndRecordAreNamedAsAppendedAfterClose) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, std::nullopt);
  write_file(path, read_file(path) + "xyz");
  const auto v = verify(path, std::nullopt);
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.bad_record, 3u);  // records 0 and 1, the End record at 2, then the stray bytes
  EXPECT_NE(v.reason.find("follow the End record"), std::string::npos) << v.reason;
}

TEST(JournalChain, UnkeyedJournalReadWithAKeyIsRefusedSayingHowToRun) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, std::nullopt);
  auto rec = read_journal(path, kKey);
  ASSERT_FALSE(rec);
  EXPECT_EQ(rec.error().code(), ErrorCode::Corrupted);
  EXPECT_NE(rec.error().message().find("was written without a key"), std::string::npos)
      << rec.error().message();
  EXPECT_NE(rec.error().message().find("run without --journal-key"), std::string::npos);
}

TEST(JournalChain, TailFrameWithAGoodCrcButNoChainHeaderIsATornWrite) {
  TempDir dir{"journal-chain"};
  const auto path = dir.file("j");
  write_journal(path, 2, std::nullopt);
  // A frame whose CRC checks but whose 3 bytes are too short to hold the chain header.
  const std::string payload = "abc";
  const std::string frame = make_frame(payload);
  write_file(path, read_file(path) + frame);
  auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  EXPECT_EQ(rec->records.size(), 2u);
  EXPECT_EQ(rec->torn_bytes, frame.size());
}

}  // namespace
}  // namespace pepita::fault
