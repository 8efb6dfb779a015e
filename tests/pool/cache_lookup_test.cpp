// The result cache's decisions and stores (pool/cache.hpp), field by field: the key fields of a
// process and of a pipeline, the reason text (its hashes, its limit of three, a changed task),
// what a hit and a store fill in, entries larger than a read, and the write and read failures
// of the cache's own files (made real with a seccomp filter in a forked child).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <seccomp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cache_support.hpp"
#include "common/child.hpp"
#include "common/file_text.hpp"
#include "common/syscall_fault.hpp"
#include "common/temp_dir.hpp"
#include "detail/cache_index.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/pool/cache.hpp"

namespace pepita::pool {
namespace {

namespace fs = std::filesystem;
using executor::ExecutionResult;
using task::Task;
using test_support::age;
using test_support::digest_of_parts;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc | std::ios::binary) << text;
}

std::size_t files_in(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.exists() ? 1 : 0;
  return n;
}

struct CacheLookupFixture : ::testing::Test {
  test::TempDir dir{"cache-lookup"};
  std::string cache_dir() const { return dir.file("cache"); }
  void SetUp() override { write_file(dir.file("in.txt"), "input one\n"); }

  // /bin/cat in the test's directory reading in.txt into out.txt (no process runs: the tests
  // store fake results).
  task::Builder cat(std::string name = "t") const {
    return Task::binary("/bin/cat")
        .name(std::move(name))
        .args({"in.txt"})
        .cwd(dir.path())
        .inputs({"in.txt"})
        .outputs({"out.txt"});
  }
  // A fake success with `out` as stdout, stored for `task` (its outputs written first).
  void store(ResultCache& cache, const Task& task, const std::string& out = "hello") {
    CacheLookup l = cache.lookup(task);
    ASSERT_FALSE(l.key.empty()) << l.reason;
    for (const auto& o : task.outputs()) write_file(dir.file(o), "out");
    ExecutionResult r = ExecutionResult::success(task.id(), std::chrono::milliseconds(5));
    r.stdout_data = out;
    ASSERT_TRUE(cache.store(task, l, r));
  }
};

TEST_F(CacheLookupFixture, KeyFieldsOfOneProcessAreItsCommandCwdBinaryHashAndSpec) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = cat().build().value();
  CacheLookup l = cache->lookup(t);
  const std::string bin = sha256_file("/bin/cat").value();
  EXPECT_EQ(l.binary_sha256, bin);
  EXPECT_EQ(l.fields.at("binary"), bin);
  EXPECT_EQ(l.fields.at("command"), "/bin/cat");
  EXPECT_EQ(l.fields.at("cwd"), dir.path());
  EXPECT_EQ(l.fields.at("spec"), t.spec_digest());
  EXPECT_EQ(l.fields.at("resources"), t.resources().to_string());
}

// A pipeline's list fields are digests of every stage's, in order; relative paths start at
// stage 0's working directory (in.txt is not in stage 1's).
TEST_F(CacheLookupFixture, KeyFieldsOfAPipelineDigestEveryStageAndPathsStartAtStageZero) {
  ASSERT_TRUE(fs::create_directory(dir.file("sub")));
  task::BinaryTask first("/bin/cat"), second("/bin/cat");
  first.cwd = dir.path();
  second.cwd = dir.file("sub");
  const Task t = Task::pipeline()
                     .name("pipe")
                     .add_stage(first)
                     .add_stage(second)
                     .inputs({"in.txt"})
                     .outputs({"out.txt"})
                     .build()
                     .value();
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup l = cache->lookup(t);
  ASSERT_FALSE(l.key.empty()) << l.reason;
  EXPECT_EQ(l.inputs.at("in.txt"), sha256_hex("input one\n"));
  const std::string bin = sha256_file("/bin/cat").value();
  EXPECT_EQ(l.binary_sha256, bin);
  EXPECT_EQ(l.fields.at("binary"), digest_of_parts({bin, bin}));
  EXPECT_EQ(l.fields.at("command"), digest_of_parts({"/bin/cat", "/bin/cat"}));
  EXPECT_EQ(l.fields.at("cwd"), digest_of_parts({dir.path(), dir.file("sub")}));
}

