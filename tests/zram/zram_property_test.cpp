// Random write/read/discard/write-zeroes sequences on a ZramDisk (512-byte blocks, so partial and
// unaligned-to-page requests) against a plain byte-array model, for each compressor.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/zram/zram_disk.hpp"
#include "zram/page_gen.hpp"

namespace pepita::zram {
namespace {

using blk_mq::Op;

void run_model(Algorithm algorithm) {
  constexpr uint64_t kPages = 16;
  constexpr uint64_t kSectors = kPages * kPageSize / 512;
  auto disk = ZramDisk::create({.store = {.disksize = kPages * kPageSize, .algorithm = algorithm},
                                .logical_block_size = 512});
  RC_ASSERT(disk.has_value());
  blk_mq::TagSet tags((*disk)->info().tag_set);
  std::vector<std::byte> model(kPages * kPageSize);
  const int steps = *rc::gen::inRange(1, 30);
  for (int step = 0; step < steps; ++step) {
    const auto op = *rc::gen::element(Op::Read, Op::Write, Op::Write, Op::Discard, Op::WriteZeroes);
    const uint64_t sector = *rc::gen::inRange<uint64_t>(0, kSectors + 2);
    const uint32_t nr = *rc::gen::inRange<uint32_t>(1, 24);
    const bool fits = sector + nr <= kSectors;
    std::vector<std::byte> buffer(nr * 512);
    if (op == Op::Write) {
      // Mix compressible, incompressible and same-filled content.
      const int kind = *rc::gen::inRange(0, 3);
      const uint32_t seed = *rc::gen::arbitrary<uint32_t>();
      for (size_t i = 0; i < buffer.size(); i += kPageSize) {
        const auto page = kind == 0   ? testing::text_page(seed + i)
                          : kind == 1 ? testing::random_page(seed + i)
                                      : testing::same_page(seed);
        std::copy_n(page.begin(), std::min<size_t>(kPageSize, buffer.size() - i),
                    buffer.begin() + i);
      }
    }
    const std::string before = (*disk)->store().mm_stat();
    auto res = (op == Op::Read || op == Op::Write)
                   ? blk_mq::execute(**disk, tags, 0, op, sector, buffer)
                   : blk_mq::execute(**disk, tags, 0, op, sector, {}, nr);
    RC_ASSERT(res.has_value() == fits);
    if (!fits) {
      RC_ASSERT((*disk)->store().mm_stat() == before);  // refused: nothing changed
      continue;
    }
    const size_t off = sector * 512;
    if (op == Op::Read) {
      RC_ASSERT(std::equal(buffer.begin(), buffer.end(), model.begin() + off));
    } else if (op == Op::Write) {
      std::copy(buffer.begin(), buffer.end(), model.begin() + off);
    } else {
      std::fill_n(model.begin() + off, nr * 512, std::byte{0});
    }
  }
  std::vector<std::byte> all(model.size());
  RC_ASSERT((*disk)->store().read(0, all).has_value());
  RC_ASSERT(all == model);
  (*disk)->store().compact();
  RC_ASSERT((*disk)->store().read(0, all).has_value());
  RC_ASSERT(all == model);
}

RC_GTEST_PROP(ZramModel, Lz4MatchesReference, ()) { run_model(Algorithm::Lz4); }
RC_GTEST_PROP(ZramModel, ZstdMatchesReference, ()) { run_model(Algorithm::Zstd); }

}  // namespace
}  // namespace pepita::zram
