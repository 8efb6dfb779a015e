// Live logs (issue 24): the pool's per-attempt log files, written while the task runs; the
// journal key setting.
#include "pepita/pool/log_files.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/file_text.hpp"
#include "common/temp_dir.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using namespace std::chrono_literals;
using executor::Status;
using pepita::test::TempDir;
using task::LogStream;
using task::Task;

using pepita::test::read_file_text;
using pepita::test::wait_for_text;

TEST(LogFiles, PathsAreFileSafeAndStayInTheDirectory) {
  EXPECT_EQ(log_file_path("/s/logs", "count-3", LogStream::Stdout), "/s/logs/count-3.stdout");
  EXPECT_EQ(log_file_path("/s/logs", "a/../b", LogStream::Stderr), "/s/logs/a_.._b.stderr");
  EXPECT_EQ(log_file_path("/s/logs", "..", LogStream::Stdout), "/s/logs/_...stdout");
  EXPECT_EQ(log_file_path("/s/logs", "", LogStream::Stdout), "/s/logs/_.stdout");
  EXPECT_EQ(log_file_path("/s/logs", "x y\n", LogStream::Stdout), "/s/logs/x_y_.stdout");
}

TEST(LogFiles, LogHoldsTheFirstLinesWhileTheTaskStillRuns) {
  TempDir dir{"live-logs"};
  const std::string logs = dir.file("logs");
  const std::string go = dir.file("go");
  auto pool = Pool::builder().cpu_workers(2).log_dir(logs).build();
  ASSERT_TRUE(pool) << pool.error().message();
  // Prints, then waits for the test to say go (bounded: exits 3 after ~2 minutes), then prints
  // again: the first lines can only be in the file while it is still running.
  const std::string script = "echo line-one; echo err-one >&2; i=0; while [ ! -e " + go +
                             " ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 3; done; "
                             "echo line-two";
  auto task = Task::binary("/bin/sh").args({"-c", script}).name("talker").build();
  ASSERT_TRUE(task) << task.error().message();
  auto handle = pool->submit(*task);
  ASSERT_TRUE(handle) << handle.error().message();
  const std::string out = log_file_path(logs, "talker", LogStream::Stdout);
  const std::string err = log_file_path(logs, "talker", LogStream::Stderr);
  ASSERT_TRUE(wait_for_text(out, "line-one\n")) << read_file_text(out);
  ASSERT_TRUE(wait_for_text(err, "err-one\n")) << read_file_text(err);
  EXPECT_FALSE(handle->try_get().has_value()) << "the task must still be running";
  EXPECT_EQ(read_file_text(out).find("line-two"), std::string::npos);
  std::ofstream(go).put('\n');
  const auto result = handle->wait();
  EXPECT_EQ(result.status, Status::Succeeded) << result.error;
  EXPECT_EQ(read_file_text(out), log_attempt_header(1) + "line-one\nline-two\n");
  EXPECT_EQ(read_file_text(err), log_attempt_header(1) + "err-one\n");
}

// Issue 27: a log file is created by its stream's first output, so a task that prints nothing
// (most /bin/true-like tasks) costs no file creation.
TEST(LogFiles, OnlyAStreamThatPrintedGetsAFile) {
  TempDir dir{"live-logs"};
  const std::string logs = dir.file("logs");
  auto pool = Pool::builder().cpu_workers(2).log_dir(logs).build();
  ASSERT_TRUE(pool) << pool.error().message();
  auto quiet = Task::binary("/bin/true").name("quiet").build();
  ASSERT_TRUE(quiet) << quiet.error().message();
  auto talker = Task::binary("/bin/sh").args({"-c", "echo out"}).name("talker").build();
  ASSERT_TRUE(talker) << talker.error().message();
  EXPECT_EQ(pool->submit(*quiet).value().wait().status, Status::Succeeded);
  EXPECT_EQ(pool->submit(*talker).value().wait().status, Status::Succeeded);
  EXPECT_FALSE(std::filesystem::exists(log_file_path(logs, "quiet", LogStream::Stdout)));
  EXPECT_FALSE(std::filesystem::exists(log_file_path(logs, "quiet", LogStream::Stderr)));
  EXPECT_EQ(read_file_text(log_file_path(logs, "talker", LogStream::Stdout)),
            log_attempt_header(1) + "out\n");
  EXPECT_FALSE(std::filesystem::exists(log_file_path(logs, "talker", LogStream::Stderr)));
}

