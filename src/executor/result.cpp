// Status names (stable: used in JSON output and the journal).
#include "pepita/executor/result.hpp"

namespace pepita::executor {

std::string_view to_string(Status status) noexcept {
  switch (status) {
    case Status::Succeeded: return "succeeded";
    case Status::Failed: return "failed";
    case Status::Signaled: return "signaled";
    case Status::TimedOut: return "timed-out";
    case Status::LaunchFailed: return "launch-failed";
    case Status::Cancelled: return "cancelled";
    case Status::Skipped: return "skipped";
    case Status::Rejected: return "rejected";
    case Status::OutOfMemory: return "oom";
    case Status::Sandboxed: return "sandbox";
  }
  return "unknown";
}

// ---- issue 21 (pool): the crate's ExecutionResult helpers ----

task::TaskState task_state(Status status) noexcept {
  switch (status) {
    case Status::Succeeded: return task::TaskState::Completed;
    case Status::TimedOut: return task::TaskState::TimedOut;
    case Status::Cancelled: return task::TaskState::Cancelled;
    case Status::Failed:
    case Status::Signaled:
    case Status::LaunchFailed:
    case Status::Skipped:
    case Status::Rejected:
    case Status::OutOfMemory:
    case Status::Sandboxed: return task::TaskState::Failed;
  }
  return task::TaskState::Failed;
}

task::TaskState ExecutionResult::state() const noexcept { return task_state(status); }

std::string utf8_lossy(std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());  // SAFETY: same bytes
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (RFC 3629 table)
    if (c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlong forms
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    }
    bool valid = len > 0 && i + len <= n;
    for (std::size_t k = 1; valid && k < len; ++k) {
      const unsigned char b = p[i + k];
      valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    }
    if (valid) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      out.append(kReplacement);
      ++i;
    }
  }
  return out;
}

std::string ExecutionResult::stdout_string() const { return utf8_lossy(stdout_data); }
std::string ExecutionResult::stderr_string() const { return utf8_lossy(stderr_data); }

ExecutionResult ExecutionResult::success(task::TaskId id, std::chrono::nanoseconds wall) {
  ExecutionResult r;
  r.id = id;
  r.status = Status::Succeeded;
  r.exit_code = 0;
  r.wall = wall;
  return r;
}

ExecutionResult ExecutionResult::failure(task::TaskId id, std::string error,
                                         std::chrono::nanoseconds wall) {
  ExecutionResult r;
  r.id = id;
  r.status = Status::Failed;
  r.exit_code = -1;
  r.error = std::move(error);
  r.wall = wall;
  return r;
}

}  // namespace pepita::executor
