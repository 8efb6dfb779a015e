// virtio-blk: Request::parse on crafted chains, and the device serving a MemDisk over a ring.
#include "pepita/virtio/blk.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "driver_ring.hpp"
#include "pepita/blk_mq/mem_disk.hpp"

namespace pepita::virtio::blk {
namespace {
using testing::DriverRing;
namespace v = abi::virtio;
namespace vb = abi::virtio_blk;

constexpr uint64_t kCapacity = 2048;  // sectors: 1 MiB

Limits limits() {
  return {.capacity_sectors = kCapacity,
          .max_data_bytes = 1u << 20,
          .logical_block_size = 512,
          .read_only = false,
          .discard = true,
          .write_zeroes = true};
}

struct Built {
  uint16_t head;
  uint64_t status;
  std::vector<uint64_t> data;
};

// Builds header + `data` buffers (readable for OUT-like types, writable otherwise) + status at
// descriptors 0.., publishes it. `split_header` puts the header in two descriptors.
Built build(DriverRing& d, uint32_t type, uint64_t sector, std::vector<uint32_t> data_lens,
            bool data_writable, bool split_header = false) {
  Built b{0, 0, {}};
  uint16_t i = 0;
  const uint64_t hdr = d.alloc(16);
  vb::RequestHeader h{type, 0, sector};
  d.fill(hdr, &h, sizeof h);
  if (split_header) {
    d.desc(i, hdr, 5, v::DESC_F_NEXT, static_cast<uint16_t>(i + 1));
    ++i;
    d.desc(i, hdr + 5, 11, v::DESC_F_NEXT, static_cast<uint16_t>(i + 1));
  } else {
    d.desc(i, hdr, 16, v::DESC_F_NEXT, static_cast<uint16_t>(i + 1));
  }
  ++i;
  for (uint32_t len : data_lens) {
    const uint64_t buf = d.alloc(len);
    b.data.push_back(buf);
    d.desc(i, buf, len,
           static_cast<uint16_t>(v::DESC_F_NEXT | (data_writable ? v::DESC_F_WRITE : 0)),
           static_cast<uint16_t>(i + 1));
    ++i;
  }
  b.status = d.alloc(1);
  const uint8_t junk = 0xee;
  d.fill(b.status, &junk, 1);
  d.desc(i, b.status, 1, v::DESC_F_WRITE);
  d.publish(0);
  return b;
}

Result<Request> parse_next(DriverRing& d, Queue& q, const Limits& with = limits()) {
  Chain c;
  auto got = q.pop(c);
  if (!got) return std::unexpected(got.error());
  EXPECT_TRUE(*got);
  return Request::parse(c, d.mem, with);
}

TEST(BlkParse, ReadWriteAndSplitHeader) {
  DriverRing d(32);
  Queue q = d.activate();
  build(d, vb::T_IN, 8, {512, 3584}, true);
  auto r = parse_next(d, q).value();
  EXPECT_EQ(r.status, vb::S_OK) << r.reason;
  EXPECT_EQ(r.nr_sectors, 8u);
  EXPECT_EQ(r.data.size(), 2u);

  DriverRing d2(32);
  Queue q2 = d2.activate();
  build(d2, vb::T_OUT, 16, {4096}, false, /*split_header=*/true);
  r = parse_next(d2, q2).value();
  EXPECT_EQ(r.status, vb::S_OK) << r.reason;
  EXPECT_EQ(r.sector, 16u);
  EXPECT_EQ(r.data_bytes, 4096u);
}

TEST(BlkParse, RefusesBadRequestsWithAStatus) {
  struct Case {
    uint32_t type;
    uint64_t sector;
    std::vector<uint32_t> lens;
    bool writable;
    uint8_t status;
    const char* what;
  };
  const Case cases[] = {
      {vb::T_IN, 0, {512}, false, vb::S_IOERR, "read with a device-readable data buffer"},
      {vb::T_OUT, 0, {512}, true, vb::S_IOERR, "write with a device-writable data buffer"},
      {vb::T_IN, 0, {100}, true, vb::S_IOERR, "length not a multiple of 512"},
      {vb::T_IN, kCapacity - 1, {1024}, true, vb::S_IOERR, "runs past the end"},
      {vb::T_IN, ~0ull - 1, {1024}, true, vb::S_IOERR, "sector + length overflows"},
      {vb::T_IN, 0, {}, true, vb::S_IOERR, "zero-length read"},
      {99, 0, {}, true, vb::S_UNSUPP, "unknown type"},
  };
  for (const auto& c : cases) {
    DriverRing d(32);
    Queue q = d.activate();
    build(d, c.type, c.sector, c.lens, c.writable);
    auto r = parse_next(d, q);
    ASSERT_TRUE(r.has_value()) << c.what << ": " << r.error().to_string();
    EXPECT_EQ(r->status, c.status) << c.what;
    EXPECT_TRUE(r->data.empty()) << c.what;
  }
}

TEST(BlkParse, ChainsThatCannotCarryARequestNeedAReset) {
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(8), 8, v::DESC_F_NEXT, 1);  // header too short
    d.desc(1, d.alloc(1), 1, v::DESC_F_WRITE);
    d.publish(0);
    auto r = parse_next(d, q);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  }
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(16), 16, 0);  // no status byte
    d.publish(0);
    EXPECT_FALSE(parse_next(d, q).has_value());
  }
  {
    DriverRing d(8);
    Queue q = d.activate();
    d.desc(0, d.alloc(16), 0, v::DESC_F_NEXT, 1);  // zero-length chain
    d.desc(1, d.alloc(1), 0, v::DESC_F_WRITE);
    d.publish(0);
    EXPECT_FALSE(parse_next(d, q).has_value());
  }
}

