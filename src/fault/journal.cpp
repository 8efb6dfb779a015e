// Journal framing, recovery (torn-tail vs corruption) and the group-commit syncer.
#include "pepita/fault/journal.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "detail/journal_format.hpp"
#include "pepita/core/crc32c.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/key_file.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::fault {
namespace {

using detail::get_u32_at;
using detail::kFrame;
using detail::kMaxPayload;
using detail::put_u32;
using detail::put_u64;

void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}
void put_map(std::string& out, const std::map<std::string, std::string>& m) {
  put_u32(out, static_cast<std::uint32_t>(m.size()));
  for (const auto& [k, v] : m) {
    put_str(out, k);
    put_str(out, v);
  }
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > s_.size()) return false;
    v = static_cast<std::uint8_t>(s_[pos_++]);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (pos_ + 4 > s_.size()) return false;
    v = get_u32_at(s_, pos_);
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& v) {
    std::uint32_t lo = 0, hi = 0;
    if (!u32(lo) || !u32(hi)) return false;
    v = (std::uint64_t{hi} << 32) | lo;
    return true;
  }
  bool i32(std::int32_t& v) {
    std::uint32_t u = 0;
    if (!u32(u)) return false;
    v = static_cast<std::int32_t>(u);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool str(std::string& v) {
    std::uint32_t n = 0;
    if (!u32(n) || n > s_.size() - pos_) return false;
    v.assign(s_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool map(std::map<std::string, std::string>& m) {
    std::uint32_t n = 0;
    if (!u32(n)) return false;
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string k, v;
      if (!str(k) || !str(v)) return false;
      m.insert_or_assign(std::move(k), std::move(v));
    }
    return true;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  const int64_t n = sys::write_full(fd, data.data(), data.size());
  if (n < 0) return fail_errno(static_cast<int>(n), "write journal " + path);
  return {};
}

Result<void> fsync_parent(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int raw = sys::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (raw < 0) return fail_errno(raw, "open journal directory " + parent.string());
  UniqueFd dir(raw);
  if (const int rc = sys::fsync(dir.get()); rc < 0) {
    return fail_errno(rc, "fsync " + parent.string());
  }
  return {};
}

}  // namespace

std::string encode_record(const JournalRecord& r) {
  std::string out;
  out.reserve(64 + r.name.size() + r.stdout_data.size() + r.stderr_data.size());
  out.push_back(static_cast<char>(r.type));
  put_str(out, r.name);
  put_str(out, r.spec_digest);
  put_u32(out, r.attempt);
  if (r.type == RecordType::Finished) {
    out.push_back(static_cast<char>(r.status));
    put_u32(out, static_cast<std::uint32_t>(r.exit_code));
    put_u32(out, static_cast<std::uint32_t>(r.signal));
    put_u64(out, static_cast<std::uint64_t>(r.wall_ns));
    put_u64(out, static_cast<std::uint64_t>(r.cpu_ns));
    put_u64(out, static_cast<std::uint64_t>(r.max_rss_kb));
    put_str(out, r.output_digest);
    put_str(out, r.stdout_data);
    put_str(out, r.stderr_data);
    put_str(out, r.error);
    put_u64(out, r.stdout_bytes);
    put_u64(out, r.stderr_bytes);
    // Format 3: the metadata count (0 allowed) and the provenance always follow.
    put_map(out, r.metadata);
    out.push_back(r.from_cache ? '\1' : '\0');
    put_str(out, r.host);
    put_str(out, r.binary_sha256);
    put_map(out, r.input_hashes);
    put_map(out, r.output_hashes);
    put_str(out, r.resources);
    put_u64(out, static_cast<std::uint64_t>(r.started_unix_ns));
    put_u64(out, static_cast<std::uint64_t>(r.finished_unix_ns));
  }
  return out;
}

Result<JournalRecord> decode_record(std::string_view payload) {
  Reader in(payload);
  JournalRecord r;
  std::uint8_t type = 0;
  bool ok = in.u8(type) && type >= 1 && type <= 3;
  if (ok) r.type = static_cast<RecordType>(type);
  ok = ok && in.str(r.name) && in.str(r.spec_digest) && in.u32(r.attempt);
  if (ok && r.type == RecordType::Finished) {
    ok = in.u8(r.status) && in.i32(r.exit_code) && in.i32(r.signal) && in.i64(r.wall_ns) &&
         in.i64(r.cpu_ns) && in.i64(r.max_rss_kb) && in.str(r.output_digest) &&
         in.str(r.stdout_data) && in.str(r.stderr_data) && in.str(r.error);
    if (ok && in.done()) {  // format 1: no byte counts
      r.stdout_bytes = r.stdout_data.size();
      r.stderr_bytes = r.stderr_data.size();
    } else {
      ok = ok && in.u64(r.stdout_bytes) && in.u64(r.stderr_bytes);
      // Issue 21: the metadata (format 2: only when there are labels; format 3: always).
      if (ok && !in.done()) {
        ok = in.map(r.metadata);
        // Format 2 ends here; format 3 always carries the provenance (issue 24).
        if (ok && in.done()) {
          ok = !r.metadata.empty();
        } else if (ok) {
          std::uint8_t cached = 0;
          ok = in.u8(cached) && cached <= 1 && in.str(r.host) && in.str(r.binary_sha256) &&
               in.map(r.input_hashes) && in.map(r.output_hashes) && in.str(r.resources) &&
               in.i64(r.started_unix_ns) && in.i64(r.finished_unix_ns);
          r.from_cache = cached == 1;
        }
      }
    }
  }
  if (!ok || !in.done()) {
    return fail(ErrorCode::Corrupted, "journal record is malformed (bad type or field lengths)");
  }
  return r;
}

Result<std::string> load_journal_key(const std::string& path) {
  return read_key_file(path, kJournalKeyMinBytes);
}

Result<Recovery> read_journal(const std::string& path, const std::optional<std::string>& key) {
  using namespace detail;
  std::string data;
  PEPITA_TRY_VOID(detail::read_journal_bytes(path, data, /*missing_is_empty=*/true));
  Recovery rec;
  const std::string not_journal =
      path + " is not a pepita journal (bad magic); move it away or run without --resume";
  if (data.size() < kMagicBytes) {
    // Empty, or the magic itself was torn on creation: nothing was ever recorded.
    if (!magic_prefix(data)) return fail(ErrorCode::Corrupted, not_journal);
    rec.torn_bytes = data.size();
    rec.chain_head = sha256_raw(std::string_view(kMagicV3, kMagicBytes));
    return rec;
  }
  rec.format = magic_format(data);
  if (rec.format == 0) return fail(ErrorCode::Corrupted, not_journal);
  std::size_t pos = kMagicBytes;
  const std::string_view view(data);
  std::string prev = sha256_raw(view.substr(0, kMagicBytes));
  std::uint64_t sequence = 0;
  std::string end_prev;
  std::uint64_t end_sequence = 0;
  auto damaged = [&](std::string_view why) {
    return fail(ErrorCode::Corrupted,
                pepita::fmt("{}: record {} (byte {}) {}; the journal was altered. Check it with "
                            "`pepita journal verify {}`, move it away or run without --resume",
                            path, sequence, pos, why, path));
  };
  while (pos < data.size()) {
    const std::size_t left = data.size() - pos;
    auto torn_or_corrupt = [&](std::string_view why) -> Result<void> {
      // A crash can only damage the tail: either the bad record reaches the end of the file, or
      // everything after it is zero fill (a filesystem that extended the file before the data
      // reached it). Anything else is real damage and must not be silently skipped.
      const bool all_zero = std::all_of(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end(),
                                        [](char c) { return c == 0; });
      std::uint32_t len = left >= 4 ? get_u32_at(view, pos) : 0;
      const bool reaches_end =
          left < kFrame || len > left - kFrame || pos + kFrame + len == data.size();
      if (all_zero || reaches_end) {
        rec.valid_bytes = pos;
        rec.torn_bytes = left;
        return {};
      }
      return fail(ErrorCode::Corrupted, path + ": record at byte " + std::to_string(pos) + " " +
                                            std::string(why) +
                                            " and intact data follows; the journal is damaged. "
                                            "Move it away or run without --resume");
    };
    if (left < kFrame) {
      PEPITA_TRY_VOID(torn_or_corrupt("is truncated"));
      break;
    }
    const std::uint32_t len = get_u32_at(view, pos);
    const std::uint32_t crc = get_u32_at(view, pos + 4);
    if (len == 0 || len > kMaxPayload || len > left - kFrame) {
      PEPITA_TRY_VOID(torn_or_corrupt("has an impossible length"));
      break;
    }
    const std::string_view payload = view.substr(pos + kFrame, len);
    if (crc32c(payload) != crc) {
      PEPITA_TRY_VOID(torn_or_corrupt("fails its CRC32C"));
      break;
    }
    std::string_view body = payload;
    if (rec.format == 3) {
      const auto chained = split_payload(payload);
      if (!chained) {
        PEPITA_TRY_VOID(torn_or_corrupt("does not decode"));
        break;
      }
      if (chained->sequence != sequence || chained->prev != prev) {
        return damaged("breaks the hash chain (a record was dropped, reordered or edited)");
      }
      if (sequence == 0) rec.keyed = chained->keyed;
      if (chained->keyed != rec.keyed) return damaged("mixes MACed and unMACed records");
      if (key && !chained->keyed) {
        return fail(ErrorCode::Corrupted,
                    path +
                        " was written without a key (its records carry no MAC); run without "
                        "--journal-key or start a fresh run");
      }
      if (key && !same_bytes(hmac_raw(*key, chained->signed_part, chained->body), chained->mac)) {
        return damaged(
            "fails its MAC: the key is not the one it was written with, or the record "
            "was edited");
      }
      body = chained->body;
      if (is_end_body(body)) {
        const auto end = parse_end(body);
        if (!end || end->head != prev) return damaged("is a malformed End record");
        rec.ended = true;
        rec.end_offset = pos;
        end_prev = prev;
        end_sequence = sequence;
      } else {
        rec.ended = false;
      }
      prev = sha256_raw(payload);
      ++sequence;
      if (rec.ended) {
        pos += kFrame + len;
        continue;
      }
    }
    auto record = decode_record(body);
    if (!record) {
      PEPITA_TRY_VOID(torn_or_corrupt("does not decode"));
      break;
    }
    rec.records.push_back(std::move(*record));
    pos += kFrame + len;
  }
  if (rec.torn_bytes == 0) rec.valid_bytes = pos;
  rec.chain_head = rec.ended ? end_prev : prev;
  rec.next_sequence = rec.ended ? end_sequence : sequence;
  return rec;
}

Journal::Journal(Private, std::string path, UniqueFd fd, std::vector<JournalRecord> recovered,
                 std::uint64_t torn, std::optional<std::string> key, std::string chain_head,
                 std::uint64_t sequence)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      recovered_(std::move(recovered)),
      torn_bytes_(torn),
      key_(std::move(key)),
      chain_head_(std::move(chain_head)),
      sequence_(sequence),
      syncer_([this](std::stop_token stop) { sync_loop(stop); }) {}

Journal::~Journal() {
  if (fd_) (void)close();
  if (syncer_.joinable()) {
    syncer_.request_stop();
    sync_cv_.notify_all();
    syncer_.join();
  }
  if (fd_) (void)sys::fdatasync(fd_.get());
}

namespace {

// Writes `records` as a fresh format 3 journal at `path` (via a temporary file and a rename, so
// the old file stays whole until the new one is durable). Returns the chain head.
// `size` receives the new file's size.
Result<std::string> rewrite_as_v3(const std::string& path,
                                  const std::vector<JournalRecord>& records,
                                  const std::optional<std::string>& key, std::uint64_t& size) {
  using namespace detail;
  const std::string tmp = path + ".v3-upgrade";
  const int raw = sys::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (raw < 0) return fail_errno(raw, "create " + tmp + " to upgrade journal " + path);
  UniqueFd fd(raw);
  std::string out(kMagicV3, kMagicBytes);
  std::string prev = sha256_raw(out);
  std::uint64_t sequence = 0;
  for (const auto& r : records) {
    const std::string payload = chain_payload(key, sequence++, prev, encode_record(r));
    put_u32(out, static_cast<std::uint32_t>(payload.size()));
    put_u32(out, crc32c(payload));
    out += payload;
    prev = sha256_raw(payload);
  }
  PEPITA_TRY_VOID(write_all(fd.get(), out, tmp));
  size = out.size();
  if (const int rc = sys::fsync(fd.get()); rc < 0) return fail_errno(rc, "fsync " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail_errno(-err, "rename the upgraded journal over " + path);
  }
  return prev;
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::string& path, Mode mode) {
  return open(path, mode, std::nullopt);
}

Result<std::unique_ptr<Journal>> Journal::open(const std::string& path, Mode mode,
                                               std::optional<std::string> key) {
  using namespace detail;
  if (path.empty()) return fail(ErrorCode::InvalidArgument, "journal path is empty");
  if (key && key->size() < kJournalKeyMinBytes) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("journal key of {} bytes is too short; use at least {}", key->size(),
                            kJournalKeyMinBytes));
  }
  Recovery recovery;
  recovery.chain_head = sha256_raw(std::string_view(kMagicV3, kMagicBytes));
  if (mode == Mode::Resume) {
    recovery = PEPITA_TRY(read_journal(path, key));
    const bool has_records = recovery.valid_bytes > kMagicBytes;
    if (recovery.format == 3 && has_records && recovery.keyed && !key) {
      return fail(ErrorCode::Corrupted,
                  path + " is MACed under a key; resume it with that key (--journal-key FILE)");
    }
  }
  if (mode == Mode::Resume && recovery.valid_bytes >= kMagicBytes && recovery.format < 3) {
    // Formats 1 and 2 have no chain: rewrite the intact records as a format 3 journal (an older
    // pepita then refuses the file by its magic instead of misreading the new records).
    std::uint64_t size = 0;
    recovery.chain_head = PEPITA_TRY(rewrite_as_v3(path, recovery.records, key, size));
    recovery.next_sequence = recovery.records.size();
    recovery.valid_bytes = size;
    recovery.ended = false;
    recovery.torn_bytes = 0;
    recovery.format = 3;
  }
  const int flags = O_WRONLY | O_CREAT | (mode == Mode::Truncate ? O_TRUNC : 0);
  const int raw = sys::open(path.c_str(), flags, 0644);
  if (raw < 0) return fail_errno(raw, "open journal " + path);
  UniqueFd fd(raw);
  const int64_t size = sys::file_size(fd.get());
  if (size < 0) return fail_errno(static_cast<int>(size), "fstat journal " + path);
  std::uint64_t intact = recovery.valid_bytes;
  if (recovery.ended) intact = recovery.end_offset;  // continue the chain before the End record
  if (mode == Mode::Truncate || intact < kMagicBytes) {
    if (const int rc = sys::ftruncate(fd.get(), 0); rc < 0) {
      return fail_errno(rc, "truncate journal " + path);
    }
    PEPITA_TRY_VOID(write_all(fd.get(), std::string_view(kMagicV3, kMagicBytes), path));
    recovery.chain_head = sha256_raw(std::string_view(kMagicV3, kMagicBytes));
    recovery.next_sequence = 0;
  } else if (static_cast<std::uint64_t>(size) != intact) {
    // Cut the torn tail (or the End record) so the next record starts on a clean boundary.
    if (const int rc = sys::ftruncate(fd.get(), intact); rc < 0) {
      return fail_errno(rc, "truncate torn tail of journal " + path);
    }
  }
  if (const int64_t rc = sys::lseek(fd.get(), 0, SEEK_END); rc < 0) {
    return fail_errno(static_cast<int>(rc), "seek journal " + path);
  }
  if (const int rc = sys::fsync(fd.get()); rc < 0) return fail_errno(rc, "fsync journal " + path);
  PEPITA_TRY_VOID(fsync_parent(path));
  return std::make_unique<Journal>(Private{}, path, std::move(fd), std::move(recovery.records),
                                   recovery.torn_bytes, std::move(key),
                                   std::move(recovery.chain_head), recovery.next_sequence);
}

