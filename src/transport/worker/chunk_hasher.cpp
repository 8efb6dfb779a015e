// Worker daemon: the SHA-256 of a fetched blob on its own thread (see chunk_hasher.hpp).
#include "worker/chunk_hasher.hpp"

#include <unistd.h>

#include <algorithm>

#include "pepita/core/format.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::transport::worker {

namespace {
constexpr std::size_t kReadBack = 1 << 20;     // bytes read back per pread (stays in cache)
constexpr std::uint64_t kMapWindow = 8 << 20;  // bytes hashed per mapping (a chunk or two)
}  // namespace

// Hashes [offset, offset + len) of the partial file through read-only mappings of its page
// cache, so the bytes are not copied again (a read-back was a copy of every byte fetched, as
// dear as the pwrite that put them there); pread into buf_ where the file cannot be mapped.
// The ranges were written before add(), and the session truncates the file only when this
// thread is idle (finish()/reset() first), so no mapped page lies past the end of the file.
bool ChunkHasher::hash_range(std::uint64_t offset, std::uint64_t len) {
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  for (std::uint64_t done = 0; done < len;) {
    const std::uint64_t at = offset + done;
    const std::uint64_t base = at & ~(page - 1);
    const auto n = static_cast<std::size_t>(std::min(kMapWindow, len - done));
    const std::size_t skip = static_cast<std::size_t>(at - base);
    if (auto m = Mapping::map(skip + n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd_.get(),
                              static_cast<off_t>(base), "partial blob");
        m) {
      // SAFETY: the mapping holds skip + n readable bytes, the file's bytes at [base, at + n).
      hash_.update(std::string_view(reinterpret_cast<const char*>(m->bytes()) + skip, n));
      done += n;
      continue;
    }
    const auto k = std::min(n, kReadBack);
    buf_.resize(k);
    if (sys::pread_full(fd_.get(), buf_.data(), k, at) != static_cast<std::int64_t>(k)) {
      std::lock_guard relock(mu_);
      error_ =
          pepita::fmt("cannot read back bytes {}..{} of a partial blob to hash them", at, at + k);
      return false;
    }
    hash_.update(std::string_view(buf_.data(), k));
    done += k;
  }
  return true;
}

Result<std::unique_ptr<ChunkHasher>> ChunkHasher::start(int fd) {
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup) return fail(ErrorCode::Internal, "cannot duplicate a partial blob's descriptor");
  return std::make_unique<ChunkHasher>(std::move(dup));
}

ChunkHasher::ChunkHasher(UniqueFd fd)
    : fd_(std::move(fd)), thread_([this](std::stop_token st) { run(st); }) {}

ChunkHasher::~ChunkHasher() {
  thread_.request_stop();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ChunkHasher::add(std::uint64_t offset, std::uint64_t len) {
  {
    std::lock_guard lock(mu_);
    queue_.emplace_back(offset, len);
  }
  cv_.notify_all();
}

void ChunkHasher::wait_idle(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

Result<Sha256Digest> ChunkHasher::finish() {
  std::unique_lock lock(mu_);
  wait_idle(lock);
  if (!error_.empty()) return fail(ErrorCode::Io, error_);
  return hash_.finish();
}

void ChunkHasher::reset() {
  std::unique_lock lock(mu_);
  wait_idle(lock);
  hash_.reset();
  error_.clear();
}

void ChunkHasher::run(std::stop_token st) {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, st, [&] { return !queue_.empty(); });
    if (st.stop_requested()) return;
    auto [offset, len] = queue_.front();
    queue_.pop_front();
    busy_ = true;
    const bool failed = !error_.empty();
    lock.unlock();
    // Outside the lock: only this thread touches hash_ and buf_ while busy_ is set.
    if (!failed) (void)hash_range(offset, len);
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace pepita::transport::worker
