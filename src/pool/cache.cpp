// The result cache: key fields, the entry codec, the file-hash index and the hashing threads.
// Entries and the index live in plain files; nothing here ever fails a run: what cannot be read
// is a miss, what cannot be written is a warning (ResultCache::warning) and the cache stops
// storing.
#include "pepita/pool/cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "detail/cache_entry.hpp"
#include "detail/cache_index.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/core/sys/process.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::pool {
namespace fs = std::filesystem;
using detail::CacheEntry;
using executor::ExecutionResult;
using executor::Status;

namespace {

std::int64_t unix_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The first 8 hex digits and an ellipsis: enough to tell two hashes apart in a reason.
std::string short_hash(const std::string& h) {
  return h.empty() ? std::string("none") : h.substr(0, 8).append("\u2026");
}

// The working directory a task's relative paths start at.
std::string task_cwd(const task::Task& t) {
  std::string cwd;
  if (const auto* p = t.process()) cwd = p->cwd;
  if (const auto* pipe = t.as_pipeline(); pipe && !pipe->stages.empty()) cwd = pipe->stages[0].cwd;
  if (cwd.empty()) {
    std::error_code ec;
    cwd = fs::current_path(ec).string();
  }
  return cwd;
}

// execvp's rule, as the process executor applies it (sys::find_executable). Empty when not found.
std::string resolve_binary(const std::string& name) {
  std::string out;
  return sys::find_executable(name, out) == 0 ? out : std::string();
}

// The key's digests are of short strings, several per lookup: one SHA-256 context per thread,
// reset between uses, and each message assembled in one reused buffer and hashed with a single
// update (a fresh context per digest, a temporary string per part, dominated the cache check).
std::string digest_text(std::string_view text) {
  thread_local Sha256 h;
  h.update(text);
  std::string out = h.hex_digest();
  h.reset();
  return out;
}

// "<size>:<bytes>" of each part, hashed (the key's format: unchanged).
std::string digest_of(const std::vector<std::string>& parts) {
  thread_local std::string buf;
  buf.clear();
  for (const auto& p : parts) {
    char len[24];
    const auto [end, ec] = std::to_chars(len, len + sizeof len, p.size());
    buf.append(len, end).append(1, ':').append(p);
  }
  std::string out = digest_text(buf);
  if (buf.capacity() > (1u << 20)) std::string().swap(buf);  // keep no large argument lists
  return out;
}

// The stages of a process or pipeline task (empty for functions and shaders).
std::vector<const task::ProcessSpec*> stages_of(const task::Task& t) {
  std::vector<const task::ProcessSpec*> out;
  if (const auto* p = t.process()) out.push_back(p);
  if (const auto* pipe = t.as_pipeline()) {
    for (const auto& s : pipe->stages) out.push_back(&s);
  }
  return out;
}

// The task's declared outputs as absolute paths.
std::vector<std::string> output_paths(const task::Task& t, const std::string& cwd) {
  std::vector<std::string> out;
  out.reserve(t.outputs().size());
  for (const auto& o : t.outputs()) out.push_back(detail::absolute_in(cwd, o));
  return out;
}

// The key fields other than the binary's hash and the inputs.
std::map<std::string, std::string> spec_fields(const task::Task& t) {
  std::vector<std::string> command, args, env, cwd, stdin_data;
  for (const task::ProcessSpec* s : stages_of(t)) {
    command.push_back(s->path);
    args.push_back(digest_of(s->args));
    std::vector<std::string> e;
    e.reserve(s->env.size() + 1);
    e.emplace_back(s->inherit_env ? "inherit" : "clean");
    for (const auto& [k, v] : s->env) e.push_back(std::string(k).append("=").append(v));
    env.push_back(digest_of(e));
    cwd.push_back(s->cwd);
    stdin_data.push_back(digest_text(s->stdin_data));
  }
  std::map<std::string, std::string> f;
  f["spec"] = t.spec_digest();
  f["command"] = command.size() == 1 ? command[0] : digest_of(command);
  f["args"] = digest_of(args);
  f["env"] = digest_of(env);
  f["cwd"] = cwd.size() == 1 ? cwd[0] : digest_of(cwd);
  f["stdin"] = digest_of(stdin_data);
  f["backend"] = std::string(t.backend().name());
  f["resources"] = t.resources().to_string();
  return f;
}

std::string key_of(const std::map<std::string, std::string>& fields,
                   const std::map<std::string, std::string>& inputs) {
  thread_local std::string buf;
  buf.assign("pepita-cache-key 1\n");
  for (const auto& [k, v] : fields) buf.append(k).append(1, '=').append(v).append(1, '\n');
  for (const auto& [p, hash] : inputs) {
    buf.append("in ").append(p).append(1, ' ').append(hash).append(1, '\n');
  }
  std::string out = digest_text(buf);
  if (buf.capacity() > (1u << 20)) std::string().swap(buf);
  return out;
}

// Writes `data` to `path` atomically: a temp file in the same directory, fsync-free (a cache
// entry lost in a crash is a miss), then rename. Negative errno on failure.
int write_atomic(const std::string& path, std::string_view data) {
  std::string tmp = std::string(path).append(".tmp.").append(
      std::to_string(static_cast<unsigned long>(::gettid())));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  std::size_t off = 0;
  int err = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = -errno;
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 && err == 0) err = -errno;
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = -errno;
  if (err != 0) ::unlink(tmp.c_str());
  return err;
}

