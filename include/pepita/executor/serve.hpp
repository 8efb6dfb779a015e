#pragma once
// The serve executor: process tasks answered by persistent server processes instead of one
// fresh process each (what ProcessPoolExecutor and Dask workers do for Python functions). The
// pool's "python" backend (python/) and `pepita worker`'s Python function tasks run on it.
//
// Each of its slots owns at most one server process, started on the slot's first task and reused
// for every later one with the same command. A call is one frame each way over a socketpair (the
// server's fd 3): an 8-byte little-endian length, then the task's stdin out, and one frame back,
// which becomes the attempt's stdout. The server's stdout and stderr go to a pipe whose bytes
// become the attempt's stderr; it exits at end of file on fd 3. A server that dies during a call
// (os._exit, a segfault) fails that attempt with its exit status or signal and is replaced on the
// slot's next task; a timeout or a cancel kills the server's process group and replaces it the
// same way. A server reply over the task's output cap fails the attempt and replaces the server.
//
//   auto exec = make_serve_executor({.slots = 4, .backend = "python",
//                                    .command = ServeCommand{{"/usr/bin/python3", runner,
//                                                             "--serve", "3"}, env}}).value();
//   pool_builder.executor(exec);  // tasks with backend "python" now run on it

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/task/task.hpp"

namespace pepita::executor {

/// The fd on which a server finds its end of the call socket.
inline constexpr int kServeFd = 3;

/// How to start one server: argv[0] is the program's absolute path; env is the complete
/// environment ("K=V" strings).
struct ServeCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  friend bool operator==(const ServeCommand&, const ServeCommand&) = default;
};

struct ServeOptions {
  /// Servers (and attempts at once), 1..1024.
  std::size_t slots = 1;
  /// The backend name tasks use to reach it ([a-z0-9_-]).
  std::string backend = "serve";
  /// Every task runs on this server command. nullopt: each task's own process spec gives the
  /// command (serve_command_of), and a slot whose server was started for another command
  /// replaces it.
  std::optional<ServeCommand> command;
  /// Appended to a task's argv when the command comes from the task.
  std::vector<std::string> serve_args = {"--serve", "3"};
  /// What a server is called in errors ("Python worker").
  std::string what = "server";
};

/// The server command for a process task: its path, its args and `serve_args`, and its
/// environment (the caller's when the spec inherits it, the spec's variables on top).
/// InvalidArgument when the path is not absolute.
Result<ServeCommand> serve_command_of(const task::ProcessSpec& spec,
                                      const std::vector<std::string>& serve_args);

/// An executor of `options.slots` persistent servers (started lazily, one per slot); it takes
/// process tasks only. InvalidArgument for an empty fixed command, slots outside 1..1024 or a
/// bad backend name; ResourceExhausted when its threads cannot start.
Result<std::shared_ptr<Executor>> make_serve_executor(ServeOptions options);

}  // namespace pepita::executor
