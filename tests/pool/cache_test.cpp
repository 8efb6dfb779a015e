// The result cache (pool/cache.hpp): hits, a miss per key field with its reason, outputs that
// changed, corrupt entries, an unwritable directory, and the pool's use of it.
#include "pepita/pool/cache.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <set>
#include <stop_token>
#include <thread>
#include <vector>

#include "cache_support.hpp"
#include "common/temp_dir.hpp"
#include "detail/cache_entry.hpp"
#include "detail/cache_executor.hpp"
#include "detail/state.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/fault/result_record.hpp"
#include "pepita/pool/pool.hpp"
#include "refusing_executor.hpp"

namespace pepita::pool {
namespace {

namespace fs = std::filesystem;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A task in `dir` that copies in.txt (with `suffix` appended) to out.txt.
Task copier(const std::string& dir, const std::string& suffix = "", std::string name = "copy") {
  return Task::binary("/bin/sh")
      .name(std::move(name))
      .args({"-c", "cat in.txt > out.txt && printf '" + suffix + "' >> out.txt && echo done"})
      .cwd(dir)
      .inputs({"in.txt"})
      .outputs({"out.txt"})
      .build()
      .value();
}

ExecutionResult run_in(const std::string& cache_dir, Task task) {
  auto pool = Pool::builder().process_slots(2).cache(cache_dir).build();
  EXPECT_TRUE(pool) << pool.error().message();
  auto r = pool->run(std::move(task));
  EXPECT_TRUE(r) << r.error().message();
  return *r;
}

// A fake successful run stored for `task` (no process needed for the key-field tests).
void store_success(ResultCache& cache, const Task& task) {
  CacheLookup l = cache.lookup(task);
  ASSERT_FALSE(l.key.empty()) << l.reason;
  write_file(fs::path(task.process()->cwd) / "out.txt", "out");
  ExecutionResult r = ExecutionResult::success(task.id(), std::chrono::milliseconds(5));
  r.stdout_data = "hello";
  ASSERT_TRUE(cache.store(task, l, r));
}

struct CacheFixture : ::testing::Test {
  test::TempDir dir{"cache"};
  std::string cache_dir() const { return dir.file("cache"); }
  void SetUp() override { write_file(dir.file("in.txt"), "input one\n"); }
};

TEST_F(CacheFixture, SecondRunOfAnUnchangedTaskIsCachedWithTheOriginalResult) {
  ExecutionResult first = run_in(cache_dir(), copier(dir.path()));
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.cache_reason, "ran: no cache entry");
  EXPECT_EQ(first.output_hashes.at("out.txt"), sha256_hex("input one\n"));
  EXPECT_EQ(first.input_hashes.at("in.txt"), sha256_hex("input one\n"));
  EXPECT_EQ(first.binary_sha256.size(), 64u);
  EXPECT_FALSE(first.host.empty());

  ExecutionResult second = run_in(cache_dir(), copier(dir.path()));
  ASSERT_TRUE(second.ok()) << second.error;
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.cache_reason, "cached");
  EXPECT_EQ(second.stdout_data, "done\n");
  EXPECT_EQ(second.exit_code, 0);
  EXPECT_EQ(second.wall, first.wall);
  EXPECT_EQ(second.output_hashes, first.output_hashes);
}

TEST_F(CacheFixture, PoolCountsCachedTasksAndTellsTheObserver) {
  run_in(cache_dir(), copier(dir.path()));
  std::atomic<int> cached_events{0};
  auto pool = Pool::builder()
                  .cache(cache_dir())
                  .on_event([&](const Event& e) {
                    if (e.kind == Event::Kind::Finished && e.result && e.result->from_cache) {
                      ++cached_events;
                    }
                  })
                  .build();
  ASSERT_TRUE(pool);
  auto r = pool->run(copier(dir.path()));
  ASSERT_TRUE(r);
  pool->wait_idle();
  EXPECT_TRUE(r->from_cache);
  EXPECT_EQ(pool->stats().from_cache, 1u);
  EXPECT_EQ(cached_events.load(), 1);
}

TEST_F(CacheFixture, ChangedInputIsAMissNamingTheInputAndBothHashes) {
  run_in(cache_dir(), copier(dir.path()));
  write_file(dir.file("in.txt"), "input two\n");
  ExecutionResult r = run_in(cache_dir(), copier(dir.path()));
  EXPECT_FALSE(r.from_cache);
  EXPECT_NE(r.cache_reason.find("input in.txt changed"), std::string::npos) << r.cache_reason;
  EXPECT_NE(r.cache_reason.find(sha256_hex("input one\n").substr(0, 8)), std::string::npos)
      << r.cache_reason;
  EXPECT_NE(r.cache_reason.find(sha256_hex("input two\n").substr(0, 8)), std::string::npos)
      << r.cache_reason;
  EXPECT_EQ(read_file(dir.file("out.txt")), "input two\n");
}

TEST_F(CacheFixture, ChangedArgsIsAMissSayingArgsChanged) {
  run_in(cache_dir(), copier(dir.path()));
  ExecutionResult r = run_in(cache_dir(), copier(dir.path(), "x"));
  EXPECT_FALSE(r.from_cache);
  EXPECT_EQ(r.cache_reason, "ran: args changed");
}

