// QueueHandler driven the way the kernel drives it (descriptor array + tag buffers), on real
// targets: data round trips, refused descriptors complete with an errno while the queue goes on,
// and completions from another thread are handed back through the wake callback.
#include "pepita/ublk/queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/ublk/targets.hpp"

namespace pepita::ublk {
namespace {
namespace u = abi::ublk;

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

constexpr uint16_t kDepth = 8;
constexpr uint32_t kMaxIo = 64 << 10;

struct Harness {
  explicit Harness(blk_mq::BlockDevice& device)
      : descs(kDepth),
        buffers(size_t{kDepth} * kMaxIo),
        handler(device, 0, descs, buffers,
                {.capacity_sectors = device.info().capacity_sectors, .max_io_bytes = kMaxIo}) {}

  // Places a request in `tag`'s descriptor, delivers it and returns the committed result.
  int32_t run(uint16_t tag, uint8_t op, uint64_t sector, uint32_t sectors) {
    descs[tag] = u::IoDesc{};
    descs[tag].op_flags = op;
    descs[tag].start_sector = sector;
    descs[tag].nr_sectors = sectors;
    handler.on_request(tag);
    int32_t result = 1234567;
    size_t n = handler.drain([&](uint16_t t, int32_t r) {
      EXPECT_EQ(t, tag);
      result = r;
    });
    EXPECT_EQ(n, 1u);
    return result;
  }

  std::vector<u::IoDesc> descs;
  std::vector<std::byte> buffers;
  QueueHandler handler;
};

TEST(UblkQueue, WriteThenReadRoundTripsThroughMemDisk) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20, .queue_depth = kDepth});
  ASSERT_TRUE(disk) << disk.error().to_string();
  Harness h(**disk);
  std::byte* buf = h.handler.buffer(3);
  for (size_t i = 0; i < 8192; ++i) buf[i] = std::byte(i * 7 + 1);
  EXPECT_EQ(h.run(3, u::IO_OP_WRITE, 16, 16), 8192);
  std::memset(h.handler.buffer(5), 0, 8192);
  EXPECT_EQ(h.run(5, u::IO_OP_READ, 16, 16), 8192);
  EXPECT_EQ(std::memcmp(h.handler.buffer(3), h.handler.buffer(5), 8192), 0);
  EXPECT_EQ(h.run(0, u::IO_OP_FLUSH, 0, 0), 0);
  EXPECT_EQ(h.run(1, u::IO_OP_DISCARD, 16, 16), 0);
  EXPECT_EQ(h.run(5, u::IO_OP_READ, 16, 16), 8192);
  EXPECT_EQ(h.handler.buffer(5)[100], std::byte{0});  // discarded range reads back as zeros
  EXPECT_EQ(h.handler.in_flight(), 0u);
  EXPECT_EQ(h.handler.stats().requests, 5u);
  EXPECT_EQ(h.handler.stats().bytes, 3u * 8192);
}

TEST(UblkQueue, BadDescriptorsFailThatRequestOnly) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20, .queue_depth = kDepth});
  ASSERT_TRUE(disk);
  Harness h(**disk);
  EXPECT_EQ(h.run(0, u::IO_OP_READ, 2048, 8), -EIO);     // past the end
  EXPECT_EQ(h.run(1, 99, 0, 8), -EOPNOTSUPP);            // unknown op
  EXPECT_EQ(h.run(2, u::IO_OP_WRITE, 0, 256), -EINVAL);  // larger than the tag buffer
  EXPECT_EQ(h.run(3, u::IO_OP_ZONE_APPEND, 0, 8), -EOPNOTSUPP);
  EXPECT_EQ(h.run(4, u::IO_OP_READ, 0, 8), 4096);  // and the queue still serves requests
  EXPECT_EQ(h.handler.stats().refused, 4u);
  EXPECT_EQ(h.handler.stats().failed, 4u);
}

TEST(UblkQueue, OutOfRangeTagIsRefused) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20, .queue_depth = kDepth});
  ASSERT_TRUE(disk);
  Harness h(**disk);
  h.handler.on_request(kDepth + 3);
  int32_t result = 0;
  h.handler.drain([&](uint16_t, int32_t r) { result = r; });
  EXPECT_EQ(result, -EINVAL);
}

