// Concurrent writers on different pages and on the same pages, with compaction running alongside.
// Bounded: fixed iteration counts, small stores. Meant for ThreadSanitizer too.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/zram/zram_disk.hpp"
#include "zram/page_gen.hpp"

namespace pepita::zram {
namespace {

using blk_mq::Op;

TEST(ZramConcurrency, QueuesOnDisjointPagesWithCompaction) {
  constexpr uint32_t kQueues = 4;
  constexpr uint32_t kPagesPerQueue = 64;
  auto disk = ZramDisk::create(
      {.store = {.disksize = kQueues * kPagesPerQueue * kPageSize}, .queues = kQueues});
  ASSERT_TRUE(disk.has_value());
  blk_mq::TagSet tags((*disk)->info().tag_set);
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::thread compactor([&] {
    while (!stop.load()) (*disk)->store().compact();
  });
  std::vector<std::thread> writers;
  for (uint32_t q = 0; q < kQueues; ++q) {
    writers.emplace_back([&, q] {
      std::vector<std::byte> in(kPageSize);
      for (int round = 0; round < 6; ++round) {
        for (uint32_t p = 0; p < kPagesPerQueue; ++p) {
          const uint32_t index = q * kPagesPerQueue + p;
          auto out = (p + round) % 5 == 0 ? testing::random_page(index * 31 + round)
                                          : testing::text_page(index * 31 + round);
          const uint64_t sector = uint64_t{index} * (kPageSize / 512);
          if (!blk_mq::execute(**disk, tags, q, Op::Write, sector, out)) ++failures;
          if (!blk_mq::execute(**disk, tags, q, Op::Read, sector, in)) ++failures;
          if (in != out) ++failures;
          if (p % 3 == 0 && !blk_mq::execute(**disk, tags, q, Op::Discard, sector, {}, 8))
            ++failures;
        }
      }
    });
  }
  for (auto& writer : writers) writer.join();
  stop = true;
  compactor.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ZramConcurrency, WritersOnTheSamePagesNeverTearAPage) {
  auto store = ZramStore::create({.disksize = 4 * kPageSize, .algorithm = Algorithm::Lz4});
  ASSERT_TRUE(store.has_value());
  // Each writer writes whole pages of its own pattern and partial slices of it; a reader must see
  // each page as one writer's page (or zero), never a mix within a 512-byte slice.
  constexpr int kWriters = 3;
  std::atomic<int> torn{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      const auto page = testing::same_page(0x0101010101010101ull * (w + 1));
      const auto text = testing::text_page(w);
      for (int i = 0; i < 400; ++i) {
        const uint64_t index = i % 4;
        if (i % 3 == 0) {
          EXPECT_EQ((*store)->write_partial(index, 512 * (i % 8), page.data(), 512), 0);
        } else {
          EXPECT_EQ((*store)->write_page(index, (i % 2) ? page.data() : text.data()), 0);
        }
      }
    });
  }
  threads.emplace_back([&] {
    std::vector<std::byte> in(kPageSize);
    while (!stop.load()) {
      for (uint64_t index = 0; index < 4; ++index) {
        if ((*store)->read_page(index, in.data()) != 0) ++torn;
        // Slices of a same-filled writer page hold one byte value throughout.
        for (size_t slice = 0; slice < kPageSize; slice += 512) {
          const auto first = in[slice];
          if (first == std::byte{1} || first == std::byte{2} || first == std::byte{3}) {
            for (size_t b = slice; b < slice + 512; ++b)
              if (in[b] != first) {
                ++torn;
                break;
              }
          }
        }
      }
      (*store)->compact();
    }
  });
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  stop = true;
  threads.back().join();
  EXPECT_EQ(torn.load(), 0);
  // Stats stay consistent after the storm.
  const ZramStats s = (*store)->stats();
  EXPECT_LE(s.orig_data_size, 4u * kPageSize);
}

}  // namespace
}  // namespace pepita::zram
