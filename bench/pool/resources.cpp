// bench/pool: what resource-aware placement (issue 22) costs and how well it packs.
//  1. Scheduling overhead per task, HyperQueue's zero-worker method: an executor registered as
//     the process backend that spawns nothing and completes each attempt at once (on its own
//     completion thread, as the Executor contract asks). The same pool — an Inventory of 64 CPUs,
//     64G and GPUs 0..7 given with Pool::Builder::resources, 64 slots — runs N identical tasks
//     through submit_all + wait_all: with `cpus=1 memory=1M` (ours), with that plus GPU fractions
//     0.25/0.5/1 in turn (ours), and with no request (the anchor: slot-only scheduling, as before
//     issue 22). N = 10k and 100k. Timed: submit_all to wait_all's return (pool built and tasks
//     made beforehand). µs per task, wall and CPU time of the process.
//  2. Makespan of a mixed job: 400 tasks of 1/2/4/8 CPUs running 5-40 ms (seeded), on an
//     Inventory of 8 CPUs, through an executor that completes each attempt after its duration (a
//     timer thread, no processes). The anchor is the greedy lower bound
//     max(sum(cpus x duration) / 8, longest task); o/a is the ratio. Rows: the tasks in submission
//     order (equal priority), and the same job with priority = cpus (large tasks first). The extra
//     column gives, for the same data, what zero-overhead simulations of three list schedulers
//     reach: strict FIFO (the first task that does not fit blocks every task that competes with
//     it — the pool's reservation rule, when every task asks for CPUs), reservation that starts
//     only after the blocked task has waited 40 ms (bounded bypass, a form of aging), and
//     first-fit backfilling (any queued task that fits starts; may starve large tasks).
// Both executors check that the Allocations in flight never oversubscribe the Inventory.
// Usage: bench_pool_resources [ROUNDS=9] [MAKESPAN_ROUNDS=5] (the 10k-task part runs 3 x ROUNDS)
#include "pepita/task/resources.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "pepita/core/format.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/pool/pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using pepita::Result;
using pepita::executor::Completion;
using pepita::executor::ExecutionResult;
using pepita::pool::Pool;
using pepita::task::Allocation;
using pepita::task::Backend;
using pepita::task::Inventory;
using pepita::task::ResourceRequest;
using pepita::task::Task;
using pepita::task::TaskId;
namespace pb = pepita::bench;

template <typename... Args>
[[noreturn]] void die(std::string_view pattern, const Args&... args) {
  std::fprintf(stderr, "bench/pool/resources: %s\n", pepita::fmt(pattern, args...).c_str());
  std::exit(1);
}

// What is in flight on one Inventory, from the Allocations the pool hands out: a bench of a
// scheduler that oversubscribes measures nothing, so every start is checked. Guarded by its
// owner's mutex.
class InFlight {
 public:
  InFlight(double cpus, std::uint64_t memory, std::size_t gpus)
      : cpus_(cpus), memory_(memory), gpus_(gpus, 0.0) {}

  void take(const Allocation* a) {
    if (a == nullptr) return;
    used_cpus_ += a->cpus;
    used_memory_ += a->memory;
    for (const auto& g : a->gpus) gpus_.at(gpu_index(g.id)) += g.fraction;
    peak_cpus_ = std::max(peak_cpus_, used_cpus_);
    bool over = used_cpus_ > cpus_ + 1e-9 || used_memory_ > memory_;
    for (double used : gpus_) over = over || used > 1.0 + 1e-9;
    if (over) die("the pool oversubscribed the inventory: {} cpus in flight", used_cpus_);
  }
  void give(const Allocation* a) {
    if (a == nullptr) return;
    used_cpus_ -= a->cpus;
    used_memory_ -= a->memory;
    for (const auto& g : a->gpus) gpus_.at(gpu_index(g.id)) -= g.fraction;
  }
  double peak_cpus() const { return peak_cpus_; }

 private:
  static std::size_t gpu_index(const std::string& id) {
    std::size_t i = 0;
    for (char c : id) i = i * 10 + static_cast<std::size_t>(c - '0');
    return i;
  }
  double cpus_;
  std::uint64_t memory_;
  std::vector<double> gpus_;
  double used_cpus_ = 0, peak_cpus_ = 0;
  std::uint64_t used_memory_ = 0;
};

