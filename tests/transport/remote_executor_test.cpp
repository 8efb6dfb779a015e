// RemoteExecutor plugged into a real Pool: remote process tasks, shipped binaries, cancel, and
// function tasks refused with a clear error.
#include "pepita/transport/remote_executor.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "common/temp_dir.hpp"
#include "pepita/pool/pool.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

RemoteExecutorOptions options_for(const Key& key, std::vector<std::string> workers) {
  RemoteExecutorOptions o;
  o.remote.workers = std::move(workers);
  o.remote.key = key;
  o.remote.heartbeat_interval = 100ms;
  o.remote.reconnect_initial = 20ms;
  o.remote.log = [](std::string_view) {};
  return o;
}

TEST(RemoteExecutor, PoolRunsRemoteTasksOnTwoWorkers) {
  test::KeyFile kf;
  auto a = test::start_worker(kf.key, 2);
  auto b = test::start_worker(kf.key, 2);
  ASSERT_TRUE(a && b);
  auto remote = RemoteExecutor::create(
                    options_for(kf.key, {a->endpoint().to_string(), b->endpoint().to_string()}))
                    .value();
  auto pool = pool::Pool::builder().executor(remote).build().value();
  std::vector<task::Task> tasks;
  for (int i = 0; i < 20; ++i) {
    tasks.push_back(task::Task::binary("/bin/echo")
                        .args({"remote", std::to_string(i)})
                        .backend(task::Backend::Remote)
                        .build()
                        .value());
  }
  ASSERT_TRUE(pool.submit_all(tasks));
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results[i].status, executor::Status::Succeeded) << results[i].error;
    EXPECT_EQ(results[i].stdout_data, "remote " + std::to_string(i) + "\n");
  }
  EXPECT_GT(a->stats().tasks_run + b->stats().tasks_run, 19u);
  pool.shutdown();
}

