// pepita._pepita: the Pool and run_job bindings. pepita/__init__.py builds the Python API
// (concurrent.futures-compatible Future, Task, function tasks) on these primitives.
//
// Threads and the GIL: every call into the pool that can block (submit with a queue capacity,
// cancel, shutdown, the waits of run_job) runs with the GIL released. The pool's observer runs on
// a pool or executor thread and only queues the event; one Finisher thread per pool takes the
// GIL once per batch to finish the tasks' Python futures (their _pepita_finish method) and to
// call the user's event callback. Futures waiting for their task live in Shared::futures,
// touched only with the GIL held (the GIL is its lock).
#include "pepita/pool/pool.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "pepita/executor/serve.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/slurm/slurm_executor.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/transport/remote_executor.hpp"

namespace pepita::python {

namespace {

using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

nanoseconds seconds_to_ns(double s) { return duration_cast<nanoseconds>(duration<double>(s)); }
double ns_to_seconds(nanoseconds d) { return duration<double>(d).count(); }

const char* kind_name(pool::Event::Kind k) {
  switch (k) {
    case pool::Event::Kind::Started: return "started";
    case pool::Event::Kind::Retrying: return "retrying";
    case pool::Event::Kind::Finished: return "finished";
  }
  return "unknown";
}

/// One ExecutionResult as a dict (pepita.TaskResult is built from it in Python). GIL held.
py::dict result_dict(const executor::ExecutionResult& r) {
  py::dict d;
  d["id"] = r.id;
  d["name"] = r.name;
  d["status"] = std::string(executor::to_string(r.status));
  d["exit_code"] = r.exit_code;
  d["signal"] = r.signal;
  d["wall"] = ns_to_seconds(r.wall);
  d["cpu"] = ns_to_seconds(r.cpu);
  d["max_rss_kb"] = r.max_rss_kb;
  d["stdout"] = py::bytes(r.stdout_data);
  d["stderr"] = py::bytes(r.stderr_data);
  d["output_truncated"] = r.output_truncated();
  d["error"] = r.error;
  d["attempts"] = r.attempts;
  d["from_journal"] = r.from_journal;
  d["host"] = r.host;
  d["peak_memory"] = r.peak_memory;
  return d;
}

/// Keeps the finisher thread's Python thread state from one GIL acquisition to the next.
/// Without it each py::gil_scoped_acquire on a thread Python did not start creates a thread state
/// and deletes it on release, and CPython 3.11 maps and unmaps a 16 KiB frame stack with each:
/// the munmap is a TLB-flush IPI to every CPU (perf: ~16% of a python-backend slot thread's time
/// at 2,000 tasks/s when each slot thread took the GIL). Call with the GIL held (inside a
/// gil_scoped_acquire). The thread state is deleted when the thread exits, unless the
/// interpreter is finalizing then (it owns them all).
void keep_thread_state() {
  struct Kept {
    PyThreadState* tstate = nullptr;
    ~Kept() {
      if (tstate == nullptr || !Py_IsInitialized() || _Py_IsFinalizing()) return;
      py::gil_scoped_acquire gil;  // finds tstate; its release deletes it (count back to 0)
      --tstate->gilstate_counter;
    }
  };
  thread_local Kept kept;
  if (kept.tstate == nullptr) {
    kept.tstate = PyThreadState_Get();
    ++kept.tstate->gilstate_counter;  // what py::gil_scoped_acquire::inc_ref() does
  }
}

/// One pool event as the finisher thread gets it (pool::Event points at a result that lives
/// only during the callback; this owns a copy).
struct QueuedEvent {
  pool::Event::Kind kind;
  task::TaskId id;
  std::string name;
  std::uint32_t attempt;
  std::optional<executor::ExecutionResult> result;
};

/// What the observer shares with the PyPool and the finisher thread: the futures waiting for
/// their task and the user's event callback (py::objects: created, copied and dropped with the
/// GIL held only), and the queue of events from the pool's threads to the finisher.
struct Shared {
  std::unordered_map<task::TaskId, py::object> futures;
  py::object on_event;     // None or callable(kind, id, name, attempt, result_or_None)
  bool wants_all = false;  // on_event set: every event is queued, not only Finished

