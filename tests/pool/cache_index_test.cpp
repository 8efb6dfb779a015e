// The result cache's indexes (detail/cache_index.hpp, and their use in pool/cache.hpp): the
// codecs, a damaged index as a warning and a cold cache, an input changed after the index was
// written, gc dropping index records, concurrent flushes on one directory, when a flush writes
// and what a failed one leaves.
#include "detail/cache_index.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "common/temp_dir.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/pool/cache.hpp"

namespace pepita::pool {
namespace {

namespace fs = std::filesystem;
using executor::ExecutionResult;
using task::Task;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc | std::ios::binary) << text;
}
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Past the indexes' "racily clean" margin: records are only made for files older than it.
void age_past_racy_margin() {
  std::this_thread::sleep_for(std::chrono::nanoseconds(detail::kRacyNs + 50'000'000));
}

detail::FileRecord record(std::uint64_t ino, const std::string& content) {
  return {{.dev = 1, .ino = ino, .size = content.size(), .mtime = 10, .ctime = 20},
          sha256_hex(content)};
}

TEST(CacheIndexCodec, FileIndexRoundTripsAndRejectsAnyDamage) {
  detail::FileIndex index{{"/a/in 1.txt", record(7, "one")}, {"/b/two", record(8, "two")}};
  const std::string text = detail::encode_file_index(index);
  detail::FileIndex back;
  ASSERT_EQ(detail::decode_file_index(text, back), "");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back.at("/a/in 1.txt").hash, sha256_hex("one"));
  EXPECT_EQ(back.at("/b/two").stamp, index.at("/b/two").stamp);
  for (std::size_t i = 0; i < text.size(); i += 5) {
    std::string bad = text;
    bad[i] ^= 0x01;
    detail::FileIndex into;
    EXPECT_NE(detail::decode_file_index(bad, into), "") << "byte " << i;
    EXPECT_TRUE(into.empty()) << "byte " << i;
  }
  for (std::size_t cut : {text.size() - 1, text.size() / 2, std::size_t{5}}) {
    detail::FileIndex into;
    EXPECT_NE(detail::decode_file_index(text.substr(0, cut), into), "") << "cut at " << cut;
    EXPECT_TRUE(into.empty());
  }
}

TEST(CacheIndexCodec, FormatOneFileIndexIsStillRead) {
  // The append-only lines an older pepita wrote: no header, no sum, a torn last line.
  const std::string h = sha256_hex("x");
  const std::string text = h + " 1 2 3 4 5 /p/x.txt\n" + h + " 1 2 3 4 5 /p/y.txt\n" + h + " 1 2";
  detail::FileIndex into;
  EXPECT_EQ(detail::decode_file_index(text, into), "");
  EXPECT_EQ(into.size(), 2u);
  EXPECT_EQ(into.at("/p/x.txt").stamp.ctime, 5);
}

TEST(CacheIndexCodec, EntryIndexRoundTripsAnyBytesAndRejectsDamage) {
  detail::CacheEntry e;
  e.key = sha256_hex("key");
  e.name = "count-1";
  e.outputs = {{"out.txt", sha256_hex("o")}};
  e.stdout_data = std::string("a\nb\0c", 5);
  e.exit_code = 0;
  e.wall_ns = 77;
  detail::EntryIndex index;
  index[e.key] = {{.dev = 1, .ino = 2, .size = 3, .mtime = 4, .ctime = 5},
                  std::make_shared<const detail::CacheEntry>(e)};
  const std::string text = detail::encode_entry_index(index);
  detail::EntryIndex back;
  ASSERT_EQ(detail::decode_entry_index(text, back), "");
  ASSERT_EQ(back.size(), 1u);
  const auto& got = *back.at(e.key).entry;
  EXPECT_EQ(got.stdout_data, e.stdout_data);
  EXPECT_EQ(got.outputs, e.outputs);
  EXPECT_EQ(got.wall_ns, 77);
  for (std::size_t i = 0; i < text.size(); i += 3) {
    std::string bad = text;
    bad[i] ^= 0x04;
    detail::EntryIndex into;
    EXPECT_NE(detail::decode_entry_index(bad, into), "") << "byte " << i;
    EXPECT_TRUE(into.empty()) << "byte " << i;
  }
  detail::EntryIndex into;
  EXPECT_NE(detail::decode_entry_index(text.substr(0, text.size() - 10), into), "");
  EXPECT_TRUE(into.empty());
}

