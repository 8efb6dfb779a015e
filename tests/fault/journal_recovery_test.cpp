// Reading and reopening journal files at their edges (issue 29): files shorter than a frame, a
// magic alone, frames whose length or chain does not fit, an End record that is not the last,
// and the ways a journal's file is reached (a bare file name, descriptor 0, a path that is not a
// file). Each test names what read_journal or Journal::open reports for it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/child.hpp"
#include "common/temp_dir.hpp"
#include "detail/journal_format.hpp"
#include "fault/journal_files.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::fault {
namespace {

using pepita::test::TempDir;
using test::fix_crc;
using test::frames_of;
using test::kUnkeyedBodyAt;
using test::make_frame;
using test::read_file;
using test::write_file;

namespace fs = std::filesystem;

JournalRecord submitted(const std::string& name) {
  JournalRecord r;
  r.name = name;
  r.spec_digest = "d-" + name;
  return r;
}

// A journal at `path` holding Submitted records `names`: closed (End record) when `close`, else
// as a crash leaves it (no End record).
void write_journal(const std::string& path, std::initializer_list<const char*> names, bool close) {
  std::string crashed;
  {
    auto j = Journal::open(path, Journal::Mode::Truncate);
    ASSERT_TRUE(j) << j.error().message();
    for (const char* name : names) ASSERT_TRUE((*j)->append(submitted(name)));
    ASSERT_TRUE((*j)->sync());
    crashed = read_file(path);
  }  // the destructor closes
  if (!close) write_file(path, crashed);
}

// Resumes the journal at `path`, appends record `name` and closes it; then the file must verify
// as a complete format 3 journal of `records` records, the last one `name`.
void expect_resumes_and_appends(const std::string& path, const std::string& name,
                                std::uint64_t records) {
  {
    auto j = Journal::open(path, Journal::Mode::Resume);
    ASSERT_TRUE(j) << j.error().message();
    ASSERT_TRUE((*j)->append(submitted(name)));
    ASSERT_TRUE((*j)->close());
  }
  EXPECT_EQ(read_file(path).substr(0, 8), "PEPJRNL3");
  const auto v = verify_journal(path);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->valid) << v->reason;
  EXPECT_EQ(v->records, records);
  const auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), records);
  EXPECT_EQ(rec->records.back().name, name);
}

// A file that holds a whole magic and nothing else is an intact, empty journal of that format:
// no byte of it is torn. Resuming one of format 1 upgrades it to format 3 like any older file.
TEST(JournalRecovery, AFileOfOnlyTheMagicIsAnIntactEmptyJournalOfItsFormat) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  for (const std::uint32_t format : {1u, 2u, 3u}) {
    write_file(path, "PEPJRNL" + std::to_string(format));
    const auto rec = read_journal(path);
    ASSERT_TRUE(rec) << rec.error().message();
    EXPECT_TRUE(rec->records.empty());
    EXPECT_EQ(rec->format, format);
    EXPECT_EQ(rec->valid_bytes, 8u);
    EXPECT_EQ(rec->torn_bytes, 0u);
    EXPECT_EQ(rec->next_sequence, 0u);
  }
  write_file(path, "PEPJRNL1");
  expect_resumes_and_appends(path, "first", 1);
}

// Shorter than a magic: a prefix of one is a magic torn at creation (an empty journal, all its
// bytes torn, chained from the format 3 magic); anything else is not a journal, and resuming it
// leaves the file alone. An empty file and a missing one are empty journals too, and all of them
// resume into complete journals.
TEST(JournalRecovery, AFileShorterThanTheMagicIsATornMagicOrNotAJournal) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  write_file(path, "PEPJ");
  const auto torn = read_journal(path);
  ASSERT_TRUE(torn) << torn.error().message();
  EXPECT_TRUE(torn->records.empty());
  EXPECT_EQ(torn->valid_bytes, 0u);
  EXPECT_EQ(torn->torn_bytes, 4u);
  EXPECT_EQ(torn->chain_head, detail::sha256_raw("PEPJRNL3"));
  EXPECT_EQ(torn->next_sequence, 0u);
  {
    auto j = Journal::open(path, Journal::Mode::Resume);
    ASSERT_TRUE(j) << j.error().message();
    EXPECT_EQ((*j)->torn_bytes(), 4u);
  }
  write_file(path, "PEPJ");
  expect_resumes_and_appends(path, "after-torn-magic", 1);

  write_file(path, "");
  const auto empty = read_journal(path);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_TRUE(empty->records.empty());
  EXPECT_EQ(empty->torn_bytes, 0u);
  expect_resumes_and_appends(path, "after-empty", 1);

  const auto missing = dir.file("missing");
  expect_resumes_and_appends(missing, "after-missing", 1);

  write_file(path, "PEX");
  const auto foreign = read_journal(path);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code(), ErrorCode::Corrupted);
  EXPECT_EQ(foreign.error().message(),
            path + " is not a pepita journal (bad magic); move it away or run without --resume");
  EXPECT_FALSE(Journal::open(path, Journal::Mode::Resume));
  EXPECT_EQ(read_file(path), "PEX") << "a file that is not a journal was changed";
}