  std::mutex mu;
  std::condition_variable cv;
  std::vector<QueuedEvent> queue;  // guarded by mu
  bool stopping = false;           // guarded by mu: the finisher drains the queue, then exits
};

/// Hands one event to Python: the user's callback, then (Finished) the task's future. GIL held.
void deliver(Shared& shared, const QueuedEvent& e) {
  py::object result;
  try {
    result = e.result ? py::object(result_dict(*e.result)) : py::object(py::none());
  } catch (py::error_already_set& err) {
    err.discard_as_unraisable("pepita: converting a task result");
    result = py::none();
  }
  // The user's callback first; its exception must not keep the future from finishing.
  if (shared.wants_all) {
    try {
      shared.on_event(kind_name(e.kind), e.id, e.name, e.attempt, result);
    } catch (py::error_already_set& err) {
      err.discard_as_unraisable("pepita: the pool's on_event callback");
    }
  }
  if (e.kind != pool::Event::Kind::Finished) return;
  auto it = shared.futures.find(e.id);
  if (it == shared.futures.end()) return;
  py::object future = std::move(it->second);
  shared.futures.erase(it);
  try {
    future.attr("_pepita_finish")(result);
  } catch (py::error_already_set& err) {
    err.discard_as_unraisable("pepita: finishing a task's future");
  }
}

/// The observer for Pool::Builder::on_event: queues the event for the finisher. Runs on pool
/// and executor threads, never with pool locks held, and never waits for the GIL, so a slot's
/// thread goes straight back to its next task while Python is busy.
std::function<void(const pool::Event&)> observer(std::shared_ptr<Shared> shared) {
  return [shared = std::move(shared)](const pool::Event& e) {
    if (e.kind != pool::Event::Kind::Finished && !shared->wants_all) return;
    QueuedEvent q{e.kind, e.id, e.name, e.attempt, std::nullopt};
    if (e.result != nullptr) q.result = *e.result;
    {
      std::lock_guard lock(shared->mu);
      shared->queue.push_back(std::move(q));
    }
    shared->cv.notify_one();
  };
}

/// The one thread that finishes futures and calls on_event: it takes the GIL once per batch of
/// queued events (not once per task from every pool thread, which made the GIL the contended
/// lock between the submitting thread and the slots). Events reach Python in the pool's order.
class Finisher {
 public:
  explicit Finisher(std::shared_ptr<Shared> shared)
      : shared_(std::move(shared)), thread_([s = shared_] { run(*s); }) {}
  Finisher(const Finisher&) = delete;
  Finisher& operator=(const Finisher&) = delete;
  ~Finisher() { stop(); }

  /// Delivers what is queued, then joins. Call once the pool can send no more events; the GIL
  /// is released meanwhile when this thread holds it (the finisher needs it).
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(shared_->mu);
      shared_->stopping = true;
    }
    shared_->cv.notify_one();
    if (thread_.get_id() == std::this_thread::get_id()) {
      // A future's callback dropped the last reference to its pool: the finisher cannot join
      // itself; it drains the queue and exits once the callback returns (it owns `shared`).
      thread_.detach();
      return;
    }
    if (PyGILState_Check() != 0) {
      py::gil_scoped_release nogil;
      thread_.join();
    } else {
      thread_.join();
    }
  }

 private:
  static void run(Shared& s) {
    std::vector<QueuedEvent> batch;
    for (;;) {
      {
        std::unique_lock lock(s.mu);
        s.cv.wait(lock, [&] { return s.stopping || !s.queue.empty(); });
        if (s.queue.empty()) return;  // stopping, and all delivered
        batch.swap(s.queue);
      }
      if (!_Py_IsFinalizing()) {  // else the interpreter is going away: nobody is waiting
        py::gil_scoped_acquire gil;
        keep_thread_state();
        for (const QueuedEvent& e : batch) deliver(s, e);
      }
      batch.clear();
    }
  }