// A whole regular file; nullopt when it cannot be read or passes `limit` bytes.
std::optional<std::string> read_fd(int fd, std::size_t limit = 256u << 20) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    out.append(buf, static_cast<std::size_t>(n));
    // A regular file reads short only at its end: no extra read() to see EOF.
    if (static_cast<std::size_t>(n) < sizeof buf) break;
    if (out.size() > limit) return std::nullopt;  // no entry is this large: corrupt
  }
  return out;
}

std::optional<std::string> read_small(const std::string& path, std::size_t limit = 256u << 20) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  return read_fd(fd.get(), limit);
}

// A fixed set of threads running queued jobs; the destructor drains and joins.
class HashThreads {
 public:
  explicit HashThreads(unsigned n) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~HashThreads() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: joined before the queue goes
};

}  // namespace

struct ResultCache::Impl {
  std::string dir;
  std::string entries, names, index_path, entry_index_path, lock_path;
  UniqueFd entries_fd;  // entries/, for fstatat/openat by key (no path walk per hit)

  mutable std::mutex mu;  // guards everything below
  detail::FileIndex index;
  detail::EntryIndex entry_index;
  bool index_dirty = false, entries_dirty = false;  // changed since loaded or written
  std::unordered_set<std::string> added_keys;       // entry records read from entries/ here
  std::unordered_set<std::string> dead_keys;        // entries rewritten or removed here
  std::vector<std::string> notices;                 // damaged indexes found at open
  std::optional<Error> warning;                     // the first write failure; storing stops
  std::unordered_map<std::string, std::string> ran_outputs;  // absolute output -> task that ran
  const bool stat_once;  // StatPolicy::OncePerRun: FileRecord::confirmed is used

  HashThreads threads;

