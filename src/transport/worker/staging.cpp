// Worker daemon, staged files (issue 24): a task's declared inputs are fetched from its driver
// in chunks over the same authenticated connection (FetchBlob / BlobChunk), verified by SHA-256
// before they enter the content-addressed store (worker/blob_store.hpp), and materialised
// read-only in the task's own directory; after a success its declared outputs are hashed and
// streamed back (OutputChunk) before the Result. Memory stays bounded by the chunk size: a
// fetch writes each chunk at its offset in <hex>.part, and a dropped connection leaves that file
// to resume from when the driver submits the task again.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "worker/worker_impl.hpp"

namespace pepita::transport {

namespace fs = std::filesystem;
using worker::Fetch;

namespace {

constexpr std::uint32_t kWindow = 4;  // FetchBlob requests in flight per blob

// A chunk goes into the partial file in pwrites of at most this many bytes. The page cache sizes
// a new folio by the write that creates it: a 4 MiB pwrite takes up to 2 MiB folios, which in a
// VM with free page reporting (virtio-balloon; this dev box) likely come from blocks the host took
// back and faults in again, a random 0.3-1.2 s per 512 MiB in copy_folio_from_iter_atomic.
// Measured (bench/data/staging, 256 MiB, writes of each size in one process, rotated rounds,
// process CPU medians): 4 MiB 0.41 s with outliers to 0.8, 1 MiB 0.63, 512 KiB 0.32 (to 0.40),
// 256 KiB 0.30 (to 0.37), 128 KiB 0.30; raw TCP copy + SHA-256 of it 0.33.
constexpr std::size_t kWriteSlice = 256 << 10;

ResultMsg staging_error(std::uint32_t attempt, std::string why) {
  return ResultMsg{.attempt = attempt,
                   .status = TaskStatus::SpawnError,
                   .exit_code = -1,
                   .error = std::move(why)};
}

}  // namespace

Result<void> Worker::Impl::intake_staged(const std::shared_ptr<Client>& cp,
                                         const std::shared_ptr<Job>& job) {
  for (const auto& in : job->msg.inputs) store->pin(in.sha256);
  job->pinned = true;
  cp->staging.push_back(job);
  return advance_staging(cp);
}

Result<void> Worker::Impl::advance_staging(const std::shared_ptr<Client>& cp) {
  Client& c = *cp;
  std::vector<std::shared_ptr<Job>> keep;
  std::vector<std::shared_ptr<Job>> ready;
  auto jobs = std::move(c.staging);
  c.staging.clear();
  for (auto& job : jobs) {
    const SubmitMsg& m = job->msg;
    if (job->cancel.load() || !c.open.load()) {
      report(*job, ResultMsg{.attempt = m.attempt,
                             .status = TaskStatus::Cancelled,
                             .exit_code = -1,
                             .error = "cancelled while its inputs were fetched"});
      continue;
    }
    if (stopping.load()) {
      returned.fetch_add(1);
      report(*job, ResultMsg{.attempt = m.attempt,
                             .status = TaskStatus::Returned,
                             .error = "worker is draining"});
      continue;
    }
    std::string failed;
    bool all = true;
    std::set<Digest> seen;
    for (const auto& in : m.inputs) {
      if (!seen.insert(in.sha256).second) continue;  // two paths, one content: one fetch
      if (auto e = c.fetch_errors.find(in.sha256); e != c.fetch_errors.end()) {
        failed = pepita::fmt("input '{}': {}", in.path, e->second);
        break;
      }
      if (store->has(in.sha256)) continue;
      bool fetching = false;
      {
        std::lock_guard lock(fetch_mu);
        fetching = fetches.contains(in.sha256);
      }
      if (!fetching) {
        if (auto st = start_fetch(c, in.sha256, in.size); !st) {
          if (st.error().code() == ErrorCode::Disconnected) return st;
          failed = pepita::fmt("input '{}': {}", in.path, st.error().message());
          break;
        }
      }
      // (start_fetch completes a blob whose partial file was already whole at once.)
      if (!store->has(in.sha256)) all = false;
    }
    if (!failed.empty()) {
      report(*job, staging_error(m.attempt, std::move(failed)));
      continue;
    }
    if (all) {
      ready.push_back(std::move(job));
    } else {
      keep.push_back(std::move(job));
    }
  }
  c.fetch_errors.clear();
  // A job started meanwhile by a nested call keeps its place after the ones looked at here.
  keep.insert(keep.end(), std::make_move_iterator(c.staging.begin()),
              std::make_move_iterator(c.staging.end()));
  c.staging = std::move(keep);
  for (auto& job : ready) PEPITA_TRY_VOID(enqueue(cp, std::move(job)));
  return {};
}

Result<void> Worker::Impl::start_fetch(Client& c, const Digest& d, std::uint64_t size) {
  std::lock_guard lock(fetch_mu);
  if (fetches.contains(d)) return {};
  const std::string part = store->part_path(d);
  UniqueFd fd = PEPITA_TRY(sys::check_fd(sys::open(part.c_str(), O_RDWR | O_CREAT, 0600),
                                         "open the partial blob " + part));
  Fetch f;
  f.via = &c;
  f.size = size;
  f.hasher = PEPITA_TRY(worker::ChunkHasher::start(fd.get()));
  // Resume: the bytes already here (written in order) are hashed again, on the hasher's thread.
  std::int64_t have = sys::file_size(fd.get());
  if (have < 0) return fail_errno(static_cast<int>(-have), "stat " + part);
  if (static_cast<std::uint64_t>(have) > size) {
    PEPITA_TRY_VOID(sys::check_void(sys::ftruncate(fd.get(), 0), "truncate " + part));
    have = 0;
  }
  if (have > 0) {
    f.hasher->add(0, static_cast<std::uint64_t>(have));
    log(pepita::fmt("resuming input blob {} at byte {} of {}", to_hex(d), have, size));
  }
  f.received = f.requested = static_cast<std::uint64_t>(have);
  // The rest of the blob's blocks reserved in one call, best effort (a filesystem without
  // fallocate, or one too full, still fails at the pwrite that lacks room, with its message):
  // ext4 then writes into an allocated extent instead of reserving a delayed block per page
  // (bench/data/staging, 256 MiB, 256 KiB writes, 7 rotated rounds: process CPU median 0.303
  // and 0.296 s with it, 0.321 and 0.315 s without). KEEP_SIZE: the file's size stays the bytes
  // received, which a resume reads.
  if (static_cast<std::uint64_t>(have) < size) {
    (void)sys::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, static_cast<std::uint64_t>(have),
                         size - static_cast<std::uint64_t>(have));
  }
  f.fd = std::move(fd);
  auto [it, fresh] = fetches.emplace(d, std::move(f));
  (void)fresh;
  if (it->second.received == size) {
    // Complete already (the connection dropped after the last chunk): verify and admit.
    Fetch whole = std::move(it->second);
    fetches.erase(it);
    const auto got = whole.hasher->finish();
    whole.hasher.reset();
    whole.fd.reset();
    if (!got || *got != d) {
      ::unlink(part.c_str());
      return fail(ErrorCode::Corrupted, "partial blob " + to_hex(d) + " did not verify");
    }
    ::chmod(part.c_str(), 0444);
    PEPITA_TRY_VOID(
        sys::check_void(sys::ret(::rename(part.c_str(), store->path(d).c_str())), "rename blob"));
    store->admit(d, size);
    blobs_fetched.fetch_add(1);
    return {};
  }
  return request_more(c, d, it->second);
}

