#include "pepita/pool/pool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/temp_dir.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::pool {
namespace {

using pepita::test::TempDir;

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using task::Backend;

Pool make(Pool::Builder b = Pool::builder()) {
  auto p = b.cpu_workers(2).build();
  EXPECT_TRUE(p) << p.error().message();
  return std::move(*p);
}

TEST(Pool, RunsDependenciesInOrder) {
  auto pool = make();
  std::mutex mu;
  std::vector<std::string> order;
  auto rec = [&](std::string name) {
    return Task::function([&, name] {
             std::lock_guard lock(mu);
             order.push_back(name);
           })
        .name(name);
  };
  auto a = rec("a").build().value();
  auto b = rec("b").depends_on({a.id()}).build().value();
  auto c = rec("c").depends_on({a.id()}).build().value();
  auto d = rec("d").depends_on({b.id(), c.id()}).build().value();
  // Submitted out of order: submit_all orders the batch itself.
  auto handles = pool.submit_all({d, c, b, a});
  ASSERT_TRUE(handles) << handles.error().message();
  EXPECT_EQ((*handles)[0].id(), d.id());
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 4u);
  for (const auto& r : results) EXPECT_TRUE(r.ok()) << r.name << ": " << r.error;
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order.front(), "a");
  EXPECT_EQ(order.back(), "d");
  EXPECT_EQ((*handles)[0].wait().name, "d");
  const auto st = pool.stats();
  EXPECT_EQ(st.submitted, 4u);
  EXPECT_EQ(st.done, 4u);
  EXPECT_EQ(st.succeeded, 4u);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_GT(st.latency_p99_ms, 0.0);
}

TEST(Pool, FailureSkipsTheSubtreeOnly) {
  auto pool = make();
  auto bad = Task::binary("/bin/false").name("bad").build().value();
  auto child = Task::binary("/bin/true").name("child").depends_on({bad.id()}).build().value();
  auto grandchild = Task::function([] {}).name("gc").depends_on({child.id()}).build().value();
  auto other = Task::binary("/bin/true").name("other").build().value();
  ASSERT_TRUE(pool.submit_all({bad, child, grandchild, other}));
  auto late = Task::binary("/bin/true").name("late").depends_on({bad.id()}).build().value();
  pool.wait_idle();
  auto late_handle = pool.submit(late);  // depends on an already failed task
  ASSERT_TRUE(late_handle);
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[0].status, Status::Failed);
  EXPECT_EQ(results[0].exit_code, 1);
  EXPECT_EQ(results[1].status, Status::Skipped);
  EXPECT_NE(results[1].error.find("'bad'"), std::string::npos);
  EXPECT_EQ(results[2].status, Status::Skipped);
  EXPECT_EQ(results[3].status, Status::Succeeded);
  EXPECT_EQ(results[4].status, Status::Skipped);
  EXPECT_EQ(late_handle->wait().status, Status::Skipped);
  EXPECT_EQ(pool.stats().skipped, 3u);
}

TEST(Pool, RetriesWithAppliedBackoff) {
  fault::RetryPolicy policy;
  policy.max_attempts(4).base_delay(20ms).max_delay(1s).jitter(false);
  auto pool = make(Pool::builder().retry_policy(policy));
  std::atomic<int> calls{0};
  auto flaky = Task::function([&]() -> Result<std::string> {
                 if (++calls < 3) return fail(ErrorCode::Busy, "not yet");
                 return std::string("done");
               })
                   .build()
                   .value();
  const auto t0 = std::chrono::steady_clock::now();
  auto h = pool.submit(flaky).value();
  const auto& r = h.wait();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(calls.load(), 3);
  EXPECT_GE(took, 60ms);  // 20 ms then 40 ms of backoff
  EXPECT_EQ(pool.stats().retries, 2u);

  // A task's own retry count wins over the policy; a process that always fails gives up.
  TempDir dir{"pool"};
  const auto counter = dir.file("count");
  auto always = Task::binary("/bin/sh")
                    .args({"-c", "echo x >> " + counter + "; exit 7"})
                    .max_retries(1)
                    .build()
                    .value();
  auto fr = pool.submit(always).value().wait();
  EXPECT_EQ(fr.status, Status::Failed);
  EXPECT_EQ(fr.exit_code, 7);
  EXPECT_EQ(fr.attempts, 2u);
  std::ifstream in(counter);
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 2);
}