// Same stages, no longer connected: no key field differs but the task does.
TEST_F(CacheLookupFixture, ChangedPipeOutputIsAMissSayingTheTaskChanged) {
  auto pipeline = [&](bool piped) {
    task::BinaryTask stage("/bin/cat");
    stage.cwd = dir.path();
    task::PipelineTask p;
    p.add_stage(stage).add_stage(stage).with_pipe_output(piped);
    return Task::pipeline(p).name("pipe").inputs({"in.txt"}).outputs({"out.txt"}).build().value();
  };
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup first = cache->lookup(pipeline(true));
  write_file(dir.file("out.txt"), "out");
  ExecutionResult r = ExecutionResult::success(1, std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(pipeline(true), first, r));
  ASSERT_TRUE(cache->lookup(pipeline(true)).hit);
  EXPECT_EQ(cache->lookup(pipeline(false)).reason, "ran: task changed");
}

// A reason names three differences at most and counts the rest.
TEST_F(CacheLookupFixture, ReasonListsThreeDifferencesAndCountsTheRest) {
  auto cache = ResultCache::open(cache_dir()).value();
  store(*cache, cat().build().value());
  task::ResourceRequest req;
  req.cpus = 1;
  auto changed = [&](int n) {
    task::Builder b = cat();
    b.args({"in.txt", "-"});
    if (n > 1) b.env("A", "1");
    if (n > 2) b.stdin("x");
    if (n > 3) b.backend(task::Backend::Remote);
    if (n > 4) b.resources(req);
    return cache->lookup(b.build().value()).reason;
  };
  EXPECT_EQ(changed(1), "ran: args changed");
  EXPECT_EQ(changed(3), "ran: args changed, env changed, stdin changed");
  EXPECT_EQ(changed(4), "ran: args changed, env changed, stdin changed and 1 more");
  EXPECT_EQ(changed(5), "ran: args changed, env changed, stdin changed and 2 more");
}

TEST_F(CacheLookupFixture, ChangedInputReasonShowsEightHexDigitsOfEachHash) {
  auto cache = ResultCache::open(cache_dir()).value();
  store(*cache, cat().build().value());
  write_file(dir.file("in.txt"), "input two\n");
  EXPECT_EQ(cache->lookup(cat().build().value()).reason,
            "ran: input in.txt changed (hash " + sha256_hex("input one\n").substr(0, 8) +
                "\u2026 \u2192 " + sha256_hex("input two\n").substr(0, 8) + "\u2026)");
}

// The hit is the stored result made this task's: its id and name, from_cache, the inputs just
// hashed and the reason.
TEST_F(CacheLookupFixture, HitCarriesTheLookingTasksIdNameInputsAndReason) {
  auto cache = ResultCache::open(cache_dir()).value();
  store(*cache, cat().build().value());
  const Task again = cat().build().value();
  CacheLookup l = cache->lookup(again);
  ASSERT_TRUE(l.hit) << l.reason;
  EXPECT_EQ(l.hit->id, again.id());
  EXPECT_EQ(l.hit->name, "t");
  EXPECT_TRUE(l.hit->from_cache);
  EXPECT_EQ(l.hit->input_hashes, l.inputs);
  EXPECT_EQ(l.hit->cache_reason, "cached");
  EXPECT_EQ(l.hit->stdout_data, "hello");
}

TEST_F(CacheLookupFixture, StoreFillsTheInputHashesAndBinaryOnlyWhenTheResultHasNone) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = cat().build().value();
  CacheLookup l = cache->lookup(t);
  write_file(dir.file("out.txt"), "out");
  ExecutionResult empty = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(t, l, empty));
  EXPECT_EQ(empty.input_hashes, l.inputs);
  EXPECT_EQ(empty.binary_sha256, l.binary_sha256);
  ExecutionResult given = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
  given.input_hashes = {{"other.txt", sha256_hex("other")}};
  given.binary_sha256 = sha256_hex("another binary");
  ASSERT_TRUE(cache->store(t, l, given));
  EXPECT_EQ(given.input_hashes.size(), 1u);
  EXPECT_EQ(given.input_hashes.at("other.txt"), sha256_hex("other"));
  EXPECT_EQ(given.binary_sha256, sha256_hex("another binary"));
}

