// Target construction and the size/target parsers the CLI uses; the server on a host without ublk,
// and on a real ublk device (UblkDevice.*, run in the test guest).
#include "pepita/ublk/targets.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
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

// A real device: a mem target read back through the page cache. UblkDevice.* need
// /dev/ublk-control; the CI host kernel has no ublk_drv, so they are not registered on the host
// (src/ublk/CMakeLists.txt) and run in the Linux 6.12 guest (ctest -L guest: ublk_guest), where
// PEPITA_REQUIRE=ublk makes a missing driver a failure.
TEST(UblkDevice, MemTargetServesAReadBack) {
  PEPITA_REQUIRE_CAPABILITY(ublk);
  auto disk = make_target(spec(TargetKind::Mem, 8 << 20));
  ASSERT_TRUE(disk);
  auto server = Server::start(std::move(*disk), {.depth = 16});
  ASSERT_TRUE(server) << server.error().to_string();
  FILE* f = std::fopen((*server)->block_path().c_str(), "r+");
  ASSERT_NE(f, nullptr);
  char out[4096] = "pepita";
  ASSERT_EQ(std::fwrite(out, 1, sizeof out, f), sizeof out);
  std::fflush(f);
  std::rewind(f);
  char in[4096] = {};
  ASSERT_EQ(std::fread(in, 1, sizeof in, f), sizeof in);
  std::fclose(f);
  EXPECT_STREQ(in, "pepita");
  EXPECT_TRUE((*server)->stop());
}

}  // namespace
}  // namespace pepita::ublk
