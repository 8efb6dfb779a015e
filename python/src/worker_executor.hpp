#pragma once
// The "python" backend: persistent Python worker interpreters for function tasks (what
// ProcessPoolExecutor and Dask workers do), registered with the pool as an ordinary executor, so a
// function task still goes through the pool's queue, retries, resources, journal and events.
//
// Each of the executor's slots owns at most one worker process (`python3 _runner.py --serve 3`),
// started on the slot's first task and reused for every later one. A call is one frame each way
// over a socketpair (the worker's fd 3): an 8-byte little-endian length, then the task's stdin
// (a cloudpickle of (fn, args, kwargs)) out, and the pickled ("ok", value) / ("err", exc, tb)
// back, which becomes the attempt's stdout — the same payload the one-shot `_runner.py` writes,
// so pepita.Future reads both alike. The worker's stdout and stderr go to a pipe whose bytes
// become the attempt's stderr. A worker that dies during a call (os._exit, a segfault) fails
// that attempt with its exit status or signal and is replaced on the slot's next task; a timeout
// or a cancel kills the worker's process group and replaces it the same way.
//
//   auto exec = make_worker_executor({.argv = {"/usr/bin/python3", runner, "--serve", "3"},
//                                     .env = {...}}, 4).value();
//   pool_builder.executor(exec);  // tasks with backend "python" now run on it

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"

namespace pepita::python {

/// The backend name function tasks use to reach the persistent workers.
inline constexpr std::string_view kWorkerBackend = "python";

/// How to start one worker: argv[0] is the interpreter's absolute path; env is the complete
/// environment ("K=V" strings).
struct WorkerCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;
};

/// An executor of `slots` persistent workers (started lazily, one per slot). InvalidArgument for
/// an empty argv or slots outside 1..1024; ResourceExhausted when its threads cannot start.
Result<std::shared_ptr<executor::Executor>> make_worker_executor(WorkerCommand command,
                                                                 std::size_t slots);

}  // namespace pepita::python
