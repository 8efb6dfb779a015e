// The reference crate's Pool API as written (issue 21): the quick start (a binary on Backend::Cpu,
// cpu_workers bounding processes, run() by value), Backend::Any, queue_capacity's back-pressure,
// default_timeout, enable_gpu/remote_workers through a registry, introspection, task states,
// priority levels and metadata.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::pool {
namespace {

using pepita::test::TempDir;

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using executor::BackendOptions;
using task::Backend;

Task sh(const std::string& script) {
  return Task::binary("/bin/sh").args({"-c", script}).build().value();
}

// A function task that runs until `release` is set or it is cancelled.
Task held(std::atomic<bool>& release, std::atomic<bool>* started = nullptr) {
  return Task::function([&release, started](std::stop_token stop) {
           if (started) started->store(true);
           while (!release.load() && !stop.stop_requested()) std::this_thread::sleep_for(1ms);
         })
      .name("held")
      .build()
      .value();
}

// Most intervals [start, end] that overlap at one instant.
int max_overlap(std::vector<std::pair<long long, long long>> spans) {
  std::vector<std::pair<long long, int>> edges;
  for (auto [s, e] : spans) {
    edges.emplace_back(s, +1);
    edges.emplace_back(e, -1);
  }
  std::sort(edges.begin(), edges.end());  // an end sorts before a start at the same instant
  int now = 0, most = 0;
  for (auto [t, d] : edges) most = std::max(most, now += d);
  return most;
}

TEST(CrateApi, QuickStartRunsABinaryOnCpuAsAProcess) {
  auto pool = Pool::builder().cpu_workers(4).build();
  ASSERT_TRUE(pool) << pool.error().message();
  auto task = Task::binary("/bin/sh")
                  .args({"-c", "echo $$; echo \"$1\"", "sh", "--input data.bin"})
                  .backend(Backend::Cpu)
                  .build();
  ASSERT_TRUE(task) << task.error().message();
  auto result = pool->run(*task);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(result->is_success()) << result->error;
  std::istringstream out(result->stdout_string());
  long pid = 0;
  std::string arg;
  out >> pid >> std::ws;
  std::getline(out, arg);
  EXPECT_GT(pid, 0);
  EXPECT_NE(pid, static_cast<long>(::getpid()));  // a child process, not this one
  EXPECT_EQ(arg, "--input data.bin");
}

TEST(CrateApi, WaitedResultOutlivesThePoolAndTheHandle) {
  std::optional<TaskHandle> handle;
  {
    auto pool = Pool::builder().cpu_workers(1).retain_results(false).build().value();
    handle = pool.submit_async(sh("echo kept")).value();
    pool.shutdown();  // graceful: lets it finish
  }                   // the pool is gone
  const ExecutionResult r = handle->wait();
  handle.reset();  // the handle is gone too: `r` is a value
  EXPECT_EQ(r.stdout_data, "kept\n");
  EXPECT_EQ(r.state(), TaskState::Completed);
}

TEST(CrateApi, CpuWorkersBoundsProcesses) {
  auto pool = Pool::builder().cpu_workers(2).build().value();
  EXPECT_FALSE(pool.config().process_slots.has_value());
  std::vector<TaskHandle> handles;
  for (int i = 0; i < 6; ++i) {
    // Each process reports its own lifetime (ns since the epoch, from inside the process).
    handles.push_back(pool.submit(sh("date +%s%N; sleep 0.2; date +%s%N")).value());
  }
  std::vector<std::pair<long long, long long>> spans;
  for (auto& h : handles) {
    const ExecutionResult r = h.wait();
    ASSERT_TRUE(r.ok()) << r.error << r.stderr_data;
    std::istringstream in(r.stdout_data);
    long long s = 0, e = 0;
    ASSERT_TRUE(in >> s >> e) << r.stdout_data;
    spans.emplace_back(s, e);
  }
  EXPECT_LE(max_overlap(spans), 2);
  EXPECT_GE(max_overlap(spans), 1);
}

TEST(CrateApi, ExplicitProcessSlotsWinOverCpuWorkers) {
  auto pool = Pool::builder().cpu_workers(1).process_slots(3).build().value();
  EXPECT_EQ(pool.config().process_slots, 3u);
  const auto loads = pool.worker_loads();
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_EQ(loads[0].backend, Backend::Cpu);
  EXPECT_EQ(loads[0].slots, 1u);
  EXPECT_EQ(loads[1].backend, Backend::Process);
  EXPECT_EQ(loads[1].slots, 3u);
  EXPECT_EQ(pool.num_workers(), 4u);
}

TEST(CrateApi, FunctionOnProcessStaysAnError) {
  auto t = Task::function([] {}).backend(Backend::Process).build();
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), ErrorCode::InvalidArgument);
}