// `records` between the format's magic line and a correct checksum: damage only the parser sees.
std::string sealed(std::string_view magic, std::string_view records) {
  std::string out = std::string(magic).append(records);
  const std::string sum = sha256_hex(out);
  return out.append("sum ").append(sum).append("\n");
}

TEST(CacheIndexCodec, ChecksummedIndexWithABadRecordNamesTheDamageAndKeepsNothing) {
  const std::string head = sha256_hex("x") + " 1 2 3 4 5 ";
  const std::string_view files = "pepita-files-idx 2\n";
  const std::pair<std::string, std::string> file_cases[] = {
      {head + "/p/x.txt", "files.idx is damaged (a torn line)"},
      {"not a record\n", "files.idx is damaged (a malformed line)"},
      {head + "\n", "files.idx is damaged (a malformed line)"},  // no path after the stamp
  };
  for (const auto& [records, problem] : file_cases) {
    detail::FileIndex into;
    EXPECT_EQ(detail::decode_file_index(sealed(files, records), into), problem) << records;
    EXPECT_TRUE(into.empty()) << records;
  }
  const std::string_view entries = "pepita-entries-idx 1\n";
  const std::pair<std::string, std::string> entry_cases[] = {
      {"short\n", "entries.idx is damaged (a malformed record)"},
      {head + "twelve\nx\n", "entries.idx is damaged (a malformed record)"},
      {head + "999\nshort\n", "entries.idx is damaged (a record overruns the file)"},
  };
  for (const auto& [records, problem] : entry_cases) {
    detail::EntryIndex into;
    EXPECT_EQ(detail::decode_entry_index(sealed(entries, records), into), problem) << records;
    EXPECT_TRUE(into.empty()) << records;
  }
}

struct CacheIndexFixture : ::testing::Test {
  test::TempDir dir{"cache-index"};
  std::string cache_dir() const { return dir.file("cache"); }
  void SetUp() override {
    write_file(dir.file("in.txt"), "input one\n");
    write_file(dir.file("out.txt"), "output\n");
  }
  Task task() const {
    return Task::binary("/bin/true")
        .name("t")
        .cwd(dir.path())
        .inputs({"in.txt"})
        .outputs({"out.txt"})
        .build()
        .value();
  }
  // Stores a fake success, ages every file past the racy margin, then looks it up once more
  // (which records the entry and the files) and flushes: both indexes are on disk.
  void store_and_index() {
    auto cache = ResultCache::open(cache_dir()).value();
    CacheLookup l = cache->lookup(task());
    ExecutionResult r = ExecutionResult::success(1, std::chrono::milliseconds(3));
    r.stdout_data = "stored stdout";
    ASSERT_TRUE(cache->store(task(), l, r));
    age_past_racy_margin();
    ASSERT_TRUE(cache->lookup(task()).hit);
    cache->flush_index();
    ASSERT_TRUE(fs::exists(cache_dir() + "/files.idx"));
    ASSERT_TRUE(fs::exists(cache_dir() + "/entries.idx"));
    EXPECT_NE(read_file(cache_dir() + "/entries.idx").find("stored stdout"), std::string::npos);
  }
  // After store_and_index: the task, a hit, stored again with "second stdout".
  void store_again(ResultCache& cache) {
    CacheLookup l = cache.lookup(task());
    ASSERT_TRUE(l.hit);
    ExecutionResult r = ExecutionResult::success(1, std::chrono::milliseconds(3));
    r.stdout_data = "second stdout";
    ASSERT_TRUE(cache.store(task(), l, r));
  }
};