TEST_F(CacheFixture, EachKeyFieldChangeIsAMissWithItsReason) {
  auto cache = ResultCache::open(cache_dir());
  ASSERT_TRUE(cache) << cache.error().message();
  auto base = [&] {
    return Task::binary("/bin/cat")
        .name("t")
        .args({"in.txt"})
        .cwd(dir.path())
        .inputs({"in.txt"})
        .outputs({"out.txt"});
  };
  store_success(**cache, base().build().value());
  EXPECT_EQ((*cache)->lookup(base().build().value()).reason, "cached");

  struct Case {
    const char* want;
    task::Builder builder;
  };
  task::ResourceRequest req;
  req.cpus = 1;
  std::vector<Case> cases;
  cases.push_back({"ran: env changed", base().env("A", "1")});
  cases.push_back({"ran: stdin changed", base().stdin("x")});
  cases.push_back({"ran: resources changed", base().resources(req)});
  cases.push_back({"ran: backend changed", base().backend(task::Backend::Remote)});
  for (auto& c : cases) {
    auto t = c.builder.build();
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ((*cache)->lookup(*t).reason, c.want);
  }
  // Another binary with the same command line: its content is part of the key.
  write_file(dir.file("tool"), "#!/bin/sh\ncat \"$@\"\n");
  ::chmod(dir.file("tool").c_str(), 0755);
  auto tool = [&] {
    return Task::binary(dir.file("tool"))
        .name("u")
        .args({"in.txt"})
        .cwd(dir.path())
        .inputs({"in.txt"})
        .outputs({"out.txt"});
  };
  store_success(**cache, tool().build().value());
  write_file(dir.file("tool"), "#!/bin/sh\ncat \"$@\" # v2\n");
  EXPECT_EQ((*cache)->lookup(tool().build().value()).reason, "ran: binary changed");
}

TEST_F(CacheFixture, MissingOutputIsAMissNamingTheOutput) {
  run_in(cache_dir(), copier(dir.path()));
  ASSERT_TRUE(fs::remove(dir.file("out.txt")));
  ExecutionResult missing = run_in(cache_dir(), copier(dir.path()));
  EXPECT_FALSE(missing.from_cache);
  EXPECT_EQ(missing.cache_reason, "ran: output out.txt missing");
  EXPECT_EQ(read_file(dir.file("out.txt")), "input one\n");
}

// make's rule: an output edited after the cached run is kept (not overwritten by running its
// producer again); the producer stays cached, saying so, and the tasks reading it re-run.
TEST_F(CacheFixture, EditedOutputIsKeptAndItsProducerStaysCachedSayingSo) {
  run_in(cache_dir(), copier(dir.path()));
  write_file(dir.file("out.txt"), "edited\n");
  ExecutionResult r = run_in(cache_dir(), copier(dir.path()));
  EXPECT_TRUE(r.from_cache);
  EXPECT_EQ(r.cache_reason, "cached (output out.txt edited since; kept, its readers re-run)");
  EXPECT_EQ(read_file(dir.file("out.txt")), "edited\n");
}

TEST_F(CacheFixture, CorruptOrTruncatedEntryIsAMissNotAnError) {
  run_in(cache_dir(), copier(dir.path()));
  std::size_t damaged = 0;
  for (const auto& e : fs::directory_iterator(cache_dir() + "/entries")) {
    std::string text = read_file(e.path());
    ASSERT_GT(text.size(), 100u);
    text[text.size() / 2] ^= 1;  // one flipped bit
    write_file(e.path(), text);
    ++damaged;
  }
  ASSERT_EQ(damaged, 1u);
  ExecutionResult r = run_in(cache_dir(), copier(dir.path()));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_FALSE(r.from_cache);
  // The rerun stored a good entry again; a truncated one is a miss too.
  for (const auto& e : fs::directory_iterator(cache_dir() + "/entries")) {
    const std::string text = read_file(e.path());
    write_file(e.path(), text.substr(0, text.size() / 3));
  }
  ExecutionResult again = run_in(cache_dir(), copier(dir.path()));
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_FALSE(again.from_cache);
}

TEST_F(CacheFixture, UnwritableCacheDirectoryRunsUncachedWithAWarning) {
  write_file(dir.file("blocker"), "a file where the cache directory should go");
  const std::string bad = dir.file("blocker") + "/cache";
  auto pool = Pool::builder().cache(bad).build();
  ASSERT_TRUE(pool) << pool.error().message();
  auto warning = pool->cache_warning();
  ASSERT_TRUE(warning);
  EXPECT_NE(warning->message().find(bad), std::string::npos) << warning->message();
  auto r = pool->run(copier(dir.path()));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok()) << r->error;
  EXPECT_FALSE(r->from_cache);
  EXPECT_EQ(read_file(dir.file("out.txt")), "input one\n");
}

