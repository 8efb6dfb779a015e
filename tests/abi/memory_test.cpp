#include "pepita/abi/memory.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace pepita::abi {
namespace {

static_assert(PhysAddr(0x1234).page_base() == PhysAddr(0x1000));
static_assert(PhysAddr(0x1234).page_offset() == 0x234);
static_assert(Pfn::containing(PhysAddr(0x5fff)).raw() == 5);
static_assert(Pfn(7).address() == PhysAddr(0x7000));
static_assert(pages_for(0) == 0 && pages_for(1) == 1 && pages_for(4096) == 1 &&
              pages_for(4097) == 2);
static_assert(is_power_of_two(4096) && !is_power_of_two(0) && !is_power_of_two(12));
static_assert(sectors_to_bytes(8) == PAGE_SIZE);

TEST(Memory, CheckedAddReportsOverflow) {
  bool overflow = false;
  auto end = PhysAddr(~0ull - 10).checked_add(5, overflow);
  EXPECT_FALSE(overflow);
  EXPECT_EQ(end.raw(), ~0ull - 5);
  PhysAddr(~0ull - 10).checked_add(11, overflow);
  EXPECT_TRUE(overflow);
}

RC_GTEST_PROP(Memory, AlignmentIdentities, (uint64_t value, uint8_t shift)) {
  const uint64_t alignment = 1ull << (shift % 40);
  const uint64_t down = align_down(value, alignment);
  RC_ASSERT(is_aligned(down, alignment));
  RC_ASSERT(down <= value);
  RC_ASSERT(value - down < alignment);
  const uint64_t up = align_up(value, alignment);
  if (up >= value) {  // no wrap
    RC_ASSERT(is_aligned(up, alignment));
    RC_ASSERT(up - value < alignment);
  }
  RC_ASSERT(Pfn::containing(PhysAddr(value)).address() == PhysAddr(value).page_base());
}

}  // namespace
}  // namespace pepita::abi
