// Error paths of the memory module that the behaviour tests leave out (issue 29): a locked
// DmaBuffer or DMA page run over RLIMIT_MEMLOCK in this process (the fork-based test's child exits
// with _exit, so its coverage is never written), pagemap without CAP_SYS_ADMIN, the DmaDirection
// names, the 65th guest memory region, a memfd too large to size, resets of memory that is not
// copy-on-write, the "outside" message of empty and many-region memory, an invalid free order, and
// a memfd image that cannot be sealed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "pepita/memory/dma_buffer.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/memory/page_allocator.hpp"

namespace pepita::memory {
namespace {

constexpr uint64_t kPage = 4096;

bool contains(const std::string& text, const char* what) {
  return text.find(what) != std::string::npos;
}

// A line "Key:   123 kB" of /proc/meminfo; -1 when absent.
long meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  return -1;
}

// Clears one capability from this thread's effective set and restores it when destroyed (it stays
// permitted, so raising it again needs no privilege). ok() is false when it was not effective.
class WithoutCapability {
 public:
  explicit WithoutCapability(int cap) : cap_(cap) {
    if (::syscall(SYS_capget, &header_, saved_) != 0) return;
    if ((saved_[cap / 32].effective & (1u << (cap % 32))) == 0) return;
    __user_cap_data_struct dropped[2] = {saved_[0], saved_[1]};
    dropped[cap / 32].effective &= ~(1u << (cap % 32));
    ok_ = ::syscall(SYS_capset, &header_, dropped) == 0;
  }
  ~WithoutCapability() {
    if (ok_) (void)::syscall(SYS_capset, &header_, saved_);
  }
  WithoutCapability(const WithoutCapability&) = delete;
  WithoutCapability& operator=(const WithoutCapability&) = delete;
  bool ok() const { return ok_; }

 private:
  int cap_;
  __user_cap_header_struct header_{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct saved_[2]{};
  bool ok_ = false;
};

// Lowers the soft RLIMIT_MEMLOCK and puts the old one back when destroyed.
class SoftMemlockLimit {
 public:
  explicit SoftMemlockLimit(rlim_t bytes) {
    if (::getrlimit(RLIMIT_MEMLOCK, &saved_) != 0) return;
    const rlimit lowered{bytes, saved_.rlim_max};
    ok_ = ::setrlimit(RLIMIT_MEMLOCK, &lowered) == 0;
  }
  ~SoftMemlockLimit() {
    if (ok_) (void)::setrlimit(RLIMIT_MEMLOCK, &saved_);
  }
  SoftMemlockLimit(const SoftMemlockLimit&) = delete;
  SoftMemlockLimit& operator=(const SoftMemlockLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMlockIsReal = false;  // sanitizers make mlock a no-op that never fails
#else
constexpr bool kMlockIsReal = true;
#endif

// This thread without CAP_IPC_LOCK and under a 64 KiB soft RLIMIT_MEMLOCK for the test's length.
class UnderA64KMemlockLimit : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kMlockIsReal) GTEST_SKIP() << "sanitizer build: mlock never fails";
    if (!limit_.ok()) GTEST_SKIP() << "cannot lower RLIMIT_MEMLOCK here";
    if (::geteuid() == 0 && !no_ipc_lock_.ok())
      GTEST_SKIP() << "cannot drop CAP_IPC_LOCK, which lets root lock past the limit";
  }

 private:
  WithoutCapability no_ipc_lock_{CAP_IPC_LOCK};
  SoftMemlockLimit limit_{64 << 10};
};

TEST(MemoryErrorPaths, DmaDirectionNamesEveryValueAndInvalid) {
  EXPECT_EQ(to_string(DmaDirection::ToDevice), "to-device");
  EXPECT_EQ(to_string(DmaDirection::FromDevice), "from-device");
  EXPECT_EQ(to_string(DmaDirection::Bidirectional), "bidirectional");
  EXPECT_EQ(to_string(DmaDirection::None), "none");
  EXPECT_EQ(to_string(static_cast<DmaDirection>(9)), "invalid");
}

TEST_F(UnderA64KMemlockLimit, RequiredLockOverTheMemlockLimitSaysHowToRaiseIt) {
  auto refused = DmaBuffer::allocate(1 << 20, DmaDirection::FromDevice);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::ResourceExhausted);
  const std::string& m = refused.error().message();
  EXPECT_TRUE(contains(m, "RLIMIT_MEMLOCK is 64K")) << m;
  EXPECT_TRUE(contains(m, "ulimit -l")) << m;
  EXPECT_TRUE(contains(m, "MemLock::BestEffort")) << m;
  // BestEffort gives the same buffer unlocked.
  auto best = DmaBuffer::allocate(1 << 20, DmaDirection::FromDevice, {.lock = MemLock::BestEffort});
  ASSERT_TRUE(best) << best.error().to_string();
  EXPECT_FALSE(best->locked());
  EXPECT_EQ(best->size(), std::size_t{1} << 20);
}