// ---- 1. the zero-worker executor ----

// Spawns nothing: start() queues the attempt, the completion thread completes it at once with
// success. A completion that dispatches the next task (the pool does, inside `done`) calls
// start() on that thread, so the steady state is one thread handing work to itself.
class ZeroExecutor final : public pepita::executor::Executor {
 public:
  ZeroExecutor(std::size_t slots, const Inventory& inv)
      : slots_(slots),
        inflight_(static_cast<double>(inv.cpus.size()), inv.memory, inv.gpus.size()) {
    thread_ = std::thread([this] { loop(); });
  }
  ~ZeroExecutor() override { shutdown(); }

  Backend backend() const noexcept override { return Backend::Process; }
  std::size_t slots() const noexcept override { return slots_; }

  Result<void> start(const Task& task, std::stop_token, Completion done) override {
    {
      std::lock_guard lock(mu_);
      if (closed_) return pepita::fail(pepita::ErrorCode::Cancelled, "zero executor shut down");
      inflight_.take(task.allocation());
      queue_.push_back({task, std::move(done)});
    }
    cv_.notify_one();
    return {};
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Item {
    Task task;  // a shared spec: copying it is a reference count
    Completion done;
  };

  void loop() {
    std::vector<Item> batch;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;  // closed and drained
        for (auto& it : queue_) {
          inflight_.give(it.task.allocation());
          batch.push_back(std::move(it));
        }
        queue_.clear();
      }
      for (auto& it : batch) {
        ExecutionResult r = ExecutionResult::success(it.task.id(), std::chrono::nanoseconds(0));
        r.name = it.task.name();
        it.done(std::move(r));
      }
      batch.clear();
    }
  }

  const std::size_t slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  InFlight inflight_;
  bool closed_ = false;
  std::thread thread_;  // last: joined before the state it uses goes
};

Inventory zero_inventory() {
  Inventory inv;
  for (unsigned c = 0; c < 64; ++c) inv.cpus.push_back(c);
  inv.numa[0] = inv.cpus;
  inv.memory = 64ULL << 30;
  for (int g = 0; g < 8; ++g) inv.gpus.push_back(std::to_string(g));
  return inv;
}

enum class Requests { none, cpu_memory, gpu_mix };

std::vector<Task> zero_tasks(std::size_t n, Requests kind) {
  std::vector<Task> tasks;
  tasks.reserve(n);
  static constexpr std::array<double, 3> kFractions{0.25, 0.5, 1.0};
  for (std::size_t i = 0; i < n; ++i) {
    auto b = Task::binary("/bin/true");
    if (kind != Requests::none) {
      ResourceRequest req;
      req.cpus = 1;
      req.memory = 1ULL << 20;
      if (kind == Requests::gpu_mix) req.gpus = kFractions[i % kFractions.size()];
      b.resources(req);
    }
    auto t = b.build();
    if (!t) die("task: {}", t.error().message());
    tasks.push_back(std::move(*t));
  }
  return tasks;
}

// One round: seconds of wall and process CPU time from submit_all to wait_all's return.
pb::Cost zero_round(std::size_t n, Requests kind) {
  const Inventory inv = zero_inventory();
  constexpr std::size_t kSlots = 64;
  auto pool = Pool::builder()
                  .cpu_workers(1)
                  .process_slots(kSlots)
                  .executor(std::make_shared<ZeroExecutor>(kSlots, inv))
                  .resources(inv)
                  .build();
  if (!pool) die("pool: {}", pool.error().message());
  std::vector<Task> tasks = zero_tasks(n, kind);
  std::vector<ExecutionResult> results;
  const pb::Cost c = pb::cost_of(
      [&] {
        if (auto h = pool->submit_all(std::move(tasks)); !h) die("submit: {}", h.error().message());
        results = pool->wait_all();
      },
      /*process_cpu=*/true);
  if (results.size() != n) die("wait_all returned {} results", results.size());
  for (const auto& r : results) {
    if (!r.ok()) die("task {} did not succeed: {}", r.name, r.error);
    if ((kind != Requests::none) != r.allocation.has_value())
      die("task {}: allocation does not match its request", r.name);
  }
  return c;
}

