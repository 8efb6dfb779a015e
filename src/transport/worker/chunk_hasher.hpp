#pragma once
// Worker daemon, staged inputs (issue 24): the SHA-256 of a blob being fetched, computed on its
// own thread from what the session thread already wrote to the blob's partial file (read through
// a mapping of its page cache, not copied out again), so receiving and writing a chunk overlaps
// hashing the previous ones (two cores both work on one transfer).
//
//   ChunkHasher h(part_fd);          // a thread reading the partial file back (mapped)
//   h.add(offset, len);              // after each pwrite of [offset, offset+len), in order
//   Digest d = h.finish();           // waits for the ranges added so far; then reset() or drop

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "pepita/core/sha256.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::transport::worker {

class ChunkHasher {
 public:
  /// Hashes ranges of `fd` (the caller's partial file, which must outlive nothing here: the
  /// hasher reads through its own duplicate). Internal when the fd cannot be duplicated.
  static Result<std::unique_ptr<ChunkHasher>> start(int fd);
  ~ChunkHasher();
  ChunkHasher(const ChunkHasher&) = delete;
  ChunkHasher& operator=(const ChunkHasher&) = delete;

  /// Queues bytes [offset, offset + len) for hashing; ranges must follow each other from 0.
  void add(std::uint64_t offset, std::uint64_t len);
  /// Waits until every queued range is hashed and returns the digest of them all; Io when the
  /// file could not be read back (then the blob cannot be verified and must be fetched again).
  Result<Sha256Digest> finish();
  /// Starts over at offset 0 (after a transfer that did not verify). Waits for queued work.
  void reset();

  explicit ChunkHasher(UniqueFd fd);

 private:
  void run(std::stop_token st);
  void wait_idle(std::unique_lock<std::mutex>& lock);
  bool hash_range(std::uint64_t offset, std::uint64_t len);

  UniqueFd fd_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> queue_;  // ranges not hashed yet
  bool busy_ = false;  // the thread holds a range taken from queue_
  std::string error_;  // the first read-back failure
  Sha256 hash_;        // touched by the thread only while busy_, else under mu_
  std::string buf_;    // the thread's read-back buffer (when the file cannot be mapped)
  // Last: started after every member it uses exists, joined before any of them is destroyed.
  std::jthread thread_;
};

}  // namespace pepita::transport::worker
