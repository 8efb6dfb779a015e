// Guest layout rules: regions never overlap, page tables stay outside the guest's reach, and
// host-call buffers are accepted only inside memory the guest may itself access.
#include "vmm/detail/layout.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "pepita/vmm/guest_abi.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm::detail {
namespace {

namespace ga = guest_abi;

TEST(Layout, RegionsAreOrderedAndGuarded) {
  auto image = test::load_guest("hello");
  for (uint64_t mem : {2ull << 20, 16ull << 20, 1ull << 30}) {
    VmConfig config;
    config.memory_bytes = mem;
    config.input_capacity = 64 << 10;
    config.stack_bytes = 64 << 10;
    auto l = Layout::compute(config, image);
    ASSERT_TRUE(l) << mem << ": " << l.error().to_string();
    EXPECT_GE(l->heap_base, l->image_end + abi::PAGE_SIZE);
    EXPECT_LE(l->heap_base + l->heap_size + abi::PAGE_SIZE, l->input_base);
    EXPECT_LE(l->input_base + l->input_capacity + abi::PAGE_SIZE, l->stack_base);
    EXPECT_EQ(l->stack_base + l->stack_size, l->page_table_base);
    EXPECT_EQ(l->page_table_base + l->page_table_bytes, mem);
  }
}

TEST(Layout, HostCallBuffersMustBeGuestAccessible) {
  auto image = test::load_guest("hello");
  auto l = Layout::compute(VmConfig{}, image);
  ASSERT_TRUE(l);
  EXPECT_TRUE(guest_may_access(*l, l->heap_base, 4096, true));
  EXPECT_TRUE(guest_may_access(*l, l->stack_base, l->stack_size, true));
  EXPECT_TRUE(guest_may_access(*l, l->input_base, 16, false));
  EXPECT_FALSE(guest_may_access(*l, l->input_base, 16, true));  // input is read-only
  EXPECT_FALSE(guest_may_access(*l, l->page_table_base, 8, false));
  EXPECT_FALSE(guest_may_access(*l, ga::kGdtGpa, 8, false));
  EXPECT_FALSE(guest_may_access(*l, ga::kBootInfoGpa, 8, true));
  EXPECT_FALSE(guest_may_access(*l, l->heap_base + l->heap_size - 8, 16, true));  // straddles
  EXPECT_FALSE(guest_may_access(*l, l->heap_base, ~0ull, false));                 // wraps
  EXPECT_FALSE(guest_may_access(*l, ~0ull - 4, 8, false));
  const auto& code = image.segments()[0];
  EXPECT_TRUE(guest_may_access(*l, code.gpa.raw(), 16, false));
  EXPECT_FALSE(guest_may_access(*l, code.gpa.raw(), 16, true));  // code is not writable
}

RC_GTEST_PROP(Layout, AcceptedRangesNeverTouchSystemMemory, (uint64_t gpa, uint32_t len, bool w)) {
  static const GuestImage image = test::load_guest("hello");
  static const Layout l = *Layout::compute(VmConfig{}, image);
  const uint64_t at = *rc::gen::element(gpa, gpa % l.memory_size);
  if (!guest_may_access(l, at, len, w)) return;
  RC_ASSERT(at >= ga::kImageMinGpa);
  RC_ASSERT(at + len <= l.page_table_base);
  RC_ASSERT(at + len >= at);
}

}  // namespace
}  // namespace pepita::vmm::detail