TEST(Pool, RetryPredicateAndTimeoutRetry) {
  fault::RetryPolicy policy;
  policy.max_attempts(3).base_delay(1ms).retry_on(
      [](const fault::Failure& f) { return f.kind == fault::FailureKind::Timeout; });
  auto pool = make(Pool::builder().retry_policy(policy).kill_grace(100ms));
  auto exit1 = pool.submit(Task::binary("/bin/false").build().value()).value();
  auto slow =
      pool.submit(Task::binary("/bin/sleep").args({"5"}).timeout(50ms).build().value()).value();
  EXPECT_EQ(exit1.wait().attempts, 1u);  // exit codes are not retried by this predicate
  EXPECT_EQ(slow.wait().status, Status::TimedOut);
  EXPECT_EQ(slow.wait().attempts, 3u);
}

TEST(Pool, CircuitBreakerRejectsAfterLaunchFailures) {
  auto pool = make(Pool::builder().process_slots(1).circuit_breaker(
      {.failure_threshold = 3, .cool_down = 30s, .half_open_probes = 1}));
  std::vector<Task> tasks;
  for (int i = 0; i < 6; ++i) tasks.push_back(Task::binary("/nonexistent/tool").build().value());
  // Function tasks use another backend, whose breaker stays closed.
  tasks.push_back(Task::function([] {}).build().value());
  ASSERT_TRUE(pool.submit_all(tasks));
  auto results = pool.wait_all();
  int launch_failed = 0, rejected = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    launch_failed += results[i].status == Status::LaunchFailed;
    rejected += results[i].status == Status::Rejected;
  }
  EXPECT_EQ(launch_failed, 3);
  EXPECT_EQ(rejected, 3);
  EXPECT_NE(results[5].error.find("circuit breaker"), std::string::npos) << results[5].error;
  EXPECT_TRUE(results[6].ok());
}

TEST(Pool, PriorityOrdersReadyTasks) {
  TempDir dir{"pool"};
  const auto log = dir.file("log");
  auto pool = make(Pool::builder().process_slots(1));
  auto blocker = Task::binary("/bin/sleep").args({"0.2"}).build().value();
  auto echo = [&](const std::string& s, int prio) {
    return Task::binary("/bin/sh")
        .args({"-c", "echo " + s + " >> " + log})
        .priority(prio)
        .build()
        .value();
  };
  ASSERT_TRUE(pool.submit(blocker));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(pool.submit_all({echo("low", 0), echo("high", 10), echo("mid", 5)}));
  pool.wait_all();
  std::ifstream in(log);
  std::string a, b, c;
  in >> a >> b >> c;
  EXPECT_EQ(a, "high");
  EXPECT_EQ(b, "mid");
  EXPECT_EQ(c, "low");
}

TEST(Pool, CancelQueuedAndRunning) {
  auto pool = make(Pool::builder().process_slots(1).kill_grace(100ms));
  auto running = pool.submit(Task::binary("/bin/sleep").args({"30"}).build().value()).value();
  auto queued = pool.submit(Task::binary("/bin/sleep").args({"30"}).build().value()).value();
  auto dependent =
      pool.submit(Task::binary("/bin/true").depends_on({queued.id()}).build().value()).value();
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(pool.cancel(queued.id()));
  EXPECT_EQ(queued.wait().status, Status::Cancelled);
  EXPECT_EQ(dependent.wait().status, Status::Skipped);
  EXPECT_TRUE(pool.cancel(running.id()));
  ASSERT_TRUE(running.wait_for(5s));
  EXPECT_EQ(running.wait().status, Status::Cancelled);
  EXPECT_FALSE(pool.cancel(running.id()));
  EXPECT_FALSE(pool.cancel(123456789));
}