TEST_F(UnderA64KMemlockLimit, DmaPagesOverTheMemlockLimitGoBackToThePool) {
  PagePool pool({.reserve_pages = 256, .chunk_pages = 64});
  auto refused = pool.alloc_run(64, AllocFlags::DMA);  // 256 KiB over a 64 KiB limit
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::ResourceExhausted);
  EXPECT_TRUE(contains(refused.error().message(), "RLIMIT_MEMLOCK")) << refused.error().message();
  EXPECT_TRUE(contains(refused.error().message(), "without DMA")) << refused.error().message();
  EXPECT_EQ(pool.in_use_pages(), 0u);
  // The run went back on its free list: the same frames are handed out without DMA.
  auto plain = pool.alloc_run(64);
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->raw(), 1u);
  EXPECT_EQ(pool.in_use_pages(), 64u);
  EXPECT_TRUE(pool.free_run(*plain, 64));
}

TEST(MemoryErrorPaths, PhysWithoutCapSysAdminIsPermissionDenied) {
  auto buf = DmaBuffer::allocate(PAGE_SIZE, DmaDirection::Bidirectional);
  ASSERT_TRUE(buf) << buf.error().to_string();
  {
    WithoutCapability no_admin(CAP_SYS_ADMIN);
    if (::geteuid() == 0 && !no_admin.ok()) GTEST_SKIP() << "cannot drop CAP_SYS_ADMIN";
    auto hidden = buf->phys(0);
    ASSERT_FALSE(hidden);
    EXPECT_EQ(hidden.error().code(), ErrorCode::PermissionDenied);
    EXPECT_TRUE(contains(hidden.error().message(), "CAP_SYS_ADMIN")) << hidden.error().message();
  }
  auto moved_from = DmaBuffer();
  auto invalid = moved_from.phys(0);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code(), ErrorCode::InvalidArgument);
}

TEST(MemoryErrorPaths, PreferredHugePagesFallBackForABufferOfAHugePageOrMore) {
  const std::size_t size = std::size_t{4} << 20;
  auto buf = DmaBuffer::allocate(size, DmaDirection::ToDevice,
                                 {.lock = MemLock::No, .huge = HugePages::Prefer});
  ASSERT_TRUE(buf) << buf.error().to_string();
  EXPECT_EQ(buf->size(), size);
  EXPECT_EQ(buf->mapped_size(), size);
  if (meminfo("HugePages_Free") < 2) {
    EXPECT_FALSE(buf->huge_pages());
  }
  buf->bytes()[size - 1] = std::byte{7};
  EXPECT_EQ(buf->bytes()[size - 1], std::byte{7});
}

TEST(MemoryErrorPaths, SixtyFifthRegionIsRefusedNamingTheLimit) {
  GuestMemory mem;
  for (uint64_t i = 0; i < GuestMemory::kMaxRegions; ++i)
    ASSERT_TRUE(mem.add_anonymous(PhysAddr(2 * i * kPage), kPage)) << i;
  auto refused = mem.add_anonymous(PhysAddr(2 * GuestMemory::kMaxRegions * kPage), kPage);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(refused.error().message(), "64 regions")) << refused.error().message();
  EXPECT_EQ(mem.regions().size(), GuestMemory::kMaxRegions);
  // Outside every region: the message names the first four and counts the rest.
  auto outside = mem.span(PhysAddr(kPage), 8);
  ASSERT_FALSE(outside);
  const std::string& m = outside.error().message();
  EXPECT_TRUE(contains(m, "[0x0, 0x1000), [0x2000, 0x3000)")) << m;
  EXPECT_TRUE(contains(m, " and 60 more regions")) << m;
  EXPECT_TRUE(contains(m, "straddles two regions")) << m;
}

TEST(MemoryErrorPaths, AccessToEmptyMemorySaysItHasNone) {
  const GuestMemory empty;
  EXPECT_EQ(empty.base(), PhysAddr(0));
  EXPECT_EQ(empty.end(), PhysAddr(0));
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_TRUE(empty.backing().empty());
  auto none = empty.span(PhysAddr(0), 1);
  ASSERT_FALSE(none);
  EXPECT_TRUE(contains(none.error().message(), "(none)")) << none.error().message();
  EXPECT_FALSE(contains(none.error().message(), "straddles")) << none.error().message();
}

TEST(MemoryErrorPaths, ReadAndWriteBytesRoundTripAndRefuseRangesOutside) {
  auto mem = GuestMemory::anonymous(PhysAddr(0x10000), 2 * kPage);
  ASSERT_TRUE(mem);
  const std::array<std::byte, 4> in = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  ASSERT_TRUE(mem->write_bytes(PhysAddr(0x10000 + kPage - 2), in));  // across the page boundary
  std::array<std::byte, 4> out{};
  ASSERT_TRUE(mem->read_bytes(PhysAddr(0x10000 + kPage - 2), out));
  EXPECT_EQ(out, in);
  EXPECT_TRUE(mem->write_bytes(PhysAddr(0x10000), {}));  // empty: nothing copied, no error
  EXPECT_TRUE(mem->read_bytes(PhysAddr(0x10000), {}));
  auto past = mem->write_bytes(PhysAddr(0x10000 + 2 * kPage - 2), in);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(past.error().message(), "outside guest memory")) << past.error().message();
  auto before = mem->read_bytes(PhysAddr(0xfffe), out);
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error().code(), ErrorCode::InvalidArgument);
  std::array<std::byte, 4> after{};
  ASSERT_TRUE(mem->read_bytes(PhysAddr(0x10000 + 2 * kPage - 4), after));
  EXPECT_EQ(after, (std::array<std::byte, 4>{})) << "a refused write changes nothing";
}