TEST_F(CacheIndexFixture, HitFromTheIndexesReturnsTheStoredResultWithNoNotice) {
  store_and_index();
  auto cache = ResultCache::open(cache_dir()).value();
  EXPECT_TRUE(cache->notices().empty());
  CacheLookup l = cache->lookup(task());
  ASSERT_TRUE(l.hit) << l.reason;
  EXPECT_EQ(l.reason, "cached");
  EXPECT_EQ(l.hit->stdout_data, "stored stdout");
  EXPECT_EQ(l.hit->output_hashes.at("out.txt"), sha256_hex("output\n"));
}

TEST_F(CacheIndexFixture, CorruptOrTruncatedIndexesAreAWarningAndAColdCacheNeverAWrongHit) {
  store_and_index();
  // files.idx: the input's recorded hash replaced by another valid-looking hash (a forged or
  // bit-rotted record: trusting it would give the wrong key); entries.idx: cut in half.
  std::string files = read_file(cache_dir() + "/files.idx");
  const std::string good = sha256_hex("input one\n");
  const auto at = files.find(good);
  ASSERT_NE(at, std::string::npos);
  files.replace(at, 64, sha256_hex("something else"));
  write_file(cache_dir() + "/files.idx", files);
  const std::string entries = read_file(cache_dir() + "/entries.idx");
  write_file(cache_dir() + "/entries.idx", entries.substr(0, entries.size() / 2));

  auto cache = ResultCache::open(cache_dir());
  ASSERT_TRUE(cache) << cache.error().message();
  const auto notices = (*cache)->notices();
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_NE(notices[0].find("files.idx is damaged"), std::string::npos) << notices[0];
  EXPECT_NE(notices[1].find("entries.idx"), std::string::npos) << notices[1];
  CacheLookup l = (*cache)->lookup(task());  // cold: hashed and read again, still correct
  ASSERT_TRUE(l.hit) << l.reason;
  EXPECT_EQ(l.inputs.at("in.txt"), good);
  EXPECT_EQ(l.hit->stdout_data, "stored stdout");
  (*cache)->flush_index();  // rewritten whole: the next open has nothing to say
  EXPECT_TRUE(ResultCache::open(cache_dir()).value()->notices().empty());

  // Garbage of every kind is no crash: empty, binary noise, a header alone.
  for (const std::string& junk :
       {std::string(), std::string("\0\xff\n\n", 4), std::string("pepita-files-idx 2\n"),
        std::string("pepita-entries-idx 1\nsum \n")}) {
    write_file(cache_dir() + "/files.idx", junk);
    write_file(cache_dir() + "/entries.idx", junk);
    auto again = ResultCache::open(cache_dir());
    ASSERT_TRUE(again);
    CacheLookup hit = (*again)->lookup(task());
    EXPECT_TRUE(hit.hit) << hit.reason;
    EXPECT_EQ(hit.inputs.at("in.txt"), good);
  }
}

TEST_F(CacheIndexFixture, InputChangedAfterTheIndexWasWrittenIsDetectedEvenWithItsMtimeKept) {
  store_and_index();
  // Same size, the old mtime put back: only the ctime (and the content) says it changed.
  struct stat before {};
  ASSERT_EQ(::stat(dir.file("in.txt").c_str(), &before), 0);
  write_file(dir.file("in.txt"), "input two\n");
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, dir.file("in.txt").c_str(), times, 0), 0);
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup l = cache->lookup(task());
  EXPECT_FALSE(l.hit);
  EXPECT_EQ(l.inputs.at("in.txt"), sha256_hex("input two\n"));
  EXPECT_NE(l.reason.find("input in.txt changed"), std::string::npos) << l.reason;
}

TEST_F(CacheIndexFixture, OutputChangedAfterTheIndexWasWrittenIsSeenByTheHit) {
  store_and_index();
  write_file(dir.file("out.txt"), "edited\n");
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup l = cache->lookup(task());
  ASSERT_TRUE(l.hit);
  EXPECT_EQ(l.reason, "cached (output out.txt edited since; kept, its readers re-run)");
  fs::remove(dir.file("out.txt"));
  EXPECT_EQ(cache->lookup(task()).reason, "ran: output out.txt missing");
}

