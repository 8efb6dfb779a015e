// Lock-free per-queue tag bitmap (the idea of the kernel's sbitmap, without its per-CPU hints).
#include "pepita/blk_mq/tag_allocator.hpp"

#include <bit>
#include <cstdlib>

#include "pepita/core/format.hpp"

namespace pepita::blk_mq {

Result<void> validate_tag_set(TagSetConfig config) {
  using abi::blk_mq::TagSetError;
  switch (abi::blk_mq::validate(config)) {
    case TagSetError::Ok: return {};
    case TagSetError::TooFewQueues:
    case TagSetError::TooManyQueues:
      return fail(ErrorCode::InvalidArgument, fmt("tag set has {} hardware queues; use 1..{}",
                                                  config.nr_hw_queues, abi::blk_mq::kMaxQueues));
    case TagSetError::DepthTooSmall:
    case TagSetError::DepthTooLarge:
      return fail(ErrorCode::InvalidArgument, fmt("queue depth {} is out of range; use 1..{}",
                                                  config.queue_depth, abi::blk_mq::kMaxDepth));
  }
  return fail(ErrorCode::Internal, "unhandled tag set check");
}

TagAllocator::TagAllocator(uint32_t depth) : depth_(depth), words_((depth + 63) / 64) {
  if (depth == 0 || depth > abi::blk_mq::kMaxDepth) std::abort();
  // Bits past `depth` in the last word are permanently "in use" so they are never handed out.
  const uint32_t tail = depth % 64;
  if (tail != 0) words_.back().store(~uint64_t{0} << tail, std::memory_order_relaxed);
}

Result<std::unique_ptr<TagAllocator>> TagAllocator::create(uint32_t depth) {
  PEPITA_TRY_VOID(validate_tag_set({1, depth}));
  return std::make_unique<TagAllocator>(depth);
}

std::optional<uint32_t> TagAllocator::try_get() noexcept {
  const auto nwords = static_cast<uint32_t>(words_.size());
  const uint32_t start = hint_.load(std::memory_order_relaxed) % nwords;
  for (uint32_t i = 0; i < nwords; ++i) {
    const uint32_t w = (start + i) % nwords;
    uint64_t word = words_[w].load(std::memory_order_relaxed);
    while (word != ~uint64_t{0}) {
      const int bit = std::countr_one(word);
      // acquire: the previous owner's writes to this tag's per-request state happen before ours.
      if (words_[w].compare_exchange_weak(word, word | (uint64_t{1} << bit),
                                          std::memory_order_acquire, std::memory_order_relaxed)) {
        hint_.store(w, std::memory_order_relaxed);
        return w * 64 + static_cast<uint32_t>(bit);
      }
    }
  }
  return std::nullopt;
}

Result<uint32_t> TagAllocator::get(bool no_wait) {
  for (;;) {
    // Read the generation before searching so a put() between the search and the wait wakes us.
    const uint32_t generation = generation_.load(std::memory_order_acquire);
    if (auto tag = try_get()) return *tag;
    if (no_wait)
      return fail(ErrorCode::NoTagsAvailable,
                  fmt("all {} tags of the queue are in flight (no-wait request)", depth_), EAGAIN);
    generation_.wait(generation, std::memory_order_acquire);
  }
}

Result<void> TagAllocator::put(uint32_t tag) {
  if (tag >= depth_)
    return fail(ErrorCode::InvalidArgument,
                fmt("tag {} is outside the queue depth {}", tag, depth_));
  const uint64_t mask = uint64_t{1} << (tag % 64);
  // release: our per-request state writes happen before the next owner's acquire in try_get().
  const uint64_t old = words_[tag / 64].fetch_and(~mask, std::memory_order_release);
  if ((old & mask) == 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("tag {} was returned twice (it is not in flight)", tag));
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  return {};
}

uint32_t TagAllocator::in_flight() const noexcept {
  uint32_t count = 0;
  for (const auto& word : words_) count += std::popcount(word.load(std::memory_order_relaxed));
  const uint32_t tail = depth_ % 64;
  return tail == 0 ? count : count - (64 - tail);
}

TagSet::TagSet(TagSetConfig config) : config_(config) {
  if (abi::blk_mq::validate(config) != abi::blk_mq::TagSetError::Ok) std::abort();
  queues_.reserve(config.nr_hw_queues);
  for (uint32_t q = 0; q < config.nr_hw_queues; ++q)
    queues_.push_back(std::make_unique<TagAllocator>(config.queue_depth));
}

Result<std::unique_ptr<TagSet>> TagSet::create(TagSetConfig config) {
  PEPITA_TRY_VOID(validate_tag_set(config));
  return std::make_unique<TagSet>(config);
}

}  // namespace pepita::blk_mq
