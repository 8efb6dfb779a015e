// DmaBuffer: page-aligned, locked, zeroed memory with a direction; the RLIMIT_MEMLOCK and huge
// page errors; the physical address from pagemap. Its device-side users are tested with them
// (tests/io_uring/dma_test.cpp, tests/blk_mq/file_disk_test.cpp).
#include "pepita/memory/dma_buffer.hpp"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace pepita::memory {
namespace {

// A line "Key:   123 kB" of a /proc file, in kB; -1 when absent.
long proc_kb(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  return -1;
}

// The VmFlags of the /proc/self/smaps entry whose range holds `addr`, one two-letter flag each
// ("rd", "wr", "hg", ...); empty when no entry does.
std::vector<std::string> vm_flags(const void* addr) {
  // SAFETY: the address is only compared with the bounds smaps prints, never dereferenced.
  const auto at = reinterpret_cast<std::uintptr_t>(addr);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    // An entry opens with "start-end perms offset dev inode [path]", both bounds in hex.
    const std::size_t dash = line.find('-');
    const std::size_t space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space &&
        line.find(':') > space) {
      const auto start = std::stoull(line.substr(0, dash), nullptr, 16);
      const auto end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
      inside = start <= at && at < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) {
      std::istringstream words(line.substr(8));
      std::vector<std::string> flags;
      for (std::string w; words >> w;) flags.push_back(w);
      return flags;
    }
  }
  return {};
}

bool has_flag(const std::vector<std::string>& flags, const std::string& flag) {
  return std::find(flags.begin(), flags.end(), flag) != flags.end();
}

// Sanitizers replace mlock with a no-op that succeeds (their shadow memory cannot be locked), so
// what the kernel counts as locked is only checked in plain builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMlockIsReal = false;
#else
constexpr bool kMlockIsReal = true;
#endif

TEST(DmaBuffer, AllocatesPageAlignedLockedZeroedMemory) {
  const long locked_before = proc_kb("/proc/self/status", "VmLck");
  auto buf = DmaBuffer::allocate(10000, DmaDirection::FromDevice);
  ASSERT_TRUE(buf) << buf.error().to_string();
  EXPECT_TRUE(buf->is_valid());
  EXPECT_TRUE(buf->is_page_aligned());
  EXPECT_EQ(buf->size(), 10000u);
  EXPECT_EQ(buf->page_count(), 3u);
  EXPECT_EQ(buf->mapped_size(), 3 * PAGE_SIZE);
  EXPECT_EQ(buf->direction(), DmaDirection::FromDevice);
  EXPECT_TRUE(buf->locked());
  EXPECT_FALSE(buf->huge_pages());
  EXPECT_EQ(buf->virt().page_offset(), 0u);
  EXPECT_EQ(buf->virt(), VirtAddr::from_ptr(buf->data()));
  EXPECT_TRUE(std::all_of(buf->bytes().begin(), buf->bytes().end(),
                          [](std::byte b) { return b == std::byte{0}; }));
  // The kernel counts the lock against this process...
  if (kMlockIsReal) {
    EXPECT_GE(proc_kb("/proc/self/status", "VmLck") - locked_before, 12);
  }
  // ...and it goes with the buffer; a moved-from buffer holds nothing.
  DmaBuffer moved = std::move(*buf);
  // NOLINTNEXTLINE(bugprone-use-after-move): checks the moved-from state
  EXPECT_FALSE(buf->is_valid());
  EXPECT_EQ(buf->size(), 0u);
  EXPECT_TRUE(buf->bytes().empty());
  EXPECT_TRUE(moved.is_valid());
  moved = DmaBuffer();
  EXPECT_EQ(proc_kb("/proc/self/status", "VmLck"), locked_before);
}

TEST(DmaBuffer, RefusesZeroSizeAndUnknownDirection) {
  auto empty = DmaBuffer::allocate(0, DmaDirection::ToDevice);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(empty.error().message().find("size is 0"), std::string::npos);
  auto odd = DmaBuffer::allocate(4096, static_cast<DmaDirection>(9));
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().message().find("direction"), std::string::npos);
  auto huge = DmaBuffer::allocate(~std::size_t{0}, DmaDirection::ToDevice);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::InvalidArgument);
}

