// ExecutionResult <-> ResultMsg: the only place that lists a result's fields for the wire.
#include "pepita/transport/result_codec.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace pepita::transport {

TaskStatus to_wire_status(executor::Status status) noexcept {
  switch (status) {
    case executor::Status::Succeeded: return TaskStatus::Succeeded;
    case executor::Status::Failed: return TaskStatus::Failed;
    case executor::Status::Signaled: return TaskStatus::Signaled;
    case executor::Status::TimedOut: return TaskStatus::TimedOut;
    case executor::Status::LaunchFailed: return TaskStatus::SpawnError;
    case executor::Status::Cancelled: return TaskStatus::Cancelled;
    case executor::Status::Skipped: return TaskStatus::Skipped;
    case executor::Status::Rejected: return TaskStatus::Rejected;
    case executor::Status::OutOfMemory: return TaskStatus::OutOfMemory;
    case executor::Status::Sandboxed: return TaskStatus::Sandboxed;
  }
  return TaskStatus::Failed;
}

executor::Status to_executor_status(TaskStatus status) noexcept {
  switch (status) {
    case TaskStatus::Succeeded: return executor::Status::Succeeded;
    case TaskStatus::Failed: return executor::Status::Failed;
    case TaskStatus::Signaled: return executor::Status::Signaled;
    case TaskStatus::TimedOut: return executor::Status::TimedOut;
    case TaskStatus::Cancelled: return executor::Status::Cancelled;
    case TaskStatus::SpawnError:
    case TaskStatus::Returned: return executor::Status::LaunchFailed;
    case TaskStatus::Skipped: return executor::Status::Skipped;
    case TaskStatus::Rejected: return executor::Status::Rejected;
    case TaskStatus::OutOfMemory: return executor::Status::OutOfMemory;
    case TaskStatus::Sandboxed: return executor::Status::Sandboxed;
  }
  return executor::Status::Failed;
}

ResultMsg to_result_msg(executor::ExecutionResult r, std::uint32_t attempt) {
  return ResultMsg{.attempt = attempt,
                   .status = to_wire_status(r.status),
                   .exit_code = r.exit_code,
                   .signal = r.signal,
                   .wall_ns = r.wall.count(),
                   .stdout_data = std::move(r.stdout_data),
                   .stderr_data = std::move(r.stderr_data),
                   .error = std::move(r.error),
                   .cpu_ns = r.cpu.count(),
                   .max_rss_kb = r.max_rss_kb,
                   .stdout_bytes = r.stdout_bytes,
                   .stderr_bytes = r.stderr_bytes,
                   .peak_memory = r.peak_memory,
                   .memory_limit = r.memory_limit,
                   .allocation = std::move(r.allocation)};
}

executor::ExecutionResult to_execution_result(ResultMsg m, task::TaskId id, std::string name) {
  executor::ExecutionResult r;
  r.id = id;
  r.name = std::move(name);
  r.status = to_executor_status(m.status);
  r.exit_code = m.exit_code;
  r.signal = m.signal;
  r.wall = std::chrono::nanoseconds(m.wall_ns);
  r.cpu = std::chrono::nanoseconds(m.cpu_ns);
  r.max_rss_kb = m.max_rss_kb;
  // Results made on the driver itself (lost worker, cancel) carry output without counts.
  r.stdout_bytes = std::max<std::uint64_t>(m.stdout_bytes, m.stdout_data.size());
  r.stderr_bytes = std::max<std::uint64_t>(m.stderr_bytes, m.stderr_data.size());
  r.stdout_data = std::move(m.stdout_data);
  r.stderr_data = std::move(m.stderr_data);
  r.error = std::move(m.error);
  r.peak_memory = m.peak_memory;
  r.memory_limit = m.memory_limit;
  r.allocation = std::move(m.allocation);
  return r;
}

Bytes encode_result(const executor::ExecutionResult& result, std::uint32_t attempt) {
  return encode(to_result_msg(result, attempt));
}

Result<executor::ExecutionResult> decode_execution_result(ByteSpan payload, task::TaskId id,
                                                          std::string name) {
  return to_execution_result(PEPITA_TRY(decode_result(payload)), id, std::move(name));
}

}  // namespace pepita::transport
