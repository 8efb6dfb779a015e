// ExecutorRegistry: live executors by backend; execute() waits for one attempt's Completion.
#include "pepita/executor/executor_registry.hpp"

#include <condition_variable>
#include <optional>
#include <string>
#include <utility>

namespace pepita::executor {

ExecutorRegistry::~ExecutorRegistry() { shutdown(); }

Result<void> ExecutorRegistry::register_executor(std::shared_ptr<Executor> executor) {
  if (!executor)
    return fail(ErrorCode::InvalidArgument,
                "executor registry: register_executor got a null executor; pass one from "
                "CpuExecutor::create, ProcessExecutor::create or Registry::create");
  std::lock_guard lock(mu_);
  if (shut_down_)
    return fail(ErrorCode::Cancelled,
                "executor registry is shut down; create a new registry to register executors");
  for (const auto& e : executors_) {
    if (e->backend() == executor->backend())
      return fail(ErrorCode::AlreadyExists,
                  std::string("executor registry: backend '")
                      .append(executor->backend().name())
                      .append("' already has an executor; register one per backend"));
  }
  executors_.push_back(std::move(executor));
  return {};
}

std::shared_ptr<Executor> ExecutorRegistry::find_executor(const Backend& backend) const {
  std::lock_guard lock(mu_);
  for (const auto& e : executors_)
    if (e->backend() == backend) return e;
  return nullptr;
}

Result<ExecutionResult> ExecutorRegistry::execute(const task::Task& task) const {
  std::shared_ptr<Executor> exec;
  std::string known;
  {
    std::lock_guard lock(mu_);
    if (shut_down_)
      return fail(ErrorCode::Cancelled, std::string("executor registry is shut down; task '")
                                            .append(task.name())
                                            .append("' was not run"));
    for (const auto& e : executors_) {
      if (e->backend() == task.backend()) exec = e;
      known.append(known.empty() ? "" : ", ").append(e->backend().name());
    }
  }
  if (!exec)
    return fail(ErrorCode::NotFound, std::string("executor registry: no executor for backend '")
                                         .append(task.backend().name())
                                         .append("' (registered: ")
                                         .append(known.empty() ? "none" : known)
                                         .append("); register one with register_executor"));
  // The Completion runs on an executor thread; hand its result over under a lock. The state is
  // shared so a late Completion never touches a dead stack frame.
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<ExecutionResult> result;
  };
  auto waiter = std::make_shared<Waiter>();
  PEPITA_TRY_VOID(exec->start(task, {}, [waiter](ExecutionResult r) {
    std::lock_guard lock(waiter->mu);
    waiter->result.emplace(std::move(r));
    waiter->cv.notify_all();
  }));
  std::unique_lock lock(waiter->mu);
  waiter->cv.wait(lock, [&] { return waiter->result.has_value(); });
  ExecutionResult r = std::move(*waiter->result);
  r.attempts = r.attempts == 0 ? 1 : r.attempts;
  return r;
}

std::size_t ExecutorRegistry::total_workers() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& e : executors_) n += e->slots();
  return n;
}

std::size_t ExecutorRegistry::size() const {
  std::lock_guard lock(mu_);
  return executors_.size();
}

void ExecutorRegistry::shutdown() {
  std::vector<std::shared_ptr<Executor>> executors;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    executors.swap(executors_);
  }
  // Outside the lock: shutdown() blocks until the executor's attempts complete.
  for (auto& e : executors) e->shutdown();
}

}  // namespace pepita::executor
