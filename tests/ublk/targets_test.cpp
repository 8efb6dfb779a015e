// Target construction and the size/target parsers the CLI uses; the server on a host without ublk,
// and on a real ublk device (UblkDevice.*, run in the test guest).
#include "pepita/ublk/targets.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/require.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/ublk/server.hpp"

namespace pepita::ublk {
namespace {

// TargetSpec has string members, so designated initialisers would trip
// -Wmissing-field-initializers.
TargetSpec spec(TargetKind kind, uint64_t size, uint32_t depth = 128, std::string path = {},
                std::string compression = "lz4") {
  TargetSpec s;
  s.kind = kind;
  s.size_bytes = size;
  s.queue_depth = depth;
  s.path = std::move(path);
  s.compression = std::move(compression);
  return s;
}

TEST(UblkTargets, ParseSize) {
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("64M").value(), 64ull << 20);
  EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
  EXPECT_EQ(parse_size("512MiB").value(), 512ull << 20);
  EXPECT_EQ(parse_size("2k").value(), 2048u);
  EXPECT_EQ(parse_size("3T").value(), 3ull << 40);
  for (const char* bad : {"", "G", "0", "12Q", "-1", "1.5G", "99999999999999999999", "20000000T"})
    EXPECT_EQ(parse_size(bad).error().code(), ErrorCode::InvalidArgument) << bad;
}

TEST(UblkTargets, ParseTargetKind) {
  EXPECT_EQ(parse_target_kind("zram").value(), TargetKind::Zram);
  EXPECT_EQ(parse_target_kind("file").value(), TargetKind::File);
  const auto bad = parse_target_kind("nbd");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("null, mem, file or zram"), std::string::npos);
  EXPECT_STREQ(target_name(TargetKind::Mem), "mem");
}

TEST(UblkTargets, MissingArgumentsAreReported) {
  EXPECT_EQ(make_target(spec(TargetKind::Zram, 0)).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(make_target(spec(TargetKind::File, 1 << 20)).error().code(),
            ErrorCode::InvalidArgument);
  EXPECT_EQ(make_target(spec(TargetKind::Null, 1000)).error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(make_target(spec(TargetKind::Zram, 1 << 20, 128, {}, "xz")));
}

TEST(UblkTargets, EveryKindServesData) {
  const std::string path = std::string(PEPITA_BINARY_DIR) + "/ublk_target_test.img";
  std::remove(path.c_str());
  for (TargetKind kind : {TargetKind::Null, TargetKind::Mem, TargetKind::File, TargetKind::Zram}) {
    auto disk = make_target(spec(kind, 1 << 20, 128, path, "zstd"));
    ASSERT_TRUE(disk) << target_name(kind) << ": " << disk.error().to_string();
    const blk_mq::DeviceInfo& info = (*disk)->info();
    EXPECT_EQ(info.capacity_bytes(), 1u << 20) << target_name(kind);
    blk_mq::TagSet tags(info.tag_set);
    std::vector<std::byte> page(4096, std::byte{0x5a});
    auto wrote = blk_mq::execute(**disk, tags, 0, blk_mq::Op::Write, 8, page);
    ASSERT_TRUE(wrote) << target_name(kind) << ": " << wrote.error().to_string();
    std::vector<std::byte> back(4096);
    ASSERT_TRUE(blk_mq::execute(**disk, tags, 0, blk_mq::Op::Read, 8, back));
    if (kind != TargetKind::Null) {
      EXPECT_EQ(back, page) << target_name(kind);
    }
  }
  std::remove(path.c_str());
}

TEST(UblkServer, StartWithoutDriverFailsCleanly) {
  auto disk = make_target(spec(TargetKind::Null, 1 << 20));
  ASSERT_TRUE(disk);
  auto server = Server::start(std::move(*disk), {}, "/nonexistent/ublk-control");
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code(), ErrorCode::Unsupported);
  EXPECT_NE(server.error().message().find("ublk_drv"), std::string::npos);
}

TEST(UblkServer, RejectsTargetsSmallerThanTheTagSet) {
  auto disk = make_target(spec(TargetKind::Null, 1 << 20, 16));
  ASSERT_TRUE(disk);
  auto server = Server::start(std::move(*disk), {.depth = 64}, "/nonexistent/ublk-control");
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(Server::start(nullptr, {}).error().code(), ErrorCode::InvalidArgument);
}

// A target that reports no sectors (a broken or empty backing store).
class ZeroCapacityDisk final : public blk_mq::BlockDevice {
 public:
  ZeroCapacityDisk() { info_.tag_set = {1, 64}; }
  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t, const blk_mq::Request& req) noexcept override {
    req.completion->complete(-EIO);
  }

 private:
  blk_mq::DeviceInfo info_;
};

