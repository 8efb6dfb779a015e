#pragma once
// ResultCache: reuse of a task's earlier success across runs (issue 24), in the shape of
// Nextflow's -resume and make: a task whose command, args, env, cwd, stdin, backend, binary
// SHA-256, resource request and declared input contents match a cached success whose declared
// outputs are still on disk with the recorded hashes is not run again. Every decision carries a
// reason ("cached", "ran: input corpus-3.txt changed (a1b2… → c3d4…)") found by comparing the key
// fields with the last entry of the same task name.
//
// On disk, under one directory: entries/<key> (one file per key, written to a temp file and
// renamed; a checksum makes a torn or edited entry a miss, never an error), names/<sha256(name)>
// (the task's last key, for explanations), files.idx ((path, dev, ino, size, mtime_ns, ctime_ns)
// -> SHA-256, so unchanged files are never re-read) and entries.idx (key -> a checksummed copy
// of what a hit returns, so a hit reads no entry file). Both indexes are loaded once at open
// and written back once (flush_index, the destructor): whole, checksummed, temp file + rename
// under an flock on index.lock, merged with what a concurrent run wrote meanwhile; a damaged one
// is ignored (notices()). A file's hash is used only while its stat is unchanged, so a hit costs
// one stat per binary, input and output and no other system call. Content hashing of the files
// that need it runs on a small thread pool, for the inputs of one task and across tasks.
//
//   auto cache = ResultCache::open("/state/cache").value();
//   CacheLookup l = cache->lookup(task);        // hashes inputs, looks up the entry
//   if (l.hit) use(*l.hit);                     // from_cache == true, reason "cached"
//   else { ExecutionResult r = run(task); cache->store(task, l, r); }  // fills output_hashes
//
// Pool::Builder::cache(dir) runs every task with declared files through one (tasks without
// declared files always run: their effect is not known to the cache).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/task/task.hpp"

namespace pepita::pool {

/// What lookup() decided for one task.
struct CacheLookup {
  std::string key;  // SHA-256 hex over every key field; empty when no key could be made
  /// The key's fields: "spec", "command", "args", "env", "cwd", "stdin", "backend", "binary",
  /// "resources" -> a digest or text; inputs separately.
  std::map<std::string, std::string> fields;
  std::map<std::string, std::string> inputs;  // declared input -> SHA-256 hex
  std::string binary_sha256;
  /// The cached result (status Succeeded, the original stdout/exit/wall, from_cache = true,
  /// input/output hashes filled) on a hit.
  std::optional<executor::ExecutionResult> hit;
  /// "cached", or why the task must run ("ran: no cache entry", "ran: args changed", ...).
  std::string reason;
};

/// `pepita cache gc` limits and its report.
struct CacheGcOptions {
  std::optional<std::chrono::seconds> max_age;  // entries older are removed
  std::optional<std::uint64_t> max_size;        // bytes of entries kept at most (oldest go first)
};
struct CacheGcReport {
  std::vector<std::string> removed;  // one line per removed entry: "<task> <key12>: <why>"
  std::size_t kept = 0;
  std::uint64_t kept_bytes = 0;
};

/// When lookup() takes a file's stat (ResultCache::Options::stats).
enum class StatPolicy {
  /// Every lookup stats every binary, input and output: an edit made between two submissions
  /// to a long-lived pool is always seen. The default.
  EveryLookup,
  /// make's and ninja's rule, for one run (`pepita run`): a file is stat'ed once while the
  /// cache is open, and later lookups reuse that stat. The declared outputs of a task that runs
  /// are stat'ed again after it (store()), so what a task of the run writes is always seen; an
  /// edit by another process, during the run, to a file already checked is seen by the next run.
  /// Saves a stat per shared file per task (the binary, a model all tasks read).
  OncePerRun,
};

class ResultCache {
 public:
  struct Options {
    unsigned hash_threads = 0;  // content-hashing threads; 0: one per CPU (at least 2)
    StatPolicy stats = StatPolicy::EveryLookup;
  };
  /// Opens (creating) the cache in `dir`. Errors: IoError when the directory cannot be created
  /// or written (read-only, full disk, a file in the way) — callers run uncached and warn.
  static Result<std::shared_ptr<ResultCache>> open(std::string dir, Options options);
  static Result<std::shared_ptr<ResultCache>> open(std::string dir) { return open(dir, {}); }
  ~ResultCache();
  ResultCache(const ResultCache&) = delete;
  ResultCache& operator=(const ResultCache&) = delete;

  const std::string& dir() const noexcept { return dir_; }

  /// Computes the task's key (hashing its binary and inputs through the index) and looks for a
  /// usable entry. Never fails: an unreadable input or binary is a miss whose reason names it.
  /// A task without declared files is a miss ("ran: declares no files").
  CacheLookup lookup(const task::Task& task);
  /// The reason lookup() gives, without reading anything, for a task it never caches (neither
  /// a process nor a pipeline, or no declared inputs or outputs); null for one it may cache.
  static const char* never_cached(const task::Task& task) noexcept;
  /// After a successful run of `task` looked up as `lookup`: hashes the declared outputs into
  /// result.output_hashes (and copies the key's input hashes and binary into it), then stores
  /// the entry and the name's last key. NotFound naming the file when a declared output is
  /// missing (the caller fails the attempt); a write failure is remembered in warning() and
  /// turns storing off (the run goes on uncached), not an error.
  Result<void> store(const task::Task& task, const CacheLookup& lookup,
                     executor::ExecutionResult& result);
  /// Remembers that `task` ran in this process (not from the cache), so a dependent's reason
  /// can say "dependency X re-ran".
  void note_ran(const task::Task& task);
  /// The first write failure (the cache then stops storing); nullopt while all is well.
  std::optional<Error> warning() const;
  /// Damaged index files found at open (each was ignored: a cold index, not an error), as
  /// sentences to print as warnings.
  std::vector<std::string> notices() const;
  /// Writes the changed indexes out (see above); also done by the destructor.
  void flush_index();

  /// Hashes `paths` (absolute) through the index, in parallel; an element is an error for a
  /// file that cannot be read. Exposed for tests and the benchmark.
  std::vector<Result<std::string>> hash_files(const std::vector<std::string>& paths);

  /// Removes entries whose outputs no longer match, then the oldest beyond the limits.
  static Result<CacheGcReport> gc(const std::string& dir, const CacheGcOptions& options);

 private:
  struct Impl;
  explicit ResultCache(std::string dir, std::unique_ptr<Impl> impl);
  CacheLookup decide(const task::Task& task);  // lookup() but for StatPolicy's bookkeeping
  void forget_entry(const std::string& key);   // gc removed entries/<key>
  std::string dir_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepita::pool
