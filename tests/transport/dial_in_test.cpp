// Workers that dial in (`pepita worker --connect`, the Slurm pilot-job model): a listening
// dispatcher authenticates them, leases to them like configured workers, re-dispatches when one
// goes away, and refuses a worker holding another key; a dialing worker stops on its own once
// its driver stays unreachable.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "pepita/transport/remote.hpp"
#include "pepita/transport/worker.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

WorkerOptions dialing_worker(const Key& key, const Endpoint& driver, std::string name) {
  WorkerOptions o;
  o.connect_to = driver.to_string();
  o.give_up_after = 1500ms;
  o.key = key;
  o.slots = 2;
  o.name = std::move(name);
  o.heartbeat_interval = 200ms;
  o.dead_after = 3000ms;
  o.log = [](std::string_view) {};
  return o;
}

std::unique_ptr<RemoteDispatcher> listening_dispatcher(const Key& key) {
  RemoteOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.heartbeat_interval = 200ms;
  o.suspect_after = 1000ms;
  o.dead_after = 2000ms;
  o.max_attempts = 10;
  o.log = [](std::string_view) {};
  return RemoteDispatcher::start(std::move(o)).value();
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::size_t alive_workers(const RemoteDispatcher& d) {
  std::size_t n = 0;
  for (const auto& w : d.workers()) n += w.state == WorkerState::Alive;
  return n;
}

TEST(DialIn, NeedsWorkersOrAListenAddress) {
  RemoteOptions o;
  o.key = Key::generate().value();
  auto d = RemoteDispatcher::start(std::move(o));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(d.error().message().find("dial in"), std::string::npos) << d.error().message();
}

TEST(DialIn, WorkersThatDialInRunTasksAndLostOnesAreRedispatched) {
  const Key key = Key::generate().value();
  auto d = listening_dispatcher(key);
  ASSERT_TRUE(d->listen_endpoint());
  const Endpoint at = *d->listen_endpoint();
  EXPECT_NE(at.port, 0);
  auto a = Worker::start(dialing_worker(key, at, "dial-a")).value();
  auto b = Worker::start(dialing_worker(key, at, "dial-b")).value();
  ASSERT_TRUE(wait_for([&] { return alive_workers(*d) == 2; })) << "workers did not dial in";

  constexpr int kTasks = 200;
  test::EchoTasks tasks;
  ASSERT_TRUE(tasks.submit(*d, kTasks, "0.002"));
  EXPECT_GE(d->backlog(), 1u);
  ASSERT_TRUE(wait_for([&] { return tasks.done() >= kTasks / 4; }, 60s));
  b.reset();  // the worker goes away mid-run, killing what it ran

  ASSERT_TRUE(d->wait_idle(60s)) << "only " << tasks.done() << " of " << kTasks << " completed";
  EXPECT_EQ(d->backlog(), 0u);
  EXPECT_TRUE(tasks.each_exactly_once());
  std::vector<std::string> names;
  for (const auto& w : d->workers()) names.push_back(w.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "dial-a"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "dial-b"), names.end());
}

TEST(DialIn, AWorkerWithAnotherKeyIsRefusedAndOthersKeepWorking) {
  const Key key = Key::generate().value();
  auto d = listening_dispatcher(key);
  const Endpoint at = *d->listen_endpoint();
  auto intruder = Worker::start(dialing_worker(Key::generate().value(), at, "intruder")).value();
  auto good = Worker::start(dialing_worker(key, at, "good")).value();
  ASSERT_TRUE(wait_for([&] { return alive_workers(*d) == 1; }));

  RemoteTask t{.id = 1};
  t.spec.path = "/bin/echo";
  t.spec.args = {"fine"};
  auto out = d->run(std::move(t)).value();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded);
  EXPECT_EQ(out.result.stdout_data, "fine\n");
  for (const auto& w : d->workers()) {
    if (w.state == WorkerState::Alive) {
      EXPECT_EQ(w.name, "good");
    }
  }
  // The intruder never authenticates, so it gives up like a worker whose driver is gone.
  intruder->wait();
  EXPECT_EQ(intruder->stats().clients_accepted, 0u);
}

TEST(DialIn, AWorkerStopsOnItsOwnWhenTheDriverStaysAway) {
  const Key key = Key::generate().value();
  Endpoint nowhere;
  {
    auto d = listening_dispatcher(key);  // a port that is certainly closed once d is gone
    nowhere = *d->listen_endpoint();
  }
  auto opts = dialing_worker(key, nowhere, "orphan");
  opts.give_up_after = 300ms;
  auto w = Worker::start(std::move(opts)).value();
  const auto t0 = std::chrono::steady_clock::now();
  w->wait();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(DialIn, AWorkerRedialsWhenItsDriverComesBack) {
  const Key key = Key::generate().value();
  auto d = listening_dispatcher(key);
  const Endpoint at = *d->listen_endpoint();
  auto opts = dialing_worker(key, at, "faithful");
  opts.give_up_after = 30s;
  auto w = Worker::start(std::move(opts)).value();
  ASSERT_TRUE(wait_for([&] { return alive_workers(*d) == 1; }));
  d.reset();  // the driver restarts on the same port

  RemoteOptions o;
  o.listen = at.to_string();
  o.key = key;
  o.log = [](std::string_view) {};
  auto again = RemoteDispatcher::start(std::move(o));
  ASSERT_TRUE(again) << again.error().to_string();
  ASSERT_TRUE(wait_for([&] { return alive_workers(**again) == 1; }, 20s));
  RemoteTask t{.id = 7};
  t.spec.path = "/bin/echo";
  t.spec.args = {"back"};
  EXPECT_EQ((*again)->run(std::move(t)).value().result.stdout_data, "back\n");
}

}  // namespace
}  // namespace pepita::transport
