// ZramStore recompression (src/zram/recompress.cpp): lz4 pages re-encoded with zstd read back
// byte-exact, idle marks, the not-shrunk mark, a page rewritten mid-recompression keeps the new
// data, the counters add up, the background thread, and bad options.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "detail/store_probe.hpp"
#include "page_gen.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita::zram {
namespace {

using testing::random_page;
using testing::same_page;
using testing::text_page;

ZramConfig lz4_then_zstd(uint64_t pages) {
  ZramConfig config{.disksize = pages * kPageSize, .algorithm = Algorithm::Lz4};
  config.recompress = {.enabled = true, .algorithm = Algorithm::Zstd, .zstd_level = 3};
  return config;
}

std::unique_ptr<ZramStore> make(const ZramConfig& config) {
  auto store = ZramStore::create(config);
  EXPECT_TRUE(store.has_value()) << store.error().to_string();
  return store ? std::move(*store) : nullptr;
}

// A compressible page that names its version in its first 8 bytes, so a reader can tell which
// write it sees and check every other byte of it.
std::vector<std::byte> versioned_page(uint32_t index, uint32_t version) {
  const uint64_t tag = (uint64_t{index} << 32) | version;
  auto page = text_page(index * 7919 + version);
  std::memcpy(page.data(), &tag, 8);
  return page;
}

bool page_is_consistent(const std::vector<std::byte>& page, uint32_t index) {
  uint64_t tag = 0;
  std::memcpy(&tag, page.data(), 8);
  if (tag == 0)
    return std::all_of(page.begin(), page.end(), [](std::byte b) { return b == std::byte{0}; });
  if ((tag >> 32) != index) return false;
  return page == versioned_page(index, static_cast<uint32_t>(tag));
}

void expect_result_adds_up(const RecompressResult& r) {
  EXPECT_EQ(r.examined, r.recompressed + r.not_shrunk + r.raced + r.skipped);
}

TEST(ZramRecompress, AllPagesReencodedWithZstdReadBackByteExactAndStatsAddUp) {
  auto store = make(lz4_then_zstd(64));
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<std::byte>> pages;
  for (uint32_t i = 0; i < 64; ++i) {
    pages.push_back(i % 8 == 7 ? random_page(i) : i % 8 == 6 ? same_page(i) : text_page(i));
    ASSERT_EQ(store->write_page(i, pages.back().data()), 0);
  }
  const ZramStats before = store->stats();
  EXPECT_EQ(before.recomp_pages, 0u);

  auto result = store->recompress();
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  expect_result_adds_up(*result);
  EXPECT_EQ(result->examined, 56u);      // the 8 same-filled pages store no bytes
  EXPECT_EQ(result->recompressed, 48u);  // every text page shrinks under zstd
  EXPECT_EQ(result->not_shrunk, 8u);     // random pages stay huge
  EXPECT_EQ(result->raced, 0u);
  EXPECT_GT(result->bytes_saved, 0u);

  const ZramStats after = store->stats();
  EXPECT_EQ(after.pages_recompressed, result->recompressed);
  EXPECT_EQ(after.recomp_pages, result->recompressed);
  EXPECT_EQ(after.recomp_not_shrunk, result->not_shrunk);
  EXPECT_EQ(after.recomp_bytes_saved, result->bytes_saved);
  EXPECT_EQ(before.compr_data_size - after.compr_data_size, after.recomp_bytes_saved);
  EXPECT_EQ(after.orig_data_size, before.orig_data_size);
  EXPECT_EQ(after.huge_pages, 8u);
  EXPECT_EQ(after.same_pages, 8u);

  std::vector<std::byte> back(kPageSize);
  for (uint32_t i = 0; i < 64; ++i) {
    ASSERT_EQ(store->read_page(i, back.data()), 0);
    EXPECT_EQ(back, pages[i]) << "page " << i;
    const bool text = i % 8 < 6;
    EXPECT_EQ(store->page_info(i).recompressed, text) << "page " << i;
  }
  // Each text page's slot: the zstd size is what compr_data_size counts now.
  uint64_t stored = 0;
  for (uint32_t i = 0; i < 64; ++i) stored += store->page_info(i).stored_bytes;
  EXPECT_EQ(stored, after.compr_data_size);

  // reset() zeroes the recompression counters with the rest.
  {
    auto copy = make(lz4_then_zstd(64));
    ASSERT_NE(copy, nullptr);
    for (uint32_t i = 0; i < 64; ++i) ASSERT_EQ(copy->write_page(i, pages[i].data()), 0);
    ASSERT_TRUE(copy->recompress().has_value());
    ASSERT_GT(copy->stats().recomp_not_shrunk, 0u);
    ASSERT_TRUE(copy->reset().has_value());
    const ZramStats cleared = copy->stats();
    EXPECT_EQ(cleared.pages_recompressed, 0u);
    EXPECT_EQ(cleared.recomp_pages, 0u);
    EXPECT_EQ(cleared.recomp_not_shrunk, 0u);
    EXPECT_EQ(cleared.recomp_bytes_saved, 0u);
  }

  // A recompressed page exports as a standard .zst frame (magic 0xFD2FB528, little-endian).
  auto frame = store->page_frame(0);
  ASSERT_TRUE(frame.has_value());
  uint32_t magic = 0;
  std::memcpy(&magic, frame->data(), 4);
  EXPECT_EQ(magic, 0xFD2FB528u);

  // A second pass finds nothing left to do: recompressed and not-shrunk pages are skipped.
  auto again = store->recompress();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->recompressed, 0u);
  EXPECT_EQ(again->not_shrunk, 0u);
  EXPECT_EQ(again->skipped, 56u);
}