// Declaring only inputs or only outputs is enough to be cached.
TEST_F(CacheLookupFixture, TaskWithOnlyOutputsOrOnlyInputsIsCached) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task generator =
      Task::binary("/bin/true").name("gen").cwd(dir.path()).outputs({"out.txt"}).build().value();
  store(*cache, generator);
  EXPECT_TRUE(cache->lookup(generator).hit);
  const Task reader =
      Task::binary("/bin/true").name("read").cwd(dir.path()).inputs({"in.txt"}).build().value();
  CacheLookup l = cache->lookup(reader);
  EXPECT_FALSE(l.key.empty());
  EXPECT_EQ(l.reason, "ran: no cache entry");
}

TEST_F(CacheLookupFixture, OpenRefusesAnEmptyNameAndAPathUnderAFileSayingWhatToPass) {
  auto empty = ResultCache::open("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(empty.error().message(), "result cache: empty directory name");
  const std::string bad = dir.file("in.txt") + "/cache";
  auto under_file = ResultCache::open(bad);
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().code(), ErrorCode::Io);
  EXPECT_EQ(under_file.error().message(),
            "cannot create the result cache directory '" + bad +
                "': Not a directory; pass --cache-dir DIR or --no-cache");
}

// entries/<key> holding another key's (valid) entry is not that key's entry.
TEST_F(CacheLookupFixture, EntryFiledUnderAnotherKeyIsAMiss) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task a = cat("a").build().value(), b = cat("b").args({"-"}).build().value();
  store(*cache, a);
  store(*cache, b);
  const std::string key_a = cache->lookup(a).key, key_b = cache->lookup(b).key;
  ASSERT_NE(key_a, key_b);
  fs::copy_file(cache_dir() + "/entries/" + key_a, cache_dir() + "/entries/" + key_b,
                fs::copy_options::overwrite_existing);
  fs::remove(cache_dir() + "/entries.idx");
  auto cold = ResultCache::open(cache_dir()).value();
  EXPECT_FALSE(cold->lookup(b).hit);
  EXPECT_TRUE(cold->lookup(a).hit);
}

// Entries are read 64 KiB at a time: one of several reads, and one that ends exactly at a read's
// end (the next read returns 0), come back whole.
TEST_F(CacheLookupFixture, EntriesLongerThanOneReadOrEndingAtAReadBoundaryAreHits) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = cat().build().value();
  const std::string big(200'000, 'x');
  store(*cache, t, big);
  CacheLookup l = cache->lookup(t);
  ASSERT_TRUE(l.hit) << l.reason;
  EXPECT_EQ(l.hit->stdout_data, big);

  // Grow stdout until the entry file is exactly 4 x 64 KiB.
  const std::string entry = cache_dir() + "/entries/" + l.key;
  std::string out = big;
  for (int i = 0; i < 5 && fs::file_size(entry) != 4 * 65536u; ++i) {
    out.resize(out.size() + (4 * 65536 - fs::file_size(entry)), 'y');
    store(*cache, t, out);
  }
  ASSERT_EQ(fs::file_size(entry), 4 * 65536u);
  CacheLookup exact = cache->lookup(t);
  ASSERT_TRUE(exact.hit) << exact.reason;
  EXPECT_EQ(exact.hit->stdout_data, out);
}

// A declared output under a regular file cannot be read (ENOTDIR): not "does not exist".
TEST_F(CacheLookupFixture, OutputThatCannotBeReadIsNamedWithTheErrorNotAsMissing) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = Task::binary("/bin/true")
                     .name("t")
                     .cwd(dir.path())
                     .inputs({"in.txt"})
                     .outputs({"in.txt/out"})
                     .build()
                     .value();
  CacheLookup l = cache->lookup(t);
  ExecutionResult r = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
  auto stored = cache->store(t, l, r);
  ASSERT_FALSE(stored);
  EXPECT_EQ(stored.error().message(),
            "task 't' succeeded but its declared output in.txt/out "
            "cannot be read: " +
                dir.file("in.txt") + "/out: Not a directory");
  fs::remove(dir.file("in.txt"));
  auto missing = cache->store(t, l, r);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);
  EXPECT_EQ(missing.error().message(),
            "task 't' succeeded but its declared output in.txt/out does not exist");
}

