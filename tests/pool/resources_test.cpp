// Resource-aware placement in the pool (issue 22), with a fake "process" executor that records
// the Allocation each attempt gets and when it ran: no oversubscription (start/end times), GPU
// ids, fractional packing, no starvation of a large task, infeasible requests at submit, memory
// growth with retry_on oom, retry_on exit codes, and Allocations given back on every path.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pepita/executor/blocking_runner.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using namespace std::chrono_literals;
using executor::BlockingRunner;
using task::Allocation;
using task::Backend;
using task::Growth;
using task::Inventory;
using task::ResourceRequest;
using task::RetryOn;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kGiB = 1ULL << 30;

struct Span {
  std::string name;
  std::optional<Allocation> allocation;
  Clock::time_point start, end;
};

// Stands in for the process executor: each attempt holds its slot for `hold`, then `decide`
// gives its result (default: success). A task whose path is "nolaunch" fails to start.
class Recorder final : public executor::Executor {
 public:
  using Decide = std::function<ExecutionResult(const Task&)>;
  static std::shared_ptr<Recorder> make(std::size_t slots, std::chrono::milliseconds hold,
                                        Decide decide = {}, Backend backend = Backend::Process,
                                        bool places = false) {
    auto self = std::shared_ptr<Recorder>(new Recorder(slots, backend, places));
    Recorder* raw = self.get();
    self->runner_ = BlockingRunner::create(
                        {.threads = slots, .name = "recorder"},
                        [raw, hold, decide](const BlockingRunner::Attempt& a) {
                          Span run{a.task.name(), std::nullopt, Clock::now(), {}};
                          if (a.task.allocation()) run.allocation = *a.task.allocation();
                          std::this_thread::sleep_for(hold);
                          ExecutionResult r =
                              decide
                                  ? decide(a.task)
                                  : executor::result_for(a.task, Status::Succeeded, "", a.started);
                          run.end = Clock::now();  // before the pool sees the result
                          std::lock_guard lock(raw->mu_);
                          raw->runs_.push_back(std::move(run));
                          return r;
                        })
                        .value();
    return self;
  }
  Backend backend() const noexcept override { return backend_; }
  std::size_t slots() const noexcept override { return slots_; }
  Result<void> start(const Task& t, std::stop_token stop, executor::Completion done) override {
    if (t.process() && t.process()->path == "nolaunch") {
      return fail(ErrorCode::Io, "cannot launch (asked to fail)");
    }
    return runner_->submit(t, std::move(stop), std::move(done));
  }
  void shutdown() override { runner_->shutdown(); }
  bool places_resources() const noexcept override { return places_; }
  Result<void> can_ever_fit(const ResourceRequest& r) const override {
    if (r.gpus > 2) return fail(ErrorCode::Unsupported, "needs 4 GPUs; the largest worker has 2");
    return {};
  }

  std::vector<Span> runs() {
    std::lock_guard lock(mu_);
    return runs_;
  }
  Span run_of(const std::string& name) {
    for (const Span& r : runs()) {
      if (r.name == name) return r;
    }
    ADD_FAILURE() << "no run of " << name;
    return {};
  }

 private:
  Recorder(std::size_t slots, Backend backend, bool places)
      : slots_(slots), backend_(backend), places_(places) {}
  std::size_t slots_;
  Backend backend_;
  bool places_;
  std::unique_ptr<BlockingRunner> runner_;
  std::mutex mu_;
  std::vector<Span> runs_;
};

Inventory host(std::string_view overrides) {
  Inventory inv;
  inv.cpus = {0, 1};
  inv.memory = 8 * kGiB;
  EXPECT_TRUE(inv.apply_overrides(overrides)) << overrides;
  return inv;
}

Pool make_pool(std::shared_ptr<Recorder> rec, Inventory inv,
               fault::RetryPolicy policy = fault::RetryPolicy(),
               std::chrono::nanoseconds reserve_after = std::chrono::seconds(1)) {
  return Pool::builder()
      .executor(std::move(rec))
      .resources(std::move(inv))
      .retry_policy(std::move(policy))
      .reserve_after(reserve_after)
      .build()
      .value();
}

