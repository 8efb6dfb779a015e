// Function tasks on the work-stealing scheduler: one Scheduler::submit per attempt.
#include "pepita/executor/cpu.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "pepita/core/sys/thread.hpp"
#include "pepita/scheduler/scheduler.hpp"

namespace pepita::executor {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

struct CpuExecutor::Impl {
  std::unique_ptr<scheduler::Scheduler> owned;  // declared first: destroyed last
  scheduler::Scheduler* sched = nullptr;
  std::mutex mu;
  std::condition_variable idle_cv;
  std::size_t outstanding = 0;
  bool accepting = true;

  void run(const task::Task& task, const std::stop_token& stop, Completion& done) noexcept;
};

void CpuExecutor::Impl::run(const task::Task& task, const std::stop_token& stop,
                            Completion& done) noexcept {
  ExecutionResult r;
  r.id = task.id();
  r.name = task.name();
  const auto wall0 = Clock::now();
  if (stop.stop_requested()) {
    r.status = Status::Cancelled;
    r.error = "cancelled before it started";
  } else {
    try {
      Result<std::string> out = (*task.function())(stop);
      if (out) {
        r.status = Status::Succeeded;
        r.exit_code = 0;
        r.stdout_bytes = out->size();
        if (out->size() > task.output_cap()) out->resize(task.output_cap());
        r.stdout_data = std::move(*out);
      } else {
        r.status = out.error().code() == ErrorCode::Cancelled ? Status::Cancelled : Status::Failed;
        r.exit_code = 1;
        r.error = out.error().to_string();
      }
    } catch (const std::exception& e) {
      r.status = Status::Failed;
      r.exit_code = 1;
      r.error = std::string("function threw: ") + e.what();
    } catch (...) {
      r.status = Status::Failed;
      r.exit_code = 1;
      r.error = "function threw a non-std::exception";
    }
  }
  r.wall = Clock::now() - wall0;
  // No per-task thread CPU clock: CLOCK_THREAD_CPUTIME_ID is a real syscall (no vDSO) and cost
  // a third of a tiny task's overhead. cpu stays 0 for functions.
  if (task.timeout().count() > 0 && r.wall > task.timeout() && r.status == Status::Succeeded) {
    r.status = Status::TimedOut;
    r.error = "function returned after its timeout";
  }
  r.stderr_bytes = r.stderr_data.size();
  try {
    done(std::move(r));
  } catch (...) {
    // A throwing completion is the caller's bug; it must not take a scheduler worker down.
  }
}

Result<std::unique_ptr<CpuExecutor>> CpuExecutor::create(Options options) {
  scheduler::Scheduler::Options so;
  so.workers = options.workers;
  so.name = "pepita-cpu";
  auto sched = scheduler::Scheduler::create(std::move(so));
  if (!sched) return std::unexpected(std::move(sched).error());
  auto impl = std::make_unique<Impl>();
  impl->owned = std::move(*sched);
  impl->sched = impl->owned.get();
  return std::make_unique<CpuExecutor>(Private{}, std::move(impl));
}

Result<std::unique_ptr<CpuExecutor>> CpuExecutor::on(scheduler::Scheduler& sched) {
  auto impl = std::make_unique<Impl>();
  impl->sched = &sched;
  return std::make_unique<CpuExecutor>(Private{}, std::move(impl));
}

CpuExecutor::CpuExecutor(Private, std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

CpuExecutor::~CpuExecutor() { shutdown(); }

std::size_t CpuExecutor::slots() const noexcept { return impl_->sched->worker_count(); }

unsigned CpuExecutor::default_workers() {
  const std::size_t allowed = sys::allowed_cpus().size();
  if (allowed != 0) return static_cast<unsigned>(allowed);
  return std::max(1u, std::thread::hardware_concurrency());
}

std::size_t CpuExecutor::running_tasks() const noexcept {
  std::lock_guard lock(impl_->mu);
  return impl_->outstanding;
}

Result<void> CpuExecutor::start(const task::Task& task, std::stop_token stop, Completion done) {
  if (!task.function()) {
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() + "' is a binary task; the cpu executor runs functions");
  }
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) {
      return fail(ErrorCode::Cancelled,
                  "cpu executor is shut down; task '" + task.name() + "' was not started");
    }
    ++impl_->outstanding;
  }
  Impl* impl = impl_.get();
  impl->sched->submit(
      [impl, task, stop = std::move(stop), done = std::move(done)]() mutable noexcept {
        impl->run(task, stop, done);
        std::lock_guard lock(impl->mu);
        if (--impl->outstanding == 0) impl->idle_cv.notify_all();
      });
  return {};
}

void CpuExecutor::shutdown() {
  std::unique_lock lock(impl_->mu);
  impl_->accepting = false;
  impl_->idle_cv.wait(lock, [&] { return impl_->outstanding == 0; });
}

}  // namespace pepita::executor
