// ZeroExecutor: start() appends (completion, id, name, cancelled) to a pending batch under one
// mutex; one thread swaps the batch out and delivers it outside the lock, inside a
// CompletionBatch, so the cost per attempt is a move into a vector, a wake-up only when the
// thread sleeps, and the receiver's per-batch work once per batch.
#include "pepita/executor/zero.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "pepita/core/format.hpp"
#include "pepita/executor/completion_batch.hpp"

namespace pepita::executor {

Backend zero_backend() noexcept {
  static const Backend name = Backend::named("zero").value();
  return name;
}

struct ZeroExecutor::Impl {
  struct Pending {
    Completion done;
    task::TaskId id;
    std::string name;
    bool cancelled;
  };

  explicit Impl(std::size_t n) : slots(n) {}

  void loop() {
    std::vector<Pending> batch;
    std::unique_lock lock(mu);
    for (;;) {
      while (pending.empty() && !stopping) {
        waiting = true;
        cv.wait(lock);
        waiting = false;
      }
      if (pending.empty()) return;  // stopping, and everything delivered
      batch.swap(pending);
      lock.unlock();
      {
        // The batch's receivers may put off their per-completion work (the pool: its journal
        // write and the next starts) to its end, once for the batch; starts made there land
        // in `pending` for the next round.
        CompletionBatch scope;
        for (Pending& p : batch) {
          ExecutionResult r = ExecutionResult::success(p.id, std::chrono::nanoseconds(0));
          r.name = std::move(p.name);
          if (p.cancelled) {
            r.status = Status::Cancelled;
            r.exit_code = -1;
            r.error = "cancelled before it started";
          }
          p.done(std::move(r));
        }
        batch.clear();
      }
      lock.lock();
    }
  }

  const std::size_t slots;
  std::mutex mu;
  std::condition_variable cv;    // pending grew while the thread waited, or stopping
  std::vector<Pending> pending;  // guarded by mu
  bool waiting = false;          // guarded by mu: the thread sleeps on cv
  bool stopping = false;         // guarded by mu
  bool shut = false;             // guarded by mu: start() refuses
  std::thread thread;            // last: started once the state above exists
};

Result<std::unique_ptr<ZeroExecutor>> ZeroExecutor::create(Options options) {
  auto impl = std::make_unique<Impl>(options.slots ? options.slots : 4096);
  impl->pending.reserve(256);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->loop(); });
  return std::make_unique<ZeroExecutor>(Private{}, std::move(impl));
}

ZeroExecutor::ZeroExecutor(Private, std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

ZeroExecutor::~ZeroExecutor() { shutdown(); }

std::size_t ZeroExecutor::slots() const noexcept { return impl_->slots; }

Result<void> ZeroExecutor::start(const task::Task& task, std::stop_token stop, Completion done) {
  if (task.backend() != zero_backend()) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("task '{}' has backend '{}'; the zero executor runs backend = "
                            "\"zero\" tasks",
                            task.name(), task.backend().name()));
  }
  if (!done) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("task '{}': start() needs a completion to call", task.name()));
  }
  Impl& s = *impl_;
  bool wake = false;
  {
    std::lock_guard lock(s.mu);
    if (s.shut) return fail(ErrorCode::Cancelled, "the zero executor is shut down");
    wake = s.waiting;
    s.pending.push_back({std::move(done), task.id(), task.name(), stop.stop_requested()});
  }
  if (wake) s.cv.notify_one();
  return {};
}

void ZeroExecutor::shutdown() {
  Impl& s = *impl_;
  {
    std::unique_lock lock(s.mu);
    if (s.shut && !s.thread.joinable()) return;
    s.shut = true;
    s.stopping = true;
  }
  s.cv.notify_all();
  if (s.thread.joinable() && s.thread.get_id() != std::this_thread::get_id()) s.thread.join();
}

}  // namespace pepita::executor