TEST(BlkParse, DiscardSegment) {
  DriverRing d(8);
  Queue q = d.activate();
  auto b = build(d, vb::T_DISCARD, 0, {16}, false);
  vb::DiscardWriteZeroes seg{64, 128, 0};
  d.fill(b.data[0], &seg, sizeof seg);
  auto r = parse_next(d, q).value();
  EXPECT_EQ(r.status, vb::S_OK) << r.reason;
  EXPECT_EQ(r.sector, 64u);
  EXPECT_EQ(r.nr_sectors, 128u);

  DriverRing d2(8);
  Queue q2 = d2.activate();
  b = build(d2, vb::T_DISCARD, 0, {16}, false);
  seg = {kCapacity - 8, 16, 0};
  d2.fill(b.data[0], &seg, sizeof seg);
  EXPECT_EQ(parse_next(d2, q2).value().status, vb::S_IOERR) << "discard past the end";
}

// Each limit the device advertises, and each rule of the discard/write-zeroes segment
// (spec 5.2.6.2), refused with the status the spec names and a reason saying which rule.
TEST(BlkParse, RefusesRequestsBeyondTheDevicesLimitsAndBadDiscardSegments) {
  const Limits read_only = [] {
    Limits l = limits();
    l.read_only = true;
    return l;
  }();
  const Limits small = [] {
    Limits l = limits();
    l.max_data_bytes = 1024;
    return l;
  }();
  const Limits no_write_zeroes = [] {
    Limits l = limits();
    l.write_zeroes = false;
    return l;
  }();
  const Limits blocks_4k = [] {
    Limits l = limits();
    l.logical_block_size = 4096;
    return l;
  }();
  struct Case {
    const char* what;
    uint32_t type;
    std::vector<uint32_t> lens;
    bool writable;
    std::optional<vb::DiscardWriteZeroes> seg;
    Limits with;
    uint8_t status;
    const char* reason;
  };
  const Case cases[] = {
      {"read past max_data_bytes",
       vb::T_IN,
       {2048},
       true,
       {},
       small,
       vb::S_IOERR,
       "larger than size_max x seg_max"},
      {"write to a read-only device",
       vb::T_OUT,
       {512},
       false,
       {},
       read_only,
       vb::S_IOERR,
       "read-only"},
      {"GET_ID without a buffer",
       vb::T_GET_ID,
       {},
       true,
       {},
       limits(),
       vb::S_IOERR,
       "GET_ID without a writable id buffer"},
      {"write-zeroes not offered",
       vb::T_WRITE_ZEROES,
       {16},
       false,
       vb::DiscardWriteZeroes{0, 8, 0},
       no_write_zeroes,
       vb::S_UNSUPP,
       "not offered"},
      {"discard on a read-only device",
       vb::T_DISCARD,
       {16},
       false,
       vb::DiscardWriteZeroes{0, 8, 0},
       read_only,
       vb::S_IOERR,
       "read-only"},
      {"two discard segments",
       vb::T_DISCARD,
       {32},
       false,
       vb::DiscardWriteZeroes{0, 8, 0},
       limits(),
       vb::S_IOERR,
       "exactly one 16-byte segment"},
      {"discard with the UNMAP flag",
       vb::T_DISCARD,
       {16},
       false,
       vb::DiscardWriteZeroes{0, 8, vb::WRITE_ZEROES_FLAG_UNMAP},
       limits(),
       vb::S_UNSUPP,
       "unknown discard/write-zeroes flags"},
      {"write-zeroes of nothing",
       vb::T_WRITE_ZEROES,
       {16},
       false,
       vb::DiscardWriteZeroes{0, 0, 0},
       limits(),
       vb::S_IOERR,
       "zero sectors"},
      {"discard off the 4 KiB grid",
       vb::T_DISCARD,
       {16},
       false,
       vb::DiscardWriteZeroes{4, 8, 0},
       blocks_4k,
       vb::S_IOERR,
       "not aligned to the logical block size"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    DriverRing d(8);
    Queue q = d.activate();
    auto b = build(d, c.type, 0, c.lens, c.writable);
    if (c.seg) d.fill(b.data[0], &*c.seg, sizeof *c.seg);
    auto r = parse_next(d, q, c.with);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_EQ(r->status, c.status) << r->reason;
    EXPECT_NE(r->reason.find(c.reason), std::string::npos) << r->reason;
    EXPECT_TRUE(r->data.empty()) << "a refused request moves no data";
  }
}

class BlkDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto disk = blk_mq::MemDisk::create({.capacity_bytes = kCapacity * 512, .queues = 1});
    ASSERT_TRUE(disk.has_value());
    auto dev = BlkDevice::create(std::move(*disk), {.num_queues = 1, .serial = "pepita-test"});
    ASSERT_TRUE(dev.has_value()) << dev.error().to_string();
    dev_ = std::move(*dev);
    const uint64_t all = dev_->features();
    ASSERT_TRUE(dev_->activate(all));
  }
  uint8_t status_at(DriverRing& d, uint64_t gpa) {
    return static_cast<uint8_t>(d.bytes(gpa, 1)[0]);
  }
  std::unique_ptr<BlkDevice> dev_;
};