// ---- 2. makespan: an executor that completes each attempt after the task's duration ----

struct JobTask {
  double cpus;
  std::chrono::milliseconds duration;
};

std::vector<JobTask> mixed_job(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  static constexpr std::array<double, 4> kCpus{1, 2, 4, 8};
  std::vector<JobTask> job;
  for (std::size_t i = 0; i < n; ++i) {
    const double cpus = kCpus[rng() % kCpus.size()];
    job.push_back({cpus, std::chrono::milliseconds(5 + rng() % 36)});  // 5..40 ms
  }
  return job;
}

class TimerExecutor final : public pepita::executor::Executor {
 public:
  TimerExecutor(std::unordered_map<TaskId, std::chrono::nanoseconds> durations,
                const Inventory& inv)
      : durations_(std::move(durations)),
        inflight_(static_cast<double>(inv.cpus.size()), inv.memory, inv.gpus.size()) {
    thread_ = std::thread([this] { loop(); });
  }
  ~TimerExecutor() override { shutdown(); }

  Backend backend() const noexcept override { return Backend::Process; }
  std::size_t slots() const noexcept override { return 64; }

  Result<void> start(const Task& task, std::stop_token, Completion done) override {
    const auto d = durations_.find(task.id());
    if (d == durations_.end()) die("timer executor: unknown task {}", task.name());
    {
      std::lock_guard lock(mu_);
      if (closed_) return pepita::fail(pepita::ErrorCode::Cancelled, "timer executor shut down");
      inflight_.take(task.allocation());
      heap_.push({Clock::now() + d->second, seq_++, task, std::move(done)});
    }
    cv_.notify_one();
    return {};
  }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  double peak_cpus() {
    std::lock_guard lock(mu_);
    return inflight_.peak_cpus();
  }

 private:
  struct Item {
    Clock::time_point due;
    std::uint64_t seq;
    Task task;
    Completion done;
    bool operator>(const Item& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };

  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (heap_.empty()) {
        if (closed_) return;
        cv_.wait(lock);
        continue;
      }
      if (Clock::now() < heap_.top().due) {
        cv_.wait_until(lock, heap_.top().due);
        continue;
      }
      Item it = heap_.top();
      heap_.pop();
      inflight_.give(it.task.allocation());
      lock.unlock();
      ExecutionResult r = ExecutionResult::success(it.task.id(), durations_.at(it.task.id()));
      r.name = it.task.name();
      it.done(std::move(r));  // may start the next attempts: they take mu_ themselves
      lock.lock();
    }
  }

  const std::unordered_map<TaskId, std::chrono::nanoseconds> durations_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> heap_;
  std::uint64_t seq_ = 0;
  InFlight inflight_;
  bool closed_ = false;
  std::thread thread_;  // last: joined before the state it uses goes
};

constexpr unsigned kMakespanCpus = 8;

Inventory makespan_inventory() {
  Inventory inv;
  for (unsigned c = 0; c < kMakespanCpus; ++c) inv.cpus.push_back(c);
  inv.numa[0] = inv.cpus;
  inv.memory = 64ULL << 30;
  return inv;
}

// Seconds from submit_all to wait_all's return for `job`; priority = cpus when `big_first`.
double makespan_round(const std::vector<JobTask>& job, bool big_first) {
  const Inventory inv = makespan_inventory();
  std::vector<Task> tasks;
  std::unordered_map<TaskId, std::chrono::nanoseconds> durations;
  for (std::size_t i = 0; i < job.size(); ++i) {
    ResourceRequest req;
    req.cpus = job[i].cpus;
    auto b = Task::binary("/bin/true");
    b.name(pepita::fmt("t{}", i)).resources(req);
    if (big_first) b.priority(static_cast<std::int32_t>(job[i].cpus));
    auto t = b.build();
    if (!t) die("task: {}", t.error().message());
    durations.emplace(t->id(), job[i].duration);
    tasks.push_back(std::move(*t));
  }
  auto exec = std::make_shared<TimerExecutor>(std::move(durations), inv);
  auto pool = Pool::builder()
                  .cpu_workers(1)
                  .process_slots(64)
                  .executor(exec)
                  .resources(inv)
                  .retain_results(true)
                  .build();
  if (!pool) die("pool: {}", pool.error().message());
  const auto t0 = Clock::now();
  if (auto h = pool->submit_all(std::move(tasks)); !h) die("submit: {}", h.error().message());
  const auto results = pool->wait_all();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const auto& r : results)
    if (!r.ok()) die("task {} did not succeed: {}", r.name, r.error);
  if (results.size() != job.size()) die("makespan: results missing");
  if (exec->peak_cpus() > kMakespanCpus) die("makespan: oversubscribed");
  return s;
}