// Caller holds fetch_mu.
Result<void> Worker::Impl::request_more(Client& c, const Digest& d, Fetch& f) {
  while (f.requested < f.size && f.requested - f.received < std::uint64_t{kWindow} * kStageChunk) {
    const auto len =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(kStageChunk, f.size - f.requested));
    auto sent =
        c.conn->send(MessageType::FetchBlob, 0,
                     encode(FetchBlobMsg{.sha256 = d, .offset = f.requested, .length = len}));
    if (!sent) return fail(ErrorCode::Disconnected, sent.error().message());
    f.requested += len;
  }
  return {};
}

Result<void> Worker::Impl::on_blob_chunk(Client& c, const BlobChunkMsg& chunk, ByteSpan data) {
  const Digest d = chunk.sha256;
  std::lock_guard lock(fetch_mu);
  auto it = fetches.find(d);
  if (it == fetches.end() || it->second.via != &c) {
    return fail(ErrorCode::Protocol, "blob-chunk for blob " + to_hex(d) +
                                         " that this worker did not ask this driver for");
  }
  Fetch& f = it->second;
  if (!chunk.error.empty()) {
    c.fetch_errors[d] = "the driver cannot send it: " + chunk.error;
    fetches.erase(it);
    return {};
  }
  if (chunk.size != f.size || chunk.offset != f.received || data.empty()) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("blob-chunk for {}: {} bytes at offset {} of {}, expected bytes at "
                            "offset {} of {}",
                            to_hex(d), data.size(), chunk.offset, chunk.size, f.received, f.size));
  }
  if (data.size() > f.requested - f.received) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("blob-chunk for {}: {} bytes at offset {}, but only {} were asked for",
                            to_hex(d), data.size(), chunk.offset, f.requested - f.received));
  }
  std::int64_t w = 0;
  for (std::size_t at = 0; at < data.size();) {
    const std::size_t n = std::min(kWriteSlice, data.size() - at);
    const std::int64_t k = sys::pwrite_full(f.fd.get(), data.data() + at, n, chunk.offset + at);
    if (k != static_cast<std::int64_t>(n)) {
      w = k;  // the error, or a short write (w stays short of the chunk)
      break;
    }
    at += n;
    w += k;
  }
  if (w != static_cast<std::int64_t>(data.size())) {
    c.fetch_errors[d] = "cannot write to the worker's input store " + store->dir() + ": " +
                        (w < 0 ? Error::from_errno(static_cast<int>(w), "write").message()
                               : std::string("short write"));
    fetches.erase(it);
    return {};
  }
  // The one integrity check each byte gets: bulk frames do not MAC their data, the blob's
  // SHA-256 (named in the MAC'd Submit) proves it (docs/protocol.md, "Bulk frames").
  // Hashed on the fetch's own thread from the file, while this one receives the next chunk.
  f.hasher->add(chunk.offset, data.size());
  f.received += data.size();
  bytes_fetched.fetch_add(data.size());
  if (f.received < f.size) return request_more(c, d, f);
  const std::string part = store->part_path(d);
  if (const auto got = f.hasher->finish(); !got || *got != d) {
    // Nothing half-written stays: the blob never enters the store under a hash it lacks.
    if (++f.mismatches < 2 && sys::ftruncate(f.fd.get(), 0) == 0) {
      log(
          pepita::fmt("input blob {} from {} did not hash to its name (tampered with or damaged "
                      "in transit?); fetching it again",
                      to_hex(d), c.peer));
      f.hasher->reset();
      f.received = f.requested = 0;
      return request_more(c, d, f);
    }
    fetches.erase(it);
    ::unlink(part.c_str());
    c.fetch_errors[d] =
        "its bytes from the driver do not hash to its SHA-256, on two transfers (tampered with "
        "in transit, or the file changed while it was sent); nothing stored";
    return {};
  }
  const std::uint64_t size = f.size;
  fetches.erase(it);  // closes the partial file
  ::chmod(part.c_str(), 0444);
  if (::rename(part.c_str(), store->path(d).c_str()) != 0) {
    c.fetch_errors[d] = "cannot move the verified blob into the store " + store->dir();
    ::unlink(part.c_str());
    return {};
  }
  blobs_fetched.fetch_add(1);
  store->admit(d, size);
  return {};
}

