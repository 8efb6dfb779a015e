#include "pepita/blk_mq/file_disk.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "blk_mq/device_conformance.hpp"
#include "common/child.hpp"
#include "common/file_text.hpp"
#include "common/require.hpp"
#include "common/syscall_fault.hpp"
#include "pepita/memory/dma_buffer.hpp"

namespace pepita::blk_mq {
namespace {

using testing::AlignedBuffer;

class TempPath {
 public:
  explicit TempPath(const char* dir) {
    path_ = std::filesystem::path(dir) /
            ("pepita-filedisk-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
  }
  ~TempPath() { std::filesystem::remove(path_); }
  std::string str() const { return path_.string(); }
  /// The bytes the filesystem has allocated to the file (st_blocks is in 512-byte units).
  uint64_t allocated_bytes() const {
    struct stat st {};
    EXPECT_EQ(::stat(path_.c_str(), &st), 0) << std::strerror(errno);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

class FileDiskEngines : public ::testing::TestWithParam<FileEngine> {
 protected:
  // The io_uring engine needs io_uring (an independent probe decides); with io_uring there, a
  // FileDisk that cannot be created is a test failure.
  void SetUp() override {
    if (GetParam() == FileEngine::IoUring) PEPITA_REQUIRE_CAPABILITY(io_uring);
  }
};

TEST_P(FileDiskEngines, RoundTripAndEveryOpBuffered) {
  for (uint32_t lbs : {512u, 4096u}) {
    TempPath file("/tmp");
    auto disk = FileDisk::create({.path = file.str(),
                                  .capacity_bytes = 1 << 20,
                                  .logical_block_size = lbs,
                                  .queues = 2,
                                  .engine = GetParam()});
    ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
    EXPECT_EQ((*disk)->engine(), GetParam());
    TagSet tags((*disk)->info().tag_set);
    testing::expect_round_trip(**disk, tags);
    testing::expect_discard_and_write_zeroes_read_zero(**disk, tags);
    testing::expect_bad_requests_refused(**disk, tags);
  }
}

// Whether the filesystem under `dir` takes O_DIRECT, asked of the kernel directly (not of
// FileDisk).
bool filesystem_takes_o_direct(const char* dir) {
  std::string path = std::string(dir) + "/pepita-odirect-probe-XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) return false;
  ::unlink(path.c_str());
  const bool ok = ::fcntl(fd, F_SETFL, O_DIRECT) == 0;
  ::close(fd);
  return ok;
}

TEST_P(FileDiskEngines, DirectIo) {
  if (!filesystem_takes_o_direct("/var/tmp")) GTEST_SKIP() << "O_DIRECT unsupported on /var/tmp";
  TempPath file("/var/tmp");
  auto disk = FileDisk::create({.path = file.str(),
                                .capacity_bytes = 1 << 20,
                                .direct = true,
                                .logical_block_size = 4096,
                                .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  TagSet tags((*disk)->info().tag_set);
  testing::expect_round_trip(**disk, tags);
  testing::expect_bad_requests_refused(**disk, tags);
  // A misaligned buffer is refused up front rather than failing inside the kernel.
  AlignedBuffer buffer(2 * 4096);
  auto misaligned = execute(**disk, tags, 0, Op::Read, 0, {buffer.data() + 512, 4096});
  ASSERT_FALSE(misaligned.has_value());
  EXPECT_EQ(misaligned.error().sys_errno(), EINVAL);
}

// The O_DIRECT path with DmaBuffers as the I/O buffers: page-aligned (so O_DIRECT takes them),
// locked, ToDevice for the write and FromDevice for the read.
TEST_P(FileDiskEngines, DirectIoThroughDmaBuffers) {
  if (!filesystem_takes_o_direct("/var/tmp")) GTEST_SKIP() << "O_DIRECT unsupported on /var/tmp";
  TempPath file("/var/tmp");
  auto disk = FileDisk::create({.path = file.str(),
                                .capacity_bytes = 1 << 20,
                                .direct = true,
                                .logical_block_size = 4096,
                                .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  auto out = memory::DmaBuffer::allocate(64 << 10, memory::DmaDirection::ToDevice);
  auto in = memory::DmaBuffer::allocate(64 << 10, memory::DmaDirection::FromDevice);
  ASSERT_TRUE(out && in) << (out ? in.error().to_string() : out.error().to_string());
  ASSERT_TRUE(out->check_device_access(false, 0, out->size(), "test write"));
  ASSERT_TRUE(in->check_device_access(true, 0, in->size(), "test read"));
  for (size_t i = 0; i < out->size(); ++i) out->data()[i] = static_cast<std::byte>(i % 251);
  TagSet tags((*disk)->info().tag_set);
  auto wrote = execute(**disk, tags, 0, Op::Write, 128, out->bytes());
  ASSERT_TRUE(wrote.has_value()) << wrote.error().to_string();
  auto read = execute(**disk, tags, 0, Op::Read, 128, in->bytes());
  ASSERT_TRUE(read.has_value()) << read.error().to_string();
  EXPECT_EQ(std::memcmp(in->data(), out->data(), out->size()), 0);
}

// zero_file_range's fallback (a filesystem without FALLOC_FL_ZERO_RANGE: shmem here) writes from
// a DmaBuffer of zeros.
TEST(FileDisk, ZeroRangeFallbackWritesZerosFromADmaBuffer) {
  UniqueFd fd(::memfd_create("pepita-zero-range", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  std::vector<std::byte> ones(200 << 10, std::byte{0xff});
  ASSERT_EQ(::pwrite(fd.get(), ones.data(), ones.size(), 0), static_cast<ssize_t>(ones.size()));
  ASSERT_EQ(zero_file_range(fd.get(), 4096, 150 << 10, /*punch=*/false), 0);
  std::vector<std::byte> back(ones.size());
  ASSERT_EQ(::pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  for (size_t i = 0; i < back.size(); ++i) {
    const bool zeroed = i >= 4096 && i < 4096 + (150u << 10);
    ASSERT_EQ(back[i], zeroed ? std::byte{0} : std::byte{0xff}) << "byte " << i;
  }
}

// When the fallback cannot map its buffer of zeros it answers -ENOMEM and writes nothing, rather
// than reporting a range as zeroed that it never touched. A child process caps its address space
// (RLIMIT_AS) at what it already maps, so the 64 KiB mmap fails; glibc's heap keeps a free 1 MiB
// at its top (trimming off) for the error's own strings. Sanitizers map shadow memory as they
// go, so the cap would fail them first.
TEST(FileDisk, ZeroRangeFallbackFailsWithEnomemWhenItCannotMapItsBuffer) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "RLIMIT_AS would starve the sanitizer's own mappings";
#else
  UniqueFd fd(::memfd_create("pepita-zero-range-enomem", MFD_CLOEXEC));
  ASSERT_TRUE(fd);
  std::vector<std::byte> ones(8192, std::byte{0xff});
  ASSERT_EQ(::pwrite(fd.get(), ones.data(), ones.size(), 0), static_cast<ssize_t>(ones.size()));
  // The child's exit status: 0 -ENOMEM, 1 zero_file_range returned 0, 2 another error, 3 the
  // address space could not be measured or capped.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
    ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
    ::free(::malloc(1 << 20));  // leaves 1 MiB free at the heap's top, kept there
    std::ifstream statm("/proc/self/statm");
    unsigned long pages = 0;
    if (!(statm >> pages)) ::_exit(3);
    const rlim_t mapped = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE));
    const rlimit cap{mapped + 16 * 1024, mapped + 16 * 1024};
    if (::setrlimit(RLIMIT_AS, &cap) != 0) ::_exit(3);
    const int rc = zero_file_range(fd.get(), 0, 4096, /*punch=*/false);
    ::_exit(rc == -ENOMEM ? 0 : rc == 0 ? 1 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: zero_file_range claimed success without its buffer";
  std::vector<std::byte> back(ones.size());
  ASSERT_EQ(::pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, ones) << "nothing may have been written";
#endif
}

TEST(FileDisk, OpensExistingFileAtItsSizeAndReportsMissingFiles) {
  TempPath file("/tmp");
  {
    auto disk = FileDisk::create({.path = file.str(), .capacity_bytes = 64 * 1024});
    ASSERT_TRUE(disk.has_value());
    AlignedBuffer page(4096);
    page.fill_pattern(5);
    TagSet tags((*disk)->info().tag_set);
    ASSERT_TRUE(execute(**disk, tags, 0, Op::Write, 16, page.span()).has_value());
  }
  auto reopened = FileDisk::create({.path = file.str(), .read_only = true});
  ASSERT_TRUE(reopened.has_value()) << reopened.error().to_string();
  EXPECT_EQ((*reopened)->info().capacity_bytes(), 64u * 1024);
  TagSet tags((*reopened)->info().tag_set);
  AlignedBuffer expect(4096), got(4096);
  expect.fill_pattern(5);
  ASSERT_TRUE(execute(**reopened, tags, 0, Op::Read, 16, got.span()).has_value());
  EXPECT_EQ(std::memcmp(expect.data(), got.data(), 4096), 0);
  auto write = execute(**reopened, tags, 0, Op::Write, 16, got.span());
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().sys_errno(), EROFS);

  auto missing = FileDisk::create({.path = "/nonexistent-dir/pepita.img"});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::NotFound);
  EXPECT_FALSE(FileDisk::create({.path = ""}).has_value());
  TempPath odd("/tmp");
  EXPECT_FALSE(FileDisk::create({.path = odd.str(), .capacity_bytes = 1000}).has_value());
}

// The geometry and features a FileDisk reports: the file's capacity in sectors, the logical
// block size asked for, a physical block of at least a page, 1 MiB requests, 4 KiB discard
// granularity, the queues asked for, and every op a file does (read-only when opened so).
TEST(FileDisk, ReportsItsGeometryAndFeatures) {
  TempPath file("/tmp");
  for (const uint32_t lbs : {512u, 4096u}) {
    SCOPED_TRACE(lbs);
    auto disk = FileDisk::create({.path = file.str(),
                                  .capacity_bytes = 256 * 1024,
                                  .logical_block_size = lbs,
                                  .queues = 3,
                                  .queue_depth = 16,
                                  .engine = FileEngine::Sync});
    ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
    const DeviceInfo& info = (*disk)->info();
    EXPECT_EQ(info.capacity_sectors, 512u);
    EXPECT_EQ(info.logical_block_size, lbs);
    EXPECT_EQ(info.physical_block_size, 4096u);
    EXPECT_EQ(info.max_sectors, 2048u);
    EXPECT_EQ(info.discard_granularity, 4096u);
    EXPECT_EQ(info.tag_set.nr_hw_queues, 3u);
    EXPECT_EQ(info.tag_set.queue_depth, 16u);
    EXPECT_EQ(info.features,
              features::kFlush | features::kFua | features::kDiscard | features::kWriteZeroes);
  }
  auto read_only = FileDisk::create({.path = file.str(), .read_only = true});
  ASSERT_TRUE(read_only.has_value()) << read_only.error().to_string();
  EXPECT_EQ((*read_only)->info().features, features::kFlush | features::kFua | features::kDiscard |
                                               features::kWriteZeroes | features::kReadOnly);
}

// Each way create() can fail on a file it cannot use names the file and what to do, and
// changes nothing: O_DIRECT on a filesystem without it (procfs), a read-only file smaller than
// the capacity asked for, a file that cannot be extended (a character device).
TEST(FileDisk, CreateRefusesFilesItCannotUseAndSaysWhy) {
  auto no_direct = FileDisk::create({.path = "/proc/version", .direct = true, .read_only = true});
  ASSERT_FALSE(no_direct.has_value());
  EXPECT_EQ(no_direct.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(no_direct.error().sys_errno(), EINVAL);
  EXPECT_NE(no_direct.error().message().find("/proc/version: the filesystem does not support "
                                             "O_DIRECT; open it without direct"),
            std::string::npos)
      << no_direct.error().message();

  TempPath file("/tmp");
  ASSERT_TRUE(FileDisk::create({.path = file.str(), .capacity_bytes = 64 * 1024}).has_value());
  auto small =
      FileDisk::create({.path = file.str(), .capacity_bytes = 128 * 1024, .read_only = true});
  ASSERT_FALSE(small.has_value());
  EXPECT_EQ(small.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(small.error().message().find("holds 65536 bytes, less than the requested capacity "
                                         "131072"),
            std::string::npos)
      << small.error().message();
  EXPECT_EQ(std::filesystem::file_size(file.str()), 64u * 1024) << "a read-only file is not grown";

  auto fixed = FileDisk::create({.path = "/dev/null", .capacity_bytes = 1 << 20});
  ASSERT_FALSE(fixed.has_value());
  EXPECT_EQ(fixed.error().sys_errno(), EINVAL);
  EXPECT_NE(fixed.error().message().find("extend /dev/null to 1048576 bytes"), std::string::npos)
      << fixed.error().message();
}

// Without io_uring (io_uring_setup refused, as kernel.io_uring_disabled does), the io_uring
// engine is an error that says which engine failed and why, while Auto falls back to the sync
// engine. In a forked child: the seccomp filter cannot be removed.
TEST(FileDisk, IoUringEngineFailsCreateWhereAutoFallsBackToSyncWithoutIoUring) {
  auto code = test::run_forked([] {
    ASSERT_EQ(
        test::fail_syscalls({{.nr = SCMP_SYS(io_uring_setup), .error = EPERM, .min_arg0 = 0}}), "");
    TempPath file("/tmp");
    auto uring = FileDisk::create(
        {.path = file.str(), .capacity_bytes = 64 * 1024, .engine = FileEngine::IoUring});
    ASSERT_FALSE(uring.has_value()) << "created without io_uring";
    EXPECT_EQ(uring.error().sys_errno(), EPERM);
    EXPECT_EQ(uring.error().message().rfind("FileDisk io_uring engine: ", 0), 0u)
        << uring.error().message();
    EXPECT_NE(uring.error().message().find("kernel.io_uring_disabled"), std::string::npos)
        << uring.error().message();
    auto fallback = FileDisk::create(
        {.path = file.str(), .capacity_bytes = 64 * 1024, .engine = FileEngine::Auto});
    ASSERT_TRUE(fallback.has_value()) << fallback.error().to_string();
    EXPECT_EQ((*fallback)->engine(), FileEngine::Sync);
    TagSet tags((*fallback)->info().tag_set);
    testing::expect_round_trip(**fallback, tags);
  });
  EXPECT_EQ(code, 0);
}

// A file truncated under the disk reads as zeros past its new end (as a block device never ends
// early): the request completes whole, the bytes that are still there come back unchanged.
TEST_P(FileDiskEngines, ReadPastAFileTruncatedUnderTheDiskReturnsZeros) {
  TempPath file("/tmp");
  auto disk =
      FileDisk::create({.path = file.str(), .capacity_bytes = 64 * 1024, .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  TagSet tags((*disk)->info().tag_set);
  AlignedBuffer out(16 * 1024), in(16 * 1024);
  out.fill_pattern(3);
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Write, 0, out.span()).has_value());
  constexpr off_t kLeft = 4096 + 100;
  ASSERT_EQ(::truncate(file.str().c_str(), kLeft), 0) << std::strerror(errno);
  std::memset(in.data(), 0xee, in.size());
  auto read = execute(**disk, tags, 0, Op::Read, 0, in.span());
  ASSERT_TRUE(read.has_value()) << read.error().to_string();
  EXPECT_EQ(*read, in.size());
  EXPECT_EQ(std::memcmp(in.data(), out.data(), kLeft), 0) << "the bytes still in the file";
  for (size_t i = kLeft; i < in.size(); ++i) {
    ASSERT_EQ(in.data()[i], std::byte{0}) << "byte " << i << " past the new end";
  }
  // Wholly past the new end: the file gives nothing at all (a read of 0 bytes), still zeros.
  std::memset(in.data(), 0xee, in.size());
  auto beyond = execute(**disk, tags, 0, Op::Read, 32, in.span());
  ASSERT_TRUE(beyond.has_value()) << beyond.error().to_string();
  EXPECT_EQ(*beyond, in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(in.data()[i], std::byte{0}) << "byte " << i << " of a read past the end";
  }
}

// cachestat(2) (Linux 6.5+; not in older headers): the page-cache state of a file range.
struct CacheStat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
constexpr long kSysCachestat = 451;

// Dirty pages of [offset, offset + length) of `path`, or -errno.
int64_t dirty_pages(const std::string& path, uint64_t offset, uint64_t length) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const uint64_t range[2] = {offset, length};
  CacheStat stat{};
  const long rc = ::syscall(kSysCachestat, fd, range, &stat, 0);
  const int err = errno;
  ::close(fd);
  return rc < 0 ? -err : static_cast<int64_t>(stat.nr_dirty);
}

// A FUA write is on stable storage when it completes (RWF_DSYNC): it leaves no dirty page in the
// page cache, where a plain write(2) to the same file does.
TEST_P(FileDiskEngines, AFuaWriteLeavesNoDirtyPageBehind) {
  TempPath file("/var/tmp");
  auto disk =
      FileDisk::create({.path = file.str(), .capacity_bytes = 1 << 20, .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  TagSet tags((*disk)->info().tag_set);
  AlignedBuffer out(16 * 1024);
  out.fill_pattern(5);
  {  // The control, past the disk: whether this filesystem shows dirty pages at all.
    const std::vector<std::byte> plain_data(out.size(), std::byte{0x5a});
    const int fd = ::open(file.str().c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const ssize_t n = ::pwrite(fd, plain_data.data(), plain_data.size(), 0);
    ::close(fd);
    ASSERT_EQ(n, static_cast<ssize_t>(plain_data.size()));
  }
  const int64_t plain = dirty_pages(file.str(), 0, out.size());
  if (plain == -ENOSYS) GTEST_SKIP() << "no cachestat(2) (Linux 6.5+)";
  ASSERT_GE(plain, 0) << std::strerror(static_cast<int>(-plain));
  if (plain == 0) GTEST_SKIP() << "a plain write left no dirty page to compare with (written back)";
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Write, 256, out.span(), 0, req_flags::kFua));
  EXPECT_EQ(dirty_pages(file.str(), 256 * 512, out.size()), 0);
}

// A write the kernel takes only in part (here: it reaches RLIMIT_FSIZE) is finished by hand, and
// what fails then fails the request: EFBIG, not the short count. In a child, whose file-size
// limit and ignored SIGXFSZ die with it.
TEST_P(FileDiskEngines, AWriteCutShortByTheFileSizeLimitFailsWithEfbig) {
  TempPath file("/tmp");
  const FileEngine engine = GetParam();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    // Exit status: 0 EFBIG, 2 setup failed, 3 the write succeeded, 4 another error.
    auto disk =
        FileDisk::create({.path = file.str(), .capacity_bytes = 64 * 1024, .engine = engine});
    if (!disk) ::_exit(2);
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{12 * 1024, 12 * 1024};  // the write below ends at 16 KiB
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(2);
    TagSet tags((*disk)->info().tag_set);
    AlignedBuffer out(8 * 1024);
    out.fill_pattern(9);
    auto wrote = execute(**disk, tags, 0, Op::Write, 16, out.span());
    if (wrote) ::_exit(3);
    ::_exit(wrote.error().sys_errno() == EFBIG ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: the short write was reported as a success";
}

// The io_uring engine finishes a write the kernel took only in part with exactly the rest: the
// bytes after those written, at the offset the kernel stopped at, and nothing past the request.
// The file-size limit cuts the io_uring write short; the pwrite that finishes it is held (a
// seccomp user notification, installed before the disk starts its reaping threads) until the
// limit is lifted, so it completes. In a child: the filter and the limit cannot be undone.
TEST(FileDisk, IoUringFinishesAShortWriteWithExactlyTheRestOfTheRequest) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  TempPath file("/tmp");
  const auto code = test::run_forked(
      [&] {
        std::string error;
        const int held = test::hold_syscalls({SCMP_SYS(pwrite64), SCMP_SYS(pwritev2)}, error);
        ASSERT_GE(held, 0) << error;
        auto disk = FileDisk::create(
            {.path = file.str(), .capacity_bytes = 64 * 1024, .engine = FileEngine::IoUring});
        ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
        rlimit unlimited{};
        ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &unlimited), 0) << std::strerror(errno);
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{12 * 1024, unlimited.rlim_max};  // the write below is [8 KiB, 16 KiB)
        ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0) << std::strerror(errno);
        // Twice the request: what lies past it is readable, so reading too far writes it.
        AlignedBuffer out(16 * 1024);
        out.fill_pattern(21);
        SyncCompletion wrote;
        (*disk)->submit(0, Request{.op = Op::Write,
                                   .sector = 16,
                                   .nr_sectors = 16,
                                   .tag = 0,
                                   .data = out.data(),
                                   .completion = &wrote});
        EXPECT_EQ(test::release_held_call(held, 10'000,
                                          [&](const seccomp_data& call) {
                                            EXPECT_EQ(call.args[2], 4096u) << "bytes finished";
                                            EXPECT_EQ(call.args[3], 12u * 1024) << "at offset";
                                            ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &unlimited), 0);
                                          }),
                  "");
        EXPECT_EQ(wrote.wait(), 8192);
        TagSet tags((*disk)->info().tag_set);
        AlignedBuffer in(64 * 1024);
        ASSERT_TRUE(execute(**disk, tags, 0, Op::Read, 0, in.span()));
        std::vector<std::byte> expect(64 * 1024, std::byte{0});
        std::copy_n(out.data(), 8192, expect.begin() + 8192);
        EXPECT_EQ(std::memcmp(in.data(), expect.data(), expect.size()), 0)
            << "the file is not the request's bytes at [8 KiB, 16 KiB) and zeros elsewhere";
      },
      std::chrono::seconds(30));
  EXPECT_EQ(code, 0);
}

// Many requests in flight on one queue at once: each tag's completion arrives exactly once.
TEST_P(FileDiskEngines, ManyRequestsInFlight) {
  constexpr uint32_t kDepth = 64;
  TempPath file("/tmp");
  auto disk = FileDisk::create({.path = file.str(),
                                .capacity_bytes = kDepth * 4096,
                                .queue_depth = kDepth,
                                .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  AlignedBuffer out(kDepth * 4096), in(kDepth * 4096);
  out.fill_pattern(77);
  for (Op op : {Op::Write, Op::Read}) {
    std::vector<SyncCompletion> done(kDepth);
    for (uint32_t tag = 0; tag < kDepth; ++tag) {
      std::byte* data = (op == Op::Write ? out.data() : in.data()) + tag * 4096;
      (*disk)->submit(0, Request{.op = op,
                                 .sector = tag * 8u,
                                 .nr_sectors = 8,
                                 .tag = tag,
                                 .data = data,
                                 .completion = &done[tag]});
    }
    for (auto& completion : done) EXPECT_EQ(completion.wait(), 4096);
  }
  EXPECT_EQ(std::memcmp(out.data(), in.data(), out.size()), 0);
  SyncCompletion bad_tag;
  (*disk)->submit(0, Request{.op = Op::Read,
                             .sector = 0,
                             .nr_sectors = 8,
                             .tag = kDepth,
                             .data = in.data(),
                             .completion = &bad_tag});
  EXPECT_EQ(bad_tag.wait(), -EINVAL);
}

// On tmpfs (no FALLOC_FL_ZERO_RANGE) WriteZeroes with NoUnmap falls back to writing zeros, so
// the range stays allocated as the flag asks (st_blocks unchanged); without the flag the hole
// may be punched, which tmpfs does in place. The io_uring engine falls back when its fallocate
// completes with -EOPNOTSUPP, the sync one inside zero_file_range. (Plain tests rather than a
// FileDiskEngines case: scripts/mutation names a killing test only when it has no parameter.)
void expect_write_zeroes_keeps_allocation_only_with_no_unmap_on_tmpfs(FileEngine engine) {
  struct statfs fs {};
  if (::statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
    GTEST_SKIP() << "/dev/shm is not a tmpfs: the ZERO_RANGE fallback needs a filesystem without "
                    "FALLOC_FL_ZERO_RANGE";
  }
  constexpr uint32_t kSize = 1 << 20;
  TempPath file("/dev/shm");
  auto disk = FileDisk::create({.path = file.str(), .capacity_bytes = kSize, .engine = engine});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  TagSet tags((*disk)->info().tag_set);
  AlignedBuffer ones(kSize);
  std::memset(ones.data(), 0xff, kSize);
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Write, 0, ones.span()).has_value());
  const uint64_t allocated = file.allocated_bytes();
  ASSERT_GE(allocated, uint64_t{kSize});

  // 256 KiB at 128 KiB, keeping the allocation.
  auto kept = execute(**disk, tags, 0, Op::WriteZeroes, 256, {}, 512, req_flags::kNoUnmap);
  ASSERT_TRUE(kept.has_value()) << kept.error().to_string();
  EXPECT_EQ(file.allocated_bytes(), allocated) << "NoUnmap: the zeroed range must stay allocated";
  // 256 KiB at 512 KiB, free to deallocate.
  auto punched = execute(**disk, tags, 0, Op::WriteZeroes, 1024, {}, 512);
  ASSERT_TRUE(punched.has_value()) << punched.error().to_string();
  // Exactly the range, where tmpfs uses small pages (a huge page is only partly freed).
  const std::string shmem_thp =
      test::read_file_text("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  if (shmem_thp.empty() || shmem_thp.find("[never]") != std::string::npos ||
      shmem_thp.find("[deny]") != std::string::npos) {
    EXPECT_EQ(file.allocated_bytes(), allocated - (256 << 10))
        << "without NoUnmap tmpfs punches the hole";
  }

  AlignedBuffer back(kSize);
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Read, 0, back.span()).has_value());
  for (uint32_t i = 0; i < kSize; ++i) {
    const bool zeroed =
        (i >= (128u << 10) && i < (384u << 10)) || (i >= (512u << 10) && i < (768u << 10));
    ASSERT_EQ(back.data()[i], zeroed ? std::byte{0} : std::byte{0xff}) << "byte " << i;
  }
}

TEST(FileDisk, SyncWriteZeroesKeepsTheRangeAllocatedOnlyWithNoUnmapOnTmpfs) {
  expect_write_zeroes_keeps_allocation_only_with_no_unmap_on_tmpfs(FileEngine::Sync);
}

TEST(FileDisk, IoUringWriteZeroesKeepsTheRangeAllocatedOnlyWithNoUnmapOnTmpfs) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  expect_write_zeroes_keeps_allocation_only_with_no_unmap_on_tmpfs(FileEngine::IoUring);
}

// On a filesystem with both FALLOC_FL_ZERO_RANGE and FALLOC_FL_PUNCH_HOLE (ext4, xfs), Write
// Zeroes with NoUnmap keeps the range allocated and without it punches the hole: st_blocks drops
// by about the range only then.
TEST_P(FileDiskEngines, WriteZeroesPunchesAHoleOnlyWithoutNoUnmap) {
  constexpr uint32_t kSize = 1 << 20;
  TempPath file("/var/tmp");
  auto disk = FileDisk::create({.path = file.str(), .capacity_bytes = kSize, .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  TagSet tags((*disk)->info().tag_set);
  AlignedBuffer ones(kSize);
  std::memset(ones.data(), 0xff, kSize);
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Write, 0, ones.span()).has_value());
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Flush, 0, {}).has_value());  // allocate for real
  const uint64_t allocated = file.allocated_bytes();
  ASSERT_GE(allocated, uint64_t{kSize});
  // Does this filesystem zero a range in place, keeping it allocated? (Asked of it directly.)
  {
    const int fd = ::open(file.str().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const bool zero_range = ::fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096) == 0;
    ::close(fd);
    if (!zero_range || file.allocated_bytes() != allocated) {
      GTEST_SKIP() << "/var/tmp's filesystem has no FALLOC_FL_ZERO_RANGE that keeps the blocks";
    }
  }
  auto kept = execute(**disk, tags, 0, Op::WriteZeroes, 256, {}, 512, req_flags::kNoUnmap);
  ASSERT_TRUE(kept.has_value()) << kept.error().to_string();
  EXPECT_GE(file.allocated_bytes(), allocated) << "NoUnmap: the zeroed range must stay allocated";
  auto punched = execute(**disk, tags, 0, Op::WriteZeroes, 1024, {}, 512);
  ASSERT_TRUE(punched.has_value()) << punched.error().to_string();
  // Most of the 256 KiB goes (the extent tree may take a block of it back).
  EXPECT_LE(file.allocated_bytes(), allocated - (192 << 10))
      << "without NoUnmap the hole is punched";
  AlignedBuffer back(kSize);
  ASSERT_TRUE(execute(**disk, tags, 0, Op::Read, 0, back.span()).has_value());
  for (uint32_t i = 4096; i < kSize; ++i) {
    const bool zeroed =
        (i >= (128u << 10) && i < (384u << 10)) || (i >= (512u << 10) && i < (768u << 10));
    ASSERT_EQ(back.data()[i], zeroed ? std::byte{0} : std::byte{0xff}) << "byte " << i;
  }
}