TEST(CrateApi, BackendAnyPicksByKind) {
  auto pool = Pool::builder().cpu_workers(1).build().value();
  auto fn = Task::function([] { return std::string("from a function"); })
                .backend(Backend::Any)
                .build()
                .value();
  auto bin = Task::binary("/bin/sh").args({"-c", "echo $$"}).backend(Backend::Any).build().value();
  const auto f = pool.run(fn).value();
  EXPECT_TRUE(f.ok()) << f.error;
  EXPECT_EQ(f.stdout_data, "from a function");
  const auto b = pool.run(bin).value();
  EXPECT_TRUE(b.ok()) << b.error;
  EXPECT_NE(std::stol(b.stdout_data), static_cast<long>(::getpid()));
}

TEST(CrateApi, PipelineOnAnyOrCpuRunsAsProcesses) {
  auto pool = Pool::builder().cpu_workers(1).build().value();
  for (const Backend& backend : {Backend::Any, Backend::Cpu}) {
    auto t = Task::pipeline()
                 .add_stage(task::BinaryTask("seq").with_args({"1", "20"}))
                 .add_stage(task::BinaryTask("wc").with_args({"-l"}))
                 .backend(backend)
                 .build();
    ASSERT_TRUE(t) << t.error().to_string();
    const auto r = pool.run(*t).value();
    EXPECT_TRUE(r.ok()) << backend << ": " << r.error;
    EXPECT_EQ(r.stdout_data, "20\n") << backend;
  }
}

TEST(CrateApi, BackendIsLocal) {
  EXPECT_TRUE(Backend::Cpu.is_local());
  EXPECT_TRUE(Backend::Process.is_local());
  EXPECT_TRUE(Backend::Gpu.is_local());
  EXPECT_TRUE(Backend::MicroVm.is_local());
  EXPECT_FALSE(Backend::Remote.is_local());
  EXPECT_FALSE(Backend::Any.is_local());
  EXPECT_FALSE(Backend::named("echo").value().is_local());
  EXPECT_EQ(Backend::Any.name(), "any");
  EXPECT_FALSE(Backend::named("any"));  // reserved for Backend::Any
}

TEST(CrateApi, MissingBackendIsUnsupportedNamingWhatThePoolHas) {
  auto pool = Pool::builder().cpu_workers(1).build().value();
  auto t = Task::binary("/bin/true").backend(Backend::Gpu).name("kernel").build().value();
  auto h = pool.submit(t);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(h.error().message().find("'kernel' needs the gpu backend"), std::string::npos)
      << h.error().message();
  EXPECT_NE(h.error().message().find("it has: cpu, process"), std::string::npos);
  EXPECT_FALSE(pool.submit_all({t}));
  EXPECT_EQ(pool.pending_tasks(), 0u);
}

// ---- queue_capacity ----

TEST(CrateApi, QueueCapacityZeroIsRefusedNamingTheField) {
  auto pool = Pool::builder().queue_capacity(0).build();
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(pool.error().message().find("queue_capacity"), std::string::npos);
}

