#pragma once
// Payloads of the post-handshake messages (docs/protocol.md, "Messages"): plain structs with an
// encode() and a pure decode() that checks every length against the bytes it was given and
// returns Protocol on anything malformed (truncated field, trailing bytes, oversized list).
//
//   Bytes p = encode(SubmitMsg{.attempt = 1, .kind = TaskKind::Process, .path = "/bin/true"});
//   auto back = PEPITA_TRY(decode_submit(p));

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/frame.hpp"

namespace pepita::transport {

/// Register: what a worker offers, sent right after AuthOk.
struct RegisterMsg {
  std::uint32_t slots = 0;
  std::vector<std::string> backends{};  // "process", "cpu"
  std::map<std::string, std::string> labels{};
  std::string name{};  // worker host name, for logs
  /// Protocol 3: what the worker offers (detected, then `--resources`/`--cpus`/`--memory`
  /// overrides; a Slurm worker: what Slurm granted). The dispatcher keeps a task::Ledger of it
  /// and places resource requests by it.
  task::Inventory inventory{};
  bool operator==(const RegisterMsg&) const = default;
};

enum class TaskKind : std::uint8_t {
  Process = 1,   // exec `path` with args/env/cwd/stdin
  Function = 2,  // call the worker's registered function `path` with `stdin_data` as input
};

/// A file a task needs: the blob `sha256` (already uploaded) placed as `name` in the task's
/// scratch directory.
struct FileRef {
  std::string name{};
  Digest sha256{};
  bool executable = false;
  bool operator==(const FileRef&) const = default;
};

/// Protocol 5 (issue 24): a declared file staged between driver and worker, content-addressed.
/// `path` is relative to the task's working directory (no "..", not absolute; see
/// check_staged_path).
struct StagedFile {
  std::string path{};
  std::uint64_t size = 0;
  Digest sha256{};
  bool operator==(const StagedFile&) const = default;
};

/// OK when `path` may name a staged file: relative, non-empty, no "." or ".." component, no NUL,
/// at most 4096 bytes. InvalidArgument naming `what` ("input", "output") otherwise.
Result<void> check_staged_path(std::string_view path, std::string_view what);

/// Submit: run one task (the frame's request id is the task id).
struct SubmitMsg {
  std::uint32_t attempt = 0;
  TaskKind kind = TaskKind::Process;
  std::string path{};  // executable path, "blob:<sha256 hex>", or a function name
  std::vector<std::string> args{};
  std::map<std::string, std::string> env{};
  bool inherit_env = true;
  std::string cwd{};
  std::string stdin_data{};
  std::uint64_t timeout_ns = 0;  // 0 = none
  std::uint64_t output_cap = 1 << 20;
  std::vector<FileRef> files{};
  /// Protocol 3: what the dispatcher took for this attempt from the worker's Ledger (GPU ids,
  /// cores, memory limit, ...); the worker runs the task with it (its cgroup, affinity and GPU
  /// variables). nullopt: the task requested nothing.
  std::optional<task::Allocation> allocation{};
  /// Protocol 4: the sandbox the driver asks for (issue 23). The worker runs the task in it
  /// raised to its own floor (WorkerOptions::sandbox, `pepita worker --sandbox`): a driver
  /// can ask for more isolation than the worker's floor, never for less.
  task::SandboxPolicy sandbox{};
  /// Protocol 5: the task's declared inputs. The worker fetches the blobs it lacks (FetchBlob),
  /// keeps them in its content-addressed store and materialises each read-only at `path` in the
  /// task's own directory, where the task then runs (cwd is ignored).
  std::vector<StagedFile> inputs{};
  /// Protocol 5: the task's declared outputs, relative to its directory; after a success the
  /// worker sends each back (OutputChunk) and lists them in ResultMsg::outputs.
  std::vector<std::string> outputs{};
  bool operator==(const SubmitMsg&) const = default;
};

/// How a task attempt ended on the worker.
enum class TaskStatus : std::uint8_t {
  Succeeded = 0,   // exit code 0 / function returned a value
  Failed = 1,      // non-zero exit / function returned an error
  Signaled = 2,    // killed by a signal
  TimedOut = 3,    // hit its timeout and was killed
  Cancelled = 4,   // a Cancel frame stopped it
  SpawnError = 5,  // could not start (missing binary, unknown blob or function)
  Returned = 6,    // the worker is draining and gives the unstarted task back
  Skipped = 7,     // never ran: a dependency failed (executor::Status::Skipped; protocol 2)
  Rejected = 8,    // never ran: a circuit breaker was open (executor::Status::Rejected; protocol 2)
  OutOfMemory = 9,  // killed by its memory limit (executor::Status::OutOfMemory; protocol 3)
  Sandboxed = 10,   // stopped by its sandbox (executor::Status::Sandboxed; protocol 4)
};
inline constexpr std::uint8_t kMaxTaskStatus = 10;
std::string_view to_string(TaskStatus status) noexcept;

/// Result: how one attempt ended. Built from an executor::ExecutionResult and turned back into
/// one only through result_codec.hpp, which owns the field mapping.
struct ResultMsg {
  std::uint32_t attempt = 0;
  TaskStatus status = TaskStatus::Succeeded;
  std::int32_t exit_code = 0;
  std::int32_t signal = 0;
  std::int64_t wall_ns = 0;
  std::string stdout_data{};
  std::string stderr_data{};
  std::string error{};
  // Protocol 2:
  std::int64_t cpu_ns = 0;         // user + system CPU time of the process tree
  std::int64_t max_rss_kb = 0;     // peak resident set
  std::uint64_t stdout_bytes = 0;  // total written, including what the output cap dropped;
                                   // read as at least stdout_data.size()
  std::uint64_t stderr_bytes = 0;
  // Protocol 3:
  std::uint64_t peak_memory = 0;                 // the task cgroup's peak, bytes (0: ran in none)
  std::uint64_t memory_limit = 0;                // the limit it ran under, bytes (0: none)
  std::optional<task::Allocation> allocation{};  // what it ran with (nullopt: nothing requested)
  // Protocol 5: the declared outputs as the worker hashed them, in SubmitMsg::outputs order;
  // their bytes came before this Result as OutputChunk frames.
  std::vector<StagedFile> outputs{};
  bool operator==(const ResultMsg&) const = default;
};

struct HeartbeatMsg {
  std::uint64_t sent_ns = 0;  // sender's monotonic clock, echoed for RTT estimates
  std::uint32_t free_slots = 0;
  std::uint32_t running = 0;
  bool operator==(const HeartbeatMsg&) const = default;
};

struct UploadMsg {
  Digest sha256{};
  std::string data{};
  bool operator==(const UploadMsg&) const = default;
};

struct HaveBlobMsg {
  Digest sha256{};
  bool present = false;
  bool operator==(const HaveBlobMsg&) const = default;
};

struct ErrorMsg {
  std::uint16_t code = 0;  // pepita::ErrorCode value
  std::string reason{};
  bool operator==(const ErrorMsg&) const = default;
};

struct StartedMsg {
  std::uint32_t attempt = 0;
  bool operator==(const StartedMsg&) const = default;
};

/// FetchBlob (protocol 5), worker -> driver: send `length` bytes of blob `sha256` from `offset`.
struct FetchBlobMsg {
  Digest sha256{};
  std::uint64_t offset = 0;
  std::uint32_t length = 0;  // at most kMaxChunk
  bool operator==(const FetchBlobMsg&) const = default;
};

/// BlobChunk (protocol 5; a bulk frame since 6, its bytes in Message::bulk and `data` empty),
/// driver -> worker: bytes of an input blob of `size` bytes in all,
/// starting at `offset`; or, with `error` set and no data, why the driver cannot send it.
struct BlobChunkMsg {
  Digest sha256{};
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::string data{};
  std::string error{};
  bool operator==(const BlobChunkMsg&) const = default;
};

/// OutputChunk (protocol 5; a bulk frame since 6, as BlobChunk), worker -> driver (request id =
/// task id): bytes of declared output `index` (SubmitMsg::outputs order) of attempt `attempt`,
/// `size` bytes in all, from `offset`. Every output is sent in order from offset 0, at least one
/// chunk (an empty file: one empty chunk).
struct OutputChunkMsg {
  std::uint32_t attempt = 0;
  std::uint32_t index = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::string data{};
  bool operator==(const OutputChunkMsg&) const = default;
};

/// Largest chunk a FetchBlob may ask for and a BlobChunk/OutputChunk may carry.
inline constexpr std::uint32_t kMaxChunk = 4u << 20;
/// The chunk size staging uses (protocol 6: the largest, so per-frame costs are paid rarely).
inline constexpr std::uint32_t kStageChunk = kMaxChunk;

Bytes encode(const FetchBlobMsg& m);
Bytes encode(const BlobChunkMsg& m);
Bytes encode(const OutputChunkMsg& m);
Result<FetchBlobMsg> decode_fetch_blob(ByteSpan payload);
Result<BlobChunkMsg> decode_blob_chunk(ByteSpan payload);
Result<OutputChunkMsg> decode_output_chunk(ByteSpan payload);

/// Live logs (protocol 5, issue 24): one chunk of task <request id>'s output, in order per
/// stream, sent while it runs. stream: 1 stdout, 2 stderr (task::LogStream's values).
struct LogMsg {
  std::uint8_t stream = 1;
  std::string data{};
  bool operator==(const LogMsg&) const = default;
};

Bytes encode(const RegisterMsg& m);
Bytes encode(const SubmitMsg& m);
Bytes encode(const StartedMsg& m);
Bytes encode(const LogMsg& m);
Bytes encode(const ResultMsg& m);
Bytes encode(const HeartbeatMsg& m);
Bytes encode(const UploadMsg& m);
Bytes encode(const HaveBlobMsg& m);
Bytes encode(const ErrorMsg& m);

Result<RegisterMsg> decode_register(ByteSpan payload);
Result<SubmitMsg> decode_submit(ByteSpan payload);
Result<StartedMsg> decode_started(ByteSpan payload);
/// Protocol when the stream is not 1 or 2.
Result<LogMsg> decode_log(ByteSpan payload);
Result<ResultMsg> decode_result(ByteSpan payload);
Result<HeartbeatMsg> decode_heartbeat(ByteSpan payload);
Result<UploadMsg> decode_upload(ByteSpan payload);
Result<HaveBlobMsg> decode_have_blob(ByteSpan payload);
Result<ErrorMsg> decode_error(ByteSpan payload);

}  // namespace pepita::transport