TEST_F(BlkDeviceTest, WriteThenReadBackScatterGather) {
  DriverRing d(64);
  Queue q = d.activate();
  std::vector<uint8_t> pattern(8192);
  std::iota(pattern.begin(), pattern.end(), 1);
  auto w = build(d, vb::T_OUT, 24, {1024, 7168}, false);
  d.fill(w.data[0], pattern.data(), 1024);
  d.fill(w.data[1], pattern.data() + 1024, 7168);
  EXPECT_TRUE(dev_->process(0, q).value()) << "driver wants an interrupt";
  EXPECT_EQ(status_at(d, w.status), vb::S_OK);
  EXPECT_EQ(d.used(0).len, 1u);

  auto r = build(d, vb::T_IN, 24, {8192}, true);  // one segment: served in place
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, r.status), vb::S_OK);
  EXPECT_EQ(d.used(1).len, 8193u);
  auto back = d.bytes(r.data[0], 8192);
  EXPECT_EQ(std::memcmp(back.data(), pattern.data(), 8192), 0);
  EXPECT_EQ(dev_->stats(0).requests, 2u);
}

// The crate's VirtioBlock::read_count / write_count: served IN and OUT requests, not refused ones.
TEST_F(BlkDeviceTest, CountsServedReadsAndWrites) {
  DriverRing d(64);
  Queue q = d.activate();
  build(d, vb::T_OUT, 0, {4096}, false);
  ASSERT_TRUE(dev_->process(0, q));
  build(d, vb::T_IN, 0, {4096}, true);
  ASSERT_TRUE(dev_->process(0, q));
  auto past_end = build(d, vb::T_IN, kCapacity, {512}, true);  // refused: past the capacity
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, past_end.status), vb::S_IOERR);
  EXPECT_EQ(dev_->stats(0).reads, 1u);
  EXPECT_EQ(dev_->stats(0).writes, 1u);
  EXPECT_EQ(dev_->stats(0).requests, 3u);
}