TEST(DmaBuffer, DirectionDecidesWhatTheDeviceMayDo) {
  static_assert(to_device(DmaDirection::ToDevice) && !from_device(DmaDirection::ToDevice));
  static_assert(from_device(DmaDirection::FromDevice) && !to_device(DmaDirection::FromDevice));
  static_assert(to_device(DmaDirection::Bidirectional) && from_device(DmaDirection::Bidirectional));
  static_assert(!to_device(DmaDirection::None) && !from_device(DmaDirection::None));
  auto out = DmaBuffer::allocate(8192, DmaDirection::ToDevice);
  auto none = DmaBuffer::allocate(4096, DmaDirection::None, {.lock = MemLock::No});
  ASSERT_TRUE(out && none);
  EXPECT_TRUE(out->check_device_access(false, 0, 8192, "test"));
  auto write = out->check_device_access(true, 0, 4096, "disk read");
  ASSERT_FALSE(write);
  EXPECT_NE(write.error().message().find("disk read"), std::string::npos);
  EXPECT_NE(write.error().message().find("to-device"), std::string::npos);
  EXPECT_FALSE(none->check_device_access(false, 0, 1, "x"));
  EXPECT_FALSE(none->check_device_access(true, 0, 1, "x"));
  // Ranges: inside (including the empty range at the end) or refused, without overflow.
  EXPECT_TRUE(out->check_device_access(false, 8192, 0, "x"));
  EXPECT_FALSE(out->check_device_access(false, 4096, 4097, "x"));
  EXPECT_FALSE(out->check_device_access(false, ~uint64_t{0}, 2, "x"));
  EXPECT_FALSE(DmaBuffer().check_device_access(false, 0, 0, "x"));
}

TEST(DmaBuffer, PhysicalAddressComesFromPagemap) {
  auto buf = DmaBuffer::allocate(2 * PAGE_SIZE, DmaDirection::Bidirectional);
  ASSERT_TRUE(buf);
  auto phys = buf->phys(100);
  if (::geteuid() != 0) {
    ASSERT_FALSE(phys);
    EXPECT_EQ(phys.error().code(), ErrorCode::PermissionDenied);
    GTEST_SKIP() << "not root: /proc/self/pagemap hides frame numbers (checked the error)";
  }
  ASSERT_TRUE(phys) << phys.error().to_string();
  EXPECT_FALSE(phys->is_null());
  EXPECT_EQ(phys->page_offset(), 100u);
  auto outside = buf->phys(2 * PAGE_SIZE);
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().code(), ErrorCode::InvalidArgument);
}

// In a child (the limit and capability changes must not leak into other tests): without
// CAP_IPC_LOCK and with a 64 KiB RLIMIT_MEMLOCK, a 1 MiB locked buffer is refused with the way
// to raise the limit, and MemLock::BestEffort still gives an (unlocked) buffer.
TEST(DmaBuffer, MemlockLimitErrorSaysHowToRaiseIt) {
  if (!kMlockIsReal) GTEST_SKIP() << "sanitizer build: mlock is a no-op that never hits the limit";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0) ::_exit(10);
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (::syscall(SYS_capset, &header, data) != 0) ::_exit(11);
    const rlimit small{64 << 10, 64 << 10};
    if (::setrlimit(RLIMIT_MEMLOCK, &small) != 0) ::_exit(12);
    auto refused = DmaBuffer::allocate(1 << 20, DmaDirection::FromDevice);
    if (refused) ::_exit(13);
    if (refused.error().code() != ErrorCode::ResourceExhausted) ::_exit(14);
    const std::string& m = refused.error().message();
    if (m.find("RLIMIT_MEMLOCK is 64K") == std::string::npos) ::_exit(15);
    if (m.find("ulimit -l") == std::string::npos) ::_exit(16);
    if (m.find("MemLock::BestEffort") == std::string::npos) ::_exit(17);
    auto best =
        DmaBuffer::allocate(1 << 20, DmaDirection::FromDevice, {.lock = MemLock::BestEffort});
    if (!best || best->locked() || best->size() != (1u << 20)) ::_exit(18);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child check " << WEXITSTATUS(status) << " failed";
}

