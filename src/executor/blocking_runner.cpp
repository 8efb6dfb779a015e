// BlockingRunner: N threads take attempts from one queue and run the executor's body; a watcher
// thread turns the caller's stop and the per-attempt deadline into the body's stop token (and,
// with report_early, into an immediate Cancelled/TimedOut result). An atomic flag per attempt
// makes whoever reports first the only one who does.
#include "pepita/executor/blocking_runner.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace pepita::executor {
namespace {

using Clock = BlockingRunner::Clock;
constexpr std::size_t kMaxThreads = 1024;
// The watcher's longest sleep: how late a stop request can be noticed at worst (a deadline is
// noticed on time, the watcher sleeps until the earliest one).
constexpr auto kWatchPeriod = std::chrono::milliseconds(20);

struct Forward {
  std::stop_source to;
  void operator()() const noexcept { to.request_stop(); }
};

struct Job {
  Job(task::Task t, Completion d, Clock::time_point now, Clock::time_point until)
      : task(std::move(t)), done(std::move(d)), started(now), deadline(until) {}

  task::Task task;
  Completion done;
  Clock::time_point started;
  Clock::time_point deadline;
  std::stop_source inner;                           // the body's token: caller stop or deadline
  std::optional<std::stop_callback<Forward>> link;  // caller's token -> inner
  std::atomic<bool> expired{false};                 // the deadline (not the caller) stopped it
  // Set by whoever reports the result (a runner thread or the watcher); the other stays silent.
  std::atomic<bool> reported{false};

  bool claim() noexcept { return !reported.exchange(true, std::memory_order_acq_rel); }
  Status stop_status() const noexcept {
    return expired.load(std::memory_order_acquire) ? Status::TimedOut : Status::Cancelled;
  }
  std::string stop_reason() const {
    if (stop_status() == Status::Cancelled) return "cancelled";
    return std::string("timed out after ")
        .append(std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - started).count()))
        .append(" ms");
  }
};
using JobPtr = std::shared_ptr<Job>;

}  // namespace

ExecutionResult result_for(const task::Task& task, Status status, std::string error,
                           Clock::time_point started) {
  ExecutionResult r;
  r.id = task.id();
  r.name = task.name();
  r.status = status;
  r.exit_code = status == Status::Succeeded ? 0 : status == Status::Failed ? 1 : -1;
  r.error = std::move(error);
  r.wall = Clock::now() - started;
  return r;
}

struct BlockingRunner::Impl {
  Options options;
  Body body;

  mutable std::mutex mu;
  std::condition_variable work_cv;   // runner threads: queue or shut changed
  std::condition_variable watch_cv;  // watcher: active or watcher_stop changed
  std::deque<JobPtr> queue;
  std::vector<JobPtr> active;  // accepted and not yet finished by a runner thread
  bool shut = false;
  bool cancel_queued = false;
  bool watcher_stop = false;
  std::vector<std::jthread> threads;
  std::jthread watcher;
  std::once_flag shutdown_once;

  void report(Job& job, ExecutionResult r) {
    if (!job.claim()) return;
    job.done(std::move(r));
  }

  void run_one(Job& job, std::size_t index) {
    if (job.reported.load(std::memory_order_acquire)) return;  // the watcher reported it
    bool cancel;
    {
      std::lock_guard lock(mu);
      cancel = cancel_queued;
    }
    if (cancel) {
      report(job, result_for(job.task, Status::Cancelled,
                             std::string("cancelled: ")
                                 .append(options.name)
                                 .append(" shut down before it started"),
                             job.started));
      return;
    }
    if (job.inner.stop_requested()) {
      report(job, result_for(job.task, job.stop_status(), job.stop_reason(), job.started));
      return;
    }
    const Attempt attempt{job.task, job.inner.get_token(), job.started, job.deadline, index};
    ExecutionResult r = body(attempt);
    if (r.id == 0) r.id = job.task.id();
    if (r.name.empty()) r.name = job.task.name();
    if (r.wall.count() == 0) r.wall = Clock::now() - job.started;
    report(job, std::move(r));
  }

  void thread_loop(std::size_t index) {
    for (;;) {
      JobPtr job;
      {
        std::unique_lock lock(mu);
        work_cv.wait(lock, [&] { return shut || !queue.empty(); });
        if (queue.empty()) return;  // shut and drained
        job = std::move(queue.front());
        queue.pop_front();
      }
      run_one(*job, index);
      std::lock_guard lock(mu);
      std::erase(active, job);
    }
  }