TEST_F(BlkDeviceTest, FlushGetIdDiscardAndRefusal) {
  DriverRing d(64);
  Queue q = d.activate();
  auto f = build(d, vb::T_FLUSH, 0, {}, true);
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, f.status), vb::S_OK);
  auto id = build(d, vb::T_GET_ID, 0, {20}, true);
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, id.status), vb::S_OK);
  auto idb = d.bytes(id.data[0], 11);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(idb.data()), 11), "pepita-test");
  auto bad = build(d, vb::T_IN, kCapacity, {512}, true);
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, bad.status), vb::S_IOERR);
  EXPECT_EQ(dev_->stats(0).refused, 1u);
  EXPECT_EQ(dev_->status_bits(), 0);
}

// GET_ID into two buffers: the 20-byte id fills the first and only what is left of it goes into
// the second, whose tail keeps the driver's bytes. A GET_ID refused for want of a writable
// buffer counts as refused.
TEST_F(BlkDeviceTest, GetIdSpansTwoBuffersAndARefusedOneCounts) {
  DriverRing d(64);
  Queue q = d.activate();
  auto id = build(d, vb::T_GET_ID, 0, {8, 24}, true);
  const std::vector<uint8_t> junk(24, 0xaa);
  d.fill(id.data[1], junk.data(), junk.size());
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, id.status), vb::S_OK);
  EXPECT_EQ(d.used(0).len, 21u) << "20 id bytes and the status";
  auto first = d.bytes(id.data[0], 8);
  auto second = d.bytes(id.data[1], 24);
  std::string got(reinterpret_cast<const char*>(first.data()), 8);
  got.append(reinterpret_cast<const char*>(second.data()), 12);
  std::string want = "pepita-test";
  want.resize(vb::ID_BYTES, '\0');
  EXPECT_EQ(got, want);
  for (size_t i = 12; i < 24; ++i) {
    EXPECT_EQ(static_cast<uint8_t>(second[i]), 0xaa) << "byte " << i << " past the id";
  }
  auto refused = build(d, vb::T_GET_ID, 0, {}, true);
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, refused.status), vb::S_IOERR);
  EXPECT_EQ(dev_->stats(0).refused, 1u);
  EXPECT_EQ(dev_->stats(0).requests, 2u);
}

// A read into one buffer is served in place, not from the bounce buffer that an earlier
// request split over two buffers left behind; served bytes are counted.
TEST_F(BlkDeviceTest, ReadIntoOneBufferIsNotServedFromAnEarlierBounce) {
  DriverRing d(64);
  Queue q = d.activate();
  std::vector<uint8_t> older(4096, 0x11), newer(4096, 0x22);
  auto split = build(d, vb::T_OUT, 8, {1024, 3072}, false);
  d.fill(split.data[0], older.data(), 1024);
  d.fill(split.data[1], older.data() + 1024, 3072);
  ASSERT_TRUE(dev_->process(0, q));
  auto whole = build(d, vb::T_OUT, 8, {4096}, false);
  d.fill(whole.data[0], newer.data(), newer.size());
  ASSERT_TRUE(dev_->process(0, q));
  auto r = build(d, vb::T_IN, 8, {4096}, true);
  ASSERT_TRUE(dev_->process(0, q));
  EXPECT_EQ(status_at(d, r.status), vb::S_OK);
  auto back = d.bytes(r.data[0], 4096);
  EXPECT_EQ(std::memcmp(back.data(), newer.data(), newer.size()), 0);
  EXPECT_EQ(dev_->stats(0).bytes, 3u * 4096);
}

// With nothing published there is nothing to tell the driver: no interrupt.
TEST_F(BlkDeviceTest, AnEmptyQueueAsksForNoInterrupt) {
  DriverRing d(64);
  Queue q = d.activate();
  auto r = dev_->process(0, q);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(*r);
  EXPECT_EQ(d.used_idx(), 0);
}