namespace {
// SHA-256 of no bytes: the output digest of every Finished record with empty stdout (most of
// them), without hashing.
constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr std::size_t kStageLimit = std::size_t{256} << 10;
}  // namespace

Result<void> Journal::append(JournalRecord record) {
  std::lock_guard lock(write_mu_);
  PEPITA_TRY_VOID(stage_locked(std::move(record)));
  return flush_locked();
}

Result<void> Journal::stage(JournalRecord record) {
  std::lock_guard lock(write_mu_);
  return stage_locked(std::move(record));
}

Result<void> Journal::flush() {
  std::lock_guard lock(write_mu_);
  return flush_locked();
}

Result<void> Journal::stage_locked(JournalRecord record) {
  if (record.type == RecordType::Finished && record.output_digest.empty()) {
    record.output_digest = record.stdout_data.empty() ? std::string(kEmptySha256)
                                                      : pepita::sha256_hex(record.stdout_data);
  }
  if (closed_) {
    return fail(ErrorCode::InvalidArgument,
                "journal " + path_ + " is closed; record '" + record.name + "' was not written");
  }
  if (!broken_.empty()) {
    return fail(ErrorCode::Io, "record '" + record.name + "' was not written: " + broken_);
  }
  const std::string body = encode_record(record);
  std::string payload = detail::chain_payload(key_, sequence_, chain_head_, body);
  if (payload.size() > kMaxPayload) {
    return fail(ErrorCode::ResourceExhausted,
                "journal record for '" + record.name + "' is over 256 MiB; lower the output cap");
  }
  stage_frame(payload);
  // A large batch (a submitted job of a million tasks) is written as it goes, in 256 KiB
  // writes: the buffer stays small.
  if (staged_.size() >= kStageLimit) return flush_locked();
  return {};
}