TEST(CrateApi, QueueCapacityBlocksSubmitAndWakesItWhenATaskFinishes) {
  auto pool = Pool::builder().cpu_workers(1).queue_capacity(1).build().value();
  std::atomic<bool> release{false};
  auto first = pool.submit(held(release)).value();
  EXPECT_EQ(pool.pending_tasks(), 1u);

  auto refused = pool.try_submit(sh("true"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::WouldBlock);
  EXPECT_NE(refused.error().message().find("queue_capacity (1)"), std::string::npos);

  std::atomic<bool> returned{false};
  auto second = std::async(std::launch::async, [&] {
    auto h = pool.submit(sh("echo second"));
    returned = true;
    return h;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load());  // blocked: the first task still holds the only place
  EXPECT_EQ(pool.pending_tasks(), 1u);
  release = true;
  auto h = second.get();
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_TRUE(first.wait().ok());
  EXPECT_EQ(h->wait().stdout_data, "second\n");
}

TEST(CrateApi, ShutdownWakesASubmitBlockedOnCapacity) {
  auto pool = Pool::builder().cpu_workers(1).queue_capacity(1).build().value();
  std::atomic<bool> release{false};
  auto first = pool.submit(held(release)).value();
  auto blocked = std::async(std::launch::async, [&] { return pool.submit(sh("true")); });
  std::this_thread::sleep_for(50ms);
  pool.shutdown(ShutdownMode::Immediate);  // cancels the held task (it watches its stop token)
  auto h = blocked.get();                  // returns: no hang
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code(), ErrorCode::Cancelled);
  EXPECT_TRUE(task::is_terminal(first.wait().state()));  // stopped through its token
  EXPECT_FALSE(pool.is_running());
  EXPECT_EQ(pool.pending_tasks(), 0u);
}

TEST(CrateApi, BatchLargerThanQueueCapacityIsRefused) {
  auto pool = Pool::builder().cpu_workers(1).queue_capacity(2).build().value();
  auto r = pool.submit_all({sh("true"), sh("true"), sh("true")});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("queue_capacity (2)"), std::string::npos);
  auto ok = pool.submit_all({sh("true"), sh("true")});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(pool.wait_all().size(), 2u);
}

// ---- default_timeout ----

TEST(CrateApi, DefaultTimeoutAppliesToTasksWithoutTheirOwn) {
  auto pool = Pool::builder()
                  .cpu_workers(2)
                  .kill_grace(100ms)
                  .default_timeout(200ms)
                  .retry_policy(fault::RetryPolicy().max_attempts(1))
                  .build()
                  .value();
  auto slow = pool.submit(sh("sleep 5")).value();
  auto own =
      pool.submit(Task::binary("/bin/sh").args({"-c", "sleep 0.4"}).timeout(10s).build().value())
          .value();
  EXPECT_EQ(slow.wait().status, Status::TimedOut);
  EXPECT_TRUE(own.wait().ok());  // its own timeout, not the default, applied
  EXPECT_EQ(pool.config().default_timeout, std::chrono::nanoseconds(200ms));

  auto bad = Pool::builder().default_timeout(-1s).build();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("default_timeout"), std::string::npos);
}

// ---- enable_gpu / remote_workers through the registry ----

// Echoes its command; stands for a backend registered by a module above the pool.
class Echo final : public executor::Executor {
 public:
  static Result<std::shared_ptr<executor::Executor>> create(Backend name) {
    auto self = std::shared_ptr<Echo>(new Echo(name));
    self->runner_ = PEPITA_TRY(executor::BlockingRunner::create(
        {.threads = 1, .name = "echo executor"}, [](const executor::BlockingRunner::Attempt& a) {
          auto r = executor::result_for(a.task, Status::Succeeded, "", a.started);
          r.stdout_data = a.task.process()->path;
          return r;
        }));
    return self;
  }
  Backend backend() const noexcept override { return name_; }
  std::size_t slots() const noexcept override { return 1; }
  Result<void> start(const Task& t, std::stop_token stop, executor::Completion done) override {
    return runner_->submit(t, std::move(stop), std::move(done));
  }
  void shutdown() override { runner_->shutdown(); }