// A malformed chain behind a good one in the same batch: the good one is still waited for and
// its status written (the disk held pointers into it), and the device reports what broke the
// ring, not the used entry the broken ring then refused, and needs a reset.
TEST_F(BlkDeviceTest, AMalformedChainBehindAServedOneStillNeedsReset) {
  DriverRing d(8);
  Queue q = d.activate();
  const uint64_t hdr = d.alloc(16);
  const vb::RequestHeader h{vb::T_IN, 0, 0};
  d.fill(hdr, &h, sizeof h);
  const uint64_t data = d.alloc(512);
  const uint64_t status = d.alloc(1);
  const uint8_t junk = 0xee;
  d.fill(status, &junk, 1);
  d.desc(0, hdr, 16, v::DESC_F_NEXT, 1);
  d.desc(1, data, 512, v::DESC_F_NEXT | v::DESC_F_WRITE, 2);
  d.desc(2, status, 1, v::DESC_F_WRITE);
  d.publish(0);
  d.desc(3, d.alloc(16), 16, v::DESC_F_NEXT, 4);
  d.desc(4, d.alloc(16), 16, v::DESC_F_NEXT, 3);  // a loop
  d.publish(3);
  auto r = dev_->process(0, q);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("malformed by the driver"), std::string::npos)
      << "the error names what broke the ring: " << r.error().message();
  EXPECT_EQ(dev_->status_bits(), v::STATUS_NEEDS_RESET);
  EXPECT_EQ(status_at(d, status), vb::S_OK) << "the served read was waited for";
  EXPECT_EQ(d.used_idx(), 0) << "a broken ring takes no used entries";
}

TEST_F(BlkDeviceTest, MalformedChainSetsNeedsReset) {
  DriverRing d(8);
  Queue q = d.activate();
  d.desc(0, d.alloc(16), 16, v::DESC_F_NEXT, 1);
  d.desc(1, d.alloc(16), 16, v::DESC_F_NEXT, 0);
  d.publish(0);
  auto r = dev_->process(0, q);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(dev_->status_bits(), v::STATUS_NEEDS_RESET);
  dev_->reset();
  EXPECT_EQ(dev_->status_bits(), 0);
}

TEST(BlkDevice, ConfigAndFeatures) {
  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 4 << 20, .queues = 2}).value();
  EXPECT_FALSE(BlkDevice::create(blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value(),
                                 {.num_queues = 2})
                   .has_value())
      << "more virtqueues than disk queues";
  auto dev = BlkDevice::create(std::move(disk), {.num_queues = 2}).value();
  vb::Config cfg;
  ASSERT_EQ(dev->config().size(), sizeof cfg);
  std::memcpy(&cfg, dev->config().data(), sizeof cfg);
  EXPECT_EQ(cfg.capacity, (4u << 20) / 512);
  EXPECT_EQ(cfg.num_queues, 2);
  EXPECT_LE(uint64_t{cfg.seg_max} * cfg.size_max, dev->limits().max_data_bytes);
  EXPECT_NE(dev->features() & v::feature_bit(vb::F_MQ), 0u);
  EXPECT_FALSE(dev->activate(v::feature_bit(vb::F_MQ)).has_value()) << "no VERSION_1";
  EXPECT_FALSE(dev->activate(v::feature_bit(v::F_VERSION_1) | (1ull << 50)).has_value());
}

// A disk of the given shape whose requests never reach it (only its config is looked at).
class ShapedDisk final : public blk_mq::BlockDevice {
 public:
  explicit ShapedDisk(const blk_mq::DeviceInfo& info) : info_(info) {}
  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t /*queue*/, const blk_mq::Request& req) noexcept override {
    req.completion->complete(-EIO);
  }

 private:
  blk_mq::DeviceInfo info_;
};

vb::Config config_of(const BlkDevice& dev) {
  vb::Config cfg;
  std::memcpy(&cfg, dev.config().data(), sizeof cfg);
  return cfg;
}

// A disk that records what reaches it and completes it at once.
class RecordingDisk final : public blk_mq::BlockDevice {
 public:
  explicit RecordingDisk(const blk_mq::DeviceInfo& info) : info_(info) {}
  const blk_mq::DeviceInfo& info() const noexcept override { return info_; }
  void submit(uint32_t /*queue*/, const blk_mq::Request& req) noexcept override {
    seen.push_back(req);
    req.completion->complete(0);
  }
  std::vector<blk_mq::Request> seen;

 private:
  blk_mq::DeviceInfo info_;
};