TEST_F(CacheIndexFixture, GcRemovalDropsTheEntrysIndexRecord) {
  store_and_index();
  auto report = ResultCache::gc(cache_dir(), {.max_age = std::nullopt, .max_size = 1});
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(report->removed.size(), 1u);
  auto cache = ResultCache::open(cache_dir()).value();
  EXPECT_TRUE(cache->notices().empty());
  CacheLookup l = cache->lookup(task());
  EXPECT_FALSE(l.hit);
  EXPECT_EQ(l.reason, "ran: no cache entry");
}

TEST_F(CacheIndexFixture, StoringAgainUnderAKeyReplacesItsIndexRecord) {
  store_and_index();
  auto cache = ResultCache::open(cache_dir()).value();
  store_again(*cache);
  CacheLookup again = cache->lookup(task());
  ASSERT_TRUE(again.hit);
  EXPECT_EQ(again.hit->stdout_data, "second stdout");
  cache->flush_index();
  auto reopened = ResultCache::open(cache_dir()).value();
  CacheLookup third = reopened->lookup(task());
  ASSERT_TRUE(third.hit);
  EXPECT_EQ(third.hit->stdout_data, "second stdout");
}

// Two caches on one directory (as two runs): each flush merges what the other wrote, under the
// lock, and a reader never sees a torn index.
TEST_F(CacheIndexFixture, ConcurrentFlushesOnOneDirectoryMergeAndNeverTearTheIndex) {
  constexpr int kFiles = 40;
  for (int i = 0; i < kFiles; ++i) {
    write_file(dir.file(std::string("f").append(std::to_string(i))), std::to_string(i));
  }
  age_past_racy_margin();
  auto a = ResultCache::open(cache_dir()).value();
  auto b = ResultCache::open(cache_dir()).value();
  std::atomic<bool> done{false};
  std::atomic<int> damaged{0};
  std::thread reader([&] {
    while (!done) {
      auto c = ResultCache::open(cache_dir());
      if (c && !(*c)->notices().empty()) ++damaged;
    }
  });
  auto writer = [&](ResultCache& cache, int parity) {
    for (int i = parity; i < kFiles; i += 2) {
      auto h = cache.hash_files({dir.file(std::string("f").append(std::to_string(i)))});
      EXPECT_TRUE(h[0]);
      cache.flush_index();
    }
  };
  std::thread ta([&] { writer(*a, 0); });
  std::thread tb([&] { writer(*b, 1); });
  ta.join();
  tb.join();
  done = true;
  reader.join();
  EXPECT_EQ(damaged.load(), 0);
  detail::FileIndex merged;
  ASSERT_EQ(detail::decode_file_index(read_file(cache_dir() + "/files.idx"), merged), "");
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_TRUE(merged.contains(dir.file(std::string("f").append(std::to_string(i))))) << i;
  }
}

std::uint64_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// An index is written when it changed since it was loaded or last written, and only then.
TEST_F(CacheIndexFixture, FlushWritesAnIndexOnlyWhenItChanged) {
  ResultCache::open(cache_dir()).value()->flush_index();
  EXPECT_FALSE(fs::exists(cache_dir() + "/files.idx"));
  EXPECT_FALSE(fs::exists(cache_dir() + "/entries.idx"));
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup l = cache->lookup(task());
  ExecutionResult r = ExecutionResult::success(1, std::chrono::milliseconds(3));
  ASSERT_TRUE(cache->store(task(), l, r));
  age_past_racy_margin();
  ASSERT_TRUE(cache->lookup(task()).hit);  // hashes the aged files, reads the entry
  cache->flush_index();
  const std::uint64_t files = inode_of(cache_dir() + "/files.idx");
  const std::uint64_t entries = inode_of(cache_dir() + "/entries.idx");
  ASSERT_NE(files, 0u);
  ASSERT_NE(entries, 0u);
  cache->flush_index();  // nothing new: neither file is replaced
  EXPECT_EQ(inode_of(cache_dir() + "/files.idx"), files);
  EXPECT_EQ(inode_of(cache_dir() + "/entries.idx"), entries);
}