TEST(LogFiles, EachAttemptOpensWithItsHeaderAndTheCapDoesNotApply) {
  TempDir dir{"live-logs"};
  const std::string logs = dir.file("logs");
  fault::RetryPolicy policy;
  policy.base_delay(1ms).max_delay(1ms);
  auto pool = Pool::builder().cpu_workers(2).log_dir(logs).retry_policy(policy).build();
  ASSERT_TRUE(pool) << pool.error().message();
  // 10 000 bytes of output under an output cap of 100: the log keeps all of it.
  auto task = Task::binary("/bin/sh")
                  .args({"-c", "head -c 10000 /dev/zero | tr '\\0' x; exit 1"})
                  .name("flaky")
                  .max_retries(1)
                  .output_cap(100)
                  .build();
  ASSERT_TRUE(task) << task.error().message();
  const auto result = pool->submit(*task).value().wait();
  EXPECT_EQ(result.status, Status::Failed);
  EXPECT_EQ(result.attempts, 2u);
  EXPECT_EQ(result.stdout_data.size(), 100u);
  const std::string x(10000, 'x');
  EXPECT_EQ(read_file_text(log_file_path(logs, "flaky", LogStream::Stdout)),
            log_attempt_header(1) + x + log_attempt_header(2) + x);
}

TEST(LogFiles, LogDirThatIsAFileIsRefusedAtBuild) {
  TempDir dir{"live-logs"};
  std::ofstream(dir.file("file")).put('x');
  auto pool = Pool::builder().log_dir(dir.file("file")).build();
  ASSERT_FALSE(pool);
  EXPECT_NE(pool.error().message().find("not a directory"), std::string::npos);
}

TEST(LogFiles, OpenLogFilesAppendsEachAttemptsHeaderAndChunksToItsStreamsFile) {
  TempDir dir{"live-logs"};
  const std::string logs = dir.file("logs");
  ASSERT_TRUE(create_log_dir(logs));
  {
    auto sink = open_log_files(logs, "step", 1);
    ASSERT_TRUE(sink) << sink.error().message();
    (*sink)->write(LogStream::Stdout, "out one\n");
    (*sink)->write(LogStream::Stderr, "err one\n");
  }
  auto again = open_log_files(logs, "step", 2);
  ASSERT_TRUE(again) << again.error().message();
  (*again)->write(LogStream::Stdout, "out two\n");
  again->reset();  // the files are closed: everything is on disk
  EXPECT_EQ(read_file_text(log_file_path(logs, "step", LogStream::Stdout)),
            log_attempt_header(1) + "out one\n" + log_attempt_header(2) + "out two\n");
  EXPECT_EQ(read_file_text(log_file_path(logs, "step", LogStream::Stderr)),
            log_attempt_header(1) + "err one\n" + log_attempt_header(2));
}

TEST(LogFiles, OpenLogFilesInAMissingDirectoryFailsNamingTheFile) {
  TempDir dir{"live-logs"};
  const std::string logs = dir.file("not-created");
  auto sink = open_log_files(logs, "step", 1);
  ASSERT_FALSE(sink);
  EXPECT_NE(sink.error().message().find(log_file_path(logs, "step", LogStream::Stdout)),
            std::string::npos)
      << sink.error().message();
  EXPECT_FALSE(std::filesystem::exists(logs));
}

TEST(JournalKey, PoolMacsItsJournalUnderTheKeyFile) {
  TempDir dir{"journal-key"};
  const std::string key_path = dir.file("key");
  const std::string key = "0123456789abcdef0123456789abcdef";
  std::ofstream(key_path) << key << "\n";
  ASSERT_EQ(::chmod(key_path.c_str(), 0600), 0);
  const std::string journal = dir.file("journal");
  {
    auto pool = Pool::builder().cpu_workers(2).journal(journal).journal_key(key_path).build();
    ASSERT_TRUE(pool) << pool.error().message();
    auto h = pool->submit(Task::binary("/bin/true").name("t").build().value());
    ASSERT_TRUE(h);
    EXPECT_EQ(h->wait().status, Status::Succeeded);
  }
  auto v = fault::verify_journal(journal, key);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE(v->valid) << v->reason;
  EXPECT_TRUE(v->macs_checked);
  ASSERT_EQ(::chmod(key_path.c_str(), 0644), 0);
  auto loose = Pool::builder().journal(journal, true).journal_key(key_path).build();
  ASSERT_FALSE(loose);
  EXPECT_EQ(loose.error().code(), ErrorCode::PermissionDenied);
}

}  // namespace
}  // namespace pepita::pool