void Worker::Impl::abandon_staging(Client& c) {
  {
    std::lock_guard lock(fetch_mu);
    for (auto it = fetches.begin(); it != fetches.end();) {
      it = it->second.via == &c ? fetches.erase(it) : std::next(it);
    }
  }
  auto jobs = std::move(c.staging);
  c.staging.clear();
  for (auto& job : jobs) {
    report(*job, ResultMsg{.attempt = job->msg.attempt,
                           .status = TaskStatus::Cancelled,
                           .exit_code = -1,
                           .error = "its driver went away while its inputs were fetched"});
  }
}

std::optional<ResultMsg> Worker::Impl::materialise_inputs(Job& job) {
  for (const auto& in : job.msg.inputs) {
    if (auto ok = store->materialise(in.sha256, job.scratch + "/" + in.path); !ok) {
      return staging_error(job.msg.attempt,
                           pepita::fmt("input '{}': {}", in.path, ok.error().message()));
    }
  }
  return std::nullopt;
}

void Worker::Impl::send_outputs_async(const std::shared_ptr<Job>& job, ResultMsg r) {
  Client& c = *job->client;
  auto finished = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard lock(c.senders_mu);
  std::erase_if(c.senders, [](const auto& s) { return s.first->load(); });
  c.senders.emplace_back(finished, std::jthread([this, job, r = std::move(r), finished]() mutable {
                           send_outputs(job, std::move(r));
                           finished->store(true);
                         }));
}

