#pragma once
// The one mapping between executor::ExecutionResult and the wire's Result message
// (docs/protocol.md, "Messages", protocol 3). The worker builds its Result only with
// to_result_msg and the driver reads one only with to_execution_result, so every outcome field
// (status, exit code, signal, wall and CPU time, peak RSS, output, byte counts, error, peak
// memory, memory limit and the allocation it ran with) crosses
// the wire; id, name, attempts and from_journal belong to the driver and are not sent.
//
//   Bytes p = encode_result(er, /*attempt=*/1);             // worker
//   auto back = PEPITA_TRY(decode_execution_result(p, id, name));  // driver

#include <cstdint>
#include <string>

#include "pepita/error.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/transport/messages.hpp"

namespace pepita::transport {

/// executor::Status -> wire status; total and one-to-one.
TaskStatus to_wire_status(executor::Status status) noexcept;
/// Wire status -> executor::Status; the inverse of to_wire_status, and Returned (the worker gave
/// the task back unstarted: the dispatcher re-queues it, so an executor sees it only when no
/// worker is left) maps to LaunchFailed.
executor::Status to_executor_status(TaskStatus status) noexcept;

/// The Result message carrying `result`'s outcome for attempt `attempt`.
ResultMsg to_result_msg(executor::ExecutionResult result, std::uint32_t attempt);
/// The ExecutionResult a Result message stands for; `id` and `name` are the driver's task. Byte
/// counts below the output carried (a Result the driver made itself) read as the output's size.
executor::ExecutionResult to_execution_result(ResultMsg msg, task::TaskId id, std::string name);

/// ExecutionResult -> Result payload: encode(to_result_msg(result, attempt)).
Bytes encode_result(const executor::ExecutionResult& result, std::uint32_t attempt);
/// Result payload -> ExecutionResult. Protocol error (saying at which byte) for a truncated
/// payload, e.g. a protocol-1 Result, and for trailing bytes or an unknown status.
Result<executor::ExecutionResult> decode_execution_result(ByteSpan payload, task::TaskId id = 0,
                                                          std::string name = {});

}  // namespace pepita::transport