 private:
  explicit Echo(Backend name) : name_(name) {}
  Backend name_;
  std::unique_ptr<executor::BlockingRunner> runner_;
};

TEST(CrateApi, EnableGpuWithoutARegisteredGpuSaysHowToLinkIt) {
  auto pool = Pool::builder().enable_gpu(true).build();
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(pool.error().message().find("gpu::register_gpu"), std::string::npos)
      << pool.error().message();
  auto remote = Pool::builder().remote_workers({"10.0.0.2:7070"}).build();
  ASSERT_FALSE(remote);
  EXPECT_NE(remote.error().message().find("transport::register_remote"), std::string::npos);
}

TEST(CrateApi, EnableGpuAndRemoteWorkersBuildTheirBackendsFromTheRegistry) {
  executor::Registry registry;
  ASSERT_TRUE(
      registry.add(Backend::Gpu, [](const BackendOptions&) { return Echo::create(Backend::Gpu); }));
  std::map<std::string, std::string, std::less<>> remote_settings;
  ASSERT_TRUE(registry.add(Backend::Remote, [&](const BackendOptions& o) {
    remote_settings = o.settings();
    return Echo::create(Backend::Remote);
  }));
  auto pool = Pool::builder()
                  .cpu_workers(1)
                  .registry(registry)
                  .enable_gpu(true)
                  .remote_workers({"10.0.0.2:7070", "10.0.0.3:7070"})
                  .remote_options(BackendOptions().set("key", "/etc/pepita/key"))
                  .build();
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ(remote_settings["workers"], "10.0.0.2:7070,10.0.0.3:7070");
  EXPECT_EQ(remote_settings["key"], "/etc/pepita/key");
  const auto loads = pool->worker_loads();
  ASSERT_EQ(loads.size(), 4u);
  EXPECT_EQ(loads[2].backend, Backend::Gpu);
  EXPECT_EQ(loads[3].backend, Backend::Remote);
  EXPECT_EQ(pool->num_workers(), 4u);  // 1 cpu + 1 process + 1 gpu + 1 remote
  auto r = pool->run(Task::binary("kernel").backend(Backend::Gpu).build().value()).value();
  EXPECT_EQ(r.stdout_data, "kernel");
  EXPECT_TRUE(pool->config().enable_gpu);

  auto bad = Pool::builder().registry(registry).remote_workers({"a:1,b:2"}).build();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
}

// ---- introspection, states, priority, metadata ----

TEST(CrateApi, IntrospectionReportsWorkersPendingAndLoads) {
  auto pool = Pool::builder().cpu_workers(2).build().value();
  EXPECT_EQ(pool.num_workers(), 4u);  // 2 cpu workers + 2 process slots (bounded by cpu_workers)
  EXPECT_TRUE(pool.is_running());
  EXPECT_EQ(pool.stats().success_rate(), 1.0);  // nothing finished yet
  std::atomic<bool> release{false}, started{false};
  auto h = pool.submit(held(release, &started)).value();
  while (!started) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pool.pending_tasks(), 1u);
  EXPECT_EQ(pool.worker_loads()[0].running, 1u);
  EXPECT_EQ(h.state(), TaskState::Running);
  release = true;
  EXPECT_TRUE(h.wait().ok());
  EXPECT_TRUE(pool.run(sh("exit 3")).value().is_failure());
  const PoolStats stats = pool.stats();
  EXPECT_DOUBLE_EQ(stats.success_rate(), 0.5);
  EXPECT_EQ(pool.pending_tasks(), 0u);
  EXPECT_EQ(pool.worker_loads()[0].running, 0u);
  pool.shutdown();
  EXPECT_FALSE(pool.is_running());
}

