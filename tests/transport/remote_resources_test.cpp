// Issue 22 on remote workers: workers advertise an inventory, the dispatcher places resource
// requests by it (never oversubscribing a worker, one Allocation per attempt sent along and
// echoed back), and a request no worker can hold fails at submit naming the largest worker.
// In-process workers with fake inventories, as `pepita worker --resources gpus=0,1` gives.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "pepita/pool/pool.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t kGiB = 1ull << 30;

task::Inventory inventory(unsigned cpus, std::uint64_t memory, std::vector<std::string> gpus) {
  task::Inventory inv;
  for (unsigned c = 0; c < cpus; ++c) inv.cpus.push_back(c);
  inv.numa[0] = inv.cpus;
  inv.memory = memory;
  inv.gpus = std::move(gpus);
  return inv;
}

// Waits until every worker of `d` has registered (and so advertised its inventory).
bool all_registered(const RemoteDispatcher& d, std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t up = 0;
    for (const auto& w : d.workers()) up += w.connects > 0 ? 1 : 0;
    if (up >= n) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::uint32_t in_flight(const RemoteDispatcher& d) {
  std::uint32_t n = 0;
  for (const auto& w : d.workers()) n += w.in_flight;
  return n;
}

// `out` ended at placement, no worker being large enough, with `why` in its error.
void expect_fits_no_worker(const RemoteOutcome& out, const std::string& why) {
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find(why), std::string::npos) << out.result.error;
}

TEST(RemoteResources, WorkersAdvertiseTheirInventoryAtRegistration) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 4, inventory(4, 2 * kGiB, {"0", "1"}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 1));
  const auto info = (*d)->workers().at(0);
  EXPECT_EQ(info.inventory, inventory(4, 2 * kGiB, {"0", "1"}));
}

TEST(RemoteResources, TwoOneGpuTasksGetDisjointGpusAndAThirdWaits) {
  test::KeyFile kf;
  // Eight slots: only the two GPUs may hold the third task back.
  auto w = test::start_worker(kf.key, 8, inventory(8, 8 * kGiB, {"0", "1"}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 1));
  std::mutex mu;
  std::map<std::uint64_t, RemoteOutcome> outcomes;
  std::atomic<int> done{0};
  for (std::uint64_t id = 1; id <= 3; ++id) {
    RemoteTask t = test::sleep_task(id, 1500);
    t.resources.gpus = 1;
    ASSERT_TRUE((*d)->submit(std::move(t), [&](RemoteOutcome o) {
      std::lock_guard lock(mu);
      outcomes[o.id] = std::move(o);
      ++done;
    }));
  }
  // Until the first finishes, two run and the third is queued; never three at once.
  std::uint32_t most = 0;
  bool saw_two_with_one_waiting = false;
  while (done.load() < 3) {
    const int finished = done.load();
    const std::uint32_t now = in_flight(**d);
    most = std::max(most, now);
    if (now == 2 && finished == 0 && (*d)->backlog() == 3) saw_two_with_one_waiting = true;
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE((*d)->wait_idle(30s));
  EXPECT_LE(most, 2u) << "a worker with two GPUs ran three 1-GPU tasks at once";
  EXPECT_TRUE(saw_two_with_one_waiting);
  std::lock_guard lock(mu);
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& [id, o] : outcomes) {
    EXPECT_EQ(o.result.status, TaskStatus::Succeeded) << id << ": " << o.result.error;
    ASSERT_TRUE(o.result.allocation.has_value()) << id;
    ASSERT_EQ(o.result.allocation->gpus.size(), 1u) << id;
  }
  // Tasks 1 and 2 were leased first, together: one GPU each.
  const std::set<std::string> first_two{outcomes[1].result.allocation->gpu_list(),
                                        outcomes[2].result.allocation->gpu_list()};
  EXPECT_EQ(first_two, (std::set<std::string>{"0", "1"}));
  EXPECT_TRUE(first_two.contains(outcomes[3].result.allocation->gpu_list()));
}

TEST(RemoteResources, ATaskOfTwoGigGoesOnlyToTheWorkerWithFourGig) {
  test::KeyFile kf;
  auto small = test::start_worker(kf.key, 4, inventory(4, 1 * kGiB, {}));
  auto large = test::start_worker(kf.key, 4, inventory(4, 4 * kGiB, {}));
  ASSERT_TRUE(small && large);
  auto d = RemoteDispatcher::start(
      test::fast_options(kf.key, {small->endpoint().to_string(), large->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 2));
  std::mutex mu;
  std::vector<RemoteOutcome> outcomes;
  constexpr int kTasks = 6;
  for (int i = 1; i <= kTasks; ++i) {
    RemoteTask t{.id = static_cast<std::uint64_t>(i)};
    t.spec.path = "/bin/sh";
    t.spec.args = {"-c", "sleep 0.05"};
    t.resources.memory = 2 * kGiB;
    ASSERT_TRUE((*d)->submit(std::move(t), [&](RemoteOutcome o) {
      std::lock_guard lock(mu);
      outcomes.push_back(std::move(o));
    }));
  }
  ASSERT_TRUE((*d)->wait_idle(60s));
  std::lock_guard lock(mu);
  ASSERT_EQ(outcomes.size(), static_cast<std::size_t>(kTasks));
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.result.status, TaskStatus::Succeeded) << o.id << ": " << o.result.error;
    EXPECT_EQ(o.worker, large->endpoint().to_string()) << o.id;
    ASSERT_TRUE(o.result.allocation.has_value()) << o.id;
    EXPECT_EQ(o.result.allocation->memory, 2 * kGiB);
  }
  EXPECT_EQ(small->stats().tasks_run, 0u);
}

