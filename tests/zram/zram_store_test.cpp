#include "pepita/zram/zram_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "detail/store_probe.hpp"
#include "zram/page_gen.hpp"

namespace pepita::zram {
namespace {

using testing::random_page;
using testing::same_page;
using testing::text_page;

std::unique_ptr<ZramStore> make(Algorithm algorithm, uint64_t pages = 256, uint64_t limit = 0) {
  auto store = ZramStore::create(
      {.disksize = pages * kPageSize, .algorithm = algorithm, .mem_limit = limit});
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return std::move(*store);
}

class ZramStoreTest : public ::testing::TestWithParam<Algorithm> {};

TEST_P(ZramStoreTest, StoresEachKindOfPageAndReadsItBack) {
  auto store = make(GetParam());
  const auto text = text_page(1);
  const auto noise = random_page(2);
  const auto same = same_page(0x0123456789abcdefull);
  const auto zero = same_page(0);
  ASSERT_EQ(store->write_page(0, text.data()), 0);
  ASSERT_EQ(store->write_page(1, noise.data()), 0);
  ASSERT_EQ(store->write_page(2, same.data()), 0);
  ASSERT_EQ(store->write_page(3, zero.data()), 0);

  EXPECT_EQ(store->page_info(0).kind, PageInfo::Kind::Compressed);
  EXPECT_LT(store->page_info(0).stored_bytes, kPageSize / 2);
  EXPECT_EQ(store->page_info(1).kind, PageInfo::Kind::Huge);
  EXPECT_EQ(store->page_info(2).kind, PageInfo::Kind::Same);
  EXPECT_EQ(store->page_info(2).same_value, 0x0123456789abcdefull);
  EXPECT_EQ(store->page_info(3).kind, PageInfo::Kind::Same);
  EXPECT_EQ(store->page_info(4).kind, PageInfo::Kind::Empty);

  std::vector<std::byte> page(kPageSize);
  for (auto [index, expect] : {std::pair{0, &text}, {1, &noise}, {2, &same}, {3, &zero}}) {
    ASSERT_EQ(store->read_page(index, page.data()), 0);
    EXPECT_EQ(page, *expect) << "page " << index;
  }
  ASSERT_EQ(store->read_page(4, page.data()), 0);
  EXPECT_EQ(page, zero);

  const ZramStats s = store->stats();
  EXPECT_EQ(s.orig_data_size, 4u * kPageSize);
  EXPECT_EQ(s.same_pages, 2u);
  EXPECT_EQ(s.huge_pages, 1u);
  EXPECT_EQ(s.huge_pages_since, 1u);
  EXPECT_EQ(s.compr_data_size, kPageSize + store->page_info(0).stored_bytes);
  EXPECT_GE(s.mem_used_total, 2u * kPageSize);  // the huge page plus one slab
  EXPECT_EQ(s.mem_used_total % kPageSize, 0u);
  EXPECT_GE(s.mem_used_max, s.mem_used_total);
}

TEST_P(ZramStoreTest, OverwriteAndDiscardFreeMemoryAtOnce) {
  auto store = make(GetParam());
  for (uint32_t i = 0; i < 64; ++i) ASSERT_EQ(store->write_page(i, random_page(i).data()), 0);
  EXPECT_EQ(store->stats().mem_used_total, 64u * kPageSize);
  EXPECT_EQ(store->stats().huge_pages, 64u);
  ASSERT_TRUE(store->discard(0, 32 * kPageSize).has_value());
  EXPECT_EQ(store->stats().mem_used_total, 32u * kPageSize);
  EXPECT_EQ(store->stats().orig_data_size, 32u * kPageSize);
  // Overwriting with zeros turns pages into same-filled ones, which hold no memory.
  const auto zero = same_page(0);
  for (uint32_t i = 32; i < 64; ++i) ASSERT_EQ(store->write_page(i, zero.data()), 0);
  EXPECT_EQ(store->stats().mem_used_total, 0u);
  EXPECT_EQ(store->stats().huge_pages, 0u);
  EXPECT_EQ(store->stats().same_pages, 32u);
  EXPECT_EQ(store->stats().huge_pages_since, 64u);
}

TEST_P(ZramStoreTest, PartialAndUnalignedAccess) {
  auto store = make(GetParam(), 8);
  std::vector<std::byte> model(8 * kPageSize);
  auto put = [&](uint64_t offset, std::vector<std::byte> bytes) {
    ASSERT_TRUE(store->write(offset, bytes).has_value());
    std::copy(bytes.begin(), bytes.end(), model.begin() + static_cast<ptrdiff_t>(offset));
  };
  put(100, std::vector<std::byte>(10, std::byte{0x5a}));
  auto text = text_page(9);
  put(kPageSize - 7, {text.begin(), text.begin() + 3000});  // spans two pages
  put(3 * kPageSize, text_page(4));
  put(3 * kPageSize + 1, {std::byte{1}});
  // Zeroes the tail of page 3 and the head of page 4: no whole page inside.
  ASSERT_TRUE(store->discard(3 * kPageSize + 10, 5000).has_value());
  std::fill_n(model.begin() + 3 * kPageSize + 10, 5000, std::byte{0});
  // The same over stored data on both sides: the rest of page 6 past the range stays.
  put(5 * kPageSize, text_page(5));
  put(6 * kPageSize, text_page(6));
  ASSERT_TRUE(store->discard(5 * kPageSize + 10, 5000).has_value());
  std::fill_n(model.begin() + 5 * kPageSize + 10, 5000, std::byte{0});
  std::vector<std::byte> all(model.size());
  ASSERT_TRUE(store->read(0, all).has_value());
  EXPECT_EQ(all, model);
  std::vector<std::byte> middle(333);
  ASSERT_TRUE(store->read(kPageSize - 100, middle).has_value());
  EXPECT_TRUE(std::equal(middle.begin(), middle.end(), model.begin() + kPageSize - 100));
}

TEST_P(ZramStoreTest, OutOfRangeRequestsFailAndChangeNothing) {
  auto store = make(GetParam(), 4);
  const auto text = text_page(3);
  ASSERT_EQ(store->write_page(3, text.data()), 0);
  const std::string before = store->mm_stat();
  std::vector<std::byte> buffer(kPageSize);
  EXPECT_EQ(store->write_page(4, text.data()), -EINVAL);
  EXPECT_EQ(store->read_page(4, buffer.data()), -EINVAL);
  EXPECT_EQ(store->discard_page(~uint64_t{0}), -EINVAL);
  EXPECT_EQ(store->write_partial(0, 4000, text.data(), 100), -EINVAL);
  auto past = store->write(3 * kPageSize + 1, buffer);
  ASSERT_FALSE(past.has_value());
  EXPECT_EQ(past.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(past.error().message().find("past disksize"), std::string::npos);
  EXPECT_FALSE(store->read(~uint64_t{0} - 10, buffer).has_value());
  EXPECT_FALSE(store->discard(4 * kPageSize, 1).has_value());
  EXPECT_TRUE(store->write(4 * kPageSize, {}).has_value());  // empty at the very end is fine
  EXPECT_EQ(store->mm_stat(), before);
  ASSERT_EQ(store->read_page(3, buffer.data()), 0);
  EXPECT_EQ(buffer, text);
  EXPECT_EQ(store->page_frame(0).error().code(), ErrorCode::NotFound);
  EXPECT_EQ(store->page_frame(4).error().code(), ErrorCode::InvalidArgument);
}

TEST_P(ZramStoreTest, MemLimitGivesEnospcAndKeepsStoredData) {
  auto store = make(GetParam(), 256, 16 * kPageSize);
  int written = 0;
  Result<void> res;
  for (uint32_t i = 0; i < 256; ++i) {
    res = store->write(uint64_t{i} * kPageSize, random_page(i));
    if (!res) break;
    ++written;
  }
  ASSERT_FALSE(res.has_value());
  EXPECT_EQ(written, 16);
  EXPECT_EQ(res.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_EQ(res.error().sys_errno(), ENOSPC);
  EXPECT_NE(res.error().message().find("mem_limit"), std::string::npos) << res.error().message();
  EXPECT_LE(store->stats().mem_used_total, 16u * kPageSize);
  EXPECT_EQ(store->stats().mem_limit, 16u * kPageSize);
  // A failed overwrite leaves the old content.
  EXPECT_EQ(store->write_page(0, random_page(999).data()), -ENOSPC);
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 16; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, random_page(i)) << "page " << i;
  }
  // Same-filled writes and discards need no memory and still succeed.
  EXPECT_EQ(store->write_page(100, same_page(7).data()), 0);
  ASSERT_TRUE(store->discard(0, kPageSize).has_value());
  EXPECT_EQ(store->write_page(0, random_page(999).data()), 0);
}

TEST_P(ZramStoreTest, CompactionFreesPagesAndKeepsData) {
  auto store = make(GetParam(), 4096);
  for (uint32_t i = 0; i < 2048; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  const uint64_t full = store->stats().mem_used_total;
  // Punch holes: keep one page in four, leaving every slab sparse.
  for (uint32_t i = 0; i < 2048; ++i)
    if (i % 4 != 0) {
      ASSERT_EQ(store->discard_page(i), 0);
    }
  const uint64_t sparse = store->stats().mem_used_total;
  const uint64_t freed = store->compact();
  const ZramStats after = store->stats();
  EXPECT_GT(freed, 0u);
  EXPECT_EQ(after.pages_compacted, freed);
  EXPECT_EQ(after.mem_used_total, sparse - freed * kPageSize);
  EXPECT_LT(after.mem_used_total, full / 2);
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 2048; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    if (i % 4 == 0) {
      ASSERT_EQ(page, text_page(i)) << "page " << i;
    } else {
      ASSERT_EQ(page, same_page(0));
    }
  }
  EXPECT_EQ(store->compact(), 0u);  // nothing left to gain
}

// Compaction moves an object only when it can lock the page that owns it without waiting: with
// every stored page held (reads or writes in flight) it moves nothing, and leaves the locks
// held; once they are released it frees the sparse slabs.
TEST_P(ZramStoreTest, CompactionSkipsPagesThatAreLockedAndLeavesThemLocked) {
  auto store = make(GetParam(), 1024);
  for (uint32_t i = 0; i < 1024; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  for (uint32_t i = 0; i < 1024; ++i)
    if (i % 4 != 0) {
      ASSERT_EQ(store->discard_page(i), 0);
    }
  const uint64_t sparse = store->stats().mem_used_total;
  for (uint32_t i = 0; i < 1024; i += 4) detail::StoreProbe::hold(*store, i);
  const uint64_t moved_while_held = store->compact();
  const bool reset_refused = !store->reset().has_value();  // still held: reset is Busy
  for (uint32_t i = 0; i < 1024; i += 4) detail::StoreProbe::release(*store, i);
  EXPECT_EQ(moved_while_held, 0u) << "compaction freed slabs by moving objects of locked pages";
  EXPECT_TRUE(reset_refused) << "compaction released page locks it did not take";
  EXPECT_EQ(store->stats().mem_used_total, sparse);
  EXPECT_GT(store->compact(), 0u) << "released, the same pages are moved";
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 1024; i += 4) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    ASSERT_EQ(page, text_page(i)) << "page " << i;
  }
}

TEST_P(ZramStoreTest, MmStatHasTheKernelLayout) {
  auto store = make(GetParam());
  ASSERT_EQ(store->write_page(0, text_page(0).data()), 0);
  std::istringstream line(store->mm_stat());
  uint64_t fields[9];
  for (auto& field : fields) ASSERT_TRUE(line >> field);
  const ZramStats s = store->stats();
  EXPECT_EQ(fields[0], s.orig_data_size);
  EXPECT_EQ(fields[1], s.compr_data_size);
  EXPECT_EQ(fields[2], s.mem_used_total);
  EXPECT_EQ(fields[6], s.pages_compacted);
  EXPECT_EQ(fields[8], s.huge_pages_since);
}

INSTANTIATE_TEST_SUITE_P(Compressors, ZramStoreTest,
                         ::testing::Values(Algorithm::Lz4, Algorithm::Zstd),
                         [](const auto& param_info) {
                           return std::string(algorithm_name(param_info.param));
                         });

TEST(ZramStore, RejectsBadConfig) {
  EXPECT_FALSE(ZramStore::create({.disksize = 0}).has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4097}).has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4096, .algorithm = Algorithm::Zstd, .zstd_level = 0})
                   .has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4096, .lz4_acceleration = 0}).has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4096, .mem_limit = 100}).has_value());
  EXPECT_TRUE(ZramStore::create({.disksize = 4096}).has_value());
  // The ends of each range are in it.
  EXPECT_TRUE(ZramStore::create({.disksize = 4096, .lz4_acceleration = 1}).has_value());
  EXPECT_TRUE(ZramStore::create({.disksize = 4096, .lz4_acceleration = 65537}).has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4096, .lz4_acceleration = 65538}).has_value());
  EXPECT_TRUE(ZramStore::create({.disksize = 4096, .mem_limit = 4096}).has_value());
  EXPECT_FALSE(ZramStore::create({.disksize = 4096, .mem_limit = 4095}).has_value());
  for (int level : {-100, -1, 1, 22}) {
    EXPECT_TRUE(
        ZramStore::create({.disksize = 4096, .algorithm = Algorithm::Zstd, .zstd_level = level})
            .has_value())
        << "zstd level " << level;
  }
  for (int level : {-101, 23}) {
    EXPECT_FALSE(
        ZramStore::create({.disksize = 4096, .algorithm = Algorithm::Zstd, .zstd_level = level})
            .has_value())
        << "zstd level " << level;
  }
  EXPECT_EQ(parse_algorithm("zstd").value(), Algorithm::Zstd);
  EXPECT_EQ(parse_algorithm("lzo").error().code(), ErrorCode::InvalidArgument);
}

