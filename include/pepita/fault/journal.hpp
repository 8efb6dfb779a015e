#pragma once
// Crash-safe, append-only record of a job's progress: which tasks were submitted, started and
// finished (with exit status, output digest and output). Each record is framed as
// [u32 length][u32 CRC32C(payload)][payload], little endian, after an 8-byte file magic — the
// LevelDB/RocksDB log idea without blocks. A record torn by a crash mid-append fails its length
// or CRC check at the tail and is dropped (and truncated away) on the next open.
// Format 2 (magic "PEPJRNL2") appends the output byte counts to Finished records; format 1
// files ("PEPJRNL1") still load, and resuming one rewrites its magic to 2 before appending, so an
// older pepita refuses the file (bad magic) instead of misreading its new records.
// Format 3 ("PEPJRNL3", issue 24) makes the journal a hash chain, optionally MACed: each payload
// starts with [u8 auth][u64 sequence][32-byte SHA-256 of the previous payload (the first record:
// of the magic)][32-byte HMAC-SHA256(key, auth|sequence|prev|body) when auth = 1], then the
// record body. A clean close appends an End record (count + chain head), so verify_journal tells
// a cut tail or a crash from a complete journal. Resuming a format 1 or 2 file rewrites it as
// format 3 (atomically, by rename); resuming a format 3 file cuts its End record and continues
// the chain. The key is a file (read_key_file, mode 0600, >= 32 bytes).
//
//   auto j = Journal::open("job.journal", Journal::Mode::Resume).value();
//   for (const auto& r : j->recovered()) if (r.type == RecordType::Finished) reuse(r);
//   j->append(record);  j->commit();  // commit = group-committed fdatasync
//   j->sync();                        // synchronous barrier, e.g. before exit

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::fault {

enum class RecordType : std::uint8_t { Submitted = 1, Started = 2, Finished = 3 };

/// One journal record. `name` and `spec_digest` identify the task in every record; `attempt` is
/// set on Started; the remaining fields only on Finished.
struct JournalRecord {
  RecordType type = RecordType::Submitted;
  std::string name;
  std::string spec_digest;
  std::uint32_t attempt = 0;
  // Finished only:
  std::uint8_t status = 0;  // executor::Status, stored as its integer value
  std::int32_t exit_code = 0;
  std::int32_t signal = 0;
  std::int64_t wall_ns = 0;
  std::int64_t cpu_ns = 0;
  std::int64_t max_rss_kb = 0;
  std::string output_digest;  // SHA-256 hex of stdout; filled by append() when empty
  std::string stdout_data;
  std::string stderr_data;
  std::string error;
  // Journal format 2 (appended after `error`); a format 1 record reads them as the output sizes.
  std::uint64_t stdout_bytes = 0;  // total written, including what the output cap dropped
  std::uint64_t stderr_bytes = 0;
  // Issue 21 (appended after the byte counts only when non-empty, so a record without metadata is
  // byte-for-byte a format 2 record): the task's metadata labels.
  std::map<std::string, std::string> metadata;
  // Issue 24 (format 3): provenance of a Finished record, mirroring executor::ExecutionResult's
  // fields of the same names.
  bool from_cache = false;
  std::string host;
  std::string binary_sha256;
  std::map<std::string, std::string> input_hashes;   // declared path -> SHA-256 hex
  std::map<std::string, std::string> output_hashes;  // declared path -> SHA-256 hex
  std::string resources;             // the Allocation granted, as text ("" for none)
  std::int64_t started_unix_ns = 0;  // wall-clock start and end of the attempt
  std::int64_t finished_unix_ns = 0;

  bool operator==(const JournalRecord&) const = default;
};

/// Serialises a record's body (no frame, no chain header), in format 3: a Finished record always
/// carries the metadata count and the provenance fields. Exposed for tests and tools.
std::string encode_record(const JournalRecord& record);
/// Parses a body of format 1, 2 or 3 (a Finished record without byte counts gets the output
/// sizes; one without provenance gets defaults); Corrupted when it is malformed.
Result<JournalRecord> decode_record(std::string_view payload);

/// The smallest journal key accepted (bytes of the key file).
inline constexpr std::size_t kJournalKeyMinBytes = 32;
/// Reads a journal key file (pepita::read_key_file with kJournalKeyMinBytes).
Result<std::string> load_journal_key(const std::string& path);

/// What reading a journal file found.
struct Recovery {
  std::vector<JournalRecord> records;
  std::uint64_t valid_bytes = 0;  // the file's intact prefix, magic included
  std::uint64_t torn_bytes = 0;   // bytes of a torn tail record that were ignored
  std::uint32_t format = 3;       // 1, 2 or 3, from the magic
  // Format 3 only:
  bool keyed = false;               // the records carry MACs
  bool ended = false;               // the intact prefix ends with an End record
  std::uint64_t end_offset = 0;     // where that End record starts (resume cuts it)
  std::string chain_head;           // raw SHA-256 the next appended record must carry as prev
  std::uint64_t next_sequence = 0;  // the next appended record's sequence number
};

/// Reads every intact record of `path` (End records are not listed). A missing file, an empty
/// file or a torn magic is an empty journal. A bad record at the tail is a torn write and is
/// ignored; a bad record with intact data after it, or a broken hash chain, is Corrupted (the
/// file was damaged, not torn by a crash). With `key`, every MAC is checked too (Corrupted when
/// one does not match, or when the journal has no MACs); without it MACs are not checked.
Result<Recovery> read_journal(const std::string& path,
                              const std::optional<std::string>& key = std::nullopt);

/// What verify_journal found. `valid` is true only for an intact, complete (End record present)
/// format 3 journal whose chain (and MACs, when a key was given) all check.
struct JournalVerification {
  bool valid = false;
  std::uint32_t format = 3;
  bool keyed = false;         // the journal carries MACs
  bool macs_checked = false;  // a key was given and the MACs were checked
  bool ended = false;         // an End record closes the journal
  std::uint64_t records = 0;  // records (End excluded) that checked before the first problem
  std::optional<std::uint64_t> bad_record;  // 0-based index of the first bad record
  std::string reason;                       // why it is invalid ("" when valid)
};

/// Checks the hash chain, sequence numbers, End record and (with `key`) MACs of a journal.
/// Problems in the journal are reported in the result, not as errors: an edited record (MAC
/// mismatch, CRC failure, or a hash that the next record does not carry), a dropped or reordered
/// record (sequence / chain break), a cut tail (no End record), a wrong key (no record's MAC
/// matches). Errors: NotFound / Io when the file cannot be read, Corrupted when it is not a
/// pepita journal.
Result<JournalVerification> verify_journal(const std::string& path,
                                           const std::optional<std::string>& key = std::nullopt);

class Journal {
 public:
  enum class Mode : std::uint8_t {
    Truncate,  // start an empty journal (a fresh run)
    Resume,    // keep and recover the existing records, cut any torn tail, append after them
  };

  /// Opens (creating it and its parent's entry durably) the journal at `path`.
  /// Errors: Io/PermissionDenied from the filesystem, Corrupted for a damaged journal or a file
  /// that is not a pepita journal (move it away or run without resume).
  static Result<std::unique_ptr<Journal>> open(const std::string& path, Mode mode);
  /// The same, MACing every record with `key` (raw bytes, >= kJournalKeyMinBytes; see
  /// load_journal_key). Resuming a format 3 journal needs the key it was written with (Corrupted
  /// otherwise), and a journal written without a key cannot be resumed with one.
  static Result<std::unique_ptr<Journal>> open(const std::string& path, Mode mode,
                                               std::optional<std::string> key);
  ~Journal();
  Journal(const Journal&) = delete;

  struct Private {
    explicit Private() = default;
  };
  /// Use open(); public only so std::make_unique can reach it.
  Journal(Private, std::string path, UniqueFd fd, std::vector<JournalRecord> recovered,
          std::uint64_t torn, std::optional<std::string> key, std::string chain_head,
          std::uint64_t sequence);
  Journal& operator=(const Journal&) = delete;

  /// Records found when opened in Resume mode (empty for Truncate).
  const std::vector<JournalRecord>& recovered() const noexcept { return recovered_; }
  std::uint64_t torn_bytes() const noexcept { return torn_bytes_; }
  const std::string& path() const noexcept { return path_; }

  /// Appends one record with a single write(2), so a killed process leaves it either whole in
  /// the page cache or absent; not yet durable against power loss. Thread-safe.
  Result<void> append(JournalRecord record);
  /// Issue 27: encodes and chains one record into a buffer, in order after every record staged
  /// or appended before it; the next flush() (or append(), sync(), close()) writes everything
  /// staged with one write(2). A caller that makes several records at once (a pool finishing
  /// one task and starting the next) pays one system call for them. Staged records are lost,
  /// unlike appended ones, if the process dies before that flush. Thread-safe.
  Result<void> stage(JournalRecord record);
  /// Writes the staged records with one write(2); on an error none of them counts (the chain
  /// continues from the last record written) and the error is returned. Thread-safe.
  Result<void> flush();
  /// Asks the background syncer to fdatasync within 10 ms (group commit: that window's commits
  /// share one fdatasync; only a power loss inside it loses records). Returns at once.
  void commit();
  /// Flushes staged records, then fdatasyncs now and waits; the first error of any earlier
  /// background sync is returned too.
  Result<void> sync();
  /// Appends the End record (record count + chain head) and syncs; later appends fail. When a
  /// write fails (the End record, or records staged before it) the error is returned and the
  /// journal stays open, so close() may be called again. The destructor closes when close() was
  /// not called. A journal without an End record was cut or its run crashed (verify_journal says
  /// so).
  Result<void> close();

 private:
  void sync_loop(std::stop_token stop);
  // Frames one chained payload into staged_ and advances the chain (flush_locked() writes it,
  // or rolls the chain back). Caller holds write_mu_.
  void stage_frame(const std::string& payload);
  // Under write_mu_: stage() and flush() without taking it.
  Result<void> stage_locked(JournalRecord record);
  Result<void> flush_locked();

  std::string path_;
  UniqueFd fd_;
  std::vector<JournalRecord> recovered_;
  std::uint64_t torn_bytes_ = 0;
  std::optional<std::string> key_;
  std::mutex write_mu_;         // serialises appends so records never interleave
  std::string chain_head_;      // under write_mu_: raw SHA-256 of the last payload
  std::uint64_t sequence_ = 0;  // under write_mu_: the next record's sequence number
  bool closed_ = false;         // under write_mu_
  std::string broken_;          // under write_mu_: why nothing more may be appended ("" = may)
  std::string staged_;          // under write_mu_: framed records stage() made, not yet written
  std::string flushed_head_;    // under write_mu_: chain_head_ and sequence_ before staged_
  std::uint64_t flushed_sequence_ = 0;
  std::mutex sync_mu_;
  std::condition_variable_any sync_cv_;
  bool dirty_ = false;
  int sync_errno_ = 0;
  // Declared last: joined first on destruction, while fd_ is still open.
  std::jthread syncer_;
};

}  // namespace pepita::fault
