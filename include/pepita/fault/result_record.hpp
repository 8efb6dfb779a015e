#pragma once
// The one mapping between executor::ExecutionResult and the journal's Finished record: the pool
// writes a finished task only through finished_record and replays one only through
// replayed_result, so every outcome field the journal keeps is listed here once (the wire's
// counterpart is transport/result_codec.hpp).
//
//   journal.append(finished_record(result, task.spec_digest()));
//   ExecutionResult again = replayed_result(recovered_record);  // from_journal == true

#include <string>

#include "pepita/executor/result.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::fault {

/// The Finished record of `result` (its name, attempts and every outcome field) for the task
/// whose spec digest is `spec_digest`. output_digest is left empty: Journal::append fills it.
JournalRecord finished_record(const executor::ExecutionResult& result, std::string spec_digest);

/// The ExecutionResult a Finished record stands for, with from_journal set, attempts taken from
/// the record and id 0 (the pool assigns it). A status byte out of range reads as Failed.
executor::ExecutionResult replayed_result(const JournalRecord& record);

}  // namespace pepita::fault
