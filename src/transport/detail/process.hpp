#pragma once
// Runs one Process task on a worker: posix_spawn in its own process group with piped
// stdin/stdout/stderr, output capped, a pidfd to notice exit, kill on timeout or cancel.
// (The executor module's Process executor was not committed when this was written.)

#include <atomic>
#include <string>

#include "pepita/transport/messages.hpp"

namespace pepita::transport::detail {

/// Spawns `path` (resolved: absolute, or looked up in PATH when it has no '/') with the Submit's
/// args/env/stdin in `cwd` (empty: inherit) and waits for it, killing the whole process group
/// when the timeout passes or `cancel` turns true. Never throws; spawn failures are SpawnError.
ResultMsg run_process(const SubmitMsg& task, const std::string& path, const std::string& cwd,
                      const std::atomic<bool>& cancel);

}  // namespace pepita::transport::detail
