#pragma once
// CachingExecutor: the result cache (pool/cache.hpp) in front of one of the pool's executors.
// The pool hands it an attempt as it would the executor; on a worker thread it looks the task up
// (hashing inputs in parallel) and either completes at once with the cached result (from_cache)
// or starts the attempt on the executor it wraps. A successful attempt's declared outputs are
// hashed and stored; a missing one fails the attempt naming the file (the pool retries per its
// policy). Every result carries its reason (ExecutionResult::cache_reason).
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pepita/executor/executor.hpp"
#include "pepita/pool/cache.hpp"

namespace pepita::pool::detail {

class CachingExecutor final : public executor::Executor {
 public:
  CachingExecutor(std::shared_ptr<executor::Executor> inner, std::shared_ptr<ResultCache> cache,
                  unsigned threads);
  ~CachingExecutor() override;

  executor::Backend backend() const noexcept override { return inner_->backend(); }
  std::size_t slots() const noexcept override { return inner_->slots(); }
  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override;
  void shutdown() override;
  void abandon() noexcept override { inner_->abandon(); }
  bool places_resources() const noexcept override { return inner_->places_resources(); }
  bool streams_output() const noexcept override { return inner_->streams_output(); }
  Result<void> can_ever_fit(const task::ResourceRequest& request) const override {
    return inner_->can_ever_fit(request);
  }

 private:
  void post(std::function<void()> job);
  void loop();
  void check(const task::Task& task, std::stop_token stop, executor::Completion done);

  std::shared_ptr<executor::Executor> inner_;
  std::shared_ptr<ResultCache> cache_;
  std::mutex mu_;
  std::condition_variable cv_;       // jobs queued, or stopping
  std::condition_variable idle_cv_;  // nothing queued or running
  std::deque<std::function<void()>> jobs_;
  std::size_t busy_ = 0;
  bool accepting_ = true;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: joined before the queue goes
};

}  // namespace pepita::pool::detail