// After the first write failure nothing more is stored; without a key nothing is tried.
TEST_F(CacheLookupFixture, StoreWritesNothingWithoutAKeyOrAfterAWarning) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = cat().build().value();
  write_file(dir.file("out.txt"), "out");
  ExecutionResult r = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(t, CacheLookup{}, r));
  EXPECT_EQ(r.output_hashes.at("out.txt"), sha256_hex("out"));
  EXPECT_FALSE(cache->warning());
  EXPECT_EQ(files_in(cache_dir() + "/entries"), 0u);

  // names/<sha256 of the name> is a directory with a file in it: renaming onto it fails.
  const std::string last_key = cache_dir() + "/names/" + sha256_hex("t");
  ASSERT_TRUE(fs::create_directories(last_key + "/in-the-way"));
  store(*cache, t);
  auto warning = cache->warning();
  ASSERT_TRUE(warning);
  EXPECT_NE(warning->message().find("cannot write a task's last key: Is a directory"),
            std::string::npos)
      << warning->message();
  EXPECT_EQ(files_in(cache_dir() + "/names"), 1u) << "the temporary file is removed";
  EXPECT_EQ(files_in(cache_dir() + "/entries"), 1u);
  store(*cache, cat("other").build().value());
  EXPECT_EQ(files_in(cache_dir() + "/entries"), 1u) << "storing is off after the warning";
}

// Runs `body` in a forked child under a 60 s limit (a loop that never ends fails the test).
void in_child(const std::function<void()>& body) {
  EXPECT_EQ(test::run_forked(body, std::chrono::seconds(60)), std::optional<int>(0));
}

TEST_F(CacheLookupFixture, EntryWriteThatFailsWarnsWithTheErrnoAndLeavesNoFile) {
  for (const auto& [nr, err, text] :
       {std::tuple{SCMP_SYS(write), ENOSPC, "No space left on device"},
        std::tuple{SCMP_SYS(close), EIO, "Input/output error"}}) {
    in_child([&, nr = nr, err = err, text = std::string(text)] {
      auto cache = ResultCache::open(cache_dir()).value();
      const Task t = cat().build().value();
      CacheLookup l = cache->lookup(t);
      write_file(dir.file("out.txt"), "out");
      ExecutionResult r = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
      ASSERT_EQ(test::fail_syscalls({{.nr = nr, .error = err}}), "");
      EXPECT_TRUE(cache->store(t, l, r));
      auto warning = cache->warning();
      ASSERT_TRUE(warning);
      EXPECT_EQ(warning->sys_errno(), err);
      EXPECT_NE(warning->message().find("cannot write an entry: " + text), std::string::npos)
          << warning->message();
      EXPECT_EQ(files_in(cache_dir() + "/entries"), 0u);
    });
  }
}

// An entry that cannot be read is a miss, at once (no retry loop).
TEST_F(CacheLookupFixture, EntryThatCannotBeReadIsAMiss) {
  write_file(dir.file("out.txt"), "out");
  age(dir.file("in.txt"));
  age(dir.file("out.txt"));
  {
    auto cache = ResultCache::open(cache_dir()).value();
    store(*cache, cat().build().value());
    ASSERT_TRUE(cache->lookup(cat().build().value()).hit);  // every file hash indexed
  }
  fs::remove(cache_dir() + "/entries.idx");
  in_child([&] {
    auto cache = ResultCache::open(cache_dir()).value();
    ASSERT_EQ(test::fail_syscalls({{.nr = SCMP_SYS(read), .error = EIO}}), "");
    CacheLookup l = cache->lookup(cat().build().value());
    EXPECT_FALSE(l.hit);
    EXPECT_EQ(l.reason, "ran: no cache entry");
  });
}

