#pragma once
// The result cache's two in-memory indexes and their files (pool/cache.hpp): files.idx maps a
// path and its stat (dev, ino, size, mtime, ctime) to the file's SHA-256, entries.idx maps a key
// to the part of its entry file a hit returns (and that file's stat when it was read). Both are
// loaded once when the cache opens and written back whole once (temp file + rename), as git's
// index is; a file record is only trusted while the file's stat is unchanged, and no record is
// made from a "racily clean" file (git's rule: changed within kRacyNs of being read). The
// codecs are pure functions: damage is a problem string (a warning and a cold index), never an
// error or a wrong record.
#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "detail/cache_entry.hpp"

namespace pepita::pool::detail {

// A file hashed or read less than this before its ctime/mtime could still change within one
// timestamp tick without its stat changing: such records are not kept.
inline constexpr std::int64_t kRacyNs = 100'000'000;

/// The stat fields that say a file is unchanged.
struct FileStamp {
  std::uint64_t dev = 0, ino = 0, size = 0;
  std::int64_t mtime = 0, ctime = 0;  // ns since the epoch

  static FileStamp of(const struct stat& st) noexcept;
  /// True when the file changed less than kRacyNs before `read_at_ns` (when it was read):
  /// a same-tick change would not show in its stat, so the record must not be kept.
  bool racy(std::int64_t read_at_ns) const noexcept {
    return mtime > read_at_ns - kRacyNs || ctime > read_at_ns - kRacyNs;
  }
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

struct FileRecord {
  FileStamp stamp;
  std::string hash;  // SHA-256 hex of the file's content
  /// StatPolicy::OncePerRun: the stamp was confirmed by a stat while this cache is open and no
  /// task of the run has written the file since. Never stored in files.idx.
  bool confirmed = false;
};
/// absolute path -> record
using FileIndex = std::unordered_map<std::string, FileRecord>;

struct EntryRecord {
  FileStamp stamp;                          // of entries/<key> when it was read and verified
  std::shared_ptr<const CacheEntry> entry;  // slim: what a hit returns (see slim_entry)
};
/// key -> record
using EntryIndex = std::unordered_map<std::string, EntryRecord>;

/// The part of an entry a hit needs: key, outputs and the recorded result (not the key fields,
/// inputs or output paths, which only explanations and gc read, from the entry file).
CacheEntry slim_entry(const CacheEntry& e);

/// files.idx, format 2: "pepita-files-idx 2\n", one "<sha256> <dev> <ino> <size> <mtime_ns>
/// <ctime_ns> <path>\n" per file, then "sum <sha256 of all before>\n".
std::string encode_file_index(const FileIndex& index);
/// Adds the records of `text` to `into`, keeping those already there. Reads format 2 and the
/// append-only lines of format 1 (no header, no sum). Returns "" or what is wrong (torn,
/// edited, foreign); on a problem `into` gets nothing from a format-2 file.
std::string decode_file_index(std::string_view text, FileIndex& into);

/// entries.idx, format 1: "pepita-entries-idx 1\n", per record "<key> <dev> <ino> <size>
/// <mtime_ns> <ctime_ns> <length>\n" + encode_entry(slim) + "\n", then "sum <sha256 of all
/// before>\n".
std::string encode_entry_index(const EntryIndex& index);
/// As decode_file_index: "" or the problem; on a problem `into` gets nothing.
std::string decode_entry_index(std::string_view text, EntryIndex& into);

}  // namespace pepita::pool::detail
