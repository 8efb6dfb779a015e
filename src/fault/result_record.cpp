// ExecutionResult <-> JournalRecord: the only place that lists a result's fields for the journal.
#include "pepita/fault/result_record.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>

namespace pepita::fault {
namespace {

// The Allocation as one line of text ("cpus=2 cores=0,1 memory=1048576 gpus=0 pids=64"), for
// the journal's provenance.
std::string describe(const task::Allocation& a) {
  std::string s = "attempt=" + std::to_string(a.attempt);
  auto field = [&](std::string_view k, const std::string& v) {
    if (!s.empty()) s.push_back(' ');
    s.append(k).append("=").append(v);
  };
  if (a.cpus > 0) field("cpus", std::to_string(a.cpus));
  if (!a.cores.empty()) {
    std::string cores;
    for (unsigned c : a.cores) cores.append(cores.empty() ? "" : ",").append(std::to_string(c));
    field("cores", cores);
  }
  if (a.memory > 0) field("memory", std::to_string(a.memory));
  if (!a.gpus.empty()) field("gpus", a.gpu_list());
  for (const auto& [name, amount] : a.named) field(name, std::to_string(amount));
  if (a.pids > 0) field("pids", std::to_string(a.pids));
  return s;
}

}  // namespace

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
  // Issue 24: provenance. The result has no start time: the attempt ended now and lasted `wall`
  // (a result from the cache took no time here).
  rec.from_cache = r.from_cache;
  rec.host = r.host;
  rec.binary_sha256 = r.binary_sha256;
  rec.input_hashes = r.input_hashes;
  rec.output_hashes = r.output_hashes;
  if (r.allocation) rec.resources = describe(*r.allocation);
  rec.finished_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  // A wall time that cannot be real (negative, or longer than the clock has run) gives no start
  // earlier than the end; the subtraction must not overflow on it either.
  const bool plausible = rec.wall_ns > 0 && rec.wall_ns <= rec.finished_unix_ns;
  rec.started_unix_ns =
      r.from_cache || !plausible ? rec.finished_unix_ns : rec.finished_unix_ns - rec.wall_ns;
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
  r.from_cache = rec.from_cache;
  r.host = rec.host;
  r.binary_sha256 = rec.binary_sha256;
  r.input_hashes = rec.input_hashes;
  r.output_hashes = rec.output_hashes;
  r.attempts = rec.attempt;
  r.from_journal = true;
  return r;
}

}  // namespace pepita::fault