Result<void> Journal::flush_locked() {
  if (staged_.empty()) return {};
  const int64_t before = sys::lseek(fd_.get(), 0, SEEK_CUR);
  auto written = write_all(fd_.get(), staged_, path_);
  if (!written) {
    // None of the staged records counts: the chain goes on from the last one written. A write
    // cut short (a full disk, a file size limit) left part of a frame behind: cut it off, so the
    // next record follows the last whole one (a reader takes bytes between two records for
    // corruption, not for a torn tail). When that fails too, nothing more may be appended.
    chain_head_ = std::move(flushed_head_);
    sequence_ = flushed_sequence_;
    int rc = before < 0 ? static_cast<int>(before) : 0;
    if (rc == 0) rc = sys::ftruncate(fd_.get(), static_cast<std::uint64_t>(before));
    if (rc == 0)
      rc = static_cast<int>(std::min<int64_t>(0, sys::lseek(fd_.get(), before, SEEK_SET)));
    if (rc < 0) {
      broken_ = "a failed write left part of a record in journal " + path_ +
                " that could not be cut off (" + std::strerror(-rc) +
                "); reopen the journal, which drops the torn tail";
    }
  }
  staged_.clear();
  if (staged_.capacity() > 2 * kStageLimit) staged_.shrink_to_fit();
  return written;
}