Task binary(std::string name, ResourceRequest r, std::vector<std::string> args = {}) {
  return Task::binary("work")
      .name(std::move(name))
      .args(std::move(args))
      .resources(r)
      .build()
      .value();
}

ResourceRequest cpus(double n) {
  ResourceRequest r;
  r.cpus = n;
  return r;
}
ResourceRequest gpus(double n) {
  ResourceRequest r;
  r.gpus = n;
  return r;
}

TEST(PoolResources, TwoTwoCpuTasksOnATwoCpuHostNeverOverlap) {
  auto rec = Recorder::make(4, 60ms);
  Pool pool = make_pool(rec, host("cpus=2"));
  ASSERT_TRUE(pool.submit(binary("a", cpus(2))));
  ASSERT_TRUE(pool.submit(binary("b", cpus(2))));
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.error;
  const Span a = rec->run_of("a"), b = rec->run_of("b");
  EXPECT_TRUE(a.end <= b.start || b.end <= a.start) << "the two 2-CPU tasks overlapped";
  ASSERT_TRUE(a.allocation);
  EXPECT_EQ(a.allocation->cpus, 2);
}

// One slot: a second attempt never starts while the first runs, whether the tasks queue for the
// Ledger (placed, scanned in order) or only for a slot, though the host has room for all three.
TEST(PoolResources, OneSlotStartsOneAttemptWithOrWithoutRequests) {
  for (const ResourceRequest& req : {cpus(0.5), ResourceRequest{}}) {
    auto rec = Recorder::make(1, 100ms);
    Pool pool = make_pool(rec, host("cpus=2"));
    ASSERT_TRUE(pool.submit_all({binary("a", req), binary("b", req), binary("c", req)}));
    const Stats st = pool.stats();
    EXPECT_EQ(st.running, 1u) << req.to_string();
    EXPECT_EQ(st.queued, 2u) << req.to_string();
    for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.error;
  }
}

TEST(PoolResources, FourOneGpuTasksGetDisjointIds) {
  auto rec = Recorder::make(4, 30ms);
  Pool pool = make_pool(rec, host("gpus=0,1,2,3"));
  std::vector<Task> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(binary("g" + std::to_string(i), gpus(1)));
  ASSERT_TRUE(pool.submit_all(std::move(batch)));  // placed together, before any ends
  std::set<std::string> ids;
  for (const auto& r : pool.wait_all()) {
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_TRUE(r.allocation) << "the result reports the attempt's Allocation";
    ASSERT_EQ(r.allocation->gpus.size(), 1u);
    ids.insert(r.allocation->gpu_list());
  }
  EXPECT_EQ(ids, (std::set<std::string>{"0", "1", "2", "3"}));
}

TEST(PoolResources, TwoHalfGpuTasksShareAnIdAndAThirdGoesToAnother) {
  auto rec = Recorder::make(4, 150ms);
  Pool pool = make_pool(rec, host("gpus=0,1"));
  std::vector<Task> batch{binary("h0", gpus(0.5)), binary("h1", gpus(0.5)),
                          binary("h2", gpus(0.5))};
  ASSERT_TRUE(pool.submit_all(std::move(batch)));
  pool.wait_all();
  std::map<std::string, int> per_id;
  for (const Span& r : rec->runs()) {
    ASSERT_TRUE(r.allocation);
    ASSERT_EQ(r.allocation->gpus.size(), 1u);
    EXPECT_EQ(r.allocation->gpus[0].fraction, 0.5);
    ++per_id[r.allocation->gpus[0].id];
  }
  EXPECT_EQ(per_id.size(), 2u);
  EXPECT_EQ(per_id[rec->run_of("h0").allocation->gpus[0].id], 2) << "h0 and h1 pack on one id";
  EXPECT_EQ(rec->run_of("h0").allocation->gpus[0].id, rec->run_of("h1").allocation->gpus[0].id);
}

