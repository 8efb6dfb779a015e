// Issue 27: a worker in zero-worker mode (`pepita worker --zero-worker`, HyperQueue's) reports
// every task started, then succeeded, without running it — through a Pool and RemoteExecutor,
// with a queue far longer than its slots (no recursion per task), and nothing staged.
#include <gtest/gtest.h>

#include "pepita/pool/pool.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "pepita/transport/worker.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Worker> zero_worker(const Key& key, std::uint32_t slots) {
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = slots;
  o.zero_worker = true;
  o.log = [](std::string_view) {};
  auto w = Worker::start(std::move(o));
  EXPECT_TRUE(w) << w.error().to_string();
  return w ? std::move(*w) : nullptr;
}

TEST(ZeroWorker, ReportsEveryRemoteTaskSucceededWithoutRunningIt) {
  test::KeyFile kf;
  auto w = zero_worker(kf.key, 1);  // one slot: thousands of tasks wait in its queue
  ASSERT_TRUE(w);
  RemoteExecutorOptions o;
  o.remote.workers = {w->endpoint().to_string()};
  o.remote.key = kf.key;
  o.remote.reconnect_initial = 20ms;
  o.remote.log = [](std::string_view) {};
  auto remote = RemoteExecutor::create(std::move(o));
  ASSERT_TRUE(remote) << remote.error().to_string();
  auto pool = pool::Pool::builder().executor(*remote).build();
  ASSERT_TRUE(pool) << pool.error().message();
  constexpr std::size_t kTasks = 5000;
  std::vector<task::Task> tasks;
  for (std::size_t i = 0; i < kTasks; ++i) {
    tasks.push_back(task::Task::binary("/no/such/binary/on/the/worker")
                        .args({std::to_string(i)})
                        .backend(task::Backend::Remote)
                        .build()
                        .value());
  }
  ASSERT_TRUE(pool->submit_all(tasks));
  const auto results = pool->wait_all();
  pool->shutdown();
  ASSERT_EQ(results.size(), kTasks);
  for (const auto& r : results) {
    ASSERT_EQ(r.status, executor::Status::Succeeded) << r.error;
    ASSERT_EQ(r.exit_code, 0);
    ASSERT_TRUE(r.stdout_data.empty());
  }
  EXPECT_EQ(w->stats().tasks_run, kTasks);
}

}  // namespace
}  // namespace pepita::transport