TEST(ZramStore, DisksizeOverSixteenTebibytesIsRefusedBeforeAnyAllocation) {
  const uint64_t pages = uint64_t{UINT32_MAX} + 1;  // one page past what a u32 index reaches
  auto store = ZramStore::create({.disksize = pages * kPageSize});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(store.error().message().find("over the 16 TiB limit"), std::string::npos)
      << store.error().message();
}

TEST(ZramStore, EveryAlgorithmHasANameAndATypicalRatio) {
  EXPECT_STREQ(algorithm_name(Algorithm::Lz4), "lz4");
  EXPECT_STREQ(algorithm_name(Algorithm::Zstd), "zstd");
  EXPECT_STREQ(algorithm_name(Algorithm::None), "none");
  EXPECT_STREQ(algorithm_name(static_cast<Algorithm>(9)), "unknown") << "a value outside the enum";
  EXPECT_DOUBLE_EQ(typical_ratio(static_cast<Algorithm>(9)), 1.0);
  EXPECT_DOUBLE_EQ(typical_ratio(Algorithm::Lz4), 2.5);
  EXPECT_DOUBLE_EQ(typical_ratio(Algorithm::Zstd), 3.5);
  EXPECT_DOUBLE_EQ(typical_ratio(Algorithm::None), 1.0);
}

