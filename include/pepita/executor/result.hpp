#pragma once
// ExecutionResult: what one task's run produced, whichever backend ran it — status, exit code or
// signal, wall and CPU time, peak RSS, captured output. The pool fills in attempts and whether
// the result came from the journal.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/task/task.hpp"

namespace pepita::executor {

enum class Status : std::uint8_t {
  Succeeded,     // exit code 0 / the function returned a value
  Failed,        // non-zero exit / the function returned an Error or threw
  Signaled,      // killed by a signal it did not get from us
  TimedOut,      // ran past its timeout and was stopped
  LaunchFailed,  // the backend could not start it (exec failed, no such binary, fork refused)
  Cancelled,     // cancelled by the caller or an immediate shutdown
  Skipped,       // never ran: a dependency did not succeed
  Rejected,      // never ran: the backend's circuit breaker was open
  OutOfMemory,   // killed by its memory limit (the cgroup's OOM killer); see peak_memory
  Sandboxed,     // stopped by its sandbox (a denied syscall, a path, the pids or disk limit):
                 // `error` names the reason, e.g. "sandbox: syscall ptrace denied"
};
inline constexpr std::uint8_t kStatusCount = 10;

/// "succeeded", "failed", "signaled", "timed-out", "launch-failed", "cancelled", "skipped",
/// "rejected", "oom", "sandbox".
std::string_view to_string(Status status) noexcept;

struct ExecutionResult {
  task::TaskId id = 0;
  std::string name;
  Status status = Status::Failed;
  int exit_code = -1;  // the process's exit status; 0/1 for functions; -1 when it did not exit
  int signal = 0;      // the terminating signal, 0 if none
  std::chrono::nanoseconds wall{0};
  std::chrono::nanoseconds cpu{0};  // user + system of a process (and its reaped descendants);
                                    // 0 for functions
  std::int64_t max_rss_kb = 0;      // peak resident set of the process (0 for functions)
  std::string stdout_data;          // up to the task's output cap
  std::string stderr_data;
  std::uint64_t stdout_bytes = 0;  // total written, including what the cap dropped
  std::uint64_t stderr_bytes = 0;
  std::string error;           // what went wrong, for a user (empty on success)
  std::uint32_t attempts = 0;  // attempts made, set by the pool
  bool from_journal = false;   // replayed from a journal, not run in this process

  // ---- Shader tasks (issue 21, GPU part) ----
  /// A shader task's output buffers after its dispatch, in binding order (one per
  /// task::ShaderBuffer marked `output`); empty for other tasks and for failed attempts.
  /// In-memory only: neither the journal record nor the wire codec carries them (they may be
  /// up to GpuExecutor::Options::max_buffer_bytes each), so a shader result replayed from a
  /// journal or received from a remote worker has none, and the pool never replays a shader
  /// task from its journal: it runs again.
  std::vector<std::vector<std::byte>> output_buffers{};  // {}: designated initializers may omit it
  // ---- end shader tasks ----

  bool ok() const noexcept { return status == Status::Succeeded; }
  bool output_truncated() const noexcept {
    return stdout_bytes > stdout_data.size() || stderr_bytes > stderr_data.size();
  }

  // ---- issue 22: resources ----
  /// What the attempt was given (the pool's Allocation for a task with a resource request);
  /// nullopt when it requested nothing.
  std::optional<task::Allocation> allocation;
  /// Peak memory of the task's cgroup in bytes (memory.peak / memory.max_usage_in_bytes), 0
  /// when it ran in none; max_rss_kb is the largest single process.
  std::uint64_t peak_memory = 0;
  /// The memory limit it ran under, bytes (0: none).
  std::uint64_t memory_limit = 0;
  // ---- end resources ----

  // ---- issue 21 (pool): the crate's metadata, state and helpers ----
  /// The task's metadata (Task::Builder::metadata), copied in by the pool when the result is
  /// final; kept in the journal record.
  std::map<std::string, std::string> metadata;

  // ---- issue 24: data and provenance ----
  /// Not run: a cached success of the same task (same command, binary, inputs...) was reused;
  /// the outputs on disk are the cached run's (Pool::Builder::cache).
  bool from_cache = false;
  /// Where it ran: this host's name for local backends, the worker's address for remote ones.
  std::string host;
  /// SHA-256 hex of the binary that ran (process and pipeline tasks: of stage 0's binary; empty
  /// when not known, e.g. a command that was never resolved).
  std::string binary_sha256;
  /// Declared input path (as the task declared it) -> SHA-256 hex of the content it read.
  std::map<std::string, std::string> input_hashes;
  /// Declared output path -> SHA-256 hex of the content it wrote (set on success).
  std::map<std::string, std::string> output_hashes;
  /// Why the result cache reused or ran the task ("cached", "ran: input corpus-3.txt changed
  /// (a1b2… → c3d4…)"); empty when the pool has no cache (Pool::Builder::cache). In-memory only.
  std::string cache_reason;
  // ---- end data and provenance ----

  /// The crate's terminal state of this result (task_state(status)).
  task::TaskState state() const noexcept;
  /// Succeeded (the crate's Completed).
  bool is_success() const noexcept { return ok(); }
  /// The crate's Failed state: it ran (or could not run) and failed — not cancelled or timed
  /// out (those are is_success() == is_failure() == false, as in the crate).
  bool is_failure() const noexcept { return state() == task::TaskState::Failed; }
  /// stdout as text: valid UTF-8 is kept, each invalid byte becomes U+FFFD.
  std::string stdout_string() const;
  /// stderr as text, the same way.
  std::string stderr_string() const;
  /// A Succeeded result of task `id` that ran for `wall` (exit code 0) — for executors and tests.
  static ExecutionResult success(task::TaskId id, std::chrono::nanoseconds wall);
  /// A Failed result of task `id` with `error`, after `wall` (exit code -1: it did not exit).
  static ExecutionResult failure(task::TaskId id, std::string error, std::chrono::nanoseconds wall);
};

/// The crate's state for a final Status: Succeeded -> Completed, TimedOut -> TimedOut,
/// Cancelled -> Cancelled, anything else (failed, signaled, launch-failed, skipped, rejected)
/// -> Failed.
task::TaskState task_state(Status status) noexcept;
/// Replaces each byte of `bytes` that is not part of a valid UTF-8 sequence with U+FFFD.
std::string utf8_lossy(std::string_view bytes);

}  // namespace pepita::executor