  std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

/// The settings of one process task, as pepita.Task hands them over.
struct TaskSpec {
  std::string path;
  std::vector<std::string> args;
  std::string name;
  std::map<std::string, std::string> env;
  std::string cwd;
  std::string stdin_data;
  double timeout = 0;
  std::int64_t retries = -1;  // -1: the pool's retry policy
  std::int32_t priority = 0;
  std::vector<task::TaskId> deps;
  double cpus = 0;
  std::uint64_t memory = 0;
  double gpus = 0;
  std::string backend;  // empty: process
  std::uint64_t output_cap = 0;
};

Result<task::Task> build_task(const TaskSpec& s) {
  auto b = task::Task::binary(s.path);
  b.args(s.args);
  if (!s.name.empty()) b.name(s.name);
  for (const auto& [k, v] : s.env) b.env(k, v);
  if (!s.cwd.empty()) b.cwd(s.cwd);
  if (!s.stdin_data.empty()) b.stdin(s.stdin_data);
  if (s.timeout < 0) {
    return fail(ErrorCode::InvalidArgument, "timeout must be >= 0 seconds");
  }
  if (s.timeout > 0) b.timeout(seconds_to_ns(s.timeout));
  if (s.retries >= 0) b.max_retries(static_cast<std::uint32_t>(s.retries));
  b.priority(s.priority);
  if (!s.deps.empty()) b.depends_on(s.deps);
  if (s.cpus != 0 || s.memory != 0 || s.gpus != 0) {
    task::ResourceRequest r;
    r.cpus = s.cpus;
    r.memory = s.memory;
    r.gpus = s.gpus;
    b.resources(std::move(r));
  }
  if (!s.backend.empty()) b.backend(PEPITA_TRY(task::Backend::named(s.backend)));
  if (s.output_cap != 0) b.output_cap(s.output_cap);
  return b.build();
}

class PyPool {
 public:
  PyPool(unsigned cpu_workers, std::optional<std::size_t> process_slots, std::string journal,
         bool resume, std::uint32_t max_attempts, std::vector<std::string> workers, std::string key,
         bool tls, std::optional<double> default_timeout, std::optional<std::size_t> queue_capacity,
         const std::map<std::string, std::string>& slurm, py::object on_event,
         std::vector<std::string> worker_argv, std::vector<std::string> worker_env)
      : shared_(std::make_shared<Shared>()) {
    shared_->wants_all = !on_event.is_none();
    shared_->on_event = std::move(on_event);
    auto b = pool::Pool::builder();
    b.cpu_workers(cpu_workers);
    if (process_slots) b.process_slots(*process_slots);
    if (!journal.empty()) b.journal(journal, resume);
    if (max_attempts > 1) b.retry_policy(fault::RetryPolicy().max_attempts(max_attempts));
    if (default_timeout) b.default_timeout(seconds_to_ns(*default_timeout));
    if (queue_capacity) b.queue_capacity(*queue_capacity);
    if (!workers.empty()) {
      executor::Registry registry;
      unwrap(transport::register_remote(registry));
      executor::BackendOptions options;
      options.set("key", key);
      options.set("tls", tls ? "on" : "off");
      b.registry(std::move(registry)).remote_workers(std::move(workers)).remote_options(options);
    }
    if (!slurm.empty()) {
      // Worker jobs submitted with sbatch, through the slurm module's registration: the
      // settings are register_slurm's (an unknown one is InvalidArgument naming it).
      executor::Registry registry;
      unwrap(slurm::register_slurm(registry));
      executor::BackendOptions options;
      for (const auto& [k, v] : slurm) options.set(k, v);
      b.executor(registry.factory(slurm::slurm_backend(), std::move(options)));
    }
    if (!worker_argv.empty() && workers.empty() && slurm.empty()) {
      // Function tasks' persistent interpreters (the "python" backend), one per cpu slot,
      // started on first use.
      std::size_t slots = process_slots ? *process_slots : cpu_workers;
      if (slots == 0) slots = std::max(1U, std::thread::hardware_concurrency());
      executor::ServeOptions serve;
      serve.slots = std::min<std::size_t>(slots, 1024);
      serve.backend = "python";
      serve.command = executor::ServeCommand{std::move(worker_argv), std::move(worker_env)};
      serve.what = "Python worker";
      b.executor(unwrap(executor::make_serve_executor(std::move(serve))));
    }
    b.on_event(observer(shared_));
    finisher_.emplace(shared_);
    Result<pool::Pool> built = [&] {
      py::gil_scoped_release nogil;  // executors start threads; a journal may be read
      return b.build();
    }();
    pool_.emplace(unwrap(std::move(built)));
  }

