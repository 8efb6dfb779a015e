// A driver whose workers never come up (wrong address, wrong key) fails its queued tasks after
// give_up_without_workers, naming the reason, instead of waiting forever — unless told to wait.
#include <gtest/gtest.h>

#include "pepita/transport/remote.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

RemoteOptions impatient(std::string worker, const Key& key) {
  RemoteOptions o;
  o.workers = {std::move(worker)};
  o.key = key;
  o.reconnect_initial = 20ms;
  o.reconnect_max = 100ms;
  o.give_up_without_workers = 300ms;
  o.log = [](std::string_view) {};
  return o;
}

RemoteTask echo(std::uint64_t id) {
  RemoteTask t{.id = id};
  t.spec.path = "/bin/echo";
  return t;
}

TEST(NoWorker, UnreachableWorkerFailsQueuedTasksWithTheReason) {
  auto d = RemoteDispatcher::start(impatient("127.0.0.1:1", Key::generate().value())).value();
  const auto t0 = std::chrono::steady_clock::now();
  const RemoteOutcome out = d->run(echo(1)).value();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("no worker reachable"), std::string::npos) << out.result.error;
  EXPECT_NE(out.result.error.find("127.0.0.1:1"), std::string::npos) << out.result.error;
}

TEST(NoWorker, AWorkerWithAnotherKeyCountsAsNone) {
  auto worker = test::start_worker(Key::generate().value(), 1);
  auto d =
      RemoteDispatcher::start(impatient(worker->endpoint().to_string(), Key::generate().value()))
          .value();
  const RemoteOutcome out = d->run(echo(1)).value();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("no worker reachable"), std::string::npos) << out.result.error;
}

TEST(NoWorker, WithoutALimitTasksWaitForAWorker) {
  auto o = impatient("127.0.0.1:1", Key::generate().value());
  o.give_up_without_workers = 0ms;
  auto d = RemoteDispatcher::start(std::move(o)).value();
  ASSERT_TRUE(d->submit(echo(1), [](RemoteOutcome) {}));
  EXPECT_FALSE(d->wait_idle(800ms)) << "a task completed although no worker ever came up";
  EXPECT_EQ(d->backlog(), 1u);
}

}  // namespace
}  // namespace pepita::transport