// Resuming a journal whose last record was torn cuts that record and says how many bytes it cut.
TEST(JournalRecovery, ResumingATornJournalReportsTheBytesItCut) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  write_journal(path, {"a", "b"}, /*close=*/false);
  const std::string data = read_file(path);
  const auto frames = frames_of(data);
  ASSERT_EQ(frames.size(), 2u);
  const std::size_t cut = 11;  // header and 3 bytes of "b"'s payload
  write_file(path, std::string_view(data).substr(0, frames[1].offset + cut));
  {
    auto j = Journal::open(path, Journal::Mode::Resume);
    ASSERT_TRUE(j) << j.error().message();
    EXPECT_EQ((*j)->torn_bytes(), cut);
    ASSERT_EQ((*j)->recovered().size(), 1u);
    EXPECT_EQ((*j)->recovered()[0].name, "a");
  }
  EXPECT_EQ(verify_journal(path)->records, 1u);
}

// A zero length and zero CRC before intact records (a hole the file system filled with zeros) is
// no record: the journal is damaged there, and the error says which byte and why.
TEST(JournalRecovery, AZeroLengthFrameBeforeIntactRecordsIsAnImpossibleLength) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  write_journal(path, {"a", "b"}, /*close=*/false);
  std::string data = read_file(path);
  const auto frames = frames_of(data);
  ASSERT_EQ(frames.size(), 2u);
  data.insert(frames[1].offset, std::string(8, '\0'));
  write_file(path, data);
  const auto rec = read_journal(path);
  ASSERT_FALSE(rec);
  EXPECT_EQ(rec.error().code(), ErrorCode::Corrupted);
  EXPECT_EQ(rec.error().message(),
            path + ": record at byte " + std::to_string(frames[1].offset) +
                " has an impossible length and intact data follows; the journal is damaged. Move "
                "it away or run without --resume");
}

// A tail frame whose length runs past the end of the file is torn, even when the bytes that are
// there are a whole record whose CRC32C the frame carries.
TEST(JournalRecovery, ATailFrameLongerThanTheFileIsTornEvenWhenItsCrcMatchesWhatIsThere) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  const std::string a = make_frame(encode_record(submitted("a")));
  const std::string b_payload = encode_record(submitted("b"));
  for (const std::uint32_t over : {1u, 4u, 8u}) {
    const std::string b =
        make_frame(b_payload, static_cast<std::uint32_t>(b_payload.size()) + over);
    write_file(path, "PEPJRNL1" + a + b);  // format 1: no chain, so only the frame is checked
    const auto rec = read_journal(path);
    ASSERT_TRUE(rec) << rec.error().message();
    ASSERT_EQ(rec->records.size(), 1u) << "length " << over << " past the end";
    EXPECT_EQ(rec->records[0].name, "a");
    EXPECT_EQ(rec->valid_bytes, 8 + a.size());
    EXPECT_EQ(rec->torn_bytes, b.size());
  }
}

// read_journal names a record whose auth byte says MACed in a journal whose first record is not.
TEST(JournalRecovery, AMacedRecordInAnUnkeyedJournalIsDamage) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  // Names long enough that a body holds a MAC's 32 bytes and more.
  write_journal(path, {"the first task of three", "the second task of three", "the third"},
                /*close=*/true);
  std::string data = read_file(path);
  const auto frames = frames_of(data);
  data[frames[1].offset + 8] = '\1';  // the auth byte; the body's first 32 bytes now read as a MAC
  fix_crc(data, frames[1]);
  write_file(path, data);
  const auto rec = read_journal(path);
  ASSERT_FALSE(rec);
  EXPECT_EQ(rec.error().code(), ErrorCode::Corrupted);
  EXPECT_NE(
      rec.error().message().find(path + ": record 1 (byte " + std::to_string(frames[1].offset) +
                                 ") mixes MACed and unMACed records; the journal was altered"),
      std::string::npos)
      << rec.error().message();
}