TEST(Pool, ImmediateShutdownStopsEverything) {
  auto pool = make(Pool::builder().process_slots(2).kill_grace(100ms));
  std::vector<TaskHandle> hs;
  for (int i = 0; i < 5; ++i) {
    hs.push_back(pool.submit(Task::binary("/bin/sleep").args({"30"}).build().value()).value());
  }
  std::this_thread::sleep_for(50ms);
  const auto t0 = std::chrono::steady_clock::now();
  pool.shutdown(ShutdownMode::Immediate);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (auto& h : hs) EXPECT_EQ(h.wait().status, Status::Cancelled);
  auto after = pool.submit(Task::binary("/bin/true").build().value());
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), ErrorCode::Cancelled);
  pool.shutdown();  // idempotent
}

// Issue 19: cancel_all() starts nothing new — a queued task never takes the slot a cancelled
// one leaves — and every task, queued or running, reaches a final state; unfinished() and
// abandon() are what a caller that stops waiting has left.
TEST(Pool, CancelAllStartsNothingAndFinishesEveryTask) {
  auto pool = make(Pool::builder().process_slots(2).kill_grace(100ms));
  const fs::path marker =
      fs::temp_directory_path() / ("pepita-cancel-all-" + std::to_string(::getpid()));
  fs::remove(marker);
  std::vector<TaskHandle> running, queued;
  for (int i = 0; i < 2; ++i) {
    running.push_back(
        pool.submit(Task::binary("/bin/sleep").args({"0.2"}).build().value()).value());
  }
  for (int i = 0; i < 20; ++i) {
    queued.push_back(pool.submit(Task::binary("/bin/sh")
                                     .args({"-c", "echo ran >> " + marker.string()})
                                     .build()
                                     .value())
                         .value());
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(pool.unfinished().size(), 22u);
  pool.cancel_all();
  for (auto& h : running) {
    ASSERT_TRUE(h.wait_for(5s)) << "a cancelled running task never reached a final state";
    EXPECT_EQ(h.wait().status, Status::Cancelled);
  }
  for (auto& h : queued) {
    ASSERT_TRUE(h.wait_for(5s)) << "a cancelled queued task never reached a final state";
    EXPECT_EQ(h.wait().status, Status::Cancelled);
    EXPECT_EQ(h.wait().attempts, 0u);
  }
  EXPECT_FALSE(fs::exists(marker)) << "a queued task started after cancel_all()";
  EXPECT_TRUE(pool.unfinished().empty());
  pool.abandon();  // nothing left to kill; must not block or break the shutdown after it
  pool.shutdown();
  fs::remove(marker);
}

TEST(Pool, RejectsBadSubmissions) {
  auto pool = make();
  auto a = Task::binary("/bin/true").name("a").build().value();
  auto b = Task::binary("/bin/true").name("b").depends_on({a.id()}).build().value();
  auto unknown = pool.submit(b);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::NotFound);
  auto remote = pool.submit(Task::binary("/bin/true").backend(Backend::Remote).build().value());
  ASSERT_FALSE(remote);
  EXPECT_EQ(remote.error().code(), ErrorCode::Unsupported);
  ASSERT_TRUE(pool.submit(a));
  EXPECT_FALSE(pool.submit(a));  // resubmitted
  EXPECT_FALSE(pool.submit_all({a}));
  EXPECT_EQ(pool.wait_all().size(), 1u);
}

TEST(Pool, NegativeKillGraceIsRefusedAtBuild) {
  auto pool = Pool::builder().kill_grace(-1ms).build();
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(pool.error().message().find("kill_grace must not be negative"), std::string::npos)
      << pool.error().message();
}

TEST(Pool, AnyBackendTaskWithoutAnExecutorForItsKindNamesTheBackendAndTheFix) {
  auto pool = make();
  auto shader = Task::shader(task::ShaderTask::create({0x07230203}).with_outputs({4}))
                    .name("kernel")
                    .backend(Backend::Any)
                    .build();
  ASSERT_TRUE(shader) << shader.error().message();
  auto r = pool.submit(*shader);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("task 'kernel' has backend any; a shader task runs on the gpu backend"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("register one with Pool::Builder::executor()"), std::string::npos) << m;
  EXPECT_TRUE(pool.wait_all().empty()) << "the refused task left nothing behind";
}