void Worker::Impl::send_outputs(const std::shared_ptr<Job>& job, ResultMsg r) {
  Job& j = *job;
  Client& c = *j.client;
  const std::string root = fs::weakly_canonical(j.scratch).string();
  std::string failure;
  std::string buf;
  for (std::uint32_t i = 0; i < j.msg.outputs.size() && failure.empty(); ++i) {
    const std::string& declared = j.msg.outputs[i];
    const std::string full = j.scratch + "/" + declared;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(full, ec))) {
      failure = pepita::fmt("declared output '{}' was not produced by the task", declared);
      break;
    }
    const std::string real = fs::weakly_canonical(full, ec).string();
    if (ec || !real.starts_with(root + "/")) {
      failure =
          pepita::fmt("declared output '{}' is a link to outside the task's directory", declared);
      break;
    }
    UniqueFd fd(sys::open(real.c_str(), O_RDONLY));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      failure = pepita::fmt("declared output '{}' is not a readable regular file", declared);
      break;
    }
    const auto size = static_cast<std::uint64_t>(st.st_size);
    Sha256 hash;
    std::uint64_t off = 0;
    do {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(kStageChunk, size - off));
      buf.resize(n);
      const std::int64_t got = n ? sys::pread_full(fd.get(), buf.data(), n, off) : 0;
      if (got != static_cast<std::int64_t>(n)) {
        failure = pepita::fmt("declared output '{}' changed size while it was sent", declared);
        break;
      }
      hash.update(std::string_view(buf));
      if (opts.output_chunk_hook) opts.output_chunk_hook(declared, buf);
      // A bulk frame: the metadata is MAC'd, the bytes go from `buf` to the socket uncopied and
      // are proved by the SHA-256 the MAC'd Result carries.
      const OutputChunkMsg oc{.attempt = j.msg.attempt, .index = i, .offset = off, .size = size};
      if (c.open.load() &&
          !c.conn->send_bulk(MessageType::OutputChunk, j.id, encode(oc), as_bytes(buf))) {
        failure = "connection lost while sending outputs";
        break;
      }
      off += n;
      output_bytes.fetch_add(n);
    } while (off < size);
    if (failure.empty()) {
      r.outputs.push_back(StagedFile{.path = declared, .size = size, .sha256 = hash.finish()});
    }
  }
  if (!failure.empty()) {
    r.status = TaskStatus::Failed;
    if (r.exit_code == 0) r.exit_code = 1;
    r.error = failure;
    r.outputs.clear();
  }
  std::error_code ec;
  fs::remove_all(j.scratch, ec);
  report(j, r);
}

}  // namespace pepita::transport