TEST(ZramRecompress, IdleModeSkipsPagesReadOrWrittenSinceTheMark) {
  auto store = make(lz4_then_zstd(8));
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  EXPECT_EQ(store->mark_idle(), 8u);
  EXPECT_TRUE(store->page_info(0).idle);
  std::vector<std::byte> page(kPageSize);
  ASSERT_EQ(store->read_page(0, page.data()), 0);              // read: no longer idle
  ASSERT_EQ(store->write_page(1, text_page(100).data()), 0);   // rewritten: no longer idle
  ASSERT_EQ(store->write_partial(2, 10, page.data(), 20), 0);  // partial write too
  EXPECT_FALSE(store->page_info(0).idle);

  auto result = store->recompress({.pages = RecompressOptions::Pages::Idle});
  ASSERT_TRUE(result.has_value());
  expect_result_adds_up(*result);
  EXPECT_EQ(result->recompressed, 5u);
  EXPECT_EQ(result->skipped, 3u);
  for (uint32_t i = 0; i < 8; ++i)
    EXPECT_EQ(store->page_info(i).recompressed, i >= 3) << "page " << i;
}

TEST(ZramRecompress, ThresholdAndMaxPagesLimitTheCandidates) {
  auto store = make(lz4_then_zstd(16));
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < 16; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  // Over every stored size: nothing qualifies.
  auto none = store->recompress({.threshold = kPageSize});
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->recompressed, 0u);
  EXPECT_EQ(none->skipped, 16u);
  auto first = store->recompress({.max_pages = 4});
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->examined, 4u);
  EXPECT_EQ(first->recompressed, 4u);
  EXPECT_TRUE(store->page_info(3).recompressed);
  EXPECT_FALSE(store->page_info(4).recompressed);
}

struct Midpoint {
  ZramStore* store;
  uint64_t rewrite;
  uint64_t discard;
  std::vector<std::byte> fresh;
};

TEST(ZramRecompress, PageRewrittenOrDiscardedDuringRecompressionKeepsTheNewState) {
  auto store = make(lz4_then_zstd(8));
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  Midpoint mid{store.get(), 3, 5, text_page(999)};
  detail::recompress_midpoint_context = &mid;
  detail::recompress_midpoint = [](void* context, uint64_t index) {
    auto& m = *static_cast<Midpoint*>(context);
    if (index == m.rewrite) {
      EXPECT_EQ(m.store->write_page(index, m.fresh.data()), 0);
    }
    if (index == m.discard) {
      EXPECT_EQ(m.store->discard_page(index), 0);
    }
  };
  auto result = store->recompress();
  detail::recompress_midpoint = nullptr;
  ASSERT_TRUE(result.has_value());
  expect_result_adds_up(*result);
  EXPECT_EQ(result->raced, 2u);
  EXPECT_EQ(result->recompressed, 6u);

  std::vector<std::byte> page(kPageSize);
  ASSERT_EQ(store->read_page(3, page.data()), 0);
  EXPECT_EQ(page, mid.fresh);
  EXPECT_FALSE(store->page_info(3).recompressed);  // the lz4 page written mid-way stays
  EXPECT_EQ(store->page_info(5).kind, PageInfo::Kind::Empty);
  for (uint32_t i : {0u, 1u, 2u, 4u, 6u, 7u}) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, text_page(i)) << "page " << i;
  }
  const ZramStats s = store->stats();
  EXPECT_EQ(s.recomp_pages, 6u);
  EXPECT_EQ(s.orig_data_size, 7u * kPageSize);
  uint64_t stored = 0;
  for (uint32_t i = 0; i < 8; ++i) stored += store->page_info(i).stored_bytes;
  EXPECT_EQ(stored, s.compr_data_size);
  // The page rewritten mid-way is an ordinary lz4 page: the next pass recompresses it.
  auto next = store->recompress();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->recompressed, 1u);
  ASSERT_EQ(store->read_page(3, page.data()), 0);
  EXPECT_EQ(page, mid.fresh);
}

