#include "pepita/memory/guest_memory.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <limits>

#include "pepita/core/mapping.hpp"

namespace pepita::memory {
namespace {

constexpr uint64_t kSize = 64 * 1024;

GuestMemory make(uint64_t base = 0x10000) {
  auto mem = GuestMemory::anonymous(PhysAddr(base), kSize);
  EXPECT_TRUE(mem.has_value()) << mem.error().message();
  return std::move(*mem);
}

TEST(GuestMemory, ReadsBackWhatItWrites) {
  auto mem = make();
  ASSERT_TRUE(mem.write<uint64_t>(PhysAddr(0x10000), 0x1122334455667788ull));
  ASSERT_TRUE(mem.write<uint32_t>(PhysAddr(0x10000 + kSize - 4), 0xdeadbeef));
  auto a = mem.read<uint64_t>(PhysAddr(0x10000));
  auto b = mem.read<uint32_t>(PhysAddr(0x10000 + kSize - 4));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, 0x1122334455667788ull);
  EXPECT_EQ(*b, 0xdeadbeefu);
  // Unaligned access is allowed (memcpy).
  ASSERT_TRUE(mem.write<uint64_t>(PhysAddr(0x10003), 7));
  EXPECT_EQ(*mem.read<uint64_t>(PhysAddr(0x10003)), 7u);
}

TEST(GuestMemory, RejectsEveryRangeThatLeaves) {
  auto mem = make();
  EXPECT_FALSE(mem.read<uint8_t>(PhysAddr(0xffff)));                                // below base
  EXPECT_FALSE(mem.read<uint32_t>(PhysAddr(0x10000 + kSize - 3)));                  // straddles end
  EXPECT_FALSE(mem.read<uint8_t>(PhysAddr(0x10000 + kSize)));                       // at end
  EXPECT_FALSE(mem.span(PhysAddr(0x10000), kSize + 1));                             // too long
  EXPECT_FALSE(mem.span(PhysAddr(0x10010), std::numeric_limits<uint64_t>::max()));  // wraps
  EXPECT_FALSE(mem.span(PhysAddr(std::numeric_limits<uint64_t>::max()), 2));
  auto err = mem.span(PhysAddr(0x10000 + kSize - 1), 2);
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(err.error().message().find("outside guest memory"), std::string::npos);
  // Empty span at the very end is inside; whole memory is inside.
  EXPECT_TRUE(mem.span(PhysAddr(0x10000 + kSize), 0));
  EXPECT_TRUE(mem.span(PhysAddr(0x10000), kSize));
}

TEST(GuestMemory, RejectsBadLayouts) {
  EXPECT_FALSE(GuestMemory::anonymous(PhysAddr(0), 0));
  EXPECT_FALSE(GuestMemory::anonymous(PhysAddr(0), 4097));
  EXPECT_FALSE(GuestMemory::anonymous(PhysAddr(0x123), 4096));
  EXPECT_FALSE(GuestMemory::anonymous(PhysAddr(~0ull & ~0xfffull), 8192));  // wraps
  GuestMemory empty;
  EXPECT_FALSE(empty.read<uint8_t>(PhysAddr(0)));
  EXPECT_FALSE(empty.contains(PhysAddr(0), 0));
}

TEST(GuestMemory, SealedImageIsSharedCopyOnWrite) {
  auto shared = GuestMemory::shared(PhysAddr(0), kSize, "test-image");
  ASSERT_TRUE(shared) << shared.error().message();
  ASSERT_TRUE(shared->write<uint64_t>(PhysAddr(0x100), 99));
  auto image = std::move(*shared).into_sealed_image();
  ASSERT_TRUE(image) << image.error().message();
  // Sealed: a writable shared mapping is refused.
  EXPECT_FALSE(Mapping::map(kSize, PROT_READ | PROT_WRITE, MAP_SHARED, image->get(), 0, "x"));

  auto a = GuestMemory::copy_on_write(PhysAddr(0), kSize, image->get());
  auto b = GuestMemory::copy_on_write(PhysAddr(0), kSize, image->get());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a->read<uint64_t>(PhysAddr(0x100)), 99u);
  ASSERT_TRUE(a->write<uint64_t>(PhysAddr(0x100), 5));
  EXPECT_EQ(*a->read<uint64_t>(PhysAddr(0x100)), 5u);
  EXPECT_EQ(*b->read<uint64_t>(PhysAddr(0x100)), 99u);  // private to a
  auto host = a->backing().data();
  ASSERT_TRUE(a->reset_copy_on_write(image->get()));
  EXPECT_EQ(a->backing().data(), host);  // same host address after reset
  EXPECT_EQ(*a->read<uint64_t>(PhysAddr(0x100)), 99u);

  // Too-small image and non-memfd sealing are errors.
  EXPECT_FALSE(GuestMemory::copy_on_write(PhysAddr(0), kSize * 2, image->get()));
  auto anon = make();
  EXPECT_FALSE(std::move(anon).into_sealed_image());
}

RC_GTEST_PROP(GuestMemory, ContainsMatchesArithmetic, (uint64_t raw_gpa, uint64_t len)) {
  const uint64_t gpa = *rc::gen::element(raw_gpa, 0x10000 + raw_gpa % (2 * kSize));
  static GuestMemory mem = make(0x10000);
  // Generated values are mostly small; also steer some into the interesting window.
  const uint64_t lo = 0x10000, hi = 0x10000 + kSize;
  const bool expected = gpa >= lo && gpa <= hi && len <= hi - gpa;
  RC_ASSERT(mem.contains(PhysAddr(gpa), len) == expected);
  RC_ASSERT(mem.span(PhysAddr(gpa), len).has_value() == expected);
}

}  // namespace
}  // namespace pepita::memory
