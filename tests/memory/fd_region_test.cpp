// GuestMemory::add_fd_region: fd-backed regions as a vhost-user frontend describes them
// (SET_MEM_TABLE); every range check, and uva_to_gpa.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pepita/memory/guest_memory.hpp"

namespace pepita::memory {
namespace {

UniqueFd memfd(uint64_t size) {
  UniqueFd fd(::memfd_create("guest-ram-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

TEST(GuestMemoryFdRegion, TwoRegionsWithAHoleAndOffset) {
  GuestMemory t;
  // Like QEMU's split of RAM around the legacy VGA hole: one memfd, two regions.
  UniqueFd fd = memfd(1 << 20);
  ASSERT_TRUE(
      t.add_fd_region(UniqueFd(::dup(fd.get())), {.gpa = 0, .size = 0xa0000, .uva = 0x10000000}));
  ASSERT_TRUE(t.add_fd_region(
      UniqueFd(::dup(fd.get())),
      {.gpa = 0xc0000, .size = 0x40000, .uva = 0x100c0000, .mmap_offset = 0xc0000}));
  EXPECT_EQ(t.regions().size(), 2u);
  auto a = t.span(PhysAddr(0xc0000), 16).value();
  std::memset(a.data(), 0xab, 16);
  // The second region maps the fd at offset 0xc0000: the first mapping of the same fd sees the
  // byte only if offsets were honoured (region 1 stops at 0xa0000, so read it through the fd).
  unsigned char byte = 0;
  ASSERT_EQ(::pread(fd.get(), &byte, 1, 0xc0000), 1);
  EXPECT_EQ(byte, 0xab);
  EXPECT_FALSE(t.span(PhysAddr(0xa0000), 1).has_value()) << "the hole is not RAM";
  EXPECT_FALSE(t.span(PhysAddr(0x9fff0), 0x20).has_value()) << "runs off the first region";
  EXPECT_FALSE(t.span(PhysAddr(0xfffff), 2).has_value()) << "runs off the second region";
  EXPECT_FALSE(t.span(PhysAddr(~0ull), 2).has_value()) << "wraps";
  EXPECT_TRUE(t.span(PhysAddr(0xfffff), 1).has_value());
  EXPECT_EQ(t.uva_to_gpa(0x100c0010, 16).value().raw(), 0xc0010u);
  EXPECT_FALSE(t.uva_to_gpa(0x100a0000, 1).has_value());
  EXPECT_FALSE(t.uva_to_gpa(0x1009fff0, 0x20).has_value());
}

TEST(GuestMemoryFdRegion, RejectsBadRegions) {
  GuestMemory t;
  EXPECT_FALSE(t.add_fd_region(memfd(4096), {.gpa = 0, .size = 0, .uva = 0}).has_value())
      << "empty";
  EXPECT_FALSE(
      t.add_fd_region(memfd(4096), {.gpa = ~0ull - 10, .size = 4096, .uva = 0}).has_value())
      << "gpa wraps";
  EXPECT_FALSE(
      t.add_fd_region(memfd(4096), {.gpa = 0, .size = 4096, .uva = ~0ull - 10}).has_value())
      << "uva wraps";
  ASSERT_TRUE(t.add_fd_region(memfd(8192), {.gpa = 0, .size = 8192, .uva = 0x1000000}));
  EXPECT_FALSE(
      t.add_fd_region(memfd(4096), {.gpa = 4096, .size = 4096, .uva = 0x2000000}).has_value())
      << "gpa overlap";
  EXPECT_FALSE(
      t.add_fd_region(memfd(4096), {.gpa = 0x100000, .size = 4096, .uva = 0x1001000}).has_value())
      << "uva overlap";
  auto bad_fd = t.add_fd_region(UniqueFd(), {.gpa = 0x200000, .size = 4096, .uva = 0x3000000});
  EXPECT_FALSE(bad_fd.has_value()) << "no fd";
  // The table is bounded (vhost-user's own limit of 8 is checked by SET_MEM_TABLE's handler).
  for (uint64_t i = 1; i < GuestMemory::kMaxRegions; ++i) {
    ASSERT_TRUE(
        t.add_fd_region(memfd(4096), {.gpa = 0x100000 * i, .size = 4096, .uva = 0x10000000 * i}));
  }
  EXPECT_FALSE(t.add_fd_region(memfd(4096), {.gpa = 0x100000 * GuestMemory::kMaxRegions,
                                             .size = 4096,
                                             .uva = 0x10000000 * GuestMemory::kMaxRegions})
                   .has_value())
      << "one region more than kMaxRegions";
}

// uva_to_gpa answers from the one region holding the whole range, with that region's own
// uva-to-gpa offset; an address past a region's end belongs to it in no way, even when the next
// region's frontend address lies above it. (Above, the two regions share one offset, so any of
// them would give the same answer.)
TEST(GuestMemoryFdRegion, UvaToGpaUsesTheOffsetOfTheRegionThatHoldsTheRange) {
  GuestMemory t;
  // gpa 0x100000 at uva 0x7f0000000000; gpa 0 at uva 0x7f0000100000: offsets differ, uva order
  // differs from gpa order.
  ASSERT_TRUE(
      t.add_fd_region(memfd(0x10000), {.gpa = 0x100000, .size = 0x10000, .uva = 0x7f0000000000}));
  ASSERT_TRUE(t.add_fd_region(memfd(0x20000), {.gpa = 0, .size = 0x20000, .uva = 0x7f0000100000}));
  EXPECT_EQ(t.uva_to_gpa(0x7f0000000000, 16).value().raw(), 0x100000u) << "first byte";
  EXPECT_EQ(t.uva_to_gpa(0x7f0000000010, 0xfff0).value().raw(), 0x100010u) << "up to the end";
  EXPECT_EQ(t.uva_to_gpa(0x7f0000100200, 8).value().raw(), 0x200u);
  EXPECT_EQ(t.uva_to_gpa(0x7f000011fff8, 8).value().raw(), 0x1fff8u);
  EXPECT_FALSE(t.uva_to_gpa(0x7f0000010000, 1).has_value()) << "one past the first region";
  EXPECT_FALSE(t.uva_to_gpa(0x7f0000080000, 16).has_value()) << "between the regions";
  EXPECT_FALSE(t.uva_to_gpa(0x7f0000120000, 1).has_value()) << "one past the second region";
  EXPECT_FALSE(t.uva_to_gpa(0x7f000000fff8, 16).has_value()) << "runs off the first region";
  EXPECT_FALSE(t.uva_to_gpa(0x7effffffffff, 2).has_value()) << "starts below every region";
}

// A region reaching past the end of its memfd would map, but the first access there raises SIGBUS
// and kills the backend (found by fuzz_vhost_user): refused when the table is set.
TEST(GuestMemoryFdRegion, RejectsARegionPastTheEndOfItsFile) {
  GuestMemory t;
  EXPECT_FALSE(t.add_fd_region(memfd(4096), {.gpa = 0, .size = 8192, .uva = 0}).has_value())
      << "size";
  EXPECT_FALSE(t.add_fd_region(memfd(8192), {.gpa = 0, .size = 8192, .uva = 0, .mmap_offset = 4096})
                   .has_value())
      << "mmap_offset + size";
  EXPECT_TRUE(
      t.add_fd_region(memfd(8192), {.gpa = 0, .size = 4096, .uva = 0, .mmap_offset = 4096}));
  EXPECT_EQ(t.regions().size(), 1u);
}

// An odd mmap_offset (or gpa) would put a 2-aligned ring index at an odd host address, where the
// queue's std::atomic_ref access is undefined (found by fuzz_vhost_user): regions are whole pages.
TEST(GuestMemoryFdRegion, RejectsRegionsThatAreNotPageAligned) {
  GuestMemory t;
  EXPECT_FALSE(t.add_fd_region(memfd(16384), {.gpa = 0, .size = 4096, .uva = 0, .mmap_offset = 1})
                   .has_value())
      << "mmap_offset";
  EXPECT_FALSE(t.add_fd_region(memfd(16384), {.gpa = 0x1001, .size = 4096, .uva = 0}).has_value())
      << "gpa";
  ASSERT_TRUE(
      t.add_fd_region(memfd(16384), {.gpa = 0x4000, .size = 4096, .uva = 3, .mmap_offset = 8192}));
  auto s = t.span(PhysAddr(0x4002), 2).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s.data()) % 4096, 2u);
}

// An empty range translates by the address alone: the frontend address one past a region's end is
// not that region's (its gpa end may be no RAM at all) but the start of the region mapped there,
// or in no region. (span's "len 0 at a region's end is inside" is about gpa ranges of one
// region; a frontend address names its own byte.)
TEST(GuestMemoryFdRegion, EmptyRangeAtARegionsEndTranslatesByTheRegionThatStartsThere) {
  GuestMemory t;
  // uva-adjacent, gpa apart: gpa 0 at uva 0x7f0000000000, gpa 0x100000 right after it in uva.
  ASSERT_TRUE(t.add_fd_region(memfd(0x10000), {.gpa = 0, .size = 0x10000, .uva = 0x7f0000000000}));
  ASSERT_TRUE(
      t.add_fd_region(memfd(0x10000), {.gpa = 0x100000, .size = 0x10000, .uva = 0x7f0000010000}));
  EXPECT_EQ(t.uva_to_gpa(0x7f0000010000, 0).value().raw(), 0x100000u)
      << "the second region's first byte, not the first region's end (gpa 0x10000, a hole)";
  EXPECT_EQ(t.uva_to_gpa(0x7f000000fff0, 0).value().raw(), 0xfff0u);
  auto past = t.uva_to_gpa(0x7f0000020000, 0);
  EXPECT_FALSE(past.has_value()) << "one past the last region is in none, even empty: gpa 0x"
                                 << std::hex << past.value_or(PhysAddr(0)).raw();
}

}  // namespace
}  // namespace pepita::memory
