#pragma once
// The worker's content-addressed store of staged inputs (issue 24): verified blobs under
// <cache>/blobs/<sha256 hex>, read-only, indexed in memory with a last-use tick; past its size
// cap the least recently used blob that no queued or running task holds (pin) is removed.
// Partial fetches live beside them as <hex>.part, kept across connections so a dropped transfer
// resumes from its offset.
//
//   auto store = PEPITA_TRY(BlobStore::open(cache_dir + "/blobs", 10ull << 30));
//   store->pin(d);                                   // a task needs it
//   if (!store->has(d)) { /* fetch into part_path(d), verify, rename to path(d) */
//     store->admit(d, size); }                       // indexes it, evicts past the cap
//   PEPITA_TRY_VOID(store->materialise(d, scratch + "/data/in.txt"));

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "pepita/error.hpp"
#include "pepita/transport/crypto.hpp"

namespace pepita::transport::worker {

class BlobStore {
 public:
  /// Creates `dir` (0700) when missing and indexes the blobs already there (oldest mtime first
  /// in line for eviction); removes leftover temporary files. `cap` bytes: 0 = unlimited.
  static Result<std::unique_ptr<BlobStore>> open(std::string dir, std::uint64_t cap);

  std::string path(const Digest& d) const;
  std::string part_path(const Digest& d) const;
  const std::string& dir() const noexcept { return dir_; }

  bool has(const Digest& d) const;
  /// A task holds `d` (present or still to fetch): it is not evicted until unpin.
  void pin(const Digest& d);
  void unpin(const Digest& d);
  /// A verified blob of `size` bytes was renamed to path(d): index it as just used, then
  /// evict unpinned blobs, least recently used first, while the store exceeds its cap.
  void admit(const Digest& d, std::uint64_t size);
  /// Places blob `d` read-only at `dst` (parent directories created): a hard link from the
  /// store, a copy when linking fails (another file system). Marks it used.
  Result<void> materialise(const Digest& d, const std::string& dst);

  std::uint64_t bytes() const;
  std::uint64_t evicted() const;

 private:
  struct Entry {
    std::uint64_t size = 0;
    std::uint64_t last_use = 0;
  };
  explicit BlobStore(std::string dir, std::uint64_t cap) : dir_(std::move(dir)), cap_(cap) {}
  void evict_locked();

  std::string dir_;
  std::uint64_t cap_;
  mutable std::mutex mu_;
  std::map<Digest, Entry> entries_;
  std::map<Digest, int> pins_;
  std::uint64_t total_ = 0;
  std::uint64_t tick_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace pepita::transport::worker