TEST(RemoteExecutor, ShipsLocalBinariesAndRejectsFunctionTasks) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto o = options_for(kf.key, {w->endpoint().to_string()});
  o.ship_binaries = true;
  auto remote = RemoteExecutor::create(std::move(o)).value();
  const std::string script =
      (std::filesystem::temp_directory_path() / ("pepita-ship-" + std::to_string(::getpid())))
          .string();
  {
    std::ofstream f(script);
    f << "#!/bin/sh\necho shipped \"$@\"\n";
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  std::promise<executor::ExecutionResult> got;
  auto t = task::Task::binary(script).args({"ok"}).backend(task::Backend::Remote).build().value();
  ASSERT_TRUE(remote->start(t, {}, [&](executor::ExecutionResult r) { got.set_value(r); }));
  auto r = got.get_future().get();
  EXPECT_EQ(r.status, executor::Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "shipped ok\n");
  EXPECT_EQ(r.id, t.id());
  std::filesystem::remove(script);

  auto fn = task::Task::function([] { return std::string("x"); }).build().value();
  auto refused = remote->start(fn, {}, [](executor::ExecutionResult) {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  remote->shutdown();
  EXPECT_EQ(remote->start(t, {}, [](executor::ExecutionResult) {}).error().code(),
            ErrorCode::Cancelled);
}

// What a remote task needs from this machine is checked before it is sent: a binary to ship
// that cannot be read and a declared input that is not a regular file are refused, naming them.
TEST(RemoteExecutor, StartRefusesAnUnreadableBinaryOrAMissingInputNamingIt) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto o = options_for(kf.key, {w->endpoint().to_string()});
  o.ship_binaries = true;
  auto remote = RemoteExecutor::create(std::move(o)).value();
  pepita::test::TempDir dir("remote-refuse");
  const std::string tool = dir.file("no-such-tool");
  auto unshippable = task::Task::binary(tool).backend(task::Backend::Remote).build().value();
  auto r = remote->start(unshippable, {}, [](executor::ExecutionResult) {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_NE(r.error().message().find("cannot read " + tool + " to ship it"), std::string::npos)
      << r.error().to_string();
  std::filesystem::create_directory(dir.file("a-directory"));
  for (const std::string in : {"absent.txt", "a-directory"}) {
    auto t = task::Task::binary("/bin/true")
                 .cwd(dir.path())
                 .inputs({in})
                 .backend(task::Backend::Remote)
                 .build()
                 .value();
    auto missing = remote->start(t, {}, [](executor::ExecutionResult) {});
    ASSERT_FALSE(missing) << in;
    EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);
    EXPECT_NE(missing.error().message().find(
                  "input '" + in + "' does not exist as a regular file at " + dir.file(in)),
              std::string::npos)
        << missing.error().to_string();
  }
  remote->shutdown();
}

// An executor serving another backend name (slurm::SlurmExecutor serves "slurm" this way) runs
// that backend's tasks and refuses the others, Remote included.
TEST(RemoteExecutor, CustomBackendNameRunsItsTasksAndRefusesOthers) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  const auto mine = task::Backend::named("mine").value();
  auto o = options_for(kf.key, {w->endpoint().to_string()});
  o.backend = mine;
  auto remote = RemoteExecutor::create(std::move(o)).value();
  EXPECT_EQ(remote->backend(), mine);

  auto other = task::Task::binary("/bin/echo").backend(task::Backend::Remote).build().value();
  auto refused = remote->start(other, {}, [](executor::ExecutionResult) {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(refused.error().message().find("'remote'"), std::string::npos)
      << refused.error().message();
  EXPECT_NE(refused.error().message().find("\"mine\""), std::string::npos)
      << refused.error().message();

  std::promise<executor::ExecutionResult> got;
  auto t = task::Task::binary("/bin/echo").args({"named"}).backend(mine).build().value();
  ASSERT_TRUE(remote->start(t, {}, [&](executor::ExecutionResult r) { got.set_value(r); }));
  auto r = got.get_future().get();
  EXPECT_EQ(r.status, executor::Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "named\n");
  remote->shutdown();
}

// Protocol 2 carries the worker's rusage: a task that burns 0.35 s of CPU (counted in the
// shell's own /proc stat, so the load on the machine cannot shorten it) reports that much CPU
// and a non-zero peak RSS at the driver, through the pool.
TEST(RemoteExecutor, RemoteTaskReportsItsCpuTimeAndPeakRss) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto remote = RemoteExecutor::create(options_for(kf.key, {w->endpoint().to_string()})).value();
  auto pool = pool::Pool::builder().executor(remote).build().value();
  const std::string burn =
      "t=$(getconf CLK_TCK); while :; do read -r l < /proc/$$/stat; set -- ${l##*) }; "
      "[ $(( ${12} + ${13} )) -ge $(( t * 35 / 100 )) ] && echo burnt && exit 0; done";
  auto t = task::Task::binary("/bin/sh")
               .args({"-c", burn})
               .timeout(60s)
               .backend(task::Backend::Remote)
               .build()
               .value();
  ASSERT_TRUE(pool.submit(t));
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 1u);
  const executor::ExecutionResult& r = results[0];
  ASSERT_EQ(r.status, executor::Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "burnt\n");
  EXPECT_EQ(r.stdout_bytes, 6u);
  EXPECT_GE(r.cpu, 200ms) << "cpu " << r.cpu.count() << " ns";
  EXPECT_LE(r.cpu, r.wall + 100ms);  // one single-threaded shell
  EXPECT_GT(r.max_rss_kb, 0);
  pool.shutdown();
}

TEST(RemoteExecutor, StopTokenCancelsARunningRemoteTask) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto remote = RemoteExecutor::create(options_for(kf.key, {w->endpoint().to_string()})).value();
  std::stop_source stop;
  std::promise<executor::ExecutionResult> got;
  auto t =
      task::Task::binary("/bin/sleep").args({"30"}).backend(task::Backend::Remote).build().value();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(
      remote->start(t, stop.get_token(), [&](executor::ExecutionResult r) { got.set_value(r); }));
  std::this_thread::sleep_for(200ms);
  stop.request_stop();
  auto r = got.get_future().get();
  EXPECT_EQ(r.status, executor::Status::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

// A process task's working directory goes to the worker with it: with no files to stage, the
// task runs there (worker and driver share this machine here), not in the worker's own cwd.
TEST(RemoteExecutor, AProcessTaskRunsInItsCwdOnTheWorker) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto remote = RemoteExecutor::create(options_for(kf.key, {w->endpoint().to_string()})).value();
  pepita::test::TempDir dir("remote-cwd");
  auto t =
      task::Task::binary("/bin/pwd").cwd(dir.path()).backend(task::Backend::Remote).build().value();
  std::promise<executor::ExecutionResult> got;
  ASSERT_TRUE(remote->start(t, {}, [&](executor::ExecutionResult r) { got.set_value(r); }));
  const auto r = got.get_future().get();
  EXPECT_EQ(r.status, executor::Status::Succeeded) << r.error;
  // /bin/pwd prints the physical path (-P), with symlinks resolved.
  EXPECT_EQ(r.stdout_data, std::filesystem::canonical(dir.path()).string() + "\n");
  remote->shutdown();
}

// ---- issue 21: Pool::Builder::remote_workers through the registered "remote" factory ----

TEST(RemoteExecutor, PoolRemoteWorkersConnectThroughTheRegistry) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2);
  ASSERT_TRUE(w);
  executor::Registry registry;
  ASSERT_TRUE(register_remote(registry));
  auto pool = pool::Pool::builder()
                  .registry(registry)
                  .remote_workers({w->endpoint().to_string()})
                  .remote_options(executor::BackendOptions().set("key", kf.path))
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();
  auto r = pool->run(task::Task::binary("/bin/echo")
                         .args({"via", "registry"})
                         .backend(task::Backend::Remote)
                         .build()
                         .value());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, executor::Status::Succeeded) << r->error;
  EXPECT_EQ(r->stdout_data, "via registry\n");
  EXPECT_EQ(w->stats().tasks_run, 1u);
}

TEST(RemoteExecutor, RegisteredRemoteNamesAMissingKey) {
  executor::Registry registry;
  ASSERT_TRUE(register_remote(registry));
  auto pool = pool::Pool::builder().registry(registry).remote_workers({"127.0.0.1:1"}).build();
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(pool.error().message().find("key=<file>"), std::string::npos) << pool.error().message();
  auto typo = pool::Pool::builder()
                  .registry(registry)
                  .remote_workers({"127.0.0.1:1"})
                  .remote_options(executor::BackendOptions().set("kee", "/x"))
                  .build();
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message().find("kee"), std::string::npos);
}

}  // namespace
}  // namespace pepita::transport