TEST(ZramRecompress, ConcurrentReadersWritersAndCompactionSeeByteExactPages) {
  constexpr uint32_t kPages = 128;
  constexpr uint32_t kHot = 32;  // pages the writer keeps rewriting; the rest stay as written
  auto store = make(lz4_then_zstd(kPages));
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < kPages; ++i)
    ASSERT_EQ(store->write_page(i, versioned_page(i, 1).data()), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // writer
    for (uint32_t version = 2; version < 60; ++version)
      for (uint32_t i = 0; i < kHot; ++i)
        if (store->write_page(i, versioned_page(i, version).data()) != 0) ++bad;
    stop = true;
  });
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {  // readers
      std::vector<std::byte> page(kPageSize);
      for (uint32_t round = 0; !stop.load() || round < 2; ++round)
        for (uint32_t i = r; i < kPages; i += 2)
          if (store->read_page(i, page.data()) != 0 || !page_is_consistent(page, i)) ++bad;
    });
  }
  threads.emplace_back([&] {  // compaction moves objects under the recompressor
    while (!stop.load()) store->compact();
  });
  RecompressResult total;
  while (!stop.load()) {
    store->mark_idle();
    auto r = store->recompress({.pages = RecompressOptions::Pages::Idle});
    EXPECT_TRUE(r.has_value());
    if (!r) break;  // join the threads below before failing
    expect_result_adds_up(*r);
    total.recompressed += r->recompressed;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(total.recompressed, 0u);
  // Last writes win, whatever the recompressor was doing.
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < kPages; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, versioned_page(i, i < kHot ? 59 : 1)) << "page " << i;
  }
  const ZramStats s = store->stats();
  uint64_t stored = 0;
  uint64_t recompressed = 0;
  for (uint32_t i = 0; i < kPages; ++i) {
    stored += store->page_info(i).stored_bytes;
    recompressed += store->page_info(i).recompressed ? 1 : 0;
  }
  EXPECT_EQ(stored, s.compr_data_size);
  EXPECT_EQ(recompressed, s.recomp_pages);
  EXPECT_GE(s.pages_recompressed, s.recomp_pages);
}

TEST(ZramRecompress, BackgroundThreadRecompressesIdlePagesAndStopsWithTheStore) {
  ZramConfig config = lz4_then_zstd(64);
  config.recompress.background = true;
  config.recompress.batch_pages = 16;
  config.recompress.interval_ms = 1;
  auto store = make(config);
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < 64; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  // Untouched pages turn idle on one lap and are recompressed on the next.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (store->stats().recomp_pages < 64 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(store->stats().recomp_pages, 64u) << "the background thread did not finish in 30 s";
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 64; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, text_page(i)) << "page " << i;
  }
  // An explicit call shares the work (one pass at a time) and reset waits for the pass.
  auto r = store->recompress();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->recompressed, 0u);
  ASSERT_TRUE(store->reset().has_value());
  EXPECT_EQ(store->stats().pages_recompressed, 0u);
  EXPECT_EQ(store->stats().recomp_pages, 0u);
  store.reset();  // stops and joins the thread
}

