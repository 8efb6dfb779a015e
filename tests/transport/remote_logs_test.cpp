// Live logs through a real worker (issue 24, protocol 5): the worker streams a running task's
// output as Log frames and the driver's pool writes them to its log files while it runs.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/file_text.hpp"
#include "common/temp_dir.hpp"
#include "pepita/pool/log_files.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

using pepita::test::read_file_text;
using pepita::test::wait_for_text;

TEST(RemoteLogs, LogMessageRoundTripsAndRefusesUnknownStreams) {
  const LogMsg m{.stream = 2, .data = std::string("err\0bytes", 9)};
  auto back = decode_log(encode(m));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, m);
  auto bad = decode_log(encode(LogMsg{.stream = 3, .data = "x"}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::Protocol);
}

TEST(RemoteLogs, WorkerStreamsOutputToTheDriversLogFilesWhileTheTaskRuns) {
  pepita::test::TempDir dir{"remote-logs"};
  const std::string logs = dir.file("logs");
  const std::string go = dir.file("go");
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  RemoteExecutorOptions o;
  o.remote.workers = {w->endpoint().to_string()};
  o.remote.key = kf.key;
  o.remote.heartbeat_interval = 100ms;
  o.remote.reconnect_initial = 20ms;
  o.remote.log = [](std::string_view) {};
  auto remote = RemoteExecutor::create(std::move(o)).value();
  auto pool = pool::Pool::builder().executor(remote).log_dir(logs).build();
  ASSERT_TRUE(pool) << pool.error().message();
  const std::string script = "echo remote-one; echo remote-err >&2; i=0; while [ ! -e " + go +
                             " ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 3; done; "
                             "echo remote-two";
  auto t = task::Task::binary("/bin/sh")
               .args({"-c", script})
               .name("far")
               .backend(task::Backend::Remote)
               .build();
  ASSERT_TRUE(t) << t.error().message();
  auto h = pool->submit(*t);
  ASSERT_TRUE(h) << h.error().message();
  const std::string out = pool::log_file_path(logs, "far", task::LogStream::Stdout);
  const std::string err = pool::log_file_path(logs, "far", task::LogStream::Stderr);
  ASSERT_TRUE(wait_for_text(out, "remote-one\n")) << read_file_text(out);
  ASSERT_TRUE(wait_for_text(err, "remote-err\n")) << read_file_text(err);
  EXPECT_FALSE(h->try_get().has_value()) << "the task must still be running";
  std::ofstream(go).put('\n');
  const auto r = h->wait();
  EXPECT_EQ(r.status, executor::Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "remote-one\nremote-two\n");
  EXPECT_EQ(read_file_text(out), pool::log_attempt_header(1) + "remote-one\nremote-two\n");
  EXPECT_EQ(read_file_text(err), pool::log_attempt_header(1) + "remote-err\n");
  pool->shutdown();
}

}  // namespace
}  // namespace pepita::transport