void Journal::stage_frame(const std::string& payload) {
  if (staged_.empty()) {
    flushed_head_ = chain_head_;
    flushed_sequence_ = sequence_;
  }
  put_u32(staged_, static_cast<std::uint32_t>(payload.size()));
  put_u32(staged_, crc32c(payload));
  staged_ += payload;
  chain_head_ = detail::sha256_raw(payload);
  ++sequence_;
}

Result<void> Journal::close() {
  {
    std::lock_guard lock(write_mu_);
    if (closed_) return {};
    PEPITA_TRY_VOID(flush_locked());
    const std::string payload = detail::chain_payload(key_, sequence_, chain_head_,
                                                      detail::end_body(sequence_, chain_head_));
    stage_frame(payload);
    PEPITA_TRY_VOID(flush_locked());
    closed_ = true;  // only once the End record is written: a close() that failed can be retried
  }
  return sync();
}
void Journal::commit() {
  bool was_dirty = false;
  {
    std::lock_guard lock(sync_mu_);
    was_dirty = std::exchange(dirty_, true);
  }
  // Already dirty: the syncer is in its window or about to sync and will take this record too;
  // waking it would only spin its window wait (one futex round trip per task).
  if (!was_dirty) sync_cv_.notify_one();
}

Result<void> Journal::sync() {
  PEPITA_TRY_VOID(flush());
  int earlier = 0;
  {
    std::lock_guard lock(sync_mu_);
    earlier = std::exchange(sync_errno_, 0);
  }
  if (earlier != 0) return fail_errno(earlier, "fdatasync journal " + path_);
  if (const int rc = sys::fdatasync(fd_.get()); rc < 0) {
    return fail_errno(rc, "fdatasync journal " + path_);
  }
  return {};
}