TEST(UblkServer, RejectsAZeroCapacityTargetBeforeTheDriver) {
  // Refused before /dev/ublk-control is opened: the error is the target's, not "no driver".
  auto server = Server::start(std::make_unique<ZeroCapacityDisk>(), {.depth = 16},
                              "/nonexistent/ublk-control");
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(server.error().message().find("zero capacity"), std::string::npos)
      << server.error().message();
}

TEST(UblkServer, DeviceStatesHaveTheirKernelNames) {
  namespace u = abi::ublk;
  EXPECT_STREQ(state_name(u::S_DEV_DEAD), "dead");
  EXPECT_STREQ(state_name(u::S_DEV_LIVE), "live");
  EXPECT_STREQ(state_name(u::S_DEV_QUIESCED), "quiesced");
  EXPECT_STREQ(state_name(77), "unknown") << "a state a newer kernel adds";
}

uint64_t bytes_served(const Server& server) {
  uint64_t bytes = 0;
  for (const QueueStats& q : server.stats()) bytes += q.bytes;
  return bytes;
}

// A real device: a mem target written and read back with O_DIRECT, so every byte crosses the ublk
// server rather than the page cache. UblkDevice.* need /dev/ublk-control; the CI host kernel has
// no ublk_drv, so they are not registered on the host (src/ublk/CMakeLists.txt) and run in the
// Linux 6.12 guest (ctest -L guest: ublk_guest), where PEPITA_REQUIRE=ublk makes a missing driver
// a failure.
TEST(UblkDevice, MemTargetWrittenAndReadBackWithODirect) {
  PEPITA_REQUIRE_CAPABILITY(ublk);
  auto disk = make_target(spec(TargetKind::Mem, 8 << 20));
  ASSERT_TRUE(disk);
  auto server = Server::start(std::move(*disk), {.depth = 16});
  ASSERT_TRUE(server) << server.error().to_string();
  const int fd = ::open((*server)->block_path().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0) << (*server)->block_path() << ": " << std::strerror(errno);

  constexpr size_t kLen = 64 << 10;
  constexpr off_t kAt = 1 << 20;
  // O_DIRECT wants buffers, offsets and lengths aligned to the logical block size (512 here).
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, Free> out(
      static_cast<unsigned char*>(std::aligned_alloc(4096, kLen)));
  std::unique_ptr<unsigned char, Free> in(
      static_cast<unsigned char*>(std::aligned_alloc(4096, kLen)));
  ASSERT_TRUE(out && in);
  for (size_t i = 0; i < kLen; ++i) out.get()[i] = static_cast<unsigned char>(i * 131 + 7);

  const uint64_t before = bytes_served(**server);
  ASSERT_EQ(::pwrite(fd, out.get(), kLen, kAt), static_cast<ssize_t>(kLen)) << std::strerror(errno);
  std::memset(in.get(), 0xee, kLen);
  ASSERT_EQ(::pread(fd, in.get(), kLen, kAt), static_cast<ssize_t>(kLen)) << std::strerror(errno);
  EXPECT_EQ(std::memcmp(in.get(), out.get(), kLen), 0) << "read-back differs from what was written";
  // A region never written reads as the mem target's zeros.
  std::memset(in.get(), 0xee, kLen);
  ASSERT_EQ(::pread(fd, in.get(), kLen, 4 << 20), static_cast<ssize_t>(kLen))
      << std::strerror(errno);
  EXPECT_EQ(std::count(in.get(), in.get() + kLen, 0), static_cast<std::ptrdiff_t>(kLen));
  ::close(fd);
  // The server itself moved the three transfers (the kernel may add reads of its own, e.g. a
  // partition scan, so at least).
  EXPECT_GE(bytes_served(**server) - before, 3 * kLen);
  EXPECT_EQ((*server)->queue_error(), "") << "a queue thread failed while serving";
  EXPECT_TRUE((*server)->stop());
}

}  // namespace
}  // namespace pepita::ublk
