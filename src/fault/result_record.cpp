// ExecutionResult <-> JournalRecord: the only place that lists a result's fields for the journal.
#include "pepita/fault/result_record.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace pepita::fault {

JournalRecord finished_record(const executor::ExecutionResult& r, std::string spec_digest) {
  JournalRecord rec;
  rec.type = RecordType::Finished;
  rec.name = r.name;
  rec.spec_digest = std::move(spec_digest);
  rec.attempt = r.attempts;
  rec.status = static_cast<std::uint8_t>(r.status);
  rec.exit_code = r.exit_code;
  rec.signal = r.signal;
  rec.wall_ns = r.wall.count();
  rec.cpu_ns = r.cpu.count();
  rec.max_rss_kb = r.max_rss_kb;
  rec.stdout_data = r.stdout_data;
  rec.stderr_data = r.stderr_data;
  rec.stdout_bytes = r.stdout_bytes;
  rec.stderr_bytes = r.stderr_bytes;
  rec.error = r.error;
  rec.metadata = r.metadata;
  return rec;
}

executor::ExecutionResult replayed_result(const JournalRecord& rec) {
  executor::ExecutionResult r;
  r.name = rec.name;
  r.status = rec.status < executor::kStatusCount ? static_cast<executor::Status>(rec.status)
                                                 : executor::Status::Failed;
  r.exit_code = rec.exit_code;
  r.signal = rec.signal;
  r.wall = std::chrono::nanoseconds(rec.wall_ns);
  r.cpu = std::chrono::nanoseconds(rec.cpu_ns);
  r.max_rss_kb = rec.max_rss_kb;
  r.stdout_data = rec.stdout_data;
  r.stderr_data = rec.stderr_data;
  // Records of format 1 carry no counts (decode_record reads them as the output's size).
  r.stdout_bytes = std::max<std::uint64_t>(rec.stdout_bytes, rec.stdout_data.size());
  r.stderr_bytes = std::max<std::uint64_t>(rec.stderr_bytes, rec.stderr_data.size());
  r.error = rec.error;
  r.metadata = rec.metadata;
  r.attempts = rec.attempt;
  r.from_journal = true;
  return r;
}

}  // namespace pepita::fault