TEST(PoolResources, PinnedTasksRunningTogetherGetDisjointCores) {
  auto rec = Recorder::make(4, 100ms);
  Pool pool = make_pool(rec, host("cpus=4"));
  ResourceRequest pinned = cpus(2);
  pinned.pin_cpus = true;
  ASSERT_TRUE(pool.submit_all({binary("p0", pinned), binary("p1", pinned)}));
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.error;
  const Span a = rec->run_of("p0"), b = rec->run_of("p1");
  ASSERT_TRUE(a.allocation && b.allocation);
  ASSERT_EQ(a.allocation->cores.size(), 2u);
  ASSERT_EQ(b.allocation->cores.size(), 2u);
  if (a.start < b.end && b.start < a.end) {
    std::set<unsigned> all(a.allocation->cores.begin(), a.allocation->cores.end());
    all.insert(b.allocation->cores.begin(), b.allocation->cores.end());
    EXPECT_EQ(all.size(), 4u) << "two pinned tasks running together shared a core";
  }
}

TEST(PoolResources, LargeTaskIsNotStarvedByAStreamOfSmallOnes) {
  auto rec = Recorder::make(8, 20ms);
  // reserve_after 0: the big task reserves at once (strict order).
  Pool pool = make_pool(rec, host("cpus=2"), fault::RetryPolicy(), 0ms);
  ASSERT_TRUE(pool.submit(binary("small-0", cpus(1))));
  ASSERT_TRUE(pool.submit(binary("small-1", cpus(1))));
  ASSERT_TRUE(pool.submit(binary("big", cpus(2))));
  // The stream keeps coming while the big task waits; one free CPU would always fit a small one.
  std::thread stream([&] {
    for (int i = 2; i < 22; ++i) {
      ASSERT_TRUE(pool.submit(binary("small-" + std::to_string(i), cpus(1))));
      std::this_thread::sleep_for(2ms);
    }
  });
  stream.join();
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.name << ": " << r.error;
  const Span big = rec->run_of("big");
  for (int i = 2; i < 22; ++i) {
    const Span small = rec->run_of("small-" + std::to_string(i));
    EXPECT_GE(small.start, big.start) << "small-" << i << " started before the big task";
  }
  for (const Span& r : rec->runs()) {
    if (r.name != "big") {
      EXPECT_TRUE(r.end <= big.start || r.start >= big.end) << r.name << " overlapped big";
    }
  }
}

TEST(PoolResources, SmallTasksBackfillAroundABlockedLargeOneOnlyForReserveAfter) {
  auto rec = Recorder::make(8, 20ms);
  Pool pool = make_pool(rec, host("cpus=2"), fault::RetryPolicy(), 100ms);
  ASSERT_TRUE(pool.submit(binary("small-0", cpus(1))));
  ASSERT_TRUE(pool.submit(binary("big", cpus(2))));
  const auto stream_start = Clock::now();
  // A stream of 1-CPU tasks far longer than reserve_after: one is always ready to backfill.
  std::thread stream([&] {
    for (int i = 1; i < 120; ++i) {
      ASSERT_TRUE(pool.submit(binary("small-" + std::to_string(i), cpus(1))));
      std::this_thread::sleep_for(5ms);
    }
  });
  stream.join();
  const auto stream_end = Clock::now();
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.name << ": " << r.error;
  const Span big = rec->run_of("big");
  EXPECT_GT(rec->run_of("small-1").start, stream_start);
  EXPECT_LT(rec->run_of("small-1").start, big.start) << "no backfill before reserve_after";
  EXPECT_LT(big.start, stream_end) << "the big task waited for the whole stream";
  for (const Span& r : rec->runs()) {
    if (r.name != "big") {
      EXPECT_TRUE(r.end <= big.start || r.start >= big.end) << r.name << " overlapped big";
    }
  }
}