// One hashing thread, or the default (one per CPU, at least 2), hashes any number of files.
TEST_F(CacheLookupFixture, OneOrTheDefaultNumberOfHashThreadsHashSeveralFiles) {
  for (unsigned threads : {1u, 0u})
    in_child([&] {
      auto cache = ResultCache::open(cache_dir(), {.hash_threads = threads}).value();
      std::vector<std::string> paths;
      for (int i = 0; i < 4; ++i) {
        paths.push_back(dir.file("f" + std::to_string(i)));
        write_file(paths.back(), std::to_string(i));
      }
      auto h = cache->hash_files(paths);
      ASSERT_EQ(h.size(), 4u);
      for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(h[i]) << i;
        EXPECT_EQ(*h[i], sha256_hex(std::to_string(i)));
      }
    });
}

// files.idx is trusted while a file's stat is unchanged: a record with this file's exact stamp
// and another hash is what hash_files returns (the file is not read); one with another stamp
// is not used, whatever the StatPolicy.
TEST_F(CacheLookupFixture, IndexRecordIsUsedExactlyWhileItsStampMatches) {
  const std::string f = dir.file("f");
  write_file(f, "real");
  age(f);
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  auto forge = [&](detail::FileStamp stamp) {
    ASSERT_TRUE(fs::create_directories(cache_dir()) || fs::is_directory(cache_dir()));
    write_file(cache_dir() + "/files.idx",
               detail::encode_file_index({{f, {stamp, sha256_hex("forged")}}}));
  };
  const detail::FileStamp now = detail::FileStamp::of(st);
  for (StatPolicy policy : {StatPolicy::EveryLookup, StatPolicy::OncePerRun}) {
    forge(now);
    auto cache = ResultCache::open(cache_dir(), {.stats = policy}).value();
    EXPECT_EQ(cache->hash_files({f})[0].value(), sha256_hex("forged"));
    detail::FileStamp stale = now;
    stale.mtime += 1;
    forge(stale);
    auto other = ResultCache::open(cache_dir(), {.stats = policy}).value();
    EXPECT_EQ(other->hash_files({f})[0].value(), sha256_hex("real"));
  }
  // OncePerRun: a record loaded from files.idx and confirmed by this run's stat is reused
  // without another stat.
  forge(now);
  auto once = ResultCache::open(cache_dir(), {.stats = StatPolicy::OncePerRun}).value();
  EXPECT_EQ(once->hash_files({f})[0].value(), sha256_hex("forged"));
  write_file(f, "edited during the run");
  EXPECT_EQ(once->hash_files({f})[0].value(), sha256_hex("forged"));
}

// OncePerRun: a file a task of the run writes after another task's check confirmed it is
// stat'ed again, whether the task stores its outputs or only ran (note_ran).
TEST_F(CacheLookupFixture, OncePerRunStatsAFileAgainOnceATaskOfTheRunWroteIt) {
  const std::string mid = dir.file("mid.txt");
  auto declaring = [&](std::string name, std::string in, std::string out) {
    return Task::binary("/bin/true")
        .name(std::move(name))
        .cwd(dir.path())
        .inputs({std::move(in)})
        .outputs({std::move(out)})
        .build()
        .value();
  };
  const Task reader = declaring("reader", "mid.txt", "r.txt");
  const Task writer = declaring("writer", "in.txt", "mid.txt");
  for (bool stores : {true, false}) {
    fs::remove_all(cache_dir());  // a cold cache: the writer is a miss
    write_file(mid, "first\n");
    age(mid);
    auto cache = ResultCache::open(cache_dir(), {.stats = StatPolicy::OncePerRun}).value();
    ASSERT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("first\n"));
    CacheLookup w = cache->lookup(writer);
    ASSERT_FALSE(w.hit);
    // The reader is checked again before the writer runs: mid.txt is confirmed again.
    ASSERT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("first\n"));
    write_file(mid, "written\n");
    if (stores) {
      ExecutionResult r = ExecutionResult::success(writer.id(), std::chrono::milliseconds(1));
      ASSERT_TRUE(cache->store(writer, w, r));
      EXPECT_EQ(r.output_hashes.at("mid.txt"), sha256_hex("written\n"));
    } else {
      cache->note_ran(writer);
    }
    EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("written\n"))
        << (stores ? "after store" : "after note_ran");
  }
}

}  // namespace
}  // namespace pepita::pool
