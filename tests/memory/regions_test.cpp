// GuestMemory with several regions: the range rule (one region per access, adjacent or not) at
// every boundary, checked against a 128-bit model, and views that share a region's mapping.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <limits>
#include <vector>

#include "pepita/memory/guest_memory.hpp"

namespace pepita::memory {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// The model: [gpa, gpa + len) inside one of `layout`'s ranges, in 128-bit arithmetic (no wrap).
bool model_contains(const std::vector<GuestRange>& layout, uint64_t gpa, uint64_t len) {
  __extension__ using u128 = unsigned __int128;
  for (const auto& r : layout)
    if (gpa >= r.gpa && u128(gpa) + len <= u128(r.gpa) + r.size) return true;
  return false;
}

// Regions of 1..4 pages with gaps of 0..3 pages (0: adjacent), from `start` upwards.
std::vector<GuestRange> gen_layout(uint64_t start) {
  const auto n = *rc::gen::inRange<size_t>(1, 6);
  std::vector<GuestRange> out;
  uint64_t at = start;
  for (size_t i = 0; i < n; ++i) {
    at += kPage * *rc::gen::inRange<uint64_t>(0, 4);
    const uint64_t size = kPage * *rc::gen::inRange<uint64_t>(1, 5);
    out.push_back({at, size});
    at += size;
  }
  return out;
}

GuestMemory build(const std::vector<GuestRange>& layout) {
  GuestMemory mem;
  for (const auto& r : layout) {
    auto added = mem.add_anonymous(PhysAddr(r.gpa), r.size);
    RC_ASSERT(added.has_value());
  }
  return mem;
}

// An address near a region boundary, near 0 or near 2^64, or anything.
uint64_t gen_gpa(const std::vector<GuestRange>& layout) {
  const auto& r = *rc::gen::elementOf(layout);
  const uint64_t anchor = *rc::gen::element(r.gpa, r.gpa + r.size, uint64_t{0}, kMax);
  const auto delta = *rc::gen::inRange<int64_t>(-9, 10);
  return *rc::gen::weightedOneOf<uint64_t>(
      {{4, rc::gen::just(anchor + static_cast<uint64_t>(delta))},
       {1, rc::gen::arbitrary<uint64_t>()}});
}

uint64_t gen_len(const std::vector<GuestRange>& layout) {
  const auto& r = *rc::gen::elementOf(layout);
  return *rc::gen::element(uint64_t{0}, uint64_t{1}, uint64_t{8}, r.size - 1, r.size, r.size + 1,
                           kPage * 5, kMax - 1, kMax, *rc::gen::arbitrary<uint64_t>());
}

RC_GTEST_PROP(GuestMemoryRegions, EveryAccessAgreesWithTheModel, ()) {
  // Low in the address space, or ending a few pages below 2^64 (an end of exactly 2^64 wraps).
  const bool high = *rc::gen::arbitrary<bool>();
  const uint64_t start = high ? kMax - 64 * kPage + 1 : 0;
  const auto layout = gen_layout(start);
  const GuestMemory mem = build(layout);
  RC_ASSERT(mem.regions().size() == layout.size());
  for (int i = 0; i < 40; ++i) {
    const uint64_t gpa = gen_gpa(layout), len = gen_len(layout);
    const bool inside = model_contains(layout, gpa, len);
    RC_ASSERT(mem.contains(PhysAddr(gpa), len) == inside);
    auto s = mem.span(PhysAddr(gpa), len);
    RC_ASSERT(s.has_value() == inside);
    if (inside) {
      RC_ASSERT(s->size() == len);
    } else {
      RC_ASSERT(s.error().code() == ErrorCode::InvalidArgument);
    }
    RC_ASSERT(mem.read<uint32_t>(PhysAddr(gpa)).has_value() == model_contains(layout, gpa, 4));
    RC_ASSERT(mem.fill_zero(PhysAddr(gpa), len).has_value() == inside);
  }
}

// A byte written through one region's span is read back at the same gpa and nowhere else, so
// each region maps its own host pages at the right offset.
RC_GTEST_PROP(GuestMemoryRegions, EachRegionHoldsItsOwnBytes, ()) {
  const auto layout = gen_layout(kPage * *rc::gen::inRange<uint64_t>(0, 1000));
  const GuestMemory mem = build(layout);
  for (size_t i = 0; i < layout.size(); ++i) {
    const uint64_t gpa = layout[i].gpa + *rc::gen::inRange<uint64_t>(0, layout[i].size);
    RC_ASSERT(mem.write<uint8_t>(PhysAddr(gpa), static_cast<uint8_t>(i + 1)).has_value());
    RC_ASSERT(*mem.read<uint8_t>(PhysAddr(gpa)) == i + 1);
    for (size_t j = i + 1; j < layout.size(); ++j) {
      // Same offset in every region not written yet: still zero.
      const uint64_t off = std::min(gpa - layout[i].gpa, layout[j].size - 1);
      RC_ASSERT(*mem.read<uint8_t>(PhysAddr(layout[j].gpa + off)) == 0);
    }
  }
}

TEST(GuestMemoryRegions, AdjacentRegionsDoNotJoin) {
  GuestMemory mem;
  ASSERT_TRUE(mem.add_anonymous(PhysAddr(0x10000), kPage));
  ASSERT_TRUE(mem.add_anonymous(PhysAddr(0x11000), kPage));  // adjacent
  ASSERT_TRUE(mem.add_anonymous(PhysAddr(0x20000), kPage));  // after a gap
  EXPECT_EQ(mem.regions().size(), 3u);
  EXPECT_EQ(mem.base().raw(), 0x10000u);
  EXPECT_EQ(mem.end().raw(), 0x21000u);
  EXPECT_EQ(mem.size(), 3 * kPage);
  EXPECT_TRUE(mem.backing().empty()) << "backing() is for one-region memory";
  // Each side of the seam works; a range over it does not (one region per access).
  EXPECT_TRUE(mem.span(PhysAddr(0x10ff8), 8));
  EXPECT_TRUE(mem.span(PhysAddr(0x11000), 8));
  auto seam = mem.span(PhysAddr(0x10ffc), 8);
  ASSERT_FALSE(seam);
  EXPECT_NE(seam.error().message().find("straddles"), std::string::npos);
  EXPECT_FALSE(mem.read<uint64_t>(PhysAddr(0x10ffc)));
  EXPECT_FALSE(mem.write<uint64_t>(PhysAddr(0x10ffc), 1));
  std::array<std::byte, 16> buf{};
  EXPECT_FALSE(mem.read_bytes(PhysAddr(0x10ff8), buf));
  // len 0 at a seam and at the very end is inside; the gap is not.
  EXPECT_TRUE(mem.span(PhysAddr(0x11000), 0));
  EXPECT_TRUE(mem.span(PhysAddr(0x21000), 0));
  EXPECT_FALSE(mem.span(PhysAddr(0x12000), 1));
  EXPECT_FALSE(mem.span(PhysAddr(0x1ffff), 1));
  // Overlap is refused, in any order of adding.
  EXPECT_FALSE(mem.add_anonymous(PhysAddr(0x11000), kPage));
  EXPECT_FALSE(mem.add_anonymous(PhysAddr(0xf000), 2 * kPage));
  ASSERT_TRUE(mem.add_anonymous(PhysAddr(0x0), kPage));  // below all: sorted in first
  EXPECT_EQ(mem.regions().front().base().raw(), 0u);
  EXPECT_TRUE(mem.span(PhysAddr(0xff8), 8));
}

TEST(GuestMemoryRegions, AViewSharesBytesAndOutlivesItsParent) {
  auto parent = GuestMemory::anonymous(PhysAddr(0x100000), 16 * kPage);
  ASSERT_TRUE(parent);
  const std::array<GuestRange, 3> ranges = {
      {{0x101000, kPage}, {0x100000, 0}, {0x108000, 0x10}}};  // unsorted, one empty
  auto view = parent->view(ranges);
  ASSERT_TRUE(view) << view.error().message();
  ASSERT_EQ(view->regions().size(), 2u) << "the empty range is left out";
  EXPECT_EQ(view->regions().front().base().raw(), 0x101000u);
  EXPECT_TRUE(view->contains(PhysAddr(0x101000), kPage));
  EXPECT_FALSE(view->contains(PhysAddr(0x100000), 1)) << "outside every range";
  EXPECT_FALSE(view->contains(PhysAddr(0x108008), 9)) << "runs past a short range";
  ASSERT_TRUE(parent->write<uint64_t>(PhysAddr(0x101010), 77));
  EXPECT_EQ(*view->read<uint64_t>(PhysAddr(0x101010)), 77u) << "same host bytes";
  // A view keeps the mapping: the parent may go first.
  *parent = GuestMemory();
  ASSERT_TRUE(view->write<uint64_t>(PhysAddr(0x108000), 5));
  EXPECT_EQ(*view->read<uint64_t>(PhysAddr(0x101010)), 77u);
  // Ranges outside one region, overlapping or wrapping are refused.
  auto other = GuestMemory::anonymous(PhysAddr(0), 2 * kPage);
  ASSERT_TRUE(other);
  const std::array<GuestRange, 1> past = {{{kPage, 2 * kPage}}};
  EXPECT_FALSE(other->view(past));
  const std::array<GuestRange, 2> overlap = {{{0, kPage}, {kPage - 8, 16}}};
  EXPECT_FALSE(other->view(overlap));
  const std::array<GuestRange, 1> wraps = {{{8, kMax}}};
  EXPECT_FALSE(other->view(wraps));
}

TEST(GuestMemoryRegions, ViewsBlockSealingAndResetUntilGone) {
  auto shared = GuestMemory::shared(PhysAddr(0), 4 * kPage, "view-seal-test");
  ASSERT_TRUE(shared);
  const std::array<GuestRange, 1> one = {{{0, kPage}}};
  {
    auto view = shared->view(one);
    ASSERT_TRUE(view);
    auto refused = std::move(*shared).into_sealed_image();
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message().find("view"), std::string::npos);
    EXPECT_TRUE(shared->valid()) << "a refused seal leaves the memory intact";
  }
  auto image = std::move(*shared).into_sealed_image();
  ASSERT_TRUE(image) << image.error().message();
  auto cow = GuestMemory::copy_on_write(PhysAddr(0), 4 * kPage, image->get());
  ASSERT_TRUE(cow);
  {
    auto view = cow->view(one);
    ASSERT_TRUE(view);
    EXPECT_FALSE(cow->reset_copy_on_write(image->get()));
  }
  EXPECT_TRUE(cow->reset_copy_on_write(image->get()));
  // Sealing and resetting need one region.
  GuestMemory two;
  ASSERT_TRUE(two.add_anonymous(PhysAddr(0), kPage));
  ASSERT_TRUE(two.add_anonymous(PhysAddr(2 * kPage), kPage));
  EXPECT_FALSE(two.reset_copy_on_write(image->get()));
  EXPECT_FALSE(std::move(two).into_sealed_image());
}

}  // namespace
}  // namespace pepita::memory