TEST(PoolResources, NegativeReserveAfterIsRefused) {
  auto built = Pool::builder().reserve_after(-1ms).build();
  ASSERT_FALSE(built);
  EXPECT_EQ(built.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(built.error().message().find("reserve_after"), std::string::npos);
}

TEST(PoolResources, EmptyRequestsTakeOnlyASlotWhileTheLedgerIsFull) {
  // The task holding the only CPU ends only once the task without a request has run.
  std::promise<void> plain_ran;
  std::shared_future<void> ran = plain_ran.get_future().share();
  auto rec = Recorder::make(4, 1ms, [&](const Task& t) {
    if (t.name() == "plain") plain_ran.set_value();
    const bool ok = t.name() == "plain" || ran.wait_for(10s) == std::future_status::ready;
    return executor::result_for(t, ok ? Status::Succeeded : Status::Failed,
                                ok ? "" : "the task without a request did not run meanwhile",
                                Clock::now());
  });
  Pool pool = make_pool(rec, host("cpus=1"));
  ASSERT_TRUE(pool.submit(binary("holds-the-cpu", cpus(1))));
  ASSERT_TRUE(pool.submit(Task::binary("work").name("plain").build().value()));
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.name << ": " << r.error;
  EXPECT_FALSE(rec->run_of("plain").allocation);
}

TEST(PoolResources, InfeasibleRequestFailsAtSubmitNamingWhatIsMissing) {
  auto rec = Recorder::make(2, 1ms);
  Pool pool = make_pool(rec, host("gpus=0,1"));
  auto four = pool.submit(binary("four-gpus", gpus(4)));
  ASSERT_FALSE(four);
  EXPECT_EQ(four.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(four.error().message().find("needs 4 GPUs; this host has 2"), std::string::npos)
      << four.error().message();
  EXPECT_NE(four.error().message().find("four-gpus"), std::string::npos);
  ResourceRequest lic;
  lic.named["license"] = 1;
  auto named = pool.submit_all({binary("needs-license", lic)});
  ASSERT_FALSE(named);
  EXPECT_NE(named.error().message().find("this host has no 'license'"), std::string::npos);
  EXPECT_EQ(pool.pending_tasks(), 0u);
}

TEST(PoolResources, ExecutorThatPlacesResourcesIsAskedAtSubmit) {
  const Backend far = Backend::named("far").value();
  auto rec = Recorder::make(2, 1ms, {}, far, /*places=*/true);
  Pool pool = Pool::builder().executor(rec).resources(host("")).build().value();
  auto big = pool.submit(Task::binary("work").backend(far).resources(gpus(4)).build().value());
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message().find("the largest worker has 2"), std::string::npos);
  // Its requests are its own: this host's Ledger (no GPUs) does not hold them back.
  auto ok = pool.run(Task::binary("work").backend(far).resources(gpus(2)).build().value());
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ok());
  EXPECT_FALSE(ok->allocation);
  const auto runs = rec->runs();
  ASSERT_EQ(runs.size(), 1u);
  ASSERT_TRUE(runs[0].allocation) << "a placing executor learns the attempt (for Growth)";
  EXPECT_EQ(runs[0].allocation->attempt, 1u);
  EXPECT_TRUE(runs[0].allocation->gpus.empty()) << "and picks the GPUs itself";
}

TEST(PoolResources, MemoryGrowsPerAttemptAndRetryOnOomSucceedsWithTwiceTheMemory) {
  auto rec = Recorder::make(2, 1ms, [](const Task& t) {
    const bool enough = t.allocation() && t.allocation()->memory >= 2 * kGiB;
    ExecutionResult r = executor::result_for(t, enough ? Status::Succeeded : Status::OutOfMemory,
                                             enough ? "" : "out of memory", Clock::now());
    return r;
  });
  Pool pool = make_pool(rec, host("memory=8G"),
                        fault::RetryPolicy().max_attempts(1).base_delay(1ms).max_delay(2ms));
  ResourceRequest r;
  r.memory = kGiB;
  r.memory_growth = Growth::PerAttempt;
  auto t = Task::binary("work").resources(r).retry_on({RetryOn::oom()}).max_retries(3).build();
  auto res = pool.run(t.value());
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->ok()) << res->error;
  EXPECT_EQ(res->attempts, 2u);
  ASSERT_TRUE(res->allocation);
  EXPECT_EQ(res->allocation->memory, 2 * kGiB);
  EXPECT_EQ(res->allocation->attempt, 2u);
}