TEST(UblkQueue, RejectedRequestIsCommittedWithItsErrnoWithoutTheTarget) {
  // What the server does when USER_COPY cannot read a write's data from /dev/ublkcN: the tag
  // completes with that errno, the target never sees the request, and the queue goes on.
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 1 << 20, .queue_depth = kDepth});
  ASSERT_TRUE(disk);
  Harness h(**disk);
  std::memset(h.handler.buffer(2), 0x5a, 4096);
  h.descs[2] = u::IoDesc{};
  h.descs[2].op_flags = u::IO_OP_WRITE;
  h.descs[2].nr_sectors = 8;
  h.handler.reject(2, -EFAULT);
  EXPECT_EQ(h.handler.in_flight(), 1u) << "a rejected tag is in flight until drained";
  std::vector<std::pair<uint16_t, int32_t>> done;
  EXPECT_EQ(h.handler.drain([&](uint16_t t, int32_t r) { done.emplace_back(t, r); }), 1u);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, 2u);
  EXPECT_EQ(done[0].second, -EFAULT);
  EXPECT_EQ(h.handler.in_flight(), 0u);
  EXPECT_EQ(h.handler.stats().requests, 1u);
  EXPECT_EQ(h.handler.stats().refused, 1u);
  EXPECT_EQ(h.handler.stats().failed, 1u);
  EXPECT_EQ(h.handler.stats().bytes, 0u);
  // The write never reached the disk: sector 0 still reads as zeros.
  std::memset(h.handler.buffer(4), 0xee, 4096);
  EXPECT_EQ(h.run(4, u::IO_OP_READ, 0, 8), 4096);
  EXPECT_EQ(h.handler.buffer(4)[0], std::byte{0});
  EXPECT_EQ(h.handler.buffer(4)[4095], std::byte{0});
}

TEST(UblkQueue, TargetErrorsReachTheCommit) {
  // The zram target (4 KiB logical blocks) refuses misaligned requests itself (check_request):
  // parse_io_desc lets them through, and the target's errno is what gets committed.
  auto zram = make_target(spec(TargetKind::Zram, 1 << 20, kDepth));
  ASSERT_TRUE(zram) << zram.error().to_string();
  Harness h(**zram);
  EXPECT_EQ(h.run(0, u::IO_OP_READ, 0, 8), 4096);
  EXPECT_EQ(h.run(1, u::IO_OP_WRITE, 8, 120), 120 * 512);
  EXPECT_EQ(h.run(2, u::IO_OP_READ, 1, 8), -EINVAL);
  EXPECT_EQ(h.run(3, u::IO_OP_WRITE, 8, 4), -EINVAL);
  EXPECT_EQ(h.handler.stats().refused, 0u);
  EXPECT_EQ(h.handler.stats().failed, 2u);
}

// A target that completes on its own thread, as an asynchronous engine would.
class AsyncDisk final : public blk_mq::BlockDevice {
 public:
  AsyncDisk() {
    info_.capacity_sectors = 1 << 11;
    info_.tag_set = {1, kDepth};
  }
  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t, const blk_mq::Request& req) noexcept override {
    threads_.emplace_back([req] { req.completion->complete(static_cast<int>(req.byte_length())); });
  }
  void join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  blk_mq::DeviceInfo info_;
  std::vector<std::thread> threads_;
};

TEST(UblkQueue, CompletionsFromOtherThreadsWakeTheQueue) {
  AsyncDisk disk;
  Harness h(disk);
  std::atomic<int> wakes{0};
  h.handler.bind_to_current_thread(
      [](void* arg) { static_cast<std::atomic<int>*>(arg)->fetch_add(1); }, &wakes);
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    h.descs[tag] = u::IoDesc{};
    h.descs[tag].op_flags = u::IO_OP_READ;
    h.descs[tag].start_sector = tag * 8u;
    h.descs[tag].nr_sectors = 8;
    h.handler.on_request(tag);
  }
  disk.join();
  EXPECT_EQ(wakes.load(), kDepth);
  std::vector<bool> seen(kDepth);
  const size_t n = h.handler.drain([&](uint16_t tag, int32_t r) {
    EXPECT_EQ(r, 4096);
    seen[tag] = true;
  });
  EXPECT_EQ(n, kDepth);
  EXPECT_EQ(h.handler.in_flight(), 0u);
  for (bool s : seen) EXPECT_TRUE(s);
}

}  // namespace
}  // namespace pepita::ublk