TEST(Pool, MoveAssignedPoolRunsTasksAndTheOldOneIsReleased) {
  auto pool = make(Pool::builder().kill_grace(100ms));
  auto first = pool.submit(Task::binary("/bin/sleep").args({"30"}).build().value());
  ASSERT_TRUE(first);
  const auto before = std::chrono::steady_clock::now();
  pool = make();  // the old pool shuts down at once: its task is cancelled, not waited for
  EXPECT_EQ(first->wait().status, Status::Cancelled) << first->wait().error;
  EXPECT_LT(std::chrono::steady_clock::now() - before, 25s) << "the old pool waited for sleep";
  auto r = pool.run(Task::binary("/bin/sh").args({"-c", "echo moved"}).build().value());
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->stdout_data, "moved\n");
  Pool& self = pool;
  pool = std::move(self);  // self-assignment keeps the pool
  EXPECT_TRUE(pool.run(Task::binary("/bin/true").build().value()));
}

TEST(Pool, WithAJournalASecondTaskOfTheSameNameIsRefusedNamingIt) {
  TempDir dir{"pool"};
  auto pool = make(Pool::builder().journal(dir.file("journal")));
  ASSERT_TRUE(pool.submit(Task::binary("/bin/true").name("dup").build().value()));
  auto again = pool.submit(Task::binary("/bin/true").name("dup").build().value());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(again.error().message().find("task name 'dup' is used twice"), std::string::npos)
      << again.error().message();
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok()) << "the first task still ran";
}