  Impl(std::string d, unsigned n, StatPolicy stats)
      : dir(std::move(d)), stat_once(stats == StatPolicy::OncePerRun), threads(n) {
    entries = dir + "/entries";
    names = dir + "/names";
    index_path = dir + "/files.idx";
    entry_index_path = dir + "/entries.idx";
    lock_path = dir + "/index.lock";
    entries_fd.reset(::open(entries.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }

  void warn(const std::string& what, int err) {
    std::lock_guard lock(mu);
    if (warning) return;
    warning = Error(ErrorCode::Io,
                    pepita::fmt("result cache in '{}': {}: {}; the run goes on without storing "
                                "results (free space or pass --cache-dir/--no-cache)",
                                dir, what, std::strerror(-err)),
                    -err);
  }
  bool writable() const {
    std::lock_guard lock(mu);
    return !warning;
  }

  // Once, at open: both indexes from their files. A damaged one is a notice and starts empty
  // (every file is hashed again, every entry read again): never an error, never a wrong record.
  void load_indexes() {
    if (auto text = read_small(index_path)) {
      if (auto problem = detail::decode_file_index(*text, index); !problem.empty()) {
        index.clear();
        index_dirty = true;  // rewritten whole at the next flush
        notices.push_back(
            pepita::fmt("result cache in '{}': {}; ignored, files are hashed again", dir, problem));
      }
    }
    if (auto text = read_small(entry_index_path)) {
      if (auto problem = detail::decode_entry_index(*text, entry_index); !problem.empty()) {
        entry_index.clear();
        entries_dirty = true;
        notices.push_back(
            pepita::fmt("result cache in '{}': {}; ignored, cache entries are read from entries/",
                        dir, problem));
      }
    }
  }

  // Caller holds mu. Writes each changed index whole: under an exclusive flock on index.lock
  // (concurrent runs on one directory take turns), what another run wrote since is read and
  // merged (this process's records win for the same path or key), then a temp file is renamed
  // over the index. A reader sees the old or the new file, never a torn one.
  void flush_indexes_locked() {
    if (warning || (!index_dirty && !entries_dirty)) return;
    UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!lock || ::flock(lock.get(), LOCK_EX) != 0) return;  // the indexes are only a speed-up
    if (index_dirty) {
      detail::FileIndex merged = index;
      if (auto text = read_small(index_path)) (void)detail::decode_file_index(*text, merged);
      if (write_atomic(index_path, detail::encode_file_index(merged)) == 0) index_dirty = false;
    }
    if (entries_dirty) {
      // What is on disk now (another run's records, a gc's removals), less the keys rewritten
      // or removed here, plus the records read here whose entry file is still the one read (a
      // gc in another process unlinks before it takes this lock to drop the record).
      detail::EntryIndex merged;
      if (auto text = read_small(entry_index_path)) {
        (void)detail::decode_entry_index(*text, merged);
      }
      for (const auto& key : dead_keys) merged.erase(key);
      for (const auto& key : added_keys) {
        auto it = entry_index.find(key);
        struct stat st {};
        if (it != entry_index.end() && ::fstatat(entries_fd.get(), key.c_str(), &st, 0) == 0 &&
            detail::FileStamp::of(st) == it->second.stamp) {
          merged.insert_or_assign(key, it->second);
        }
      }
      if (write_atomic(entry_index_path, detail::encode_entry_index(merged)) == 0) {
        entries_dirty = false;
        added_keys.clear();
        dead_keys.clear();
      } else if (!dead_keys.empty()) {
        ::unlink(entry_index_path.c_str());  // no record of a removed entry may survive
      }
    }
    ::flock(lock.get(), LOCK_UN);
  }

  // The fast path: the hash recorded for this exact (dev, ino, size, mtime, ctime).
  std::optional<std::string> indexed(const std::string& path, const struct stat& st) {
    const detail::FileStamp now = detail::FileStamp::of(st);
    std::lock_guard lock(mu);
    auto it = index.find(path);
    if (it == index.end()) return std::nullopt;
    it->second.confirmed = stat_once && it->second.stamp == now;
    if (!it->second.confirmed && it->second.stamp != now) return std::nullopt;
    return it->second.hash;
  }

  // The faster path under StatPolicy::OncePerRun: a record already confirmed in this run, with
  // no stat at all.
  std::optional<std::string> confirmed(const std::string& path) {
    if (!stat_once) return std::nullopt;
    std::lock_guard lock(mu);
    auto it = index.find(path);
    if (it == index.end() || !it->second.confirmed) return std::nullopt;
    return it->second.hash;
  }

  // A task of this run is about to write these files (or has): their next check stats them.
  void unconfirm(const std::vector<std::string>& paths) {
    if (!stat_once) return;
    std::lock_guard lock(mu);
    for (const auto& p : paths) {
      if (auto it = index.find(p); it != index.end()) it->second.confirmed = false;
    }
  }

  void remember(const std::string& path, const struct stat& st, const std::string& hash,
                std::int64_t hashed_at) {
    if (path.find('\n') != std::string::npos) return;
    const detail::FileStamp stamp = detail::FileStamp::of(st);
    if (stamp.racy(hashed_at)) return;
    std::lock_guard lock(mu);
    index.insert_or_assign(path, detail::FileRecord{stamp, hash, stat_once});
    index_dirty = true;
  }

  // The entry stored under `key`, or null: from entry_index (no system call: the record is a
  // checksummed copy of what entries/<key> held when it was read, and store() and gc drop the
  // records of the keys they rewrite or remove), else read from the file and recorded.
  std::shared_ptr<const CacheEntry> entry(const std::string& key) {
    {
      std::lock_guard lock(mu);
      if (auto it = entry_index.find(key); it != entry_index.end()) return it->second.entry;
    }
    return read_entry(key);
  }

  std::shared_ptr<const CacheEntry> read_entry(const std::string& key) {
    const std::int64_t at = unix_now_ns();
    UniqueFd fd(::openat(entries_fd.get(), key.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return nullptr;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return nullptr;
    auto text = read_fd(fd.get());
    if (!text) return nullptr;
    auto e = detail::decode_entry(*text);
    if (!e || e->key != key) return nullptr;
    auto slim = std::make_shared<const CacheEntry>(detail::slim_entry(*e));
    // The stat taken before the read: a file renamed over meanwhile is another inode (our fd
    // read the old one, whose stat this is); one written in place changes its ctime.
    const detail::FileStamp stamp = detail::FileStamp::of(st);
    struct stat after {};
    if (!stamp.racy(at) && ::fstat(fd.get(), &after) == 0 &&
        detail::FileStamp::of(after) == stamp) {
      std::lock_guard lock(mu);
      entry_index.insert_or_assign(key, detail::EntryRecord{stamp, slim});
      // Not out of dead_keys: a failed flush must still drop the index's old record.
      added_keys.insert(key);
      entries_dirty = true;
    }
    return slim;
  }

  void forget(const std::string& key) {
    std::lock_guard lock(mu);
    entry_index.erase(key);
    added_keys.erase(key);
    dead_keys.insert(key);
    entries_dirty = true;
  }
  // `fresh`: stat every file, whatever the policy (outputs a task has just written).
  std::vector<Result<std::string>> hash_files(const std::vector<std::string>& paths,
                                              bool fresh = false) {
    std::vector<Result<std::string>> out(paths.size(), std::string());
    std::vector<std::size_t> slow;
    std::vector<struct stat> stats(paths.size());
    for (std::size_t i = 0; i < paths.size(); ++i) {
      if (!fresh) {
        if (auto h = confirmed(paths[i])) {
          out[i] = std::move(*h);
          continue;
        }
      }
      if (::stat(paths[i].c_str(), &stats[i]) != 0) {
        const int err = errno;
        out[i] = fail(err == ENOENT ? ErrorCode::NotFound : ErrorCode::Io,
                      pepita::fmt("{}: {}", paths[i], std::strerror(err)), err);
        continue;
      }
      if (!S_ISREG(stats[i].st_mode)) {
        out[i] = fail(ErrorCode::InvalidArgument, pepita::fmt("{}: not a regular file", paths[i]));
        continue;
      }
      if (auto h = indexed(paths[i], stats[i])) {
        out[i] = std::move(*h);
      } else {
        slow.push_back(i);
      }
    }
    auto hash_one = [&](std::size_t i) {
      const std::int64_t at = unix_now_ns();
      auto h = sha256_file(paths[i]);
      // The stat after reading: a file that changed while it was read is not indexed.
      struct stat after {};
      if (h && ::stat(paths[i].c_str(), &after) == 0) {
        const auto now = detail::FileStamp::of(after), then = detail::FileStamp::of(stats[i]);
        if (now.ino == then.ino && now.mtime == then.mtime && now.size == then.size) {
          remember(paths[i], after, *h, at);
        }
      }
      out[i] = std::move(h);
    };
    if (slow.size() == 1) {
      hash_one(slow[0]);
    } else if (!slow.empty()) {
      std::vector<std::future<void>> done;
      done.reserve(slow.size());
      for (std::size_t i : slow) {
        auto p = std::make_shared<std::promise<void>>();
        done.push_back(p->get_future());
        threads.post([&hash_one, i, p] {
          hash_one(i);
          p->set_value();
        });
      }
      for (auto& f : done) f.wait();
    }
    return out;
  }
};

ResultCache::ResultCache(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}

ResultCache::~ResultCache() {
  if (impl_) flush_index();
}

Result<std::shared_ptr<ResultCache>> ResultCache::open(std::string dir, Options options) {
  if (dir.empty()) return fail(ErrorCode::InvalidArgument, "result cache: empty directory name");
  std::error_code ec;
  for (const char* sub : {"", "/entries", "/names"}) {
    const std::string d = std::string(dir).append(sub);
    fs::create_directories(d, ec);
    if (ec || !fs::is_directory(d)) {
      return fail(ErrorCode::Io,
                  pepita::fmt("cannot create the result cache directory '{}': {}; pass "
                              "--cache-dir DIR or --no-cache",
                              d, ec ? ec.message() : std::string("a file is in the way")),
                  ec.value());
    }
  }
  // A probe write: a read-only or full file system is found now, not at the first store.
  const std::string probe = std::string(dir).append("/.probe");
  if (const int rc = write_atomic(probe, "pepita\n"); rc != 0) {
    return fail(ErrorCode::Io,
                pepita::fmt("cannot write in the result cache directory '{}': {}; pass "
                            "--cache-dir DIR or --no-cache",
                            dir, std::strerror(-rc)),
                -rc);
  }
  ::unlink(probe.c_str());
  unsigned n = options.hash_threads;
  if (n == 0) n = std::max(2u, std::thread::hardware_concurrency());
  auto impl = std::make_unique<Impl>(dir, n, options.stats);
  if (!impl->entries_fd) {
    const int err = errno;
    return fail(ErrorCode::Io,
                pepita::fmt("cannot open the result cache directory '{}/entries': {}; pass "
                            "--cache-dir DIR or --no-cache",
                            dir, std::strerror(err)),
                err);
  }
  impl->load_indexes();
  return std::shared_ptr<ResultCache>(new ResultCache(std::move(dir), std::move(impl)));
}

std::optional<Error> ResultCache::warning() const {
  std::lock_guard lock(impl_->mu);
  return impl_->warning;
}

std::vector<std::string> ResultCache::notices() const {
  std::lock_guard lock(impl_->mu);
  return impl_->notices;
}

void ResultCache::flush_index() {
  std::lock_guard lock(impl_->mu);
  impl_->flush_indexes_locked();
}

void ResultCache::forget_entry(const std::string& key) { impl_->forget(key); }

std::vector<Result<std::string>> ResultCache::hash_files(const std::vector<std::string>& paths) {
  return impl_->hash_files(paths);
}

void ResultCache::note_ran(const task::Task& task) {
  const std::string cwd = task_cwd(task);
  std::vector<std::string> outs = output_paths(task, cwd);
  impl_->unconfirm(outs);
  std::lock_guard lock(impl_->mu);
  for (auto& o : outs) impl_->ran_outputs[std::move(o)] = task.name();
}

namespace {

// Why `now` differs from the last entry of the same task name; empty when nothing differs.
std::string explain_miss(const CacheLookup& now, const CacheEntry& last, const std::string& cwd,
                         const std::unordered_map<std::string, std::string>& ran_outputs) {
  std::vector<std::string> why;
  if (now.fields.at("binary") != last.field("binary")) why.push_back("binary changed");
  for (const char* f : {"command", "args", "env", "cwd", "stdin", "backend", "resources"}) {
    auto it = now.fields.find(f);
    if (it != now.fields.end() && it->second != last.field(f)) {
      why.push_back(std::string(f).append(" changed"));
    }
  }
  for (const auto& [path, hash] : now.inputs) {
    const std::string shown = detail::shown_path(cwd, path);
    auto it = last.inputs.find(path);
    if (it == last.inputs.end()) {
      why.push_back(pepita::fmt("input {} added", shown));
    } else if (it->second != hash) {
      auto by = ran_outputs.find(detail::absolute_in(cwd, path));
      if (by != ran_outputs.end()) {
        why.push_back(pepita::fmt("dependency {} re-ran (input {} changed {} \u2192 {})",
                                  by->second, shown, short_hash(it->second), short_hash(hash)));
      } else {
        why.push_back(pepita::fmt("input {} changed (hash {} \u2192 {})", shown,
                                  short_hash(it->second), short_hash(hash)));
      }
    }
  }
  for (const auto& [path, hash] : last.inputs) {
    if (!now.inputs.contains(path)) {
      why.push_back(pepita::fmt("input {} removed", detail::shown_path(cwd, path)));
    }
  }
  if (why.empty() && now.fields.at("spec") != last.field("spec")) why.push_back("task changed");
  std::string out;
  for (std::size_t i = 0; i < why.size() && i < 3; ++i) {
    out.append(i ? ", " : "ran: ").append(why[i]);
  }
  if (why.size() > 3) out.append(pepita::fmt(" and {} more", why.size() - 3));
  return out;
}

}  // namespace

CacheLookup ResultCache::lookup(const task::Task& task) {
  CacheLookup l = decide(task);
  if (!l.hit && impl_->stat_once && !task.outputs().empty()) {
    // A miss runs, and what it writes must be stat'ed again by the next check that reads it.
    const std::string cwd = task_cwd(task);
    const std::vector<std::string> outs = output_paths(task, cwd);
    impl_->unconfirm(outs);
  }
  return l;
}

const char* ResultCache::never_cached(const task::Task& task) noexcept {
  const auto* pipe = task.as_pipeline();
  if (task.process() == nullptr && (pipe == nullptr || pipe->stages.empty())) {
    return "ran: only process and pipeline tasks are cached";
  }
  if (task.inputs().empty() && task.outputs().empty()) {
    return "ran: declares no inputs or outputs (not cached)";
  }
  return nullptr;
}

CacheLookup ResultCache::decide(const task::Task& task) {
  CacheLookup l;
  if (const char* reason = never_cached(task)) {
    l.reason = reason;
    return l;
  }
  const auto stages = stages_of(task);
  const std::string cwd = task_cwd(task);
  // One batch: every stage's binary and every input, hashed in parallel.
  std::vector<std::string> paths;
  for (const task::ProcessSpec* s : stages) {
    std::string bin = resolve_binary(s->path);
    if (bin.empty()) {
      l.reason = pepita::fmt("ran: binary '{}' not found in PATH (not cached)", s->path);
      return l;
    }
    paths.push_back(detail::absolute_in(cwd, bin));
  }
  for (const auto& in : task.inputs()) paths.push_back(detail::absolute_in(cwd, in));
  auto hashes = impl_->hash_files(paths);
  std::vector<std::string> bins;
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    if (!hashes[i]) {
      const bool binary = i < stages.size();
      l.reason =
          pepita::fmt("ran: {} {} cannot be read ({}; not cached)", binary ? "binary" : "input",
                      binary ? paths[i] : detail::shown_path(cwd, task.inputs()[i - stages.size()]),
                      hashes[i].error().message());
      return l;
    }
    if (i < stages.size()) {
      bins.push_back(*hashes[i]);
    } else {
      l.inputs[task.inputs()[i - stages.size()]] = *hashes[i];
    }
  }
  l.binary_sha256 = bins[0];
  l.fields = spec_fields(task);
  l.fields["binary"] = bins.size() == 1 ? bins[0] : digest_of(bins);
  l.key = key_of(l.fields, l.inputs);

  if (auto e = impl_->entry(l.key)) {
    // The outputs must still be there. One edited since the cached run (present, another
    // hash) is kept, as make keeps a file newer than what produced it: the producer stays
    // cached and the tasks reading the file see the change and run again.
    const std::vector<std::string> outs = output_paths(task, cwd);
    auto now = impl_->hash_files(outs);
    std::string edited;
    for (std::size_t i = 0; i < outs.size(); ++i) {
      const std::string& declared = task.outputs()[i];
      if (!now[i]) {
        l.reason = pepita::fmt("ran: output {} missing", detail::shown_path(cwd, declared));
        return l;
      }
      auto want = e->outputs.find(declared);
      if (want == e->outputs.end()) {
        l.reason =
            pepita::fmt("ran: output {} not in the cache entry", detail::shown_path(cwd, declared));
        return l;
      }
      if (want->second != *now[i] && edited.empty()) {
        edited = detail::shown_path(cwd, declared);
      }
    }
    ExecutionResult r = e->result();
    r.id = task.id();
    r.name = task.name();
    r.from_cache = true;
    r.input_hashes = l.inputs;
    l.reason =
        edited.empty()
            ? std::string("cached")
            : pepita::fmt("cached (output {} edited since; kept, its readers re-run)", edited);
    r.cache_reason = l.reason;
    l.hit = std::move(r);
    // The name's last key is left as the last stored one (rewriting it on every hit would
    // cost the fast path a read): an explanation compares with the last run that stored.
    return l;
  }
  // No usable entry: compare with the last entry of this task's name.
  l.reason = "ran: no cache entry";
  if (auto last_key = read_small(impl_->names + "/" + sha256_hex(task.name()))) {
    if (auto text = read_small(impl_->entries + "/" + *last_key)) {
      if (auto e = detail::decode_entry(*text)) {
        std::unordered_map<std::string, std::string> ran;
        {
          std::lock_guard lock(impl_->mu);
          ran = impl_->ran_outputs;
        }
        if (auto why = explain_miss(l, *e, cwd, ran); !why.empty()) l.reason = std::move(why);
      }
    }
  }
  return l;
}

Result<void> ResultCache::store(const task::Task& task, const CacheLookup& lookup,
                                ExecutionResult& result) {
  const std::string cwd = task_cwd(task);
  std::vector<std::string> outs = output_paths(task, cwd);
  auto hashes = impl_->hash_files(outs, /*fresh=*/true);
  for (std::size_t i = 0; i < outs.size(); ++i) {
    if (!hashes[i]) {
      return fail(
          ErrorCode::NotFound,
          pepita::fmt("task '{}' succeeded but its declared output {} {}", task.name(),
                      task.outputs()[i],
                      hashes[i].error().code() == ErrorCode::NotFound
                          ? std::string("does not exist")
                          : std::string("cannot be read: ").append(hashes[i].error().message())));
    }
    result.output_hashes[task.outputs()[i]] = *hashes[i];
  }
  if (result.input_hashes.empty()) result.input_hashes = lookup.inputs;
  if (result.binary_sha256.empty()) result.binary_sha256 = lookup.binary_sha256;
  if (lookup.key.empty() || !impl_->writable()) return {};
  CacheEntry e;
  e.name = task.name();
  e.key = lookup.key;
  e.created_unix_ns = unix_now_ns();
  e.fields = lookup.fields;
  e.inputs = lookup.inputs;
  e.outputs = result.output_hashes;
  for (const auto& p : outs) e.output_paths.push_back(p);
  e.set_result(result);
  impl_->forget(lookup.key);  // rewritten: the next lookup reads the new file
  if (const int rc = write_atomic(impl_->entries + "/" + lookup.key, detail::encode_entry(e));
      rc != 0) {
    impl_->warn("cannot write an entry", rc);
    return {};
  }
  if (const int rc = write_atomic(impl_->names + "/" + sha256_hex(task.name()), lookup.key);
      rc != 0) {
    impl_->warn("cannot write a task's last key", rc);
  }
  return {};
}

}  // namespace pepita::pool