TEST(MemoryErrorPaths, SharedMemoryTooLargeForAFileIsAnFtruncateError) {
  auto huge = GuestMemory::shared(PhysAddr(0), uint64_t{1} << 63, "too-large");
  ASSERT_FALSE(huge);
  EXPECT_TRUE(
      contains(huge.error().message(), "ftruncate guest memory memfd to 0x8000000000000000"))
      << huge.error().message();
}

TEST(MemoryErrorPaths, ResetNeedsNonEmptyCopyOnWriteMemory) {
  GuestMemory empty;
  auto none = empty.reset_copy_on_write(-1);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(none.error().message(), "empty")) << none.error().message();
  auto memfd = GuestMemory::shared(PhysAddr(0), 2 * kPage, "reset-memfd");
  ASSERT_TRUE(memfd);
  auto not_cow = memfd->reset_copy_on_write(-1);
  ASSERT_FALSE(not_cow);
  EXPECT_EQ(not_cow.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(not_cow.error().message(), "made by copy_on_write"))
      << not_cow.error().message();
  EXPECT_TRUE(memfd->valid()) << "a refused reset leaves the memory intact";
}

// A remap that fails after the checks (here: no image fd) may have unmapped the range, so the
// memory is emptied rather than left half valid.
TEST(MemoryErrorPaths, FailedResetRemapLeavesTheMemoryEmpty) {
  auto anon = GuestMemory::anonymous(PhysAddr(0), 2 * kPage);
  ASSERT_TRUE(anon);
  auto failed = anon->reset_copy_on_write(-1);
  ASSERT_FALSE(failed);
  EXPECT_TRUE(contains(failed.error().message(), "mmap copy-on-write reset"))
      << failed.error().message();
  EXPECT_FALSE(anon->valid());
  EXPECT_FALSE(anon->span(PhysAddr(0), 1));
}

TEST(MemoryErrorPaths, CopyOnWriteOfAShortImageIsRefused) {
  auto shared = GuestMemory::shared(PhysAddr(0), kPage, "short-image");
  ASSERT_TRUE(shared);
  auto image = std::move(*shared).into_sealed_image();
  ASSERT_TRUE(image) << image.error().to_string();
  auto too_long = GuestMemory::copy_on_write(PhysAddr(0), 2 * kPage, image->get());
  ASSERT_FALSE(too_long);
  EXPECT_TRUE(contains(too_long.error().message(), "fewer than")) << too_long.error().message();
  auto bad_fd = GuestMemory::copy_on_write(PhysAddr(0), kPage, -1);
  ASSERT_FALSE(bad_fd);
}

TEST(MemoryErrorPaths, FreeWithAnOrderOfThirtyTwoIsRefused) {
  PagePool pool({.reserve_pages = 16, .chunk_pages = 16});
  auto run = pool.alloc_pages(0, {});
  ASSERT_TRUE(run);
  auto refused = pool.free_pages(*run, 32);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(contains(refused.error().message(), "order 32 is invalid"))
      << refused.error().message();
  EXPECT_TRUE(pool.free_pages(*run, 0));
}

// The fd of this process whose /proc/self/fd link names the memfd `name` ("/memfd:<name>
// (deleted)"); -1 when there is none.
int memfd_named(const std::string& name) {
  const std::string target = "/memfd:" + name + " ";
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string link = std::filesystem::read_symlink(entry.path(), ec).string();
    if (!ec && link.rfind(target, 0) == 0) return std::stoi(entry.path().filename().string());
  }
  return -1;
}

// F_ADD_SEALS refused (the memfd was already sealed against further seals, F_SEAL_SEAL): the
// image is not handed out unsealed as if it were read-only, the error carries the kernel's EPERM.
TEST(MemoryErrorPaths, SealingAnImageWhoseSealsAreLockedFailsWithTheErrno) {
  auto shared = GuestMemory::shared(PhysAddr(0), kPage, "seal-locked-image");
  ASSERT_TRUE(shared);
  const int fd = memfd_named("seal-locked-image");
  ASSERT_GE(fd, 0) << "the memfd of GuestMemory::shared is not in /proc/self/fd";
  ASSERT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL), 0) << std::strerror(errno);
  auto image = std::move(*shared).into_sealed_image();
  ASSERT_FALSE(image) << "an image that could not be sealed came back as fd " << image->get();
  EXPECT_EQ(image.error().sys_errno(), EPERM) << image.error().to_string();
  EXPECT_TRUE(contains(image.error().message(), "seal guest memory image"))
      << image.error().message();
  EXPECT_EQ(memfd_named("seal-locked-image"), -1) << "the refused image's memfd is closed";
}

}  // namespace
}  // namespace pepita::memory