// reset() with a read or write in flight on one page refuses with Busy, naming the page and what
// to do, and changes nothing: every page still reads back, and a reset after the I/O succeeds.
TEST(ZramStore, ResetWhileAPageIsInUseIsBusyAndKeepsEveryPage) {
  auto made = ZramStore::create({.disksize = 8 * kPageSize});
  ASSERT_TRUE(made.has_value()) << made.error().to_string();
  ZramStore& store = **made;
  for (uint32_t i = 0; i < 8; ++i) ASSERT_EQ(store.write_page(i, text_page(i).data()), 0);
  detail::StoreProbe::hold(store, 5);
  auto busy = store.reset();
  detail::StoreProbe::release(store, 5);
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code(), ErrorCode::Busy);
  EXPECT_NE(busy.error().message().find("zram reset: page 5 is being read or written; stop all "
                                        "I/O to the store, then reset"),
            std::string::npos)
      << busy.error().message();
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 8; ++i) {
    ASSERT_EQ(store.read_page(i, page.data()), 0) << "page " << i;
    EXPECT_EQ(page, text_page(i)) << "page " << i;
  }
  EXPECT_EQ(store.stored_pages(), 8u);
  ASSERT_TRUE(store.reset().has_value()) << "the locks taken before page 5 were given back";
  EXPECT_EQ(store.stored_pages(), 0u);
}