  PyPool(const PyPool&) = delete;
  PyPool& operator=(const PyPool&) = delete;
  ~PyPool() { close(); }

  /// Builds the task, registers `future` for its completion, then submits (GIL released).
  task::TaskId submit(py::object future, const TaskSpec& spec) {
    Pool& p = live();
    task::Task t = unwrap(build_task(spec));
    const task::TaskId id = t.id();
    shared_->futures.emplace(id, std::move(future));
    Result<pool::TaskHandle> handle = [&] {
      py::gil_scoped_release nogil;
      return p.submit(std::move(t));
    }();
    if (!handle) {
      shared_->futures.erase(id);
      raise(handle.error());
    }
    return id;
  }

  bool cancel(task::TaskId id) {
    Pool& p = live();
    py::gil_scoped_release nogil;
    return p.cancel(id);
  }

  void cancel_all() {
    Pool& p = live();
    py::gil_scoped_release nogil;
    p.cancel_all();
  }

  /// Graceful waits for every task; otherwise queued and running tasks are cancelled. Then the
  /// pool is gone: later calls raise CancelledError.
  void shutdown(bool wait) {
    if (!pool_) return;
    {
      py::gil_scoped_release nogil;
      pool_->shutdown(wait ? pool::ShutdownMode::Graceful : pool::ShutdownMode::Immediate);
    }
    close();
  }

  bool closed() const { return !pool_; }

  std::size_t num_workers() { return live().num_workers(); }
  std::size_t pending() { return live().pending_tasks(); }

  py::dict stats() {
    const pool::Stats s = live().stats();
    py::dict d;
    d["submitted"] = s.submitted;
    d["queued"] = s.queued;
    d["running"] = s.running;
    d["done"] = s.done;
    d["succeeded"] = s.succeeded;
    d["failed"] = s.failed;
    d["skipped"] = s.skipped;
    d["retries"] = s.retries;
    d["from_journal"] = s.from_journal;
    d["latency_p50_ms"] = s.latency_p50_ms;
    d["latency_p99_ms"] = s.latency_p99_ms;
    return d;
  }

 private:
  using Pool = pool::Pool;

  Pool& live() {
    if (!pool_) raise(Error(ErrorCode::Cancelled, "the pool is shut down; create a new Pool"));
    return *pool_;
  }

  /// Destroys the pool with the GIL released (its threads may be waiting for the GIL in the
  /// observer), then drops the futures still waiting, with the GIL.
  void close() {
    if (pool_) {
      py::gil_scoped_release nogil;
      pool_.reset();
    }
    if (finisher_) finisher_->stop();  // delivers the last results, with the GIL released
    shared_->futures.clear();
  }

  std::shared_ptr<Shared> shared_;
  // The finisher before the pool: the pool goes first (close()), then the finisher drains.
  std::optional<Finisher> finisher_;
  std::optional<Pool> pool_;
};

/// Waits for `handle` in slices of 100 ms with the GIL released, checking for signals between
/// them (Ctrl-C raises KeyboardInterrupt here, after `on_signal` ran without the GIL).
template <typename OnSignal>
void wait_interruptibly(const pool::TaskHandle& handle, OnSignal on_signal) {
  for (;;) {
    bool done = false;
    {
      py::gil_scoped_release nogil;
      done = handle.wait_for(std::chrono::milliseconds(100));
    }
    if (done) return;
    if (PyErr_CheckSignals() != 0) {
      {
        py::gil_scoped_release nogil;
        on_signal();
      }
      throw py::error_already_set();
    }
  }
}

/// pepita.run_job: loads a job file and runs it to the end on a pool of its own.
py::list run_job(const std::string& path, const std::string& state_dir,
                 const std::string& pepita_dir, bool resume, bool journal, py::object on_event) {
  pool::JobOptions jo;
  jo.state_dir = state_dir;
  jo.pepita_dir = pepita_dir;
  pool::Job job = unwrap([&] {
    py::gil_scoped_release nogil;
    return pool::load_job(path, jo);
  }());
  auto shared = std::make_shared<Shared>();
  shared->wants_all = !on_event.is_none();
  shared->on_event = std::move(on_event);
  pool::Pool::Builder b = job.pool_builder();
  if (journal) b.journal(job.journal, resume);
  b.on_event(observer(shared));
  Finisher finisher(shared);  // declared before the pool: stopped after it is gone
  std::optional<pool::Pool> p;
  {
    Result<pool::Pool> built = [&] {
      py::gil_scoped_release nogil;
      return b.build();
    }();
    p.emplace(unwrap(std::move(built)));
  }
  // The pool must go before `shared` loses its last reference with the GIL held.
  struct Closer {
    std::optional<pool::Pool>& p;
    ~Closer() {
      py::gil_scoped_release nogil;
      p.reset();
    }
  } closer{p};
  std::vector<pool::TaskHandle> handles = unwrap([&] {
    py::gil_scoped_release nogil;
    return p->submit_all(job.tasks);
  }());
  py::list results;
  for (const pool::TaskHandle& h : handles) {
    wait_interruptibly(h, [&] { p->shutdown(pool::ShutdownMode::Immediate); });
    executor::ExecutionResult r = h.wait();
    results.append(result_dict(r));
  }
  return results;
}

}  // namespace