// What the disk is asked: write-zeroes without the guest's UNMAP flag may not unmap (kNoUnmap),
// with it may; a flush covers no sectors whatever the header's sector says; a discard passes
// its range on; each request carries its batch slot as the tag.
TEST(BlkDevice, DiskSeesUnmapOnlyWhenAskedAndFlushOfNoSectors) {
  auto owned = std::make_unique<RecordingDisk>(
      blk_mq::DeviceInfo{.capacity_sectors = kCapacity,
                         .features = blk_mq::features::kDiscard | blk_mq::features::kWriteZeroes});
  RecordingDisk& disk = *owned;
  auto dev = BlkDevice::create(std::move(owned), {});
  ASSERT_TRUE(dev) << dev.error().to_string();
  ASSERT_TRUE((*dev)->activate((*dev)->features()));
  DriverRing d(64);
  Queue q = d.activate();
  const vb::DiscardWriteZeroes segs[] = {{16, 8, 0}, {32, 16, vb::WRITE_ZEROES_FLAG_UNMAP}};
  for (const auto& seg : segs) {
    auto wz = build(d, vb::T_WRITE_ZEROES, 0, {16}, false);
    d.fill(wz.data[0], &seg, sizeof seg);
    ASSERT_TRUE((*dev)->process(0, q));
    EXPECT_EQ(static_cast<uint8_t>(d.bytes(wz.status, 1)[0]), vb::S_OK);
  }
  auto discard = build(d, vb::T_DISCARD, 0, {16}, false);
  const vb::DiscardWriteZeroes range{64, 24, 0};
  d.fill(discard.data[0], &range, sizeof range);
  ASSERT_TRUE((*dev)->process(0, q));
  build(d, vb::T_FLUSH, 40, {}, true);
  ASSERT_TRUE((*dev)->process(0, q));
  ASSERT_EQ(disk.seen.size(), 4u);
  EXPECT_EQ(disk.seen[0].op, blk_mq::Op::WriteZeroes);
  EXPECT_EQ(disk.seen[0].sector, 16u);
  EXPECT_EQ(disk.seen[0].nr_sectors, 8u);
  EXPECT_NE(disk.seen[0].flags & blk_mq::req_flags::kNoUnmap, 0u);
  EXPECT_EQ(disk.seen[1].op, blk_mq::Op::WriteZeroes);
  EXPECT_EQ(disk.seen[1].sector, 32u);
  EXPECT_EQ(disk.seen[1].flags & blk_mq::req_flags::kNoUnmap, 0u);
  EXPECT_EQ(disk.seen[2].op, blk_mq::Op::Discard);
  EXPECT_EQ(disk.seen[2].sector, 64u);
  EXPECT_EQ(disk.seen[2].nr_sectors, 24u);
  EXPECT_EQ(disk.seen[3].op, blk_mq::Op::Flush);
  EXPECT_EQ(disk.seen[3].sector, 0u);
  EXPECT_EQ(disk.seen[3].nr_sectors, 0u);
  for (const auto& req : disk.seen) {
    EXPECT_EQ(req.tag, 0u) << "one request per batch: slot 0";
  }
}

// A request the disk fails reaches the guest as IOERR with only the status written, is counted
// as failed, and leaves the ring working; a queue index past the device's is refused.
TEST(BlkDevice, DiskErrorsReachTheGuestAsIoerrAndTheRingKeepsWorking) {
  auto dev = BlkDevice::create(std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
                                   .capacity_sectors = kCapacity, .max_sectors = 1024}),
                               {});
  ASSERT_TRUE(dev) << dev.error().to_string();
  ASSERT_TRUE((*dev)->activate((*dev)->features()));
  DriverRing d(64);
  Queue q = d.activate();
  for (uint16_t i = 0; i < 2; ++i) {
    auto r = build(d, vb::T_IN, 0, {4096}, true);
    ASSERT_TRUE((*dev)->process(0, q)) << (*dev)->status_bits();
    EXPECT_EQ(static_cast<uint8_t>(d.bytes(r.status, 1)[0]), vb::S_IOERR);
    EXPECT_EQ(d.used(i).len, 1u) << "nothing but the status was written";
  }
  EXPECT_EQ((*dev)->stats(0).failed, 2u);
  EXPECT_EQ((*dev)->stats(0).reads, 0u);
  EXPECT_EQ((*dev)->stats(0).bytes, 0u);
  EXPECT_EQ((*dev)->status_bits(), 0) << "a disk error is not a broken ring";
  auto beyond = (*dev)->process(1, q);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code(), ErrorCode::InvalidArgument);
}