// A run that only reads an entry (another run stored it) records it in entries.idx.
TEST_F(CacheIndexFixture, EntryReadByALaterRunIsIndexedAtItsFlush) {
  {
    auto cache = ResultCache::open(cache_dir()).value();
    CacheLookup l = cache->lookup(task());
    ExecutionResult r = ExecutionResult::success(1, std::chrono::milliseconds(3));
    r.stdout_data = "stored stdout";
    ASSERT_TRUE(cache->store(task(), l, r));
  }
  EXPECT_EQ(read_file(cache_dir() + "/entries.idx").find("stored stdout"), std::string::npos);
  age_past_racy_margin();
  ASSERT_TRUE(ResultCache::open(cache_dir()).value()->lookup(task()).hit);
  EXPECT_NE(read_file(cache_dir() + "/entries.idx").find("stored stdout"), std::string::npos);
}

// Damaged indexes are rewritten whole at the next flush, even when the run looked nothing up.
TEST_F(CacheIndexFixture, DamagedIndexesAreRewrittenAtTheNextFlush) {
  store_and_index();
  for (const char* name : {"/files.idx", "/entries.idx"}) {
    const std::string text = read_file(cache_dir() + name);
    write_file(cache_dir() + name, text.substr(0, text.size() / 2));
  }
  EXPECT_EQ(ResultCache::open(cache_dir()).value()->notices().size(), 2u);
  EXPECT_TRUE(ResultCache::open(cache_dir()).value()->notices().empty());
}

// Another run holding index.lock (in its flush) makes this flush wait for it.
TEST_F(CacheIndexFixture, FlushWaitsWhileAnotherRunHoldsTheIndexLock) {
  age_past_racy_margin();
  auto cache = ResultCache::open(cache_dir()).value();
  ASSERT_TRUE(cache->hash_files({dir.file("in.txt")})[0]);
  const int held =
      ::open((cache_dir() + "/index.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  std::thread flush([&] { cache->flush_index(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(fs::exists(cache_dir() + "/files.idx")) << "written under another run's lock";
  ::flock(held, LOCK_UN);
  flush.join();
  ::close(held);
  EXPECT_TRUE(fs::exists(cache_dir() + "/files.idx"));
}

// gc removes an entry after this run read it: this run's flush does not record it again.
TEST_F(CacheIndexFixture, EntryRemovedAfterThisRunReadItIsNotIndexed) {
  store_and_index();
  fs::remove(cache_dir() + "/entries.idx");
  auto cache = ResultCache::open(cache_dir()).value();
  ASSERT_TRUE(cache->lookup(task()).hit);  // read from entries/ and recorded
  auto report = ResultCache::gc(cache_dir(), {.max_age = std::nullopt, .max_size = 1});
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(report->removed.size(), 1u);
  cache->flush_index();
  CacheLookup l = ResultCache::open(cache_dir()).value()->lookup(task());
  EXPECT_FALSE(l.hit);
  EXPECT_EQ(l.reason, "ran: no cache entry");
}

// An entry stored again and read back in the same run, whose entries.idx cannot be rewritten:
// the old record on disk must not survive to give the next run the old result.
TEST_F(CacheIndexFixture, EntryStoredAgainAndReadBackLeavesNoStaleRecordWhenTheFlushFails) {
  store_and_index();
  auto cache = ResultCache::open(cache_dir()).value();
  store_again(*cache);
  age_past_racy_margin();
  CacheLookup read_back = cache->lookup(task());  // entries/<key> read again and recorded
  ASSERT_TRUE(read_back.hit);
  ASSERT_EQ(read_back.hit->stdout_data, "second stdout");
  const std::string blocker =
      cache_dir() + "/entries.idx.tmp." + std::to_string(static_cast<unsigned long>(::gettid()));
  ASSERT_TRUE(fs::create_directory(blocker));
  cache->flush_index();
  fs::remove(blocker);
  CacheLookup next_run = ResultCache::open(cache_dir()).value()->lookup(task());
  ASSERT_TRUE(next_run.hit) << next_run.reason;
  EXPECT_EQ(next_run.hit->stdout_data, "second stdout");
}

}  // namespace
}  // namespace pepita::pool