void bind_pool(py::module_& m) {
  py::class_<TaskSpec>(m, "_TaskSpec")
      .def(py::init<>())
      .def_readwrite("path", &TaskSpec::path)
      .def_readwrite("args", &TaskSpec::args)
      .def_readwrite("name", &TaskSpec::name)
      .def_readwrite("env", &TaskSpec::env)
      .def_readwrite("cwd", &TaskSpec::cwd)
      .def_property(
          "stdin", [](const TaskSpec& s) { return py::bytes(s.stdin_data); },
          [](TaskSpec& s, const py::bytes& b) { s.stdin_data = std::string(b); })
      .def_readwrite("timeout", &TaskSpec::timeout)
      .def_readwrite("retries", &TaskSpec::retries)
      .def_readwrite("priority", &TaskSpec::priority)
      .def_readwrite("deps", &TaskSpec::deps)
      .def_readwrite("cpus", &TaskSpec::cpus)
      .def_readwrite("memory", &TaskSpec::memory)
      .def_readwrite("gpus", &TaskSpec::gpus)
      .def_readwrite("backend", &TaskSpec::backend)
      .def_readwrite("output_cap", &TaskSpec::output_cap);

  py::class_<PyPool>(m, "_Pool")
      .def(py::init<unsigned, std::optional<std::size_t>, std::string, bool, std::uint32_t,
                    std::vector<std::string>, std::string, bool, std::optional<double>,
                    std::optional<std::size_t>, const std::map<std::string, std::string>&,
                    py::object, std::vector<std::string>, std::vector<std::string>>(),
           py::arg("cpu_workers"), py::arg("process_slots"), py::arg("journal"), py::arg("resume"),
           py::arg("max_attempts"), py::arg("workers"), py::arg("key"), py::arg("tls"),
           py::arg("default_timeout"), py::arg("queue_capacity"), py::arg("slurm"),
           py::arg("on_event"), py::arg("worker_argv") = std::vector<std::string>{},
           py::arg("worker_env") = std::vector<std::string>{})
      .def("submit", &PyPool::submit, py::arg("future"), py::arg("spec"),
           "Submits the task of `spec`; `future._pepita_finish(result)` is called on a pool "
           "thread when it has a final result. Returns the task id.")
      .def("cancel", &PyPool::cancel, py::arg("id"))
      .def("cancel_all", &PyPool::cancel_all)
      .def("shutdown", &PyPool::shutdown, py::arg("wait"))
      .def_property_readonly("closed", &PyPool::closed)
      .def("num_workers", &PyPool::num_workers)
      .def("pending", &PyPool::pending)
      .def("stats", &PyPool::stats);

  m.def("_run_job", &run_job, py::arg("path"), py::arg("state_dir"), py::arg("pepita_dir"),
        py::arg("resume"), py::arg("journal"), py::arg("on_event"),
        "Runs a job file to the end; a list of result dicts in task order.");

  m.def(
      "_parse_bytes", [](const std::string& text) { return unwrap(task::parse_bytes(text)); },
      py::arg("text"), "A byte size such as '512M' or '4G' (powers of 1024).");
}

}  // namespace pepita::python