TEST(BlkDevice, MaxQueueSizeMustBeAPowerOfTwoOfAtLeastFour) {
  for (const uint16_t size : std::initializer_list<uint16_t>{0, 2, 6, 100}) {
    SCOPED_TRACE(size);
    auto dev = BlkDevice::create(blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value(),
                                 {.max_queue_size = size});
    ASSERT_FALSE(dev);
    EXPECT_EQ(dev.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(dev.error().message().find("power of two >= 4"), std::string::npos);
  }
  EXPECT_TRUE(BlkDevice::create(blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}).value(),
                                {.max_queue_size = 4}));
}

// The discard and write-zeroes fields of the config space: one segment per request (what parse
// takes), as many sectors as the disk takes in one request, discards aligned to the disk's
// granularity in sectors (at least one), and write-zeroes allowed to unmap.
TEST(BlkDevice, ConfigAdvertisesOneDiscardAndWriteZeroesSegmentWithinTheDisksLimits) {
  for (const uint32_t granularity : {8192u, 256u}) {
    SCOPED_TRACE(granularity);
    auto dev = BlkDevice::create(
        std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
            .capacity_sectors = 1u << 20,
            .logical_block_size = 4096,
            .max_sectors = 1536,
            .discard_granularity = granularity,
            .features = blk_mq::features::kDiscard | blk_mq::features::kWriteZeroes}),
        {});
    ASSERT_TRUE(dev) << dev.error().to_string();
    const vb::Config cfg = config_of(**dev);
    EXPECT_EQ(cfg.blk_size, 4096u);
    EXPECT_EQ(cfg.max_discard_sectors, 1536u);
    EXPECT_EQ(cfg.max_discard_seg, 1u);
    EXPECT_EQ(cfg.discard_sector_alignment, granularity == 8192u ? 16u : 1u);
    EXPECT_EQ(cfg.max_write_zeroes_sectors, 1536u);
    EXPECT_EQ(cfg.max_write_zeroes_seg, 1u);
    EXPECT_EQ(cfg.write_zeroes_may_unmap, 1u);
    EXPECT_NE((*dev)->features() & v::feature_bit(vb::F_DISCARD), 0u);
    EXPECT_NE((*dev)->features() & v::feature_bit(vb::F_WRITE_ZEROES), 0u);
  }
}

TEST(BlkDevice, SegMaxTimesSizeMaxIsTheLargestRequestTheDiskTakes) {
  // 1023 sectors (511.5 KiB): 127 whole 4 KiB segments fit, a 128th would pass the disk's limit.
  auto odd = BlkDevice::create(std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
                                   .capacity_sectors = 1u << 20, .max_sectors = 1023}),
                               {.max_queue_size = 256});
  ASSERT_TRUE(odd) << odd.error().to_string();
  vb::Config cfg = config_of(**odd);
  EXPECT_EQ(cfg.size_max, 4096u);
  EXPECT_EQ(cfg.seg_max, 127u);
  EXPECT_EQ((*odd)->limits().max_data_bytes, 127u * 4096);
  EXPECT_LE((*odd)->limits().max_data_bytes, 1023u * 512);

  // A disk taking more than 4 MiB at once is bounded at 8192 sectors: 1024 segments.
  auto big = BlkDevice::create(std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
                                   .capacity_sectors = 1u << 20, .max_sectors = 1u << 16}),
                               {.max_queue_size = 4096});
  ASSERT_TRUE(big) << big.error().to_string();
  cfg = config_of(**big);
  EXPECT_EQ(cfg.seg_max, 1024u);
  EXPECT_EQ((*big)->limits().max_data_bytes, 4u << 20);

  // A queue too short for that many segments bounds them instead (two descriptors go to the
  // header and the status).
  auto short_queue = BlkDevice::create(std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
                                           .capacity_sectors = 1u << 20, .max_sectors = 1023}),
                                       {.max_queue_size = 64});
  ASSERT_TRUE(short_queue) << short_queue.error().to_string();
  EXPECT_EQ(config_of(**short_queue).seg_max, 62u);

  // A disk taking less than one 4 KiB segment at once still gets one: seg_max is never 0.
  auto tiny = BlkDevice::create(std::make_unique<ShapedDisk>(blk_mq::DeviceInfo{
                                    .capacity_sectors = 1u << 20, .max_sectors = 4}),
                                {});
  ASSERT_TRUE(tiny) << tiny.error().to_string();
  EXPECT_EQ(config_of(**tiny).seg_max, 1u);
  EXPECT_EQ((*tiny)->limits().max_data_bytes, 4096u);
}

}  // namespace
}  // namespace pepita::virtio::blk