// reset() leaves nothing of a page's old entry: every kind of page reads back as a fresh empty
// one (no stored size, no same-fill value, not idle), and the store can be filled again.
TEST(ZramStore, ResetLeavesEveryPageEmptyWithNothingOfItsOldEntry) {
  auto made = ZramStore::create({.disksize = 4 * kPageSize});
  ASSERT_TRUE(made.has_value()) << made.error().to_string();
  ZramStore& store = **made;
  ASSERT_EQ(store.write_page(0, text_page(0).data()), 0);
  ASSERT_EQ(store.write_page(1, same_page(0x0123456789abcdefull).data()), 0);
  ASSERT_EQ(store.write_page(2, random_page(2).data()), 0);
  ASSERT_EQ(store.page_info(0).kind, PageInfo::Kind::Compressed);
  ASSERT_EQ(store.page_info(1).kind, PageInfo::Kind::Same);
  ASSERT_EQ(store.page_info(2).kind, PageInfo::Kind::Huge);
  EXPECT_EQ(store.mark_idle(), 3u);
  ASSERT_TRUE(store.reset().has_value());
  for (uint32_t i = 0; i < 4; ++i) {
    const PageInfo info = store.page_info(i);
    EXPECT_EQ(info.kind, PageInfo::Kind::Empty) << "page " << i;
    EXPECT_EQ(info.stored_bytes, 0u) << "page " << i;
    EXPECT_EQ(info.same_value, 0u) << "page " << i;
    EXPECT_FALSE(info.idle) << "page " << i;
    EXPECT_FALSE(info.recompressed) << "page " << i;
  }
  const ZramStats s = store.stats();
  EXPECT_EQ(s.orig_data_size, 0u);
  EXPECT_EQ(s.compr_data_size, 0u);
  EXPECT_EQ(s.same_pages, 0u);
  EXPECT_EQ(s.huge_pages, 0u);
  ASSERT_EQ(store.write_page(2, text_page(7).data()), 0);
  std::vector<std::byte> page(kPageSize);
  ASSERT_EQ(store.read_page(2, page.data()), 0);
  EXPECT_EQ(page, text_page(7));
}