TEST(PoolResources, RetryThatWouldOutgrowTheHostFailsInsteadOfWaitingForever) {
  auto rec = Recorder::make(2, 1ms, [](const Task& t) {
    return executor::result_for(t, Status::OutOfMemory, "out of memory", Clock::now());
  });
  Pool pool = make_pool(rec, host("memory=8G"),
                        fault::RetryPolicy().max_attempts(1).base_delay(1ms).max_delay(2ms));
  ResourceRequest r;
  r.memory = 3 * kGiB;
  r.memory_growth = Growth::PerAttempt;
  auto t = Task::binary("work").resources(r).retry_on({RetryOn::oom()}).max_retries(5).build();
  auto res = pool.run(t.value()).value();
  EXPECT_EQ(res.status, Status::OutOfMemory);
  EXPECT_EQ(res.attempts, 2u) << "3G and 6G fit in 8G; 9G never will";
  EXPECT_NE(res.error.find("not retried: attempt 3 needs 9G of memory; this host has 8G"),
            std::string::npos)
      << res.error;
}

ExecutionResult exit_with_first_arg(const Task& t) {
  const int code = std::stoi(t.process()->args.at(0));
  ExecutionResult r = executor::result_for(t, Status::Failed, "exited", Clock::now());
  r.exit_code = code;
  return r;
}

TEST(PoolResources, RetryOnExitThreeRetriesExitThreeButNotExitFour) {
  auto rec = Recorder::make(2, 1ms, exit_with_first_arg);
  Pool pool =
      make_pool(rec, host(""), fault::RetryPolicy().max_attempts(1).base_delay(1ms).max_delay(2ms));
  auto build = [](std::string name, std::string code) {
    return Task::binary("work")
        .name(std::move(name))
        .args({std::move(code)})
        .retry_on({RetryOn::exit(3)})
        .max_retries(2)
        .build()
        .value();
  };
  auto three = pool.run(build("three", "3")).value();
  auto four = pool.run(build("four", "4")).value();
  EXPECT_EQ(three.attempts, 3u) << "exit 3 is retried up to max_retries";
  EXPECT_EQ(four.attempts, 1u) << "exit 4 is not in retry_on";
  EXPECT_EQ(four.exit_code, 4);
}

TEST(PoolResources, APlacingExecutorLearnsEachAttemptsNumber) {
  const Backend far = Backend::named("far").value();
  auto rec = Recorder::make(1, 1ms, exit_with_first_arg, far, /*places=*/true);
  Pool pool = Pool::builder().executor(rec).resources(host("")).build().value();
  auto r = pool.run(Task::binary("work")
                        .backend(far)
                        .args({"3"})
                        .resources(gpus(1))
                        .retry_on({RetryOn::exit(3)})
                        .max_retries(1)
                        .build()
                        .value());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->attempts, 2u);
  const auto runs = rec->runs();
  ASSERT_EQ(runs.size(), 2u);
  ASSERT_TRUE(runs[0].allocation && runs[1].allocation);
  EXPECT_EQ(runs[0].allocation->attempt, 1u);
  EXPECT_EQ(runs[1].allocation->attempt, 2u) << "the retry is attempt 2 there too";
}

TEST(PoolResources, WithoutRetryOnThePolicyDecidesAsBefore) {
  auto rec = Recorder::make(2, 1ms, exit_with_first_arg);
  Pool pool =
      make_pool(rec, host(""), fault::RetryPolicy().max_attempts(2).base_delay(1ms).max_delay(2ms));
  auto r = pool.run(Task::binary("work").args({"4"}).build().value()).value();
  EXPECT_EQ(r.attempts, 2u);
}

// "timeout" times out, "signal" dies of SIGKILL; the path "nolaunch" fails to start.
ExecutionResult fail_as_first_arg(const Task& t) {
  const std::string& how = t.process()->args.at(0);
  if (how == "timeout") return executor::result_for(t, Status::TimedOut, "timed out", Clock::now());
  ExecutionResult r = executor::result_for(t, Status::Signaled, "killed", Clock::now());
  r.signal = SIGKILL;
  return r;
}

