// CachingExecutor (detail/cache_executor.hpp): cache lookups and output hashing off the pool's
// and the executors' threads.
#include "detail/cache_executor.hpp"

#include <unistd.h>

#include "pepita/core/format.hpp"

namespace pepita::pool::detail {

using executor::ExecutionResult;
using executor::Status;

namespace {
// Once per process: the host name does not change under a run, and gethostname is a system call
// (uname) that every completed attempt paid before.
const std::string& this_host() {
  static const std::string host = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    return std::string(buf);
  }();
  return host;
}

// The result of an attempt whose inner start() refused it: cancelled when that was why,
// launch-failed otherwise, with the cache's reason.
ExecutionResult refused(const task::Task& task, const Error& error, std::string reason) {
  ExecutionResult r;
  r.id = task.id();
  r.name = task.name();
  r.status = error.code() == ErrorCode::Cancelled ? Status::Cancelled : Status::LaunchFailed;
  r.error = error.to_string();
  r.cache_reason = std::move(reason);
  return r;
}
}  // namespace

CachingExecutor::CachingExecutor(std::shared_ptr<executor::Executor> inner,
                                 std::shared_ptr<ResultCache> cache, unsigned threads)
    : inner_(std::move(inner)), cache_(std::move(cache)) {
  for (unsigned i = 0; i < std::max(threads, 1u); ++i) threads_.emplace_back([this] { loop(); });
}

CachingExecutor::~CachingExecutor() {
  shutdown();
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void CachingExecutor::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void CachingExecutor::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    ++busy_;
    lock.unlock();
    job();
    lock.lock();
    --busy_;
    if (jobs_.empty() && busy_ == 0) idle_cv_.notify_all();
  }
}

Result<void> CachingExecutor::start(const task::Task& task, std::stop_token stop,
                                    executor::Completion done) {
  {
    std::lock_guard lock(mu_);
    if (!accepting_) {
      return fail(ErrorCode::Cancelled, "the executor is shut down; no new attempts start");
    }
  }
  // Issue 27: a task the cache never keeps (most of them: no declared files) goes straight to
  // the executor it wraps, completing on that executor's thread. The lookup and store hops
  // through this executor's threads cost two wake-ups per attempt and decided nothing.
  if (const char* reason = ResultCache::never_cached(task);
      reason != nullptr && !stop.stop_requested()) {
    const bool remote = inner_->places_resources();
    auto started = inner_->start(task, stop, [reason, remote, done](ExecutionResult r) mutable {
      r.cache_reason = reason;
      if (r.host.empty() && !remote) r.host = this_host();
      done(std::move(r));
    });
    if (started) return {};
    // As check() reports a launch that failed, on this executor's thread.
    post([done = std::move(done), r = refused(task, started.error(), reason)]() mutable {
      done(std::move(r));
    });
    return {};
  }
  post([this, task, stop, done = std::move(done)]() mutable {
    check(task, std::move(stop), std::move(done));
  });
  return {};
}

void CachingExecutor::check(const task::Task& task, std::stop_token stop,
                            executor::Completion done) {
  if (stop.stop_requested()) {
    ExecutionResult r;
    r.id = task.id();
    r.name = task.name();
    r.status = Status::Cancelled;
    r.error = "cancelled before it started";
    done(std::move(r));
    return;
  }
  auto lookup = std::make_shared<CacheLookup>(cache_->lookup(task));
  if (lookup->hit) {
    done(std::move(*lookup->hit));
    return;
  }
  auto finish = [this, task, lookup, done](ExecutionResult r) mutable {
    r.cache_reason = lookup->reason;
    if (r.host.empty() && !inner_->places_resources()) r.host = this_host();
    if (!r.ok()) {
      if (r.input_hashes.empty()) r.input_hashes = lookup->inputs;
      done(std::move(r));
      return;
    }
    // Hashing outputs may read large files: not on the executor's completion thread.
    post([this, task, lookup, done, r = std::move(r)]() mutable {
      cache_->note_ran(task);
      if (auto stored = cache_->store(task, *lookup, r); !stored) {
        r.status = Status::Failed;
        r.error = stored.error().message();
      }
      done(std::move(r));
    });
  };
  auto s = inner_->start(task, stop, finish);
  if (!s) done(refused(task, s.error(), lookup->reason));
}

void CachingExecutor::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (!accepting_ && jobs_.empty() && busy_ == 0) {
      inner_->shutdown();
      return;
    }
    accepting_ = false;
  }
  // Lookups queued now either start on the inner executor or complete; then the inner
  // executor's attempts finish (posting their output hashing); then that drains too.
  auto drain = [this] {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [&] { return jobs_.empty() && busy_ == 0; });
  };
  drain();
  inner_->shutdown();
  drain();
}

}  // namespace pepita::pool::detail
