#pragma once
// Per-queue request tags, as blk-mq's sbitmap-based tag allocator: a lock-free bitmap of `depth`
// tags per hardware queue. A tag names one in-flight request on its queue (ublk and virtio-blk use
// it to index their per-request state), so a tag is never handed out twice at once.
//
//   TagSet tags({.nr_hw_queues = 4, .queue_depth = 128});
//   uint32_t tag = PEPITA_TRY(tags.queue(q).get());  // blocks while all 128 are in flight
//   ...submit with tag...; tags.queue(q).put(tag);

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "pepita/abi/blk_mq.hpp"
#include "pepita/error.hpp"

namespace pepita::blk_mq {

using abi::blk_mq::TagSetConfig;

/// The tags of one hardware queue. Thread-safe: any thread may get and put.
class TagAllocator {
 public:
  /// depth in 1..abi::blk_mq::kMaxDepth (validated by TagSet / create()).
  explicit TagAllocator(uint32_t depth);
  TagAllocator(const TagAllocator&) = delete;
  TagAllocator& operator=(const TagAllocator&) = delete;

  static Result<std::unique_ptr<TagAllocator>> create(uint32_t depth);

  /// A free tag, or nullopt when all `depth` tags are in flight. Never blocks.
  std::optional<uint32_t> try_get() noexcept;
  /// A free tag, waiting for a put() when none is free; WouldBlock instead of waiting when
  /// `no_wait` (the request carried REQ_NOWAIT).
  Result<uint32_t> get(bool no_wait = false);
  /// Returns `tag` (from get/try_get of this allocator). Returning a tag that is not in flight is
  /// a caller bug; it is detected and reported as InvalidArgument rather than corrupting the map.
  Result<void> put(uint32_t tag);

  uint32_t depth() const noexcept { return depth_; }
  /// Tags currently handed out (a snapshot).
  uint32_t in_flight() const noexcept;

 private:
  uint32_t depth_;
  std::vector<std::atomic<uint64_t>> words_;  // bit set = tag in use
  std::atomic<uint32_t> hint_{0};        // word to start the next search at, spreads contention
  std::atomic<uint32_t> generation_{0};  // bumped by put(); get() waits on it
};

/// One TagAllocator per hardware queue, as blk_mq_tag_set.
class TagSet {
 public:
  /// Aborts on an invalid config; use create() for untrusted shapes.
  explicit TagSet(TagSetConfig config);
  static Result<std::unique_ptr<TagSet>> create(TagSetConfig config);

  const TagSetConfig& config() const noexcept { return config_; }
  /// queue < config().nr_hw_queues.
  TagAllocator& queue(uint32_t queue) noexcept { return *queues_[queue]; }

 private:
  TagSetConfig config_;
  std::vector<std::unique_ptr<TagAllocator>> queues_;
};

/// Checks a tag-set shape, with a message naming the violated limit.
Result<void> validate_tag_set(TagSetConfig config);

}  // namespace pepita::blk_mq
