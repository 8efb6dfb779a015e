// Worker daemon: the SHA-256 of a fetched blob on its own thread (see chunk_hasher.hpp).
#include "worker/chunk_hasher.hpp"

#include <algorithm>

#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::transport::worker {

namespace {
constexpr std::size_t kReadBack = 1 << 20;  // bytes read back per pread (stays in cache)
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
    for (std::uint64_t done = 0; done < len && !failed;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kReadBack, len - done));
      buf_.resize(n);
      const std::int64_t got = sys::pread_full(fd_.get(), buf_.data(), n, offset + done);
      if (got != static_cast<std::int64_t>(n)) {
        std::lock_guard relock(mu_);
        error_ = pepita::fmt("cannot read back bytes {}..{} of a partial blob to hash them",
                             offset + done, offset + done + n);
        break;
      }
      hash_.update(std::string_view(buf_.data(), n));
      done += n;
    }
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace pepita::transport::worker