// A reader that finds its page locked spins a little, then sleeps on the page's lock word marked
// "waiters may exist"; the unlock that ends the hold must wake it. The page is held well past the
// spin, so the reader is asleep when it is released.
TEST(ZramStore, AReaderAsleepOnAHeldPageIsWokenWhenThePageIsReleased) {
  auto made = ZramStore::create({.disksize = 4 * kPageSize});
  ASSERT_TRUE(made.has_value()) << made.error().to_string();
  ZramStore& store = **made;
  ASSERT_EQ(store.write_page(1, text_page(1).data()), 0);
  detail::StoreProbe::hold(store, 1);
  std::vector<std::byte> page(kPageSize);
  std::promise<int> result;
  std::future<int> read = result.get_future();
  std::atomic<bool> started{false};
  std::thread reader([&] {
    started.store(true);
    result.set_value(store.read_page(1, page.data()));
  });
  while (!started.load()) std::this_thread::yield();
  const bool waited = read.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout;
  detail::StoreProbe::release(store, 1);
  const bool woken = read.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  // A lost wake-up leaves the reader asleep with the page free: a second release wakes it, so
  // that it can be joined.
  if (!woken) detail::StoreProbe::release(store, 1);
  reader.join();
  EXPECT_TRUE(waited) << "the reader read a page whose lock was held";
  EXPECT_TRUE(woken) << "the reader slept on through the release of the page";
  EXPECT_EQ(read.get(), 0);
  EXPECT_EQ(page, text_page(1));
}

}  // namespace
}  // namespace pepita::zram
