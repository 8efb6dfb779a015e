// ZramStore's I/O counters, the kernel zram's io_stat (failed_reads, failed_writes, invalid_io)
// plus read/write counts (the crate's AtomicStats::record_read/record_failed_read/
// record_failed_write): exact counts from one and from many threads, each failure counted on its
// error path only, reset() zeroing them.

#include <gtest/gtest.h>

#include <cstddef>
#include <thread>
#include <vector>

#include "detail/store_probe.hpp"
#include "page_gen.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {
namespace {

std::unique_ptr<ZramStore> make(const ZramConfig& config) {
  auto store = ZramStore::create(config);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

TEST(ZramIoStat, NReadsCountNAndNWritesCountN) {
  auto store = make(ZramConfig::with_size(16 * kPageSize));
  ASSERT_TRUE(store);
  std::vector<std::byte> page(kPageSize);
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_EQ(store->write_page(i, testing::random_page(static_cast<uint32_t>(i)).data()), 0);
  }
  for (int round = 0; round < 3; ++round) {
    for (uint64_t i = 0; i < 16; ++i) ASSERT_EQ(store->read_page(i, page.data()), 0);
  }
  // read()/write() over a byte range count each page they touch, partial edges included.
  std::vector<std::byte> buf(2 * kPageSize + 100);
  ASSERT_TRUE(store->read(kPageSize - 50, buf).has_value());  // pages 0..3: four reads
  ASSERT_TRUE(store->write(10, std::span(buf).first(kPageSize)).has_value());  // pages 0 and 1
  const ZramStats s = store->stats();
  EXPECT_EQ(s.num_reads, 3u * 16 + 4);
  EXPECT_EQ(s.num_writes, 10u + 2);
  EXPECT_EQ(s.failed_reads, 0u);
  EXPECT_EQ(s.failed_writes, 0u);
  EXPECT_EQ(s.invalid_io, 0u);
}

TEST(ZramIoStat, ReadsFromManyThreadsAreCountedExactly) {
  auto store = make(ZramConfig::with_size(64 * kPageSize));
  ASSERT_TRUE(store);
  constexpr int kThreads = 8;
  constexpr int kReadsEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> page(kPageSize);
      for (int i = 0; i < kReadsEach; ++i) {
        (void)store->read_page(static_cast<uint64_t>((t * 7 + i) % 64), page.data());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(store->stats().num_reads, static_cast<uint64_t>(kThreads) * kReadsEach);
}

TEST(ZramIoStat, OutOfRangeRequestsCountAsInvalidIoOnly) {
  auto store = make(ZramConfig::with_size(4 * kPageSize));
  ASSERT_TRUE(store);
  std::vector<std::byte> page(kPageSize);
  EXPECT_EQ(store->read_page(4, page.data()), -EINVAL);
  EXPECT_EQ(store->write_page(99, page.data()), -EINVAL);
  EXPECT_EQ(store->discard_page(4), -EINVAL);
  EXPECT_EQ(store->write_partial(0, 4000, page.data(), 200), -EINVAL);  // crosses the page end
  auto r = store->read(3 * kPageSize + 1, page);  // byte range ends past disksize
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  const ZramStats s = store->stats();
  EXPECT_EQ(s.invalid_io, 5u);
  // As the kernel: a rejected request is not a read or write, nor a failed one.
  EXPECT_EQ(s.num_reads, 0u);
  EXPECT_EQ(s.num_writes, 0u);
  EXPECT_EQ(s.failed_reads, 0u);
  EXPECT_EQ(s.failed_writes, 0u);
}

TEST(ZramIoStat, ACorruptObjectCountsOneFailedRead) {
  auto store = make(ZramConfig::with_size(4 * kPageSize));
  ASSERT_TRUE(store);
  const auto text = testing::text_page(1);
  ASSERT_EQ(store->write_page(2, text.data()), 0);
  ASSERT_EQ(store->page_info(2).kind, PageInfo::Kind::Compressed);
  ASSERT_TRUE(detail::StoreProbe::corrupt(*store, 2));
  std::vector<std::byte> page(kPageSize);
  EXPECT_EQ(store->read_page(2, page.data()), -EIO);
  auto r = store->read(2 * kPageSize, page);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::Corrupted);
  EXPECT_EQ(store->read_page(1, page.data()), 0);  // an intact page still reads
  const ZramStats s = store->stats();
  EXPECT_EQ(s.failed_reads, 2u);
  EXPECT_EQ(s.num_reads, 3u);
  EXPECT_EQ(s.invalid_io, 0u);
}

TEST(ZramIoStat, AWriteRefusedByMemLimitCountsOneFailedWrite) {
  auto store = make(ZramConfig::with_size(64 * kPageSize)
                        .compressor(ZramCompressor::None)
                        .with_mem_limit(4 * kPageSize));
  ASSERT_TRUE(store);
  uint64_t ok = 0;
  uint64_t index = 0;
  int rc = 0;
  for (; index < 64; ++index) {
    rc = store->write_page(index, testing::random_page(static_cast<uint32_t>(index)).data());
    if (rc != 0) break;
    ++ok;
  }
  ASSERT_EQ(rc, -ENOSPC) << "64 raw pages fit under a 4-page mem_limit";
  ZramStats s = store->stats();
  EXPECT_EQ(s.failed_writes, 1u);
  EXPECT_EQ(s.num_writes, ok + 1);
  // A partial write over the limit fails the same way, once.
  const auto page = testing::random_page(77);
  EXPECT_EQ(store->write_partial(index, 0, page.data(), 100), -ENOSPC);
  s = store->stats();
  EXPECT_EQ(s.failed_writes, 2u);
  EXPECT_EQ(s.failed_reads, 0u);
  EXPECT_EQ(s.invalid_io, 0u);
}

TEST(ZramIoStat, ResetZeroesTheIoCounters) {
  auto store = make(ZramConfig::with_size(4 * kPageSize));
  ASSERT_TRUE(store);
  std::vector<std::byte> page(kPageSize);
  ASSERT_EQ(store->read_page(0, page.data()), 0);
  ASSERT_EQ(store->read_page(9, page.data()), -EINVAL);
  ASSERT_TRUE(store->reset().has_value());
  const ZramStats s = store->stats();
  EXPECT_EQ(s.num_reads, 0u);
  EXPECT_EQ(s.invalid_io, 0u);
}

}  // namespace
}  // namespace pepita::zram
