#pragma once
// LogSink: where an executor hands a task's stdout and stderr as they arrive (live logs, issue
// 24), independent of the capped copy kept in ExecutionResult. The pool attaches one per attempt
// (Pool::Builder::log_dir: files under STATE_DIR/logs); a remote executor feeds the chunks its
// worker streams back into the same sink.
//
//   struct Print : LogSink { void write(LogStream s, std::string_view b) noexcept override {...} };
//   Task t2 = task.with_log_sink(std::make_shared<Print>());

#include <cstdint>
#include <string_view>

namespace pepita::task {

enum class LogStream : std::uint8_t { Stdout = 1, Stderr = 2 };

class LogSink {
 public:
  virtual ~LogSink() = default;
  /// One chunk of the attempt's output, in order per stream, on an executor thread (never two
  /// calls at once for one attempt). Must not block for long: the executor's reader waits on
  /// it. Failures are the sink's to report (it may count them); the task's result is not
  /// affected.
  virtual void write(LogStream stream, std::string_view bytes) noexcept = 0;
};

}  // namespace pepita::task