TEST(ZramRecompress, BackgroundThreadUnderConcurrentWritersAndReadersKeepsEveryPageExact) {
  constexpr uint32_t kPages = 96;
  constexpr uint32_t kHot = 24;
  ZramConfig config = lz4_then_zstd(kPages);
  config.recompress.background = true;
  config.recompress.background_idle_only = false;  // re-encode right behind the writer
  config.recompress.batch_pages = 8;
  config.recompress.interval_ms = 0;
  auto store = make(config);
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < kPages; ++i)
    ASSERT_EQ(store->write_page(i, versioned_page(i, 1).data()), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (uint32_t version = 2; version < 40; ++version) {
      for (uint32_t i = 0; i < kHot; ++i)
        if (store->write_page(i, versioned_page(i, version).data()) != 0) ++bad;
      std::this_thread::yield();  // let the background thread catch up with some pages
    }
    stop = true;
  });
  threads.emplace_back([&] {
    std::vector<std::byte> page(kPageSize);
    for (uint32_t round = 0; !stop.load() || round < 2; ++round)
      for (uint32_t i = 0; i < kPages; ++i)
        if (store->read_page(i, page.data()) != 0 || !page_is_consistent(page, i)) ++bad;
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // Wait (bounded) for the thread to re-encode the last writes too, then check every byte.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (store->stats().recomp_pages < kPages && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(store->stats().recomp_pages, kPages);
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < kPages; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, versioned_page(i, i < kHot ? 39 : 1)) << "page " << i;
    EXPECT_TRUE(store->page_info(i).recompressed) << "page " << i;
  }
  const ZramStats s = store->stats();
  EXPECT_GE(s.pages_recompressed, uint64_t{kPages});
  uint64_t stored = 0;
  for (uint32_t i = 0; i < kPages; ++i) stored += store->page_info(i).stored_bytes;
  EXPECT_EQ(stored, s.compr_data_size);
}

// At mem_limit the secondary encodings find no memory: those pages are skipped and keep their
// primary encoding, byte-exact, and the store never passes its limit.
TEST(ZramRecompress, PagesWithoutMemoryForTheSecondaryEncodingAreSkippedAndKept) {
  constexpr uint64_t kLimit = 16 * kPageSize;
  ZramConfig config = lz4_then_zstd(256);
  config.mem_limit = kLimit;
  auto store = make(config);
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<std::byte>> pages;
  // Fill with compressible pages until the limit refuses one, then with incompressible ones
  // (one slab page each) until those are refused too: no free slab page is left.
  for (uint32_t i = 0; i < 256; ++i) {
    auto page = text_page(i);
    if (store->write_page(i, page.data()) != 0) break;
    pages.push_back(std::move(page));
  }
  ASSERT_GT(pages.size(), 4u);
  ASSERT_LT(pages.size(), 256u) << "mem_limit never refused a write";
  for (auto i = static_cast<uint32_t>(pages.size()); i < 256; ++i) {
    auto page = random_page(i);
    if (store->write_page(i, page.data()) != 0) break;
    pages.push_back(std::move(page));
  }
  auto result = store->recompress();
  ASSERT_TRUE(result.has_value()) << result.error().to_string();
  expect_result_adds_up(*result);
  EXPECT_GT(result->skipped, 0u);
  EXPECT_LE(store->stats().mem_used_total, kLimit);
  std::vector<std::byte> back(kPageSize);
  for (uint32_t i = 0; i < pages.size(); ++i) {
    ASSERT_EQ(store->read_page(i, back.data()), 0) << i;
    ASSERT_EQ(back, pages[i]) << i;
  }
}