// A stand-in for a future backend: runs "remote" tasks on its own thread, proving the registry.
class InlineRemote final : public executor::Executor {
 public:
  task::Backend backend() const noexcept override { return Backend::Remote; }
  std::size_t slots() const noexcept override { return 1; }
  Result<void> start(const Task& t, std::stop_token, executor::Completion done) override {
    threads_.emplace_back([t, done = std::move(done)] {
      ExecutionResult r;
      r.id = t.id();
      r.status = Status::Succeeded;
      r.exit_code = 0;
      r.stdout_data = "remote:" + t.process()->path;
      done(std::move(r));
    });
    return {};
  }
  void shutdown() override {
    for (auto& th : threads_) th.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

TEST(Pool, CustomBackendsPlugIntoTheRegistry) {
  auto remote = std::make_shared<InlineRemote>();
  auto pool = make(Pool::builder().executor(remote));
  auto h = pool.submit(Task::binary("job").backend(Backend::Remote).build().value());
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ(h->wait().stdout_data, "remote:job");
  pool.shutdown();
}

// A backend by a name the library does not know: the pool keys its state by name.
class NamedEcho final : public executor::Executor {
 public:
  explicit NamedEcho(task::Backend name) : name_(name) {}
  task::Backend backend() const noexcept override { return name_; }
  std::size_t slots() const noexcept override { return 2; }
  Result<void> start(const Task& t, std::stop_token, executor::Completion done) override {
    std::lock_guard lock(mu_);
    threads_.emplace_back([t, done = std::move(done), name = name_] {
      ExecutionResult r;
      r.id = t.id();
      r.status = Status::Succeeded;
      r.stdout_data = std::string(name.name()).append(":").append(t.process()->path);
      done(std::move(r));
    });
    return {};
  }
  void shutdown() override {
    std::lock_guard lock(mu_);
    for (auto& th : threads_) th.join();
    threads_.clear();
  }

 private:
  task::Backend name_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

TEST(Pool, BackendsAreNamesNotAFixedSet) {
  const auto blue = task::Backend::named("blue").value();
  const auto green = task::Backend::named("green").value();
  auto pool = make(Pool::builder()
                       .executor(std::make_shared<NamedEcho>(blue))
                       .executor(std::make_shared<NamedEcho>(green)));
  auto a = pool.submit(Task::binary("a").backend(blue).build().value()).value();
  auto b = pool.submit(Task::binary("b").backend(green).depends_on({a.id()}).build().value());
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(a.wait().stdout_data, "blue:a");
  EXPECT_EQ(b->wait().stdout_data, "green:b");
  auto none =
      pool.submit(Task::binary("c").backend(task::Backend::named("red").value()).build().value());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(none.error().message().find("needs the red backend"), std::string::npos);
  pool.shutdown();
}

TEST(Pool, JournalResumeSkipsSucceededTasks) {
  TempDir dir{"pool"};
  const auto journal = dir.file("journal");
  const auto counter = dir.file("count");
  auto build = [&] {
    std::vector<Task> tasks;
    for (int i = 0; i < 5; ++i) {
      tasks.push_back(Task::binary("/bin/sh")
                          .name("t" + std::to_string(i))
                          .args({"-c", "echo run >> " + counter + "; echo out" + std::to_string(i) +
                                           (i == 4 ? "; exit 1" : "")})
                          .build()
                          .value());
    }
    return tasks;
  };
  {
    auto pool = make(Pool::builder().journal(journal));
    ASSERT_TRUE(pool.submit_all(build()));
    auto results = pool.wait_all();
    EXPECT_EQ(results[4].status, Status::Failed);
  }
  {
    auto pool = make(Pool::builder().journal(journal, /*resume=*/true));
    EXPECT_GT(pool.journal_recovered(), 0u);
    ASSERT_TRUE(pool.submit_all(build()));
    auto results = pool.wait_all();
    ASSERT_EQ(results.size(), 5u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(results[static_cast<std::size_t>(i)].from_journal);
      EXPECT_EQ(results[static_cast<std::size_t>(i)].stdout_data, "out" + std::to_string(i) + "\n");
    }
    EXPECT_FALSE(results[4].from_journal);  // failures run again
    EXPECT_EQ(pool.stats().from_journal, 4u);
    EXPECT_FALSE(pool.journal_error());
  }
  std::ifstream in(counter);
  int runs = 0;
  for (std::string l; std::getline(in, l);) ++runs;
  EXPECT_EQ(runs, 6);  // 5 the first time, only the failed one again
  // A duplicate name is refused when a journal is on.
  auto pool = make(Pool::builder().journal(journal, true));
  auto x = Task::binary("/bin/true").name("dup").build().value();
  auto y = Task::binary("/bin/true").name("dup").build().value();
  EXPECT_FALSE(pool.submit_all({x, y}));
  auto rec = fault::read_journal(journal);
  ASSERT_TRUE(rec);
  EXPECT_FALSE(rec->records.empty());
}

// Issue 27: handles share striped mutex + condition-variable pairs, so 256 handles waited on
// by 256 threads share the 64 stripes: every waiter must still wake (no lost wake-up), get its
// own task's result, and a wait_for on an unfinished task must time out.
TEST(Pool, ManyWaitersOnSharedHandleStripesEachGetTheirOwnResult) {
  auto pool = make(Pool::builder().retain_results(false));
  std::atomic<bool> release{false};
  std::vector<TaskHandle> handles;
  for (int i = 0; i < 256; ++i) {
    handles.push_back(pool.submit(Task::function([&release, i]() -> std::string {
                                    while (!release.load()) std::this_thread::yield();
                                    return std::to_string(i);
                                  })
                                      .build()
                                      .value())
                          .value());
  }
  EXPECT_FALSE(handles.back().wait_for(20ms));  // blocked on `release`
  EXPECT_FALSE(handles.back().try_get());
  std::vector<std::string> got(handles.size());
  std::vector<std::thread> waiters;
  for (std::size_t i = 0; i < handles.size(); ++i) {
    waiters.emplace_back([&, i] { got[i] = handles[i].wait().stdout_data; });
  }
  std::this_thread::sleep_for(20ms);  // most waiters are asleep on their stripe by now
  release = true;
  for (auto& w : waiters) w.join();
  for (std::size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(got[i], std::to_string(i));
    ASSERT_TRUE(handles[i].try_get());
    EXPECT_TRUE(handles[i].try_get()->ok());
  }
}

// Issue 27: the pool stages journal records and writes each locked section's in one write(2);
// they are in the file, in order per task, as soon as wait_idle() returns (no shutdown, no sync).
TEST(Pool, JournalHoldsEveryRecordInOrderOnceIdle) {
  TempDir dir{"pool"};
  const auto journal = dir.file("journal");
  auto pool = make(Pool::builder().journal(journal).process_slots(2));
  std::vector<Task> tasks;
  for (int i = 0; i < 6; ++i) {
    tasks.push_back(Task::binary("/bin/sh")
                        .name("t" + std::to_string(i))
                        .args({"-c", i == 5 ? "exit 3" : "echo out"})
                        .build()
                        .value());
  }
  ASSERT_TRUE(pool.submit_all(tasks));
  pool.wait_idle();
  auto rec = fault::read_journal(journal);
  ASSERT_TRUE(rec) << rec.error().message();
  std::map<std::string, std::vector<fault::RecordType>> per_task;
  for (const auto& r : rec->records) per_task[r.name].push_back(r.type);
  ASSERT_EQ(per_task.size(), 6u);
  using RT = fault::RecordType;
  for (const auto& [name, types] : per_task) {
    EXPECT_EQ(types, (std::vector<RT>{RT::Submitted, RT::Started, RT::Finished})) << name;
  }
  // Every Submitted record of the batch precedes the first Started one.
  ASSERT_EQ(rec->records.size(), 18u);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(rec->records[i].type, RT::Submitted) << i;
  for (const auto& r : rec->records) {
    if (r.type == RT::Finished && r.name == "t5") {
      EXPECT_EQ(r.exit_code, 3);
    }
    if (r.type == RT::Finished && r.name == "t0") {
      EXPECT_EQ(r.stdout_data, "out\n");
    }
  }
  EXPECT_FALSE(pool.journal_error());
}

TEST(Pool, ManyFunctionTasksWithRandomDependencies) {
  auto pool = make(Pool::builder().retain_results(false));
  std::mt19937 rng(7);
  std::vector<Task> tasks;
  std::atomic<int> ran{0};
  for (int i = 0; i < 2000; ++i) {
    std::vector<TaskId> deps;
    for (int k = 0; k < 2 && !tasks.empty(); ++k) {
      deps.push_back(tasks[rng() % tasks.size()].id());
    }
    tasks.push_back(Task::function([&] { ++ran; }).depends_on(deps).build().value());
  }
  ASSERT_TRUE(pool.submit_all(tasks));
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 2000);
  EXPECT_EQ(pool.stats().succeeded, 2000u);
  EXPECT_TRUE(pool.wait_all().empty());
}

TEST(Pool, ObserverSeesEveryTransition) {
  std::mutex mu;
  int started = 0, finished = 0, retrying = 0;
  fault::RetryPolicy policy;
  policy.max_attempts(2).base_delay(1ms);
  auto pool = make(Pool::builder().retry_policy(policy).on_event([&](const Event& e) {
    std::lock_guard lock(mu);
    started += e.kind == Event::Kind::Started;
    finished += e.kind == Event::Kind::Finished;
    retrying += e.kind == Event::Kind::Retrying;
  }));
  ASSERT_TRUE(pool.submit(Task::binary("/bin/true").build().value()));
  ASSERT_TRUE(pool.submit(Task::binary("/bin/false").build().value()));
  pool.wait_all();
  std::lock_guard lock(mu);
  EXPECT_EQ(started, 3);
  EXPECT_EQ(finished, 2);
  EXPECT_EQ(retrying, 1);
}

}  // namespace
}  // namespace pepita::pool