// A zero-overhead list scheduler over `job` in `order`: at each event, walk the queue in order
// and start what fits. The first task that does not fit reserves — nothing after it starts (every
// task here competes for CPUs) — once it has been blocked for `reserve_after` seconds; until then
// later tasks that fit start around it (first fit). 0: strict FIFO, what the pool's reservation
// rule gives when every task competes; infinity: plain backfilling, which may starve large tasks.
// Returns seconds.
double simulate(const std::vector<JobTask>& job, const std::vector<std::size_t>& order,
                double reserve_after) {
  using Ev = std::pair<double, double>;  // (end time s, cpus)
  std::priority_queue<Ev, std::vector<Ev>, std::greater<>> running;
  std::vector<std::size_t> queue = order;
  double now = 0, free = kMakespanCpus, end = 0;
  std::size_t blocked = job.size();  // the first task that did not fit, and since when
  double blocked_since = 0;
  while (!queue.empty() || !running.empty()) {
    bool bypassing = false;
    for (auto it = queue.begin(); it != queue.end();) {
      const JobTask& t = job[*it];
      if (t.cpus <= free + 1e-9) {
        free -= t.cpus;
        const double e = now + std::chrono::duration<double>(t.duration).count();
        running.push({e, t.cpus});
        end = std::max(end, e);
        it = queue.erase(it);
        continue;
      }
      if (!bypassing) {
        if (blocked != *it) {
          blocked = *it;
          blocked_since = now;
        }
        if (now - blocked_since >= reserve_after) break;  // it reserves: nothing after starts
        bypassing = true;
      }
      ++it;
    }
    if (running.empty()) break;
    now = running.top().first;
    while (!running.empty() && running.top().first <= now) {
      free += running.top().second;
      running.pop();
    }
  }
  return end;
}

