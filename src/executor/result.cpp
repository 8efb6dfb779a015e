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
  }
  return "unknown";
}

}  // namespace pepita::executor