TEST(RemoteResources, AProcessTaskSeesItsGpuIdsInItsEnvironment) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2, inventory(2, 2 * kGiB, {"0", "1", "2", "3"}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 1));
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/sh";
  t.spec.args = {"-c", "echo $CUDA_VISIBLE_DEVICES $PEPITA_GPUS"};
  t.resources.gpus = 2;
  auto out = (*d)->run(std::move(t));
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  ASSERT_TRUE(out->result.allocation.has_value());
  const std::string ids = out->result.allocation->gpu_list();
  EXPECT_EQ(out->result.allocation->gpus.size(), 2u);
  EXPECT_EQ(out->result.stdout_data, ids + " " + ids + "\n");
}

TEST(RemoteResources, AQueuedTaskThatFitsNoKnownWorkerFailsWithTheReason) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2, inventory(2, 1 * kGiB, {}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  // Submitted before or after the worker registers: either way it fails, once it is known.
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/true";
  t.resources.memory = 2 * kGiB;
  auto out = (*d)->run(std::move(t));
  ASSERT_TRUE(out) << out.error().to_string();
  expect_fits_no_worker(*out, "needs 2G of memory; the largest worker has 1G");
  EXPECT_EQ(w->stats().tasks_run, 0u);
}

TEST(RemoteResources, ATaskSubmittedOnceTheWorkersAreKnownFailsInsideSubmitIfNoneFits) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2, inventory(2, 1 * kGiB, {"0"}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 1));
  // No worker event follows to fail it later: submit itself completes it, before returning.
  auto promise = std::make_shared<std::promise<RemoteOutcome>>();
  auto future = promise->get_future();
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/true";
  t.resources.gpus = 2;
  ASSERT_TRUE(
      (*d)->submit(std::move(t), [promise](RemoteOutcome o) { promise->set_value(std::move(o)); }));
  ASSERT_EQ(future.wait_for(0s), std::future_status::ready);
  const RemoteOutcome out = future.get();
  expect_fits_no_worker(out, "needs 2 GPUs; the largest worker has 1");
  // One that fits, submitted the same way, runs on the worker.
  RemoteTask fits{.id = 2};
  fits.spec.path = "/bin/true";
  fits.resources.gpus = 1;
  auto ran = (*d)->run(std::move(fits));
  ASSERT_TRUE(ran) << ran.error().to_string();
  EXPECT_EQ(ran->result.status, TaskStatus::Succeeded) << ran->result.error;
  EXPECT_EQ(w->stats().tasks_run, 1u);
}

TEST(RemoteResources, ALaterResourceAttemptAsksForItsGrownAmount) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2, inventory(2, 1 * kGiB, {}));
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w->endpoint().to_string()}));
  ASSERT_TRUE(d) << d.error().to_string();
  ASSERT_TRUE(all_registered(**d, 1));
  // 1G * attempt: the first attempt fits the 1G worker, the second (2G) fits none.
  RemoteTask second{.id = 1, .resource_attempt = 2};
  second.spec.path = "/bin/true";
  second.resources.memory = 1 * kGiB;
  second.resources.memory_growth = task::Growth::PerAttempt;
  auto out = (*d)->run(std::move(second));
  ASSERT_TRUE(out) << out.error().to_string();
  expect_fits_no_worker(*out, "needs 2G of memory; the largest worker has 1G");
  EXPECT_EQ(w->stats().tasks_run, 0u);
}

TEST(RemoteResources, AnInvalidRequestIsRefusedAtSubmit) {
  test::KeyFile kf;
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {"127.0.0.1:9"}));
  ASSERT_TRUE(d) << d.error().to_string();
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/true";
  t.resources.gpus = -1;
  auto r = (*d)->submit(std::move(t), [](RemoteOutcome) {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
}

TEST(RemoteResources, PoolSubmitOfAFourGpuTaskNamesTheLargestWorker) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2, inventory(2, 2 * kGiB, {"0", "1"}));
  ASSERT_TRUE(w);
  RemoteExecutorOptions o;
  o.remote = test::fast_options(kf.key, {w->endpoint().to_string()});
  auto remote = RemoteExecutor::create(std::move(o));
  ASSERT_TRUE(remote) << remote.error().to_string();
  EXPECT_TRUE((*remote)->places_resources());
  ASSERT_TRUE(all_registered((*remote)->dispatcher(), 1));
  auto pool = pool::Pool::builder().executor(*remote).build();
  ASSERT_TRUE(pool) << pool.error().to_string();
  task::ResourceRequest four;
  four.gpus = 4;
  auto big = task::Task::binary("/bin/true").backend(task::Backend::Remote).resources(four).build();
  ASSERT_TRUE(big) << big.error().to_string();
  auto refused = pool->submit(*big);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("needs 4 GPUs; the largest worker has 2"),
            std::string::npos)
      << refused.error().message();
  // One that fits runs, with its GPU.
  task::ResourceRequest one;
  one.gpus = 1;
  auto fits = task::Task::binary("/bin/true").backend(task::Backend::Remote).resources(one).build();
  ASSERT_TRUE(fits) << fits.error().to_string();
  ASSERT_TRUE(pool->submit(*fits));
  auto results = pool->wait_all();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  ASSERT_TRUE(results[0].allocation.has_value());
  EXPECT_EQ(results[0].allocation->gpus.size(), 1u);
  pool->shutdown();
}

}  // namespace
}  // namespace pepita::transport