TEST_F(CacheFixture, MissingDeclaredOutputFailsTheTaskNamingTheFile) {
  auto t = Task::binary("/bin/true")
               .name("liar")
               .cwd(dir.path())
               .inputs({"in.txt"})
               .outputs({"never-written.txt"});
  ExecutionResult r = run_in(cache_dir(), t.build().value());
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("never-written.txt"), std::string::npos) << r.error;
  EXPECT_TRUE(fs::is_empty(cache_dir() + "/entries"));
}

TEST_F(CacheFixture, DependentOfATaskThatReRanSaysSo) {
  auto pair = [&] {
    std::vector<Task> tasks;
    tasks.push_back(Task::binary("/bin/sh")
                        .name("first")
                        .args({"-c", "cp in.txt mid.txt"})
                        .cwd(dir.path())
                        .inputs({"in.txt"})
                        .outputs({"mid.txt"})
                        .build()
                        .value());
    tasks.push_back(Task::binary("/bin/sh")
                        .name("second")
                        .args({"-c", "cp mid.txt out.txt"})
                        .cwd(dir.path())
                        .inputs({"mid.txt"})
                        .outputs({"out.txt"})
                        .depends_on({tasks[0].id()})
                        .build()
                        .value());
    return tasks;
  };
  auto once = [&] {
    auto pool = Pool::builder().cache(cache_dir()).build();
    EXPECT_TRUE(pool);
    EXPECT_TRUE(pool->submit_all(pair()));
    return pool->wait_all();
  };
  once();
  auto cached = once();
  ASSERT_EQ(cached.size(), 2u);
  EXPECT_TRUE(cached[0].from_cache && cached[1].from_cache);
  write_file(dir.file("in.txt"), "input changed\n");
  auto rerun = once();
  ASSERT_EQ(rerun.size(), 2u);
  EXPECT_FALSE(rerun[0].from_cache);
  EXPECT_FALSE(rerun[1].from_cache);
  EXPECT_NE(rerun[1].cache_reason.find("dependency first re-ran"), std::string::npos)
      << rerun[1].cache_reason;
}

TEST_F(CacheFixture, TaskWithoutDeclaredFilesAlwaysRuns) {
  auto t = [] { return Task::binary("/bin/true").name("plain").build().value(); };
  run_in(cache_dir(), t());
  ExecutionResult r = run_in(cache_dir(), t());
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.from_cache);
  EXPECT_NE(r.cache_reason.find("declares no inputs or outputs"), std::string::npos);
}

TEST_F(CacheFixture, HashFilesUsesTheIndexAcrossOpensAndReportsMissingFiles) {
  const std::string a = dir.file("a.bin"), b = dir.file("b.bin");
  write_file(a, std::string(3 << 20, 'a'));
  write_file(b, "bee");
  // Old enough not to be "racily clean" (changed within the index's margin).
  const struct timespec old[2] = {{1'600'000'000, 0}, {1'600'000'000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, a.c_str(), old, 0), 0);
  ::usleep(200'000);  // the ctime the touch set must also age past the margin
  {
    auto cache = ResultCache::open(cache_dir()).value();
    auto h = cache->hash_files({a, b, dir.file("missing")});
    ASSERT_EQ(h.size(), 3u);
    ASSERT_TRUE(h[0]);
    EXPECT_EQ(*h[0], sha256_hex(std::string(3 << 20, 'a')));
    ASSERT_TRUE(h[1]);
    EXPECT_EQ(*h[1], sha256_hex("bee"));
    ASSERT_FALSE(h[2]);
    EXPECT_EQ(h[2].error().code(), ErrorCode::NotFound);
  }
  EXPECT_NE(read_file(cache_dir() + "/files.idx").find(a), std::string::npos);
  auto cache = ResultCache::open(cache_dir()).value();
  auto h = cache->hash_files({a});
  ASSERT_TRUE(h[0]);
  EXPECT_EQ(*h[0], sha256_hex(std::string(3 << 20, 'a')));
}

// A task in `dir` declaring one input and one output (no process runs: the tests store fake
// results).
Task declaring(const std::string& dir, std::string name, std::string input, std::string output) {
  return Task::binary("/bin/true")
      .name(std::move(name))
      .cwd(dir)
      .inputs({std::move(input)})
      .outputs({std::move(output)})
      .build()
      .value();
}

using test_support::age;

TEST_F(CacheFixture, OncePerRunReusesAStatUntilATaskOfTheRunWritesTheFile) {
  const std::string mid = dir.file("mid.txt");
  write_file(mid, "first\n");
  age(mid);
  auto cache = ResultCache::open(cache_dir(), {.stats = StatPolicy::OncePerRun}).value();
  const Task reader = declaring(dir.path(), "reader", "mid.txt", "r.txt");
  const Task writer = declaring(dir.path(), "writer", "in.txt", "mid.txt");
  EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("first\n"));

  // Another process edits the file during the run: this run keeps the stat it took (make's
  // rule); the next run sees the edit.
  write_file(mid, "edited outside\n");
  EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("first\n"));
  auto next_run = ResultCache::open(cache_dir(), {.stats = StatPolicy::OncePerRun}).value();
  EXPECT_EQ(next_run->lookup(reader).inputs.at("mid.txt"), sha256_hex("edited outside\n"));

  // A task of the run that declares the file as its output: the check after it stats again.
  CacheLookup w = cache->lookup(writer);
  ASSERT_FALSE(w.hit);
  write_file(mid, "written by the writer\n");
  ExecutionResult r = ExecutionResult::success(writer.id(), std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(writer, w, r));
  EXPECT_EQ(r.output_hashes.at("mid.txt"), sha256_hex("written by the writer\n"));
  EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("written by the writer\n"));
}