namespace pepita::pool {
namespace {

TEST(Pool, DeadlineStopsRetriesAndLateStarts) {
  fault::RetryPolicy policy;
  policy.max_attempts(100).base_delay(std::chrono::milliseconds(40)).jitter(false);
  auto pool = Pool::builder().cpu_workers(1).process_slots(1).retry_policy(policy).build().value();
  auto blocker = pool.submit(Task::binary("/bin/sleep").args({"0.3"}).build().value()).value();
  auto late =
      pool.submit(
              Task::binary("/bin/true").deadline(std::chrono::milliseconds(100)).build().value())
          .value();
  auto failing =
      pool.submit(Task::binary("/bin/false").deadline(std::chrono::seconds(1)).build().value())
          .value();
  EXPECT_TRUE(blocker.wait().ok());
  EXPECT_EQ(late.wait().status, Status::TimedOut);
  EXPECT_NE(late.wait().error.find("deadline"), std::string::npos);
  const auto& f = failing.wait();
  EXPECT_EQ(f.status, Status::Failed);
  EXPECT_GT(f.attempts, 1u);
  EXPECT_LT(f.attempts, 100u);
  EXPECT_NE(f.error.find("deadline"), std::string::npos) << f.error;
  EXPECT_FALSE(Task::binary("/bin/true").deadline(std::chrono::seconds(-1)).build());
}

}  // namespace
}  // namespace pepita::pool