TEST(ZramRecompress, BadOptionsAreClearErrors) {
  auto plain = make({.disksize = kPageSize});
  ASSERT_NE(plain, nullptr);
  auto off = plain->recompress();
  ASSERT_FALSE(off.has_value());
  EXPECT_EQ(off.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(off.error().to_string().find("recompress.enabled"), std::string::npos);

  auto store = make(lz4_then_zstd(1));
  ASSERT_NE(store, nullptr);
  auto over = store->recompress({.threshold = kPageSize + 1});
  ASSERT_FALSE(over.has_value());
  EXPECT_NE(over.error().to_string().find("0..4096"), std::string::npos);

  auto refused = [](auto edit, const char* words) {
    ZramConfig config = lz4_then_zstd(1);
    edit(config);
    auto created = ZramStore::create(config);
    ASSERT_FALSE(created.has_value()) << words;
    EXPECT_EQ(created.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(created.error().to_string().find(words), std::string::npos)
        << created.error().to_string();
  };
  refused([](ZramConfig& c) { c.recompress.algorithm = Algorithm::Lz4; }, "differ from");
  refused([](ZramConfig& c) { c.recompress.algorithm = Algorithm::None; }, "must be lz4 or zstd");
  refused([](ZramConfig& c) { c.recompress.zstd_level = 0; }, "level 0 is out of range");
  refused([](ZramConfig& c) { c.recompress.zstd_level = 23; }, "level 23 is out of range");
  refused([](ZramConfig& c) { c.recompress.zstd_level = -101; }, "-100..-1");
  refused([](ZramConfig& c) { c.recompress.lz4_acceleration = 0; }, "acceleration 0");
  refused(
      [](ZramConfig& c) {
        c.recompress.background = true;
        c.recompress.batch_pages = 0;
      },
      "batch_pages 0");
  refused(
      [](ZramConfig& c) {
        c.recompress.background = true;
        c.recompress.interval_ms = 60001;
      },
      "interval_ms 60001");
  // zstd's fast levels are accepted, for the primary and the secondary.
  ZramConfig fast = lz4_then_zstd(1);
  fast.recompress.zstd_level = -5;
  EXPECT_TRUE(ZramStore::create(fast).has_value());
  EXPECT_TRUE(
      ZramStore::create({.disksize = kPageSize, .algorithm = Algorithm::Zstd, .zstd_level = -1})
          .has_value());
  // The ends of the secondary's ranges are in them.
  auto lz4_second = [](int acceleration) {
    return ZramConfig{
        .disksize = kPageSize,
        .algorithm = Algorithm::Zstd,
        .recompress = {
            .enabled = true, .algorithm = Algorithm::Lz4, .lz4_acceleration = acceleration}};
  };
  EXPECT_TRUE(ZramStore::create(lz4_second(65537)).has_value());
  EXPECT_FALSE(ZramStore::create(lz4_second(65538)).has_value());
  auto background = [](uint32_t batch_pages, uint32_t interval_ms) {
    ZramConfig config = lz4_then_zstd(1);
    config.recompress.background = true;
    config.recompress.batch_pages = batch_pages;
    config.recompress.interval_ms = interval_ms;
    return config;
  };
  EXPECT_TRUE(ZramStore::create(background(1, 60000)).has_value());
  EXPECT_TRUE(ZramStore::create(background(1u << 20, 0)).has_value());
  EXPECT_FALSE(ZramStore::create(background((1u << 20) + 1, 20)).has_value());
}

TEST(ZramRecompress, ZstdFastLevelsRoundTripAsPrimaryAndSecondary) {
  // -1 once collided with the codec's "no level yet" marker: pages were encoded with the magic
  // and did not decode.
  for (int level : {-1, -5, 1}) {
    auto primary =
        make({.disksize = 4 * kPageSize, .algorithm = Algorithm::Zstd, .zstd_level = level});
    ASSERT_NE(primary, nullptr);
    ZramConfig config = lz4_then_zstd(4);
    config.recompress.zstd_level = level;
    auto secondary = make(config);
    ASSERT_NE(secondary, nullptr);
    std::vector<std::byte> page(kPageSize);
    for (uint32_t i = 0; i < 4; ++i) {
      ASSERT_EQ(primary->write_page(i, text_page(i).data()), 0);
      ASSERT_EQ(secondary->write_page(i, text_page(i).data()), 0);
    }
    ASSERT_TRUE(secondary->recompress().has_value());
    for (uint32_t i = 0; i < 4; ++i) {
      ASSERT_EQ(primary->read_page(i, page.data()), 0) << "level " << level;
      EXPECT_EQ(page, text_page(i)) << "level " << level;
      ASSERT_EQ(secondary->read_page(i, page.data()), 0) << "level " << level;
      EXPECT_EQ(page, text_page(i)) << "level " << level;
    }
  }
}

TEST(ZramRecompress, ZstdPrimaryWithLz4SecondaryKeepsPagesThatDoNotShrink) {
  ZramConfig config{.disksize = 8 * kPageSize, .algorithm = Algorithm::Zstd};
  config.recompress = {.enabled = true, .algorithm = Algorithm::Lz4};
  auto store = make(config);
  ASSERT_NE(store, nullptr);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_EQ(store->write_page(i, text_page(i).data()), 0);
  const uint64_t before = store->stats().compr_data_size;
  auto r = store->recompress();
  ASSERT_TRUE(r.has_value());
  // lz4 never beats zstd on text: every page is kept as it was.
  EXPECT_EQ(r->not_shrunk, 8u);
  EXPECT_EQ(store->stats().compr_data_size, before);
  EXPECT_EQ(store->stats().recomp_not_shrunk, 8u);
  std::vector<std::byte> page(kPageSize);
  for (uint32_t i = 0; i < 8; ++i) {
    ASSERT_EQ(store->read_page(i, page.data()), 0);
    EXPECT_EQ(page, text_page(i));
  }
  // Rewriting a page clears its not-shrunk mark: it is a candidate again.
  ASSERT_EQ(store->write_page(0, text_page(50).data()), 0);
  auto again = store->recompress();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->not_shrunk, 1u);
}

}  // namespace
}  // namespace pepita::zram