TEST_F(CacheFixture, EveryLookupSeesAnEditBetweenTwoLookups) {
  const std::string mid = dir.file("mid.txt");
  write_file(mid, "first\n");
  age(mid);
  auto cache = ResultCache::open(cache_dir()).value();
  const Task reader = declaring(dir.path(), "reader", "mid.txt", "r.txt");
  EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("first\n"));
  write_file(mid, "edited\n");
  EXPECT_EQ(cache->lookup(reader).inputs.at("mid.txt"), sha256_hex("edited\n"));
}

// The key format of "pepita-cache-key 1", computed here the long way: the lookup's digests
// (one reused context per thread, each message hashed in one piece) must give the same keys as
// before, so caches written by earlier versions still hit.
using test_support::digest_of_parts;

TEST_F(CacheFixture, KeyIsTheDocumentedDigestOfItsFieldsAndInputs) {
  auto cache = ResultCache::open(cache_dir()).value();
  const std::string long_arg(3 << 20, 'x');  // past the reused buffer's kept capacity
  for (const auto& args : std::vector<std::vector<std::string>>{
           {}, {"in.txt"}, {"a", "", "b c"}, {long_arg, "tail"}}) {
    Task t = Task::binary("/bin/cat")
                 .name("k")
                 .args(args)
                 .env("A", "1")
                 .stdin("some stdin")
                 .cwd(dir.path())
                 .inputs({"in.txt"})
                 .outputs({"out.txt"})
                 .build()
                 .value();
    CacheLookup l = cache->lookup(t);
    ASSERT_FALSE(l.key.empty()) << l.reason;
    EXPECT_EQ(l.fields.at("args"), digest_of_parts({digest_of_parts(args)}));
    EXPECT_EQ(l.fields.at("env"), digest_of_parts({digest_of_parts({"inherit", "A=1"})}));
    EXPECT_EQ(l.fields.at("stdin"), digest_of_parts({sha256_hex("some stdin")}));
    EXPECT_EQ(l.inputs.at("in.txt"), sha256_hex("input one\n"));
    Sha256 k;
    k.update("pepita-cache-key 1\n");
    for (const auto& [f, v] : l.fields) k.update(std::string(f).append("=").append(v).append("\n"));
    for (const auto& [p, h] : l.inputs) {
      k.update(std::string("in ").append(p).append(" ").append(h).append("\n"));
    }
    EXPECT_EQ(l.key, k.hex_digest());
  }
}

TEST_F(CacheFixture, LookupsOnSeveralThreadsAgreeOnTheKeyAndTheHit) {
  auto cache = ResultCache::open(cache_dir()).value();
  auto make = [&] {
    return Task::binary("/bin/cat")
        .name("mt")
        .args({"in.txt"})
        .cwd(dir.path())
        .inputs({"in.txt"})
        .outputs({"out.txt"})
        .build()
        .value();
  };
  store_success(*cache, make());
  const std::string want = cache->lookup(make()).key;
  std::vector<std::string> keys(4), reasons(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < 200; ++n) {
        CacheLookup l = cache->lookup(make());
        if (n == 0 || l.key != want) keys[i] = l.key;
        if (n == 0 || l.reason != "cached") reasons[i] = l.reason;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(keys[i], want) << "thread " << i;
    EXPECT_EQ(reasons[i], "cached") << "thread " << i;
  }
}

TEST_F(CacheFixture, TasksItCannotKeyAreMissesNamingWhyAndMakeNoKey) {
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup fn = cache->lookup(Task::function([] {}).name("fn").build().value());
  EXPECT_EQ(fn.reason, "ran: only process and pipeline tasks are cached");
  EXPECT_TRUE(fn.key.empty());
  CacheLookup no_binary = cache->lookup(
      Task::binary("pepita-no-such-binary").cwd(dir.path()).inputs({"in.txt"}).build().value());
  EXPECT_EQ(no_binary.reason, "ran: binary 'pepita-no-such-binary' not found in PATH (not cached)");
  EXPECT_TRUE(no_binary.key.empty());
  CacheLookup absent = cache->lookup(declaring(dir.path(), "t", "absent.txt", "out.txt"));
  EXPECT_EQ(absent.reason.rfind("ran: input absent.txt cannot be read (", 0), 0u) << absent.reason;
  EXPECT_NE(absent.reason.find("No such file"), std::string::npos) << absent.reason;
  EXPECT_TRUE(absent.key.empty());
  ASSERT_TRUE(fs::create_directory(dir.file("subdir")));
  CacheLookup directory = cache->lookup(declaring(dir.path(), "t", "subdir", "out.txt"));
  EXPECT_NE(directory.reason.find("ran: input subdir cannot be read ("), std::string::npos)
      << directory.reason;
  EXPECT_NE(directory.reason.find("not a regular file"), std::string::npos) << directory.reason;
  EXPECT_TRUE(directory.key.empty());
  EXPECT_TRUE(fs::is_empty(cache_dir() + "/entries"));
}