TEST(CrateApi, HandleStateFollowsTheTask) {
  auto pool = Pool::builder().cpu_workers(1).build().value();
  std::atomic<bool> release{false}, started{false};
  auto first = pool.submit(held(release, &started)).value();
  auto dep_task = Task::binary("/bin/sh").args({"-c", "exit 1"}).depends_on({first.id()});
  auto dependent = pool.submit(dep_task.build().value()).value();
  while (!started) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(first.state(), TaskState::Running);
  EXPECT_EQ(dependent.state(), TaskState::Pending);
  EXPECT_TRUE(task::is_active(dependent.state()));
  release = true;
  EXPECT_EQ(dependent.wait().state(), TaskState::Failed);
  EXPECT_EQ(first.state(), TaskState::Completed);
  EXPECT_EQ(dependent.state(), TaskState::Failed);
  EXPECT_TRUE(task::is_terminal(dependent.state()));
}

TEST(CrateApi, PriorityLevelsOrderReadyTasks) {
  TempDir dir{"crate"};
  const std::string gate = dir.file("gate"), order = dir.file("order");
  auto pool = Pool::builder().cpu_workers(1).process_slots(1).build().value();
  auto blocker = pool.submit(sh("while [ ! -e " + gate + " ]; do sleep 0.01; done")).value();
  for (auto level :
       {TaskPriority::Low, TaskPriority::Normal, TaskPriority::Critical, TaskPriority::High}) {
    const std::string name(task::to_string(level));
    auto t = Task::binary("/bin/sh").args({"-c", "echo " + name + " >> " + order}).priority(level);
    ASSERT_TRUE(pool.submit(t.build().value()));
  }
  std::ofstream(gate).put('x');
  pool.wait_all();
  std::ifstream in(order);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  EXPECT_EQ(lines, (std::vector<std::string>{"critical", "high", "normal", "low"}));
}

TEST(CrateApi, MetadataReachesTheResultAndTheJournal) {
  TempDir dir{"crate"};
  const std::string journal = dir.file("journal");
  {
    auto pool = Pool::builder().cpu_workers(1).journal(journal).build().value();
    auto t = Task::binary("/bin/true").name("labelled").metadata("team", "ml").metadata("run", "7");
    const auto r = pool.run(t.build().value()).value();
    EXPECT_EQ(r.metadata, (std::map<std::string, std::string>{{"run", "7"}, {"team", "ml"}}));
  }
  auto rec = fault::read_journal(journal);
  ASSERT_TRUE(rec) << rec.error().message();
  auto finished = std::find_if(rec->records.begin(), rec->records.end(),
                               [](const auto& x) { return x.type == fault::RecordType::Finished; });
  ASSERT_NE(finished, rec->records.end());
  EXPECT_EQ(finished->metadata.at("team"), "ml");

  // Resumed: the replayed result carries the labels too.
  auto pool = Pool::builder().cpu_workers(1).journal(journal, true).build().value();
  auto again = Task::binary("/bin/true").name("labelled").metadata("team", "ml");
  const auto r = pool.run(again.build().value()).value();
  EXPECT_TRUE(r.from_journal);
  EXPECT_EQ(r.metadata.at("team"), "ml");
}

TEST(CrateApi, BuilderStartsFromAPoolsConfig) {
  auto first = Pool::builder().cpu_workers(3).queue_capacity(8).default_timeout(5s).build().value();
  PoolConfig c = first.config();
  EXPECT_EQ(c.cpu_workers, 3u);
  EXPECT_EQ(c.queue_capacity, 8u);
  auto second = Pool::builder(c).build().value();
  EXPECT_EQ(second.config().queue_capacity, 8u);
  EXPECT_EQ(second.num_workers(), 6u);
}

}  // namespace
}  // namespace pepita::pool
