#pragma once
// Live log files (issue 24): where the pool keeps each task's stdout and stderr as they arrive —
// `<dir>/<task>.stdout` and `.stderr`, appended, each attempt opening with a header line — and
// how readers (`pepita logs`) find them. Chunks are written straight through (one write(2) per
// chunk the executor read, at most 64 KiB), so no buffer grows with a chatty task.
//
//   auto sink = PEPITA_TRY(open_log_files("state/logs", "count-3", /*attempt=*/1));
//   Task t = task.with_log_sink(sink);  // what Pool::Builder::log_dir does per attempt

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pepita/error.hpp"
#include "pepita/task/log_sink.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool {

/// The header line that opens each attempt's part of a log file.
std::string log_attempt_header(std::uint32_t attempt);

/// `dir`/<name>.stdout or .stderr, where <name> is `task_name` with every byte outside
/// [A-Za-z0-9._-] replaced by '_' and a leading '.' replaced too (no hidden files, no path
/// escapes). An empty name is "_".
std::string log_file_path(const std::string& dir, std::string_view task_name,
                          task::LogStream stream);

/// Creates `dir` and its parents. InvalidArgument when it exists and is not a directory.
Result<void> create_log_dir(const std::string& dir);

/// Opens (creating, appending) the two log files of `task_name` under `dir`, writes the attempt
/// header to both, and returns a sink that appends each chunk to its stream's file. Errors are
/// those of open(2), naming the file.
Result<std::shared_ptr<task::LogSink>> open_log_files(const std::string& dir,
                                                      std::string_view task_name,
                                                      std::uint32_t attempt);

/// Replaces `task` by a copy streaming to the log files of its name under `dir` when it runs a
/// process or pipeline (function and shader tasks print nothing to capture). Unlike
/// open_log_files, each file is created, with the attempt header, by the first chunk of its
/// stream: a task that prints nothing on a stream leaves no file for it (`pepita logs` then
/// prints nothing for a task the journal knows). When a file cannot be opened the task runs
/// without that live log (its result still carries its output).
void attach_log_files(task::Task& task, const std::string& dir, std::uint32_t attempt);

}  // namespace pepita::pool