TEST_F(CacheFixture, AddedAndRemovedInputsAreNamedInTheMissReason) {
  write_file(dir.file("more.txt"), "more\n");
  auto with = [&](std::vector<std::string> inputs) {
    return Task::binary("/bin/true")
        .name("t")
        .cwd(dir.path())
        .inputs(std::move(inputs))
        .outputs({"out.txt"})
        .build()
        .value();
  };
  auto cache = ResultCache::open(cache_dir()).value();
  store_success(*cache, with({"in.txt"}));
  CacheLookup added = cache->lookup(with({"in.txt", "more.txt"}));
  EXPECT_FALSE(added.hit);
  EXPECT_NE(added.reason.find("input more.txt added"), std::string::npos) << added.reason;
  store_success(*cache, with({"in.txt", "more.txt"}));
  CacheLookup removed = cache->lookup(with({"more.txt"}));  // compared with the last stored
  EXPECT_FALSE(removed.hit);
  EXPECT_NE(removed.reason.find("input in.txt removed"), std::string::npos) << removed.reason;
}

TEST_F(CacheFixture, EntryThatLacksADeclaredOutputIsAMissNamingIt) {
  {
    auto cache = ResultCache::open(cache_dir()).value();
    store_success(*cache, declaring(dir.path(), "t", "in.txt", "out.txt"));
  }
  std::size_t rewritten = 0;
  for (const auto& f : fs::directory_iterator(cache_dir() + "/entries")) {
    auto e = detail::decode_entry(read_file(f.path()));
    ASSERT_TRUE(e) << f.path();
    ASSERT_EQ(e->outputs.erase("out.txt"), 1u);
    write_file(f.path(), detail::encode_entry(*e));
    ++rewritten;
  }
  ASSERT_EQ(rewritten, 1u);
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup l = cache->lookup(declaring(dir.path(), "t", "in.txt", "out.txt"));
  EXPECT_FALSE(l.hit);
  EXPECT_EQ(l.reason, "ran: output out.txt not in the cache entry");
}

TEST_F(CacheFixture, PipelineAndCwdLessTasksAreKeyedAndCached) {
  task::BinaryTask cat("/bin/cat");
  cat.cwd = dir.path();
  auto pipeline = [&] {
    return Task::pipeline()
        .name("pipe")
        .add_stage(cat)
        .add_stage(cat)
        .inputs({"in.txt"})
        .outputs({"out.txt"})
        .build()
        .value();
  };
  auto cache = ResultCache::open(cache_dir()).value();
  CacheLookup first = cache->lookup(pipeline());
  EXPECT_EQ(first.reason, "ran: no cache entry");
  EXPECT_EQ(first.inputs.at("in.txt"), sha256_hex("input one\n"));
  write_file(dir.file("out.txt"), "out");
  ExecutionResult ran = ExecutionResult::success(1, std::chrono::milliseconds(1));
  ran.stdout_data = "hello";
  ASSERT_TRUE(cache->store(pipeline(), first, ran));
  CacheLookup again = cache->lookup(pipeline());
  ASSERT_TRUE(again.hit) << again.reason;
  EXPECT_EQ(again.hit->stdout_data, "hello");
  EXPECT_EQ(again.key, first.key);

  // No cwd: relative paths start at the process's working directory; absolute ones are used.
  const std::string in = dir.file("in.txt"), out = dir.file("out.txt");
  auto cwdless = [&] {
    return Task::binary("/bin/true").name("abs").inputs({in}).outputs({out}).build().value();
  };
  CacheLookup abs = cache->lookup(cwdless());
  EXPECT_EQ(abs.reason, "ran: no cache entry");
  EXPECT_FALSE(abs.key.empty());
  EXPECT_EQ(abs.inputs.at(in), sha256_hex("input one\n"));
  ExecutionResult r = ExecutionResult::success(cwdless().id(), std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(cwdless(), abs, r));
  EXPECT_EQ(r.output_hashes.at(out), sha256_hex("out"));
  EXPECT_TRUE(cache->lookup(cwdless()).hit);
}

