// ZeroExecutor: every attempt succeeds at once without running, on the executor's thread; wrong
// backends, missing completions and starts after shutdown are clear errors.
#include "pepita/executor/zero.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pepita/executor/completion_batch.hpp"
#include "pepita/executor/registry.hpp"

namespace pepita::executor {
namespace {

using task::Task;

Task zero_task(std::string name, std::string command = "/nonexistent/never-run") {
  return Task::binary(std::move(command))
      .name(std::move(name))
      .backend(zero_backend())
      .build()
      .value();
}

TEST(ZeroExecutor, CompletesEveryAttemptSucceededWithoutRunningIt) {
  auto exec = ZeroExecutor::create({});
  ASSERT_TRUE(exec) << exec.error().message();
  EXPECT_EQ((*exec)->backend().name(), "zero");
  EXPECT_EQ((*exec)->slots(), 4096u);
  const Task t = zero_task("t1");  // a command that does not exist: nothing is spawned
  std::promise<ExecutionResult> p;
  auto f = p.get_future();
  const auto caller = std::this_thread::get_id();
  std::thread::id completed_on;
  ASSERT_TRUE((*exec)->start(t, {}, [&](ExecutionResult r) {
    completed_on = std::this_thread::get_id();
    p.set_value(std::move(r));
  }));
  const ExecutionResult r = f.get();
  EXPECT_EQ(r.status, Status::Succeeded);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.id, t.id());
  EXPECT_EQ(r.name, "t1");
  EXPECT_TRUE(r.stdout_data.empty());
  EXPECT_NE(completed_on, caller);  // never inside start()
}

TEST(ZeroExecutor, DeliversEveryCompletionExactlyOnceUnderConcurrentStarts) {
  auto exec = ZeroExecutor::create({.slots = 8});
  ASSERT_TRUE(exec);
  EXPECT_EQ((*exec)->slots(), 8u);
  constexpr int kThreads = 4, kPer = 5000;
  std::vector<Task> tasks;
  for (int i = 0; i < kThreads * kPer; ++i) tasks.push_back(zero_task("t" + std::to_string(i)));
  std::vector<std::atomic<int>> seen(tasks.size());
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      for (int i = k * kPer; i < (k + 1) * kPer; ++i) {
        auto ok =
            (*exec)->start(tasks[static_cast<std::size_t>(i)], {}, [&seen, i](ExecutionResult r) {
              if (r.status == Status::Succeeded) ++seen[static_cast<std::size_t>(i)];
            });
        ASSERT_TRUE(ok);
      }
    });
  }
  for (auto& t : threads) t.join();
  (*exec)->shutdown();  // delivers what is queued before returning
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].load(), 1) << "task " << i;
}

TEST(ZeroExecutor, AStopRequestedBeforeTheStartCompletesCancelled) {
  auto exec = ZeroExecutor::create({});
  ASSERT_TRUE(exec);
  std::stop_source stop;
  stop.request_stop();
  std::promise<ExecutionResult> p;
  ASSERT_TRUE((*exec)->start(zero_task("c"), stop.get_token(),
                             [&](ExecutionResult r) { p.set_value(std::move(r)); }));
  EXPECT_EQ(p.get_future().get().status, Status::Cancelled);
}

TEST(ZeroExecutor, RefusesOtherBackendsMissingCompletionsAndStartsAfterShutdown) {
  auto exec = ZeroExecutor::create({});
  ASSERT_TRUE(exec);
  const Task process = Task::binary("/bin/true").name("p").build().value();
  auto wrong = (*exec)->start(process, {}, [](ExecutionResult) {});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(wrong.error().message().find("backend 'process'"), std::string::npos)
      << wrong.error().message();
  auto no_done = (*exec)->start(zero_task("n"), {}, Completion{});
  ASSERT_FALSE(no_done);
  EXPECT_EQ(no_done.error().code(), ErrorCode::InvalidArgument);
  (*exec)->shutdown();
  (*exec)->shutdown();  // idempotent
  auto late = (*exec)->start(zero_task("late"), {}, [](ExecutionResult) {});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), ErrorCode::Cancelled);
}

TEST(ZeroExecutor, IsRegisteredAsZeroByTheBuiltinsAndRefusesSettings) {
  Registry r;
  ASSERT_TRUE(register_builtins(r));
  ASSERT_TRUE(r.contains(zero_backend()));
  BackendOptions o;
  o.slots = 16;
  auto made = r.create(zero_backend(), o);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ((*made)->slots(), 16u);
  o.set("speed", "fast");
  auto bad = r.create(zero_backend(), o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown backend setting speed"), std::string::npos)
      << bad.error().message();
}

// Issue 27: CompletionBatch puts a receiver's work off to the end of the batch, once per owner,
// in joining order; a nested batch adds nothing; work joined while the end runs runs too.
TEST(CompletionBatch, RunsJoinedWorkOnceAtItsEndInJoiningOrder) {
  struct Log final : CompletionBatch::Deferred {
    Log(std::vector<std::string>& log, std::string label) : out(log), name(std::move(label)) {}
    void run() noexcept override {
      out.push_back(name);
      if (then) then();
    }
    std::vector<std::string>& out;
    std::string name;
    std::function<void()> then;
  };
  std::vector<std::string> ran;
  EXPECT_EQ(CompletionBatch::current(), nullptr);
  const int a = 0, b = 0, c = 0;
  {
    CompletionBatch batch;
    EXPECT_EQ(CompletionBatch::current(), &batch);
    batch.join(&a, std::make_unique<Log>(ran, "a"));
    {
      CompletionBatch nested;  // adds nothing: still the outer batch
      EXPECT_EQ(CompletionBatch::current(), &batch);
      auto second = std::make_unique<Log>(ran, "b");
      second->then = [&] {
        // Joined while the batch ends: runs before the batch closes.
        CompletionBatch::current()->join(&c, std::make_unique<Log>(ran, "c"));
      };
      CompletionBatch::current()->join(&b, std::move(second));
    }
    EXPECT_TRUE(ran.empty());  // the nested scope's end ran nothing
    EXPECT_NE(batch.find(&a), nullptr);
    EXPECT_NE(batch.find(&b), nullptr);
    EXPECT_EQ(batch.find(&c), nullptr);
  }
  EXPECT_EQ(ran, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(CompletionBatch::current(), nullptr);
}

// The zero executor delivers each batch inside a CompletionBatch.
TEST(ZeroExecutor, DeliversItsCompletionsInsideACompletionBatch) {
  auto exec = ZeroExecutor::create({});
  ASSERT_TRUE(exec) << exec.error().message();
  std::promise<bool> in_batch;
  ASSERT_TRUE((*exec)->start(zero_task("z"), {}, [&](ExecutionResult r) {
    in_batch.set_value(r.ok() && CompletionBatch::current() != nullptr);
  }));
  EXPECT_TRUE(in_batch.get_future().get());
  (*exec)->shutdown();
}

}  // namespace
}  // namespace pepita::executor