// An End record whose chain head or count was edited (its CRC repaired) is damage, not the end
// of a complete journal: read_journal says so and the journal does not resume.
TEST(JournalRecovery, AnEditedEndRecordIsDamageNotAnEnd) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  write_journal(path, {"a", "b"}, /*close=*/true);
  const std::string good = read_file(path);
  const auto frames = frames_of(good);
  ASSERT_EQ(frames.size(), 3u);  // 2 records + End
  // The End body: type, u64 count, chain head. Edit the head's first byte, then its last.
  for (const std::size_t at : {std::size_t{1 + 8}, std::size_t{1 + 8 + 31}}) {
    std::string data = good;
    data[frames[2].offset + 8 + kUnkeyedBodyAt + at] ^= 0x01;
    fix_crc(data, frames[2]);
    write_file(path, data);
    const auto rec = read_journal(path);
    ASSERT_FALSE(rec) << "edited byte " << at;
    EXPECT_EQ(rec.error().code(), ErrorCode::Corrupted);
    EXPECT_NE(rec.error().message().find(": record 2 (byte " + std::to_string(frames[2].offset) +
                                         ") is a malformed End record"),
              std::string::npos)
        << rec.error().message();
    EXPECT_FALSE(Journal::open(path, Journal::Mode::Resume));
  }
}

// A record chained after an End record (an End that is not the last record) is read like any
// other: the journal is then not ended, and it continues after that record.
TEST(JournalRecovery, ARecordChainedAfterAnEndRecordIsReadAndTheJournalIsNotEnded) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("j");
  write_journal(path, {"a"}, /*close=*/true);
  std::string data = read_file(path);
  const auto frames = frames_of(data);
  ASSERT_EQ(frames.size(), 2u);  // "a" + End
  const std::string end_payload = data.substr(frames[1].offset + 8, frames[1].size - 8);
  const std::string payload = detail::chain_payload(
      std::nullopt, 2, detail::sha256_raw(end_payload), encode_record(submitted("b")));
  data += make_frame(payload);
  write_file(path, data);
  const auto rec = read_journal(path);
  ASSERT_TRUE(rec) << rec.error().message();
  ASSERT_EQ(rec->records.size(), 2u);
  EXPECT_EQ(rec->records[1], submitted("b"));
  EXPECT_FALSE(rec->ended);
  EXPECT_EQ(rec->valid_bytes, data.size());
  EXPECT_EQ(rec->chain_head, detail::sha256_raw(payload));
  EXPECT_EQ(rec->next_sequence, 3u);
}

// A journal named without a directory lives in the working directory (its parent, for the
// fsync of the directory entry, is ".").
TEST(JournalRecovery, AJournalNamedWithoutADirectoryOpensInTheWorkingDirectory) {
  TempDir dir{"journal-recovery"};
  const auto code = pepita::test::run_forked([&] {
    ASSERT_EQ(::chdir(dir.path().c_str()), 0);
    write_journal("bare", {"a"}, /*close=*/true);
    const auto rec = read_journal(dir.file("bare"));
    ASSERT_TRUE(rec) << rec.error().message();
    EXPECT_EQ(rec->records.size(), 1u);
  });
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
}

// A process started with stdin closed gets descriptor 0 for the first file it opens: reading a
// format 1 journal, writing its format 3 copy and opening it for appending all work with it.
TEST(JournalRecovery, AJournalOpensWhenItsFilesGetDescriptorZero) {
  TempDir dir{"journal-recovery"};
  const auto path = dir.file("old");
  write_file(path, "PEPJRNL1" + make_frame(encode_record(submitted("a"))));
  const auto code = pepita::test::run_forked([&] {
    ASSERT_TRUE(read_journal(path));  // OpenSSL reads its configuration before stdin closes
    ASSERT_EQ(::close(0), 0);
    auto j = Journal::open(path, Journal::Mode::Resume);
    ASSERT_TRUE(j) << j.error().message();
    EXPECT_GE(::fcntl(0, F_GETFD), 0) << "the journal did not get descriptor 0";
    ASSERT_EQ((*j)->recovered().size(), 1u);
    ASSERT_TRUE((*j)->append(submitted("b")));
    ASSERT_TRUE((*j)->close());
  });
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  const auto v = verify_journal(path);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->valid) << v->reason;
  EXPECT_EQ(v->records, 2u);
}

// A journal path that cannot be read is an error naming it, not an empty journal: one under a
// regular file (ENOTDIR), and a directory (EISDIR on read).
TEST(JournalRecovery, APathThatIsNotAReadableFileIsAnErrorNotAnEmptyJournal) {
  TempDir dir{"journal-recovery"};
  const auto file = dir.file("file");
  write_file(file, "x");
  const auto under_file = read_journal(file + "/j");
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().sys_errno(), ENOTDIR);
  EXPECT_NE(under_file.error().message().find("open journal " + file + "/j"), std::string::npos)
      << under_file.error().message();
  EXPECT_FALSE(Journal::open(file + "/j", Journal::Mode::Resume));

  const auto directory = read_journal(dir.path());
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().sys_errno(), EISDIR);
  EXPECT_NE(directory.error().message().find("read journal " + dir.path()), std::string::npos)
      << directory.error().message();
}

}  // namespace
}  // namespace pepita::fault