namespace {
// The group-commit window of Journal::commit() (its comment says 10 ms).
constexpr std::chrono::milliseconds kCommitDelay{10};
}  // namespace

void Journal::sync_loop(std::stop_token stop) {
  std::unique_lock lock(sync_mu_);
  while (true) {
    sync_cv_.wait(lock, stop, [this] { return dirty_; });
    if (!dirty_) return;  // stop requested
    // The group-commit window (PostgreSQL's commit_delay): commits in the next kCommitDelay
    // share this fdatasync instead of each paying one as soon as the syncer is idle (issue 27:
    // 911 fdatasyncs for 1000 /bin/true tasks at parallelism 2 before). Records are already in
    // the page cache (one write(2) each), so only a power loss inside the window loses them;
    // sync() and close() still sync at once, and a stop request ends the wait.
    sync_cv_.wait_for(lock, stop, kCommitDelay, [] { return false; });
    dirty_ = false;
    lock.unlock();
    const int err = -sys::fdatasync(fd_.get());  // 0 or a positive errno
    lock.lock();
    if (err != 0 && sync_errno_ == 0) sync_errno_ = err;
  }
}

namespace detail {

Result<void> read_journal_bytes(const std::string& path, std::string& data, bool missing_is_empty) {
  const int raw = sys::open(path.c_str(), O_RDONLY);
  if (raw == -ENOENT && missing_is_empty) return {};
  if (raw < 0) return fail_errno(raw, "open journal " + path);
  UniqueFd fd(raw);
  char buf[1 << 16];
  for (;;) {
    const int64_t n = sys::read_full(fd.get(), buf, sizeof buf);
    if (n < 0) return fail_errno(static_cast<int>(n), "read journal " + path);
    data.append(buf, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof buf) break;  // end of file
  }
  return {};
}

}  // namespace detail

}  // namespace pepita::fault