std::string ms(double s) { return pepita::fmt("{} ms", pb::num(s * 1e3)); }

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : pb::rounds(9);
  const int mrounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : pb::rounds(5);
  pb::print_load();

  // ---- 1 ----
  pb::Table zero(
      "scheduling overhead per task with vs without resource requests (zero-worker "
      "executor), us per task");
  for (const std::size_t n : {std::size_t{10000}, std::size_t{100000}}) {
    std::vector<pb::Cost> none, cm, gm;
    // 10k-task rounds last ~50 ms, short enough for a neighbour's burst to swamp one: three
    // times as many of them.
    const int r = n < 100000 ? 3 * rounds : rounds;
    pb::rotate_rounds(r, {[&] { none.push_back(zero_round(n, Requests::none)); },
                          [&] { cm.push_back(zero_round(n, Requests::cpu_memory)); },
                          [&] { gm.push_back(zero_round(n, Requests::gpu_mix)); }});
    const double per = 1e6 / static_cast<double>(n);
    auto us = [&](const std::vector<pb::Cost>& v, bool wall) {
      std::vector<double> out;
      for (const auto& c : v) out.push_back((wall ? c.wall : c.cpu) * per);
      return out;
    };
    const std::string k = pepita::fmt("{}k", n / 1000);
    for (const bool wall : {true, false}) {
      const auto clock = wall ? pb::Clock::wall : pb::Clock::process_cpu;
      const auto base = us(none, wall);
      for (const auto& [label, series] :
           {std::pair<std::string, const std::vector<pb::Cost>*>{"cpus=1 memory=1M", &cm},
            {"cpus=1 memory=1M gpus=0.25/0.5/1", &gm}}) {
        const auto ours = us(*series, wall);
        // Paired: each round's difference to the no-request run of the same round (they ran
        // back to back), so load that drifts between rounds cancels.
        std::vector<double> diff;
        for (std::size_t i = 0; i < ours.size() && i < base.size(); ++i)
          diff.push_back(ours[i] - base[i]);
        const pb::Spread d = pb::spread(diff);
        zero.row(pepita::fmt("{} tasks, {}", k, label), "no request", clock, "us/task", ours, base,
                 pb::Kind::time,
                 pepita::fmt("placement {}{} [{}..{}] us/task", d.median >= 0 ? "+" : "",
                             pb::num(d.median), pb::num(d.min), pb::num(d.max)));
      }
    }
  }
  zero.note(
      "one pool per round: Inventory 64 cpus, 64G, gpus 0..7 (Pool::Builder::resources), 64 "
      "slots; the executor completes each attempt at once on its own thread");
  zero.note(
      "timed: submit_all + wait_all (pool built and tasks made beforehand); 'no request' is "
      "the same pool with tasks that ask for nothing (slot-only, as before issue 22)");
  zero.note(
      "placement = ours - anchor per round (paired, same round), median [min..max]: what a "
      "request adds per task");
  zero.note(pepita::fmt("rounds: {} for 10k tasks, {} for 100k", 3 * rounds, rounds));
  zero.note("Goal: < 2 us per task with requests (wall)");
  zero.print();

  // ---- 2 ----
  const auto job = mixed_job(400, 22);
  double work = 0, longest = 0;
  for (const auto& t : job) {
    const double d = std::chrono::duration<double>(t.duration).count();
    work += t.cpus * d;
    longest = std::max(longest, d);
  }
  const double bound = std::max(work / kMakespanCpus, longest);
  std::vector<std::size_t> fifo(job.size());
  for (std::size_t i = 0; i < fifo.size(); ++i) fifo[i] = i;
  std::vector<std::size_t> big = fifo;
  std::stable_sort(big.begin(), big.end(),
                   [&](std::size_t a, std::size_t b) { return job[a].cpus > job[b].cpus; });

  std::vector<double> m_fifo, m_big;
  pb::rotate_rounds(mrounds, {[&] { m_fifo.push_back(makespan_round(job, false)); },
                              [&] { m_big.push_back(makespan_round(job, true)); }});
  pb::Table mk("makespan of a mixed job vs the greedy lower bound, ms");
  const std::vector<double> b{bound * 1e3};
  auto to_ms = [](double s) { return s * 1e3; };
  auto sims = [&](const std::vector<std::size_t>& order) {
    constexpr double kNever = std::numeric_limits<double>::infinity();
    return pepita::fmt("sim: strict FIFO {}, reserve after 40 ms blocked {}, backfill {}",
                       ms(simulate(job, order, 0)), ms(simulate(job, order, 0.040)),
                       ms(simulate(job, order, kNever)));
  };
  mk.row("400 tasks cpus 1/2/4/8, 5-40 ms, submission order", "greedy lower bound", pb::Clock::wall,
         "ms", pb::map(m_fifo, to_ms), b, pb::Kind::time, sims(fifo));
  mk.row("same job, priority = cpus (large first)", "greedy lower bound", pb::Clock::wall, "ms",
         pb::map(m_big, to_ms), b, pb::Kind::time, sims(big));
  mk.note(
      pepita::fmt("Inventory 8 cpus; bound = max(sum(cpus x duration) / 8, longest task) = {} "
                  "(work {} cpu-s, longest {}); seed 22",
                  ms(bound), pb::num(work), ms(longest)));
  mk.note(
      "o/a = makespan / bound; the executor completes each attempt after its duration on a "
      "timer thread (no processes); the pool never had more than 8 cpus in flight");
  mk.note(
      "sim: zero-overhead list schedulers on the same order (strict FIFO: the first task that "
      "does not fit blocks all, as the pool's reservation does here; reserve after 40 ms: it "
      "lets later tasks start around it for 40 ms first; backfill: first fit, may starve large "
      "tasks)");
  mk.note("Goal: o/a <= 1.10");
  mk.print();
  return 0;
}