TEST_F(CacheFixture, EntryThatCannotBeWrittenWarnsOnceAndTheRunGoesOnUncached) {
  auto cache = ResultCache::open(cache_dir()).value();
  const Task t = declaring(dir.path(), "t", "in.txt", "out.txt");
  CacheLookup l = cache->lookup(t);
  ASSERT_FALSE(l.key.empty()) << l.reason;
  // A file where entries/ was: no entry can be written under it.
  fs::remove_all(cache_dir() + "/entries");
  write_file(cache_dir() + "/entries", "in the way");
  write_file(dir.file("out.txt"), "out");
  ExecutionResult r = ExecutionResult::success(t.id(), std::chrono::milliseconds(1));
  ASSERT_TRUE(cache->store(t, l, r)) << "a write failure is a warning, not an error";
  EXPECT_EQ(r.output_hashes.at("out.txt"), sha256_hex("out"));
  auto warning = cache->warning();
  ASSERT_TRUE(warning);
  EXPECT_EQ(warning->code(), ErrorCode::Io);
  EXPECT_NE(warning->message().find("cannot write an entry"), std::string::npos)
      << warning->message();
  EXPECT_NE(warning->message().find("--no-cache"), std::string::npos) << warning->message();
  EXPECT_FALSE(fs::exists(cache_dir() + "/names/" + sha256_hex("t")));
  ASSERT_TRUE(cache->store(t, l, r));  // storing is off now: nothing tried, the first warning kept
  EXPECT_EQ(cache->warning()->message(), warning->message());
}

TEST_F(CacheFixture, LastKeyThatCannotBeWrittenWarnsButKeepsTheEntry) {
  auto cache = ResultCache::open(cache_dir()).value();
  fs::remove_all(cache_dir() + "/names");
  write_file(cache_dir() + "/names", "in the way");
  const Task t = declaring(dir.path(), "t", "in.txt", "out.txt");
  store_success(*cache, t);
  auto warning = cache->warning();
  ASSERT_TRUE(warning);
  EXPECT_NE(warning->message().find("cannot write a task's last key"), std::string::npos)
      << warning->message();
  CacheLookup l = cache->lookup(t);
  ASSERT_TRUE(l.hit) << "the entry itself was written: " << l.reason;
  EXPECT_EQ(l.hit->stdout_data, "hello");
}

TEST_F(CacheFixture, DirectoryThatCannotBeWrittenIsRefusedAtOpenSayingWhatToPass) {
  ASSERT_TRUE(fs::create_directories(cache_dir()));
  // The probe's temporary file name is taken by a directory: the probe write fails.
  const std::string blocker =
      cache_dir() + "/.probe.tmp." + std::to_string(static_cast<unsigned long>(::gettid()));
  ASSERT_TRUE(fs::create_directory(blocker));
  auto cache = ResultCache::open(cache_dir());
  ASSERT_FALSE(cache);
  EXPECT_EQ(cache.error().code(), ErrorCode::Io);
  EXPECT_NE(cache.error().message().find("cannot write in the result cache directory '" +
                                         cache_dir() + "'"),
            std::string::npos)
      << cache.error().message();
  EXPECT_NE(cache.error().message().find("--cache-dir DIR or --no-cache"), std::string::npos)
      << cache.error().message();
  fs::remove(blocker);
  EXPECT_TRUE(ResultCache::open(cache_dir())) << "the same directory opens once it is writable";
}

// A failed rewrite of entries.idx after an entry was replaced removes the index: it would
// otherwise still hold the replaced entry's record.
TEST_F(CacheFixture, EntryIndexThatCannotBeRewrittenAfterARemovalIsDeleted) {
  run_in(cache_dir(), copier(dir.path()));
  run_in(cache_dir(), copier(dir.path()));  // a hit: its record goes into entries.idx
  const std::string index = cache_dir() + "/entries.idx";
  ASSERT_TRUE(fs::exists(index));
  auto cache = ResultCache::open(cache_dir()).value();
  store_success(*cache, copier(dir.path()));  // replaces the entry: its old record is dead
  const std::string blocker =
      index + ".tmp." + std::to_string(static_cast<unsigned long>(::gettid()));
  ASSERT_TRUE(fs::create_directory(blocker));
  cache->flush_index();
  EXPECT_FALSE(fs::exists(index));
  EXPECT_FALSE(cache->warning()) << "the index is only a speed-up";
  fs::remove(blocker);
  CacheLookup l = cache->lookup(copier(dir.path()));
  ASSERT_TRUE(l.hit) << l.reason;
  EXPECT_EQ(l.hit->stdout_data, "hello");
}

TEST_F(CacheFixture, FailedRunOfACacheableTaskCarriesItsInputHashesAndStoresNothing) {
  auto failing = Task::binary("/bin/sh")
                     .name("failing")
                     .args({"-c", "exit 3"})
                     .cwd(dir.path())
                     .inputs({"in.txt"})
                     .outputs({"out.txt"})
                     .build()
                     .value();
  ExecutionResult r = run_in(cache_dir(), failing);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.cache_reason, "ran: no cache entry");
  EXPECT_EQ(r.input_hashes.at("in.txt"), sha256_hex("input one\n"));
  EXPECT_TRUE(fs::is_empty(cache_dir() + "/entries"));
}

using test_support::RefusingExecutor;

// Starts `task` on `exec` and waits (generously) for its completion.
ExecutionResult start_and_wait(executor::Executor& exec, const Task& task,
                               std::stop_token stop = {}) {
  auto done = std::make_shared<std::promise<ExecutionResult>>();
  auto started = exec.start(task, std::move(stop),
                            [done](ExecutionResult r) { done->set_value(std::move(r)); });
  EXPECT_TRUE(started) << started.error().message();
  auto f = done->get_future();
  if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "no completion in 60 s";
    return {};
  }
  return f.get();
}

