// Function tasks on the work-stealing scheduler: one Scheduler::submit per attempt, counted with
// one atomic (no lock per task).
#include "pepita/executor/cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <string>
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
  // Attempts started and not completed, plus kClosed once shutdown() began: one RMW per start
  // and per completion instead of a mutex around each (issue 27). Admission and closing are
  // RMWs on the same word, so a start either is counted before shutdown waits or sees kClosed.
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 63;
  std::atomic<std::uint64_t> outstanding{0};

  void finish_one() noexcept {
    // Only the last completion after shutdown() began has a waiter to wake.
    if (outstanding.fetch_sub(1, std::memory_order_acq_rel) == (kClosed | 1)) {
      outstanding.notify_all();
    }
  }

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
  return static_cast<std::size_t>(impl_->outstanding.load(std::memory_order_acquire) &
                                  ~Impl::kClosed);
}

Result<void> CpuExecutor::start(const task::Task& task, std::stop_token stop, Completion done) {
  if (!task.function()) {
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() + "' is a binary task; the cpu executor runs functions");
  }
  if ((impl_->outstanding.fetch_add(1, std::memory_order_acq_rel) & Impl::kClosed) != 0) {
    impl_->finish_one();  // undo: shutdown() may be waiting for the count to drain
    return fail(ErrorCode::Cancelled, std::string("cpu executor is shut down; task '")
                                          .append(task.name())
                                          .append("' was not started"));
  }
  Impl* impl = impl_.get();
  impl->sched->submit(
      [impl, task, stop = std::move(stop), done = std::move(done)]() mutable noexcept {
        impl->run(task, stop, done);
        impl->finish_one();
      });
  return {};
}

void CpuExecutor::shutdown() {
  std::uint64_t v =
      impl_->outstanding.fetch_or(Impl::kClosed, std::memory_order_acq_rel) | Impl::kClosed;
  while (v != Impl::kClosed) {
    impl_->outstanding.wait(v, std::memory_order_acquire);
    v = impl_->outstanding.load(std::memory_order_acquire);
  }
}

}  // namespace pepita::executor