TEST(PoolResources, RetryOnTimeoutSignalAndLaunchRetryOnlyTheFailuresTheyName) {
  auto rec = Recorder::make(2, 1ms, fail_as_first_arg);
  Pool pool =
      make_pool(rec, host(""), fault::RetryPolicy().max_attempts(1).base_delay(1ms).max_delay(2ms));
  auto build = [](std::string path, std::string how, std::vector<RetryOn> on) {
    return Task::binary(std::move(path))
        .args({std::move(how)})
        .retry_on(std::move(on))
        .max_retries(1)
        .build()
        .value();
  };
  const RetryOn launch{RetryOn::Kind::Launch, -1};
  auto timeout = pool.run(build("work", "timeout", {RetryOn::oom(), RetryOn::timeout()})).value();
  EXPECT_EQ(timeout.status, Status::TimedOut);
  EXPECT_EQ(timeout.attempts, 2u) << "a timeout is retried when retry_on names it";
  auto killed = pool.run(build("work", "signal", {RetryOn::signal(SIGKILL)})).value();
  EXPECT_EQ(killed.status, Status::Signaled);
  EXPECT_EQ(killed.attempts, 2u) << "SIGKILL is retried when retry_on names it";
  auto other_signal =
      pool.run(build("work", "signal", {RetryOn::timeout(), launch, RetryOn::signal(SIGTERM)}))
          .value();
  EXPECT_EQ(other_signal.attempts, 1u) << "SIGKILL is not SIGTERM, and not a timeout or launch";
  auto no_launch = pool.run(build("nolaunch", "x", {launch})).value();
  EXPECT_EQ(no_launch.status, Status::LaunchFailed);
  EXPECT_EQ(no_launch.attempts, 2u) << "a launch failure is retried when retry_on names it";
  EXPECT_NE(no_launch.error.find("asked to fail"), std::string::npos) << no_launch.error;
  auto launch_not_named = pool.run(build("nolaunch", "x", {RetryOn::exit()})).value();
  EXPECT_EQ(launch_not_named.attempts, 1u) << "retry_on exit does not retry a launch failure";
}

// Without Pool::Builder::resources() the pool places requests on this host, detected once.
TEST(PoolResources, WithoutAnInventoryRequestsArePlacedOnTheDetectedHost) {
  Pool pool = Pool::builder().cpu_workers(2).build().value();
  auto fits = pool.run(Task::function([] {}).name("one-cpu").resources(cpus(1)).build().value());
  ASSERT_TRUE(fits) << fits.error().message();
  EXPECT_TRUE(fits->ok()) << fits->error;
  auto huge = pool.submit(Task::function([] {}).name("huge").resources(cpus(1e6)).build().value());
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::Unsupported) << huge.error().message();
  EXPECT_NE(huge.error().message().find("task 'huge' can never run"), std::string::npos)
      << huge.error().message();
}

// "cancelled" and "skipped" end the attempt so (an executor's own cancellation); anything else
// fails.
ExecutionResult end_as_first_arg(const Task& t) {
  const std::string& how = t.process()->args.at(0);
  const Status s = how == "cancelled" ? Status::Cancelled
                   : how == "skipped" ? Status::Skipped
                                      : Status::Failed;
  return executor::result_for(t, s, how, Clock::now());
}

TEST(PoolResources, AnExecutorsCancellationIsNotRetriedAndFailuresRetryTogether) {
  auto rec = Recorder::make(4, 1ms, end_as_first_arg);
  Pool pool = make_pool(rec, host(""),
                        fault::RetryPolicy().max_attempts(3).base_delay(20ms).max_delay(40ms));
  std::vector<TaskHandle> handles;
  for (const char* how : {"cancelled", "skipped", "fail", "fail", "fail"}) {
    handles.push_back(pool.submit(Task::binary("work").args({how}).build().value()).value());
  }
  EXPECT_EQ(handles[0].wait().status, Status::Cancelled);
  EXPECT_EQ(handles[0].wait().attempts, 1u) << "a cancellation is never retried";
  EXPECT_EQ(handles[1].wait().status, Status::Skipped);
  EXPECT_EQ(handles[1].wait().attempts, 1u) << "a skipped attempt is never retried";
  for (std::size_t i = 2; i < handles.size(); ++i) {
    // Three failures waiting out their backoff at once: each still gets every attempt.
    EXPECT_EQ(handles[i].wait().status, Status::Failed);
    EXPECT_EQ(handles[i].wait().attempts, 3u);
  }
}