// A Completion that notes which thread ran complete(), then hands the result on.
class ThreadNotingCompletion final : public Completion {
 public:
  void complete(int res) noexcept override {
    thread_ = std::this_thread::get_id();
    done_.complete(res);  // releases thread_ to wait()
  }
  int wait() noexcept { return done_.wait(); }
  std::thread::id thread() const noexcept { return thread_; }

 private:
  std::thread::id thread_;
  SyncCompletion done_;
};

// The io_uring engine is the one that runs the requests: they complete on its reaper thread,
// after submit() returned; the sync engine completes each one inside submit().
TEST_P(FileDiskEngines, RequestsCompleteOnTheEnginesOwnThread) {
  TempPath file("/tmp");
  auto disk = FileDisk::create(
      {.path = file.str(), .capacity_bytes = 64 * 1024, .queues = 2, .engine = GetParam()});
  ASSERT_TRUE(disk.has_value()) << disk.error().to_string();
  ASSERT_EQ((*disk)->engine(), GetParam());
  AlignedBuffer out(4096), in(4096);
  out.fill_pattern(11);
  for (uint32_t queue = 0; queue < 2; ++queue) {
    for (Op op : {Op::Write, Op::Flush, Op::Read}) {
      const bool rw = op != Op::Flush;
      ThreadNotingCompletion done;
      (*disk)->submit(queue, Request{.op = op,
                                     .sector = rw ? 8u : 0u,
                                     .nr_sectors = rw ? 8u : 0u,
                                     .tag = 0,
                                     .data = op == Op::Write  ? out.data()
                                             : op == Op::Read ? in.data()
                                                              : nullptr,
                                     .completion = &done});
      EXPECT_EQ(done.wait(), rw ? 4096 : 0) << op_name(op) << " on queue " << queue;
      if (GetParam() == FileEngine::IoUring) {
        EXPECT_NE(done.thread(), std::this_thread::get_id())
            << op_name(op) << " on queue " << queue << " completed inside submit()";
      } else {
        EXPECT_EQ(done.thread(), std::this_thread::get_id()) << op_name(op);
      }
    }
  }
  EXPECT_EQ(std::memcmp(out.data(), in.data(), in.size()), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, FileDiskEngines,
                         ::testing::Values(FileEngine::IoUring, FileEngine::Sync),
                         [](const auto& param_info) {
                           return std::string(param_info.param == FileEngine::Sync ? "sync"
                                                                                   : "io_uring");
                         });

TEST(FileDisk, QueuesRunConcurrently) {
  TempPath file("/tmp");
  auto disk = FileDisk::create({.path = file.str(), .capacity_bytes = 4 << 20, .queues = 4});
  ASSERT_TRUE(disk.has_value());
  TagSet tags((*disk)->info().tag_set);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (uint32_t q = 0; q < 4; ++q) {
    threads.emplace_back([&, q] {
      AlignedBuffer out(8 * 4096), in(8 * 4096);
      for (int round = 0; round < 20; ++round) {
        out.fill_pattern(q * 1000 + round);
        const uint64_t sector = q * 2048;
        if (!execute(**disk, tags, q, Op::Write, sector, out.span())) ++failures;
        if (!execute(**disk, tags, q, Op::Read, sector, in.span())) ++failures;
        if (std::memcmp(out.data(), in.data(), out.size()) != 0) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace pepita::blk_mq