TEST(DmaBuffer, HugePagesWhenReservedElseAClearError) {
  const long free_huge = proc_kb("/proc/meminfo", "HugePages_Free");
  if (free_huge <= 0) {
    auto required = DmaBuffer::allocate(4096, DmaDirection::ToDevice, {.huge = HugePages::Require});
    ASSERT_FALSE(required);
    EXPECT_EQ(required.error().code(), ErrorCode::ResourceExhausted);
    EXPECT_NE(required.error().message().find("/proc/sys/vm/nr_hugepages"), std::string::npos);
    auto preferred = DmaBuffer::allocate(4096, DmaDirection::ToDevice, {.huge = HugePages::Prefer});
    ASSERT_TRUE(preferred) << preferred.error().to_string();
    EXPECT_FALSE(preferred->huge_pages());
    EXPECT_EQ(preferred->mapped_size(), PAGE_SIZE);
    // Both branches assert: with none reserved, the error and the fallback are the behaviour.
    std::printf("note: HugePages_Free is 0: checked the error and the fallback, not a huge page\n");
    return;
  }
  auto huge = DmaBuffer::allocate(4096, DmaDirection::ToDevice, {.huge = HugePages::Require});
  ASSERT_TRUE(huge) << huge.error().to_string();
  EXPECT_TRUE(huge->huge_pages());
  EXPECT_EQ(huge->mapped_size(), std::size_t{2} << 20);
  EXPECT_EQ(huge->virt().as_u64() % (2 << 20), 0u);
}

// Without a free reserved huge page, HugePages::Prefer maps 4 KiB pages and advises them for
// transparent huge pages (MADV_HUGEPAGE: "hg" in the mapping's VmFlags) once the mapping can
// hold one (2 MiB); HugePages::No never advises.
TEST(DmaBuffer, PreferAdvisesTransparentHugePagesAndNoDoesNot) {
  if (::access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
    GTEST_SKIP() << "kernel without transparent huge pages (CONFIG_TRANSPARENT_HUGEPAGE): "
                    "MADV_HUGEPAGE is refused, so no mapping carries the advice";
  }
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  auto allocate = [](std::size_t size, HugePages huge) {
    return DmaBuffer::allocate(size, DmaDirection::ToDevice,
                               {.lock = MemLock::No, .huge = huge, .populate = false});
  };
  auto plain = allocate(2 * kHuge, HugePages::No);
  ASSERT_TRUE(plain) << plain.error().to_string();
  const auto plain_flags = vm_flags(plain->data());
  ASSERT_TRUE(has_flag(plain_flags, "rd")) << "no smaps entry for the buffer";
  EXPECT_FALSE(has_flag(plain_flags, "hg")) << "HugePages::No advised huge pages";

  auto small = allocate(kHuge - PAGE_SIZE, HugePages::Prefer);
  ASSERT_TRUE(small) << small.error().to_string();
  if (!small->huge_pages()) {
    EXPECT_FALSE(has_flag(vm_flags(small->data()), "hg")) << "below 2 MiB: nothing to gain";
  }
  auto preferred = allocate(kHuge, HugePages::Prefer);
  ASSERT_TRUE(preferred) << preferred.error().to_string();
  const auto flags = vm_flags(preferred->data());
  if (preferred->huge_pages()) {
    EXPECT_TRUE(has_flag(flags, "ht")) << "a reserved huge page is a hugetlb mapping";
    std::printf("note: a reserved huge page was free: checked the hugetlb mapping, not THP\n");
    return;
  }
  EXPECT_EQ(preferred->mapped_size(), kHuge);
  EXPECT_TRUE(has_flag(flags, "hg")) << "HugePages::Prefer did not advise huge pages";
}

}  // namespace
}  // namespace pepita::memory