// A task that reserved the host but whose deadline passed while it waited ends TimedOut and
// gives the reservation up: the task behind it runs.
TEST(PoolResources, ReservingTaskWhoseDeadlinePassesLetsTheNextOneRun) {
  auto rec = Recorder::make(4, 300ms);
  Pool pool = make_pool(rec, host("cpus=2"), fault::RetryPolicy(), 0ms);
  auto first = pool.submit(binary("first", cpus(2))).value();
  auto late =
      pool.submit(
              Task::binary("work").name("late").resources(cpus(2)).deadline(100ms).build().value())
          .value();
  auto after = pool.submit(binary("after", cpus(2))).value();
  EXPECT_TRUE(first.wait().ok()) << first.wait().error;
  EXPECT_EQ(late.wait().status, Status::TimedOut);
  EXPECT_NE(late.wait().error.find("deadline"), std::string::npos) << late.wait().error;
  EXPECT_TRUE(after.wait().ok()) << after.wait().error;
  for (const Span& r : rec->runs()) EXPECT_NE(r.name, "late") << "late never started";
  EXPECT_GE(rec->run_of("after").start, rec->run_of("first").end);
}

TEST(PoolResources, AllocationsComeBackAfterFailureLaunchFailureAndCancel) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto rec = Recorder::make(4, 1ms, [&](const Task& t) {
    if (t.name() == "holder") released.wait_for(10s);  // holds everything until told
    return exit_with_first_arg(t);
  });
  Pool pool = make_pool(rec, host("cpus=2, gpus=1, license=1"));
  ResourceRequest all;
  all.cpus = 2;
  all.gpus = 1;
  all.memory = 8 * kGiB;
  all.named["license"] = 1;
  // Failure.
  auto failed = pool.run(binary("fails", all, {"1"})).value();
  EXPECT_EQ(failed.status, Status::Failed);
  // Launch failure.
  auto nolaunch =
      pool.run(Task::binary("nolaunch").name("nolaunch").resources(all).build().value()).value();
  EXPECT_EQ(nolaunch.status, Status::LaunchFailed);
  // Cancelled while queued behind a task holding everything, and while running.
  auto holder = pool.submit(binary("holder", all, {"0"})).value();
  auto queued = pool.submit(binary("queued", all, {"0"})).value();
  EXPECT_TRUE(pool.cancel(queued.id()));
  EXPECT_EQ(queued.wait().status, Status::Cancelled);
  release.set_value();
  holder.wait();
  // Everything is back: a task needing the whole host still starts.
  auto last = pool.run(binary("whole-host", all, {"0"})).value();
  EXPECT_EQ(last.exit_code, 0);
  ASSERT_TRUE(last.allocation);
  EXPECT_EQ(last.allocation->gpu_list(), "0");
}

TEST(PoolResources, FunctionTasksRequestingCpusShareTheLedger) {
  Inventory inv = host("cpus=1");
  Pool pool = Pool::builder().cpu_workers(4).resources(inv).build().value();
  std::atomic<int> inside{0}, most{0};
  std::vector<Task> tasks;
  for (int i = 0; i < 4; ++i) {
    tasks.push_back(Task::function([&] {
                      const int now = ++inside;
                      int seen = most.load();
                      while (now > seen && !most.compare_exchange_weak(seen, now)) {
                      }
                      std::this_thread::sleep_for(10ms);
                      --inside;
                    })
                        .resources(cpus(1))
                        .build()
                        .value());
  }
  ASSERT_TRUE(pool.submit_all(std::move(tasks)));
  for (const auto& r : pool.wait_all()) EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(most.load(), 1) << "one CPU in the inventory: one cpus=1 function at a time";
}

}  // namespace
}  // namespace pepita::pool