  // Turns deadlines into stop requests and, with report_early, reports stopped attempts at once
  // without waiting for the body (which may be blocked where it cannot be interrupted).
  void watcher_loop() {
    std::unique_lock lock(mu);
    for (;;) {
      if (watcher_stop) return;
      if (active.empty()) {
        watch_cv.wait(lock, [&] { return watcher_stop || !active.empty(); });
        continue;
      }
      const auto now = Clock::now();
      auto wake = now + kWatchPeriod;
      std::vector<JobPtr> expire, due;
      for (const JobPtr& j : active) {
        if (j->reported.load(std::memory_order_acquire)) continue;
        if (j->inner.stop_requested()) {
          if (options.report_early) due.push_back(j);
        } else if (now >= j->deadline) {
          expire.push_back(j);
        } else {
          wake = std::min(wake, j->deadline);
        }
      }
      lock.unlock();
      // Outside the lock: the body's stop callbacks run inside request_stop().
      for (const JobPtr& j : expire) {
        j->expired.store(true, std::memory_order_release);
        j->inner.request_stop();
        if (options.report_early) due.push_back(j);
      }
      for (const JobPtr& j : due)
        report(*j, result_for(j->task, j->stop_status(), j->stop_reason(), j->started));
      expire.clear();
      due.clear();
      lock.lock();
      if (!watcher_stop) watch_cv.wait_until(lock, wake);
    }
  }

  void stop_threads(Drain drain) {
    {
      std::lock_guard lock(mu);
      shut = true;
      cancel_queued = drain == Drain::Cancel;
    }
    work_cv.notify_all();
    for (auto& t : threads)
      if (t.joinable()) t.join();
    // The runner threads are gone, so every attempt is reported or about to be by the watcher;
    // stopping it after joining them means a completion it is delivering returns first.
    {
      std::lock_guard lock(mu);
      watcher_stop = true;
    }
    watch_cv.notify_all();
    if (watcher.joinable()) watcher.join();
  }
};

BlockingRunner::BlockingRunner(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

BlockingRunner::~BlockingRunner() { shutdown(); }

Result<std::unique_ptr<BlockingRunner>> BlockingRunner::create(Options options, Body body) {
  if (options.threads == 0 || options.threads > kMaxThreads)
    return fail(ErrorCode::InvalidArgument, options.name + " needs 1.." +
                                                std::to_string(kMaxThreads) + " threads, not " +
                                                std::to_string(options.threads));
  if (!body) return fail(ErrorCode::InvalidArgument, options.name + ": empty attempt body");
  if (options.default_timeout.count() < 0)
    return fail(ErrorCode::InvalidArgument, options.name + ": default_timeout is negative");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->body = std::move(body);
  Impl* raw = impl.get();
  std::unique_ptr<BlockingRunner> runner(new BlockingRunner(std::move(impl)));
  try {
    for (std::size_t i = 0; i < raw->options.threads; ++i)
      raw->threads.emplace_back([raw, i] { raw->thread_loop(i); });
    raw->watcher = std::jthread([raw] { raw->watcher_loop(); });
  } catch (const std::system_error& e) {
    return fail(ErrorCode::ResourceExhausted,
                raw->options.name + ": cannot start a thread: " + e.what());
  }
  return runner;
}

Result<void> BlockingRunner::submit(const task::Task& task, std::stop_token stop, Completion done) {
  const auto now = Clock::now();
  auto until = Clock::time_point::max();
  if (impl_->options.deadline) {
    const auto timeout =
        task.timeout().count() > 0 ? task.timeout() : impl_->options.default_timeout;
    if (timeout.count() > 0) until = now + timeout;
  }
  auto job = std::make_shared<Job>(task, std::move(done), now, until);
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->shut) return fail(ErrorCode::Cancelled, impl_->options.name + " is shut down");
    impl_->queue.push_back(job);
    impl_->active.push_back(job);
    // Linked under the lock, before a runner thread can look at the job.
    job->link.emplace(std::move(stop), Forward{job->inner});
  }
  impl_->work_cv.notify_one();
  impl_->watch_cv.notify_one();
  return {};
}

void BlockingRunner::shutdown(Drain drain) {
  std::call_once(impl_->shutdown_once, [&] { impl_->stop_threads(drain); });
}

void BlockingRunner::abandon() noexcept {
  std::vector<JobPtr> jobs;
  {
    std::lock_guard lock(impl_->mu);
    jobs = impl_->active;
  }
  for (const JobPtr& j : jobs) j->inner.request_stop();
}

std::size_t BlockingRunner::outstanding() const {
  std::lock_guard lock(impl_->mu);
  return static_cast<std::size_t>(
      std::count_if(impl_->active.begin(), impl_->active.end(),
                    [](const JobPtr& j) { return !j->reported.load(std::memory_order_acquire); }));
}

}  // namespace pepita::executor
