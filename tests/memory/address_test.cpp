// pepita::memory's crate-spelled address types: PhysAddr / VirtAddr / Pfn arithmetic, the
// saturation rule at 2^64 and the Result-returning checked forms.
#include "pepita/memory/address.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <limits>

namespace pepita::memory {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// The crate's own ABI assertions, as written there.
static_assert(PAGE_SIZE == 4096);
static_assert(PAGE_SHIFT == 12 && (std::size_t{1} << PAGE_SHIFT) == PAGE_SIZE);
static_assert(PAGE_MASK == ~uint64_t{0xfff});
static_assert(sizeof(PhysAddr) == 8 && sizeof(VirtAddr) == 8 && sizeof(Pfn) == 8);

TEST(MemoryAddress, PhysAddrMatchesTheCrateExamples) {
  EXPECT_EQ(PhysAddr(0x1234'5678).as_u64(), 0x1234'5678u);
  EXPECT_TRUE(PhysAddr::null().is_null());
  EXPECT_EQ(PhysAddr::null().as_u64(), 0u);
  EXPECT_TRUE(PhysAddr(0x1000).is_page_aligned());
  EXPECT_TRUE(PhysAddr(0).is_page_aligned());
  EXPECT_FALSE(PhysAddr(0x1001).is_page_aligned());
  EXPECT_FALSE(PhysAddr(0xfff).is_page_aligned());
  EXPECT_EQ(PhysAddr(0x1234).page_align_down(), PhysAddr(0x1000));
  EXPECT_EQ(PhysAddr(0x1001).page_align_up(), PhysAddr(0x2000));
  EXPECT_EQ(PhysAddr(0x1000).page_align_up(), PhysAddr(0x1000));
  EXPECT_EQ(PhysAddr(0x1234).page_offset(), 0x234u);
  EXPECT_EQ(PhysAddr(0x1000).add(0x100), PhysAddr(0x1100));
  EXPECT_EQ(PhysAddr(0x1000).sub(0x100), PhysAddr(0x0f00));
  EXPECT_TRUE(PhysAddr(0x1500).is_in_range(PhysAddr(0x1000), PhysAddr(0x2000)));
  EXPECT_FALSE(PhysAddr(0x1500).is_in_range(PhysAddr(0x2000), PhysAddr(0x3000)));
  EXPECT_FALSE(PhysAddr(0x2000).is_in_range(PhysAddr(0x1000), PhysAddr(0x2000)));  // end excluded
}

TEST(MemoryAddress, VirtAddrAndPfnMatchTheCrateExamples) {
  EXPECT_EQ(VirtAddr(0xffff'8000'0000'0000).as_u64(), 0xffff'8000'0000'0000u);
  int value = 0;
  EXPECT_EQ(VirtAddr::from_ptr(&value).as_u64(), reinterpret_cast<uintptr_t>(&value));
  EXPECT_TRUE(VirtAddr::from_ptr(static_cast<int*>(nullptr)).is_null());
  const PhysAddr phys(0x1000'0000);
  const Pfn pfn = Pfn::from_addr(phys);
  EXPECT_EQ(pfn.as_u64(), 0x1'0000u);
  EXPECT_EQ(pfn.to_addr(), phys);
  EXPECT_EQ(Pfn::from_addr(PhysAddr(0x5fff)).as_u64(), 5u);  // the frame holding the byte
  EXPECT_TRUE(Pfn::null().is_null());
  EXPECT_EQ(Pfn(10).add(5), Pfn(15));
  EXPECT_EQ(Pfn(10).sub(5), Pfn(5));
}

TEST(MemoryAddress, ArithmeticSaturatesInsteadOfWrapping) {
  EXPECT_EQ(PhysAddr(kMax - 10).add(100), PhysAddr(kMax));
  EXPECT_EQ(PhysAddr(10).sub(100), PhysAddr(0));
  EXPECT_EQ(VirtAddr(kMax).add(1), VirtAddr(kMax));
  EXPECT_EQ(Pfn(kMax).add(1), Pfn(kMax));
  EXPECT_EQ(Pfn(3).sub(4), Pfn(0));
  // The last page has no boundary above it: the result is the top address, not aligned.
  const PhysAddr up = PhysAddr(kMax - 5).page_align_up();
  EXPECT_EQ(up, PhysAddr(kMax));
  EXPECT_FALSE(up.is_page_aligned());
  // The last frame maps to the last page; past it there is no address.
  EXPECT_EQ(Pfn(Pfn::kMaxRaw).to_addr(), PhysAddr(kMax & PAGE_MASK));
  EXPECT_EQ(Pfn(Pfn::kMaxRaw + 1).to_addr(), PhysAddr(kMax));
}

TEST(MemoryAddress, CheckedFormsNameTheFieldOnOverflow) {
  auto ok = checked_add(PhysAddr(0x1000), 0x10, "request end");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(*ok, PhysAddr(0x1010));
  auto over = checked_add(PhysAddr(kMax - 1), 2, "request end");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(over.error().message().find("request end"), std::string::npos);
  auto under = checked_sub(VirtAddr(0x10), 0x20, "stack base");
  ASSERT_FALSE(under);
  EXPECT_NE(under.error().message().find("stack base"), std::string::npos);
  EXPECT_EQ(*checked_sub(VirtAddr(0x30), 0x20, "stack base"), VirtAddr(0x10));
  auto top = checked_page_align_up(PhysAddr(kMax - 100), "region end");
  ASSERT_FALSE(top);
  EXPECT_NE(top.error().message().find("region end"), std::string::npos);
  EXPECT_EQ(*checked_page_align_up(PhysAddr(0x1001), "region end"), PhysAddr(0x2000));
  auto misaligned = require_page_aligned(PhysAddr(0x1234), "gpa");
  ASSERT_FALSE(misaligned);
  EXPECT_NE(misaligned.error().message().find("0x1234"), std::string::npos);
  EXPECT_TRUE(require_page_aligned(PhysAddr(0x2000), "gpa"));
}

// Properties over the whole 64-bit range, biased towards both ends where wrapping would show.
rc::Gen<uint64_t> edge_biased() {
  return rc::gen::oneOf(
      rc::gen::arbitrary<uint64_t>(),
      rc::gen::map(rc::gen::inRange<uint64_t>(0, 1 << 14), [](uint64_t d) { return kMax - d; }),
      rc::gen::inRange<uint64_t>(0, 1 << 14));
}

RC_GTEST_PROP(MemoryAddress, AlignUpIsTheNextBoundaryOrSaturates, ()) {
  const PhysAddr a(*edge_biased());
  const PhysAddr up = a.page_align_up();
  const PhysAddr down = a.page_align_down();
  RC_ASSERT(down.is_page_aligned());
  RC_ASSERT(down <= a);
  RC_ASSERT(a.as_u64() - down.as_u64() == a.page_offset());
  if (a.as_u64() > (kMax & PAGE_MASK)) {
    RC_ASSERT(up == PhysAddr(kMax));  // no boundary above: saturated, visibly unaligned
    RC_ASSERT(!checked_page_align_up(a, "a"));
  } else {
    RC_ASSERT(up.is_page_aligned());
    RC_ASSERT(up >= a);
    RC_ASSERT(up.as_u64() - a.as_u64() < PAGE_SIZE);
    RC_ASSERT(*checked_page_align_up(a, "a") == up);
  }
}

RC_GTEST_PROP(MemoryAddress, AddAndSubNeverWrap, ()) {
  const VirtAddr a(*edge_biased());
  const uint64_t off = *edge_biased();
  const VirtAddr sum = a.add(off), diff = a.sub(off);
  RC_ASSERT(sum >= a);
  RC_ASSERT(diff <= a);
  const bool fits = off <= kMax - a.as_u64();
  RC_ASSERT(sum.as_u64() == (fits ? a.as_u64() + off : kMax));
  RC_ASSERT(checked_add(a, off, "a").has_value() == fits);
  RC_ASSERT(diff.as_u64() == (off <= a.as_u64() ? a.as_u64() - off : 0));
  RC_ASSERT(checked_sub(a, off, "a").has_value() == (off <= a.as_u64()));
  RC_ASSERT(a.is_in_range(a, a.add(1)) == (a.as_u64() != kMax));
}

RC_GTEST_PROP(MemoryAddress, PfnRoundTripsThroughItsAddress, ()) {
  const PhysAddr a(*edge_biased());
  const Pfn pfn = Pfn::from_addr(a);
  RC_ASSERT(pfn.to_addr() == a.page_align_down());
  RC_ASSERT(Pfn::from_addr(pfn.to_addr()) == pfn);
  const uint64_t n = *edge_biased();
  RC_ASSERT(pfn.add(n) >= pfn);
  RC_ASSERT(pfn.sub(n) <= pfn);
}

}  // namespace
}  // namespace pepita::memory
