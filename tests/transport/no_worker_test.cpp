// A driver whose workers never come up (wrong address, wrong key) fails its queued tasks after
// give_up_without_workers, naming the reason, instead of waiting forever — unless told to wait.
#include <gtest/gtest.h>

#include <future>
#include <memory>

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

TEST(NoWorker, StartAndSubmitRefuseBadArgumentsNamingTheFix) {
  auto keyless = impatient("127.0.0.1:1", Key::generate().value());
  keyless.key.reset();
  auto none = RemoteDispatcher::start(std::move(keyless));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(none.error().message().find("--key FILE"), std::string::npos) << none.error().message();

  auto o = impatient("127.0.0.1:1", Key::generate().value());
  o.give_up_without_workers = 0ms;  // the first task stays queued while the others are refused
  auto d = RemoteDispatcher::start(std::move(o)).value();
  ASSERT_TRUE(d->submit(echo(1), [](RemoteOutcome) {}));
  auto twice = d->submit(echo(1), [](RemoteOutcome) {});
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(twice.error().message().find("remote task id 1 is already in flight"),
            std::string::npos)
      << twice.error().message();
  RemoteTask unsourced = echo(2);
  unsourced.spec.inputs.push_back({.path = "data.txt", .size = 3});
  auto sources = d->submit(std::move(unsourced), [](RemoteOutcome) {});
  ASSERT_FALSE(sources);
  EXPECT_EQ(sources.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(sources.error().message().find("declares 1 inputs but gives 0 local files"),
            std::string::npos)
      << sources.error().message();
  // Only the first task is held; nothing was lost or double-counted by the refusals.
  EXPECT_EQ(d->backlog(), 1u);
  EXPECT_EQ(d->duplicates_dropped(), 0u);
}

TEST(NoWorker, ACancelledQueuedTaskCompletesInsideCancelAsCancelled) {
  auto o = impatient("127.0.0.1:1", Key::generate().value());
  o.give_up_without_workers = 0ms;  // it would wait forever: only cancel() ends it
  auto d = RemoteDispatcher::start(std::move(o)).value();
  auto promise = std::make_shared<std::promise<RemoteOutcome>>();
  auto future = promise->get_future();
  ASSERT_TRUE(
      d->submit(echo(1), [promise](RemoteOutcome out) { promise->set_value(std::move(out)); }));
  EXPECT_EQ(d->backlog(), 1u);
  d->cancel(1);
  ASSERT_EQ(future.wait_for(0s), std::future_status::ready);
  const RemoteOutcome out = future.get();
  EXPECT_EQ(out.id, 1u);
  EXPECT_EQ(out.result.status, TaskStatus::Cancelled);
  EXPECT_EQ(out.result.exit_code, -1);
  EXPECT_EQ(out.result.error, "cancelled before it was dispatched");
  EXPECT_EQ(out.attempts, 0u);
  EXPECT_EQ(out.worker, "");
  EXPECT_EQ(d->backlog(), 0u);
  EXPECT_TRUE(d->wait_idle(0ms));
  d->cancel(1);  // already completed: nothing happens
  d->cancel(2);  // never submitted: nothing happens
  // Its id is free again.
  ASSERT_TRUE(d->submit(echo(1), [](RemoteOutcome) {}));
  EXPECT_EQ(d->backlog(), 1u);
}

TEST(NoWorker, EachWorkerStateHasItsOwnName) {
  EXPECT_EQ(to_string(WorkerState::Connecting), "connecting");
  EXPECT_EQ(to_string(WorkerState::Alive), "alive");
  EXPECT_EQ(to_string(WorkerState::Suspect), "suspect");
  EXPECT_EQ(to_string(WorkerState::Dead), "dead");
  EXPECT_EQ(to_string(WorkerState::Draining), "draining");
  EXPECT_EQ(to_string(static_cast<WorkerState>(200)), "unknown");
}

}  // namespace
}  // namespace pepita::transport