TEST_F(CacheFixture, CachingExecutorReportsARefusedStartAsItsResultWithTheCacheReason) {
  auto cache = ResultCache::open(cache_dir()).value();
  auto io = std::make_shared<RefusingExecutor>(ErrorCode::Io);
  detail::CachingExecutor exec(io, cache, 1);
  EXPECT_EQ(exec.backend(), task::Backend::Process);
  EXPECT_EQ(exec.slots(), 3u);
  exec.abandon();
  EXPECT_TRUE(io->abandoned.load()) << "abandon() reaches the wrapped executor";
  const Task plain = Task::binary("/bin/true").name("plain").build().value();
  ExecutionResult r = start_and_wait(exec, plain);
  EXPECT_EQ(r.id, plain.id());
  EXPECT_EQ(r.name, "plain");
  EXPECT_EQ(r.status, Status::LaunchFailed);
  EXPECT_NE(r.error.find("the inner executor refused"), std::string::npos) << r.error;
  EXPECT_EQ(r.cache_reason, "ran: declares no inputs or outputs (not cached)");

  detail::CachingExecutor cancelling(std::make_shared<RefusingExecutor>(ErrorCode::Cancelled),
                                     cache, 1);
  EXPECT_EQ(start_and_wait(cancelling, plain).status, Status::Cancelled);
}

TEST_F(CacheFixture, CachingExecutorCancelsAStoppedAttemptAndRefusesAfterShutdown) {
  auto cache = ResultCache::open(cache_dir()).value();
  detail::CachingExecutor exec(std::make_shared<RefusingExecutor>(ErrorCode::Io), cache, 1);
  std::stop_source stop;
  stop.request_stop();
  const Task t = copier(dir.path());
  ExecutionResult r = start_and_wait(exec, t, stop.get_token());
  EXPECT_EQ(r.id, t.id());
  EXPECT_EQ(r.status, Status::Cancelled);
  EXPECT_EQ(r.error, "cancelled before it started");
  EXPECT_FALSE(fs::exists(dir.file("out.txt")));
  exec.shutdown();
  auto refused = exec.start(t, {}, [](ExecutionResult) { ADD_FAILURE() << "completed"; });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(refused.error().message().find("the executor is shut down"), std::string::npos)
      << refused.error().message();
}

TEST(CacheEntry, RoundTripsAnyBytesAndRejectsAnyDamage) {
  detail::CacheEntry e;
  e.name = "count-3";
  e.key = sha256_hex("k");
  e.created_unix_ns = 42;
  e.fields = {{"args", "x=y"}, {"binary", sha256_hex("b")}};
  e.inputs = {{"corpus 3.txt", sha256_hex("i")}};
  e.outputs = {{"counts-3.tsv", sha256_hex("o")}};
  e.output_paths = {"/s/counts-3.tsv"};
  e.stdout_data = std::string("line\nnul\0byte", 13);
  e.exit_code = 0;
  e.wall_ns = 123;
  const std::string text = detail::encode_entry(e);
  auto back = detail::decode_entry(text);
  ASSERT_TRUE(back) << text;
  EXPECT_EQ(back->name, e.name);
  EXPECT_EQ(back->fields, e.fields);
  EXPECT_EQ(back->inputs, e.inputs);
  EXPECT_EQ(back->outputs, e.outputs);
  EXPECT_EQ(back->stdout_data, e.stdout_data);
  EXPECT_EQ(back->wall_ns, 123);
  for (std::size_t i = 0; i < text.size(); i += 7) {
    std::string bad = text;
    bad[i] ^= 0x20;
    EXPECT_FALSE(detail::decode_entry(bad)) << "byte " << i;
  }
  EXPECT_FALSE(detail::decode_entry(text.substr(0, text.size() - 1)));
  EXPECT_FALSE(detail::decode_entry(""));
}

TEST_F(CacheFixture, GcRemovesEntriesWhoseOutputsChangedAndTheOldestOverTheSizeLimit) {
  run_in(cache_dir(), copier(dir.path(), "", "one"));
  run_in(cache_dir(), copier(dir.path(), "2", "two"));  // rewrites out.txt: "one" is stale
  auto report = ResultCache::gc(cache_dir(), {});
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(report->removed.size(), 1u);
  EXPECT_NE(report->removed[0].find("one"), std::string::npos) << report->removed[0];
  EXPECT_EQ(report->kept, 1u);
  auto sized = ResultCache::gc(cache_dir(), {.max_age = std::nullopt, .max_size = 1});
  ASSERT_TRUE(sized);
  EXPECT_EQ(sized->removed.size(), 1u);
  EXPECT_EQ(sized->kept, 0u);
  EXPECT_FALSE(ResultCache::gc(dir.file("nothing-here"), {}));
}

TEST_F(CacheFixture, GcRemovesLeftoverTemporariesUnreadableEntriesAndThoseOverMaxAge) {
  run_in(cache_dir(), copier(dir.path()));
  write_file(cache_dir() + "/entries/" + std::string(64, 'a') + ".tmp.4242", "half");
  write_file(cache_dir() + "/entries/" + std::string(64, 'b'), "not an entry");
  auto kept = ResultCache::gc(cache_dir(), {.max_age = std::chrono::hours(1), .max_size = {}});
  ASSERT_TRUE(kept) << kept.error().message();
  std::set<std::string> why;
  for (const auto& line : kept->removed) why.insert(line.substr(line.find(": ") + 2));
  EXPECT_EQ(why, (std::set<std::string>{"a leftover temporary file", "unreadable entry"}));
  EXPECT_EQ(kept->kept, 1u) << "an entry an hour old is not over --max-age";
  auto aged = ResultCache::gc(cache_dir(), {.max_age = std::chrono::seconds(0), .max_size = {}});
  ASSERT_TRUE(aged) << aged.error().message();
  ASSERT_EQ(aged->removed.size(), 1u);
  EXPECT_NE(aged->removed[0].find("copy "), std::string::npos) << aged->removed[0];
  EXPECT_NE(aged->removed[0].find(": older than --max-age"), std::string::npos) << aged->removed[0];
  EXPECT_EQ(aged->kept, 0u);
  EXPECT_TRUE(fs::is_empty(cache_dir() + "/entries"));
}

TEST(CacheEntry, RecordThatOverrunsItsEntryIsRejectedEvenWithAGoodChecksum) {
  const std::string body = "pepita-cache-entry 1\nname 50\nab\n";
  EXPECT_FALSE(detail::decode_entry(body + "sum " + sha256_hex(body) + "\n"));
}

TEST(CacheEntry, PathsThatAreNotLexicallyNormalAreNormalizedAgainstTheCwd) {
  EXPECT_EQ(detail::absolute_in("/w/job", "../in.txt"), "/w/in.txt");
  EXPECT_EQ(detail::absolute_in("/w/job", "./a//b.txt"), "/w/job/a/b.txt");
  EXPECT_EQ(detail::absolute_in("/w/job", "/abs/./x"), "/abs/x");
  EXPECT_EQ(detail::absolute_in("/w/./job", "x"), "/w/job/x");
  EXPECT_EQ(detail::shown_path("/w/job", "./sub/../out.txt"), "out.txt");
  EXPECT_EQ(detail::shown_path("/w/job", "../elsewhere.txt"), "../elsewhere.txt");
}

TEST(CacheProvenance, FinishedRecordsCarryHashesHostResourcesAndTimes) {
  ExecutionResult r = ExecutionResult::success(7, std::chrono::seconds(2));
  r.from_cache = true;
  r.host = "node1";
  r.binary_sha256 = sha256_hex("bin");
  r.input_hashes = {{"in.txt", sha256_hex("i")}};
  r.output_hashes = {{"out.txt", sha256_hex("o")}};
  task::Allocation a;
  a.cpus = 2;
  a.cores = {0, 1};
  a.memory = 1024;
  r.allocation = a;
  fault::JournalRecord rec = fault::finished_record(r, "digest");
  EXPECT_TRUE(rec.from_cache);
  EXPECT_EQ(rec.host, "node1");
  EXPECT_EQ(rec.binary_sha256, r.binary_sha256);
  EXPECT_EQ(rec.input_hashes, r.input_hashes);
  EXPECT_EQ(rec.output_hashes, r.output_hashes);
  EXPECT_NE(rec.resources.find("cores=0,1"), std::string::npos) << rec.resources;
  EXPECT_NE(rec.resources.find("memory=1024"), std::string::npos) << rec.resources;
  EXPECT_GT(rec.finished_unix_ns, 0);
  EXPECT_EQ(rec.started_unix_ns, rec.finished_unix_ns);  // a cached result took no time here
  r.from_cache = false;
  rec = fault::finished_record(r, "digest");
  EXPECT_EQ(rec.finished_unix_ns - rec.started_unix_ns, 2'000'000'000);
}

// Issue 27: a task without declared files skips the cache's threads (it never caches) and still
// reports why it ran, the host and its own result; one that fails to launch says so too.
TEST_F(CacheFixture, TaskWithoutDeclaredFilesRunsUncachedWithItsReason) {
  auto plain = Task::binary("/bin/sh").args({"-c", "echo hi; exit 2"}).build().value();
  ExecutionResult r = run_in(cache_dir(), plain);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.stdout_data, "hi\n");
  EXPECT_FALSE(r.from_cache);
  EXPECT_EQ(r.cache_reason, "ran: declares no inputs or outputs (not cached)");
  EXPECT_FALSE(r.host.empty());
  ExecutionResult again = run_in(cache_dir(), plain);
  EXPECT_FALSE(again.from_cache);
  EXPECT_EQ(again.exit_code, 2);
  auto missing = Task::binary("/nonexistent/pepita-no-such-binary").build().value();
  ExecutionResult m = run_in(cache_dir(), missing);
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(m.cache_reason, "ran: declares no inputs or outputs (not cached)");
}

}  // namespace
}  // namespace pepita::pool
