// libFuzzer target for the ublk I/O path below the kernel boundary: descriptors the kernel writes
// into /dev/ublkcN's mmap'ed array (struct ublksrv_io_desc) go through QueueHandler::on_request
// (parse_io_desc, then a blk_mq::Request) into a MemDisk, as the server's queue thread does.
// Checked against an independent model written from the contracts in ublk/request.hpp and
// blk_mq/block_device.hpp: each request completes exactly once, with the errno the model expects
// or with its full length; reads return what earlier writes stored (a shadow copy of the disk);
// no request touches another tag's buffer or bytes past its own length.
//
// Input: 4 bytes of geometry (block size, capacity, buffer size, depth + read-only), then depth
// descriptors of 24 bytes, then a script: a byte < 0xF0 serves tag (byte % (depth + 2)), so tags
// past the depth occur too; 0xF0..0xFF followed by 24 bytes rewrites descriptor (byte % depth).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/ublk/queue.hpp"

using namespace pepita;
using abi::ublk::IoDesc;

namespace {

constexpr std::byte kCanary{0xA5};

// What the request for `d` must complete with, from the documented contracts only.
int expected_result(const IoDesc& d, const ublk::IoLimits& limits, const blk_mq::DeviceInfo& info) {
  const uint32_t op = d.op_flags & 0xff;
  const bool known = op <= 3 || op == 5;  // Read, Write, Flush, Discard, WriteZeroes
  if (!known) return -EOPNOTSUPP;
  if (op == 3 && !limits.discard) return -EOPNOTSUPP;
  if (op == 5 && !limits.write_zeroes) return -EOPNOTSUPP;
  if (limits.read_only && op != 0 && op != 2) return -EROFS;
  if (op == 2) return 0;
  // Exact arithmetic in 128 bits, so the model needs no overflow reasoning of its own.
  __extension__ using u128 = unsigned __int128;
  const u128 start = d.start_sector, count = d.nr_sectors;
  if (count == 0) return -EINVAL;
  if (start + count > limits.capacity_sectors) return -EIO;
  if (op <= 1 && count * 512 > limits.max_io_bytes) return -EINVAL;
  // The device's own checks (check_request).
  if (count > info.max_sectors) return -EINVAL;
  const uint64_t lbs = info.logical_block_size / 512;
  if (d.start_sector % lbs != 0 || d.nr_sectors % lbs != 0) return -EINVAL;
  return op <= 1 ? static_cast<int>(d.nr_sectors * 512) : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const uint32_t lbs = 512u << (data[0] & 3);
  const uint64_t capacity = (1 + uint64_t{data[1]} % 32) * 4096;
  const uint32_t max_io = 512u * (1 + data[2] % 16);
  const uint16_t depth = static_cast<uint16_t>(1 + (data[3] & 7));
  const bool read_only = (data[3] & 0x80) != 0;
  size_t at = 4;

  auto disk = blk_mq::MemDisk::create(
                  {.capacity_bytes = capacity, .logical_block_size = lbs, .queue_depth = depth})
                  .value();
  const blk_mq::DeviceInfo& info = disk->info();
  // As Server::start_queues derives them from the device.
  ublk::IoLimits limits{.capacity_sectors = info.capacity_sectors,
                        .max_io_bytes = max_io,
                        .discard = (info.features & blk_mq::features::kDiscard) != 0,
                        .write_zeroes = (info.features & blk_mq::features::kWriteZeroes) != 0,
                        .read_only = read_only};

  std::vector<IoDesc> descs(depth);
  for (auto& d : descs) {
    if (at + sizeof d <= size) std::memcpy(&d, data + at, sizeof d);
    at += sizeof d;
  }
  std::vector<std::byte> buffers(size_t{depth} * max_io, kCanary);
  const std::vector<std::byte> canary(max_io, kCanary);
  std::vector<std::byte> shadow(capacity, std::byte{0});
  ublk::QueueHandler q(*disk, 0, descs, buffers, limits);

  // Every buffer holds kCanary except while its own request runs; an overflow out of a tag's
  // buffer lands in the next tag's (checked below) or past the vector's end (ASan).
  constexpr size_t kMaxRequests = 512;
  uint64_t served = 0, pattern = 0;
  for (; at < size && served < kMaxRequests; ++at) {
    const uint8_t b = data[at];
    if (b >= 0xF0) {
      if (at + sizeof(IoDesc) >= size) break;
      std::memcpy(&descs[b % depth], data + at + 1, sizeof(IoDesc));
      at += sizeof(IoDesc);
      continue;
    }
    const auto tag = static_cast<uint16_t>(b % (depth + 2));
    const bool in_range = tag < depth;
    const IoDesc d = in_range ? descs[tag] : IoDesc{};
    const int want = in_range ? expected_result(d, limits, info) : -EINVAL;
    const uint32_t op = d.op_flags & 0xff;
    std::byte* buf = in_range ? buffers.data() + size_t{tag} * max_io : nullptr;
    if (in_range && op == 1) {
      // Each sector of a write gets its own byte, so data at a wrong offset shows.
      for (uint32_t s = 0; s < max_io / 512; ++s)
        std::memset(buf + size_t{s} * 512, static_cast<int>(++pattern % 251), 512);
    }
    const std::vector<std::byte> mine =
        in_range ? std::vector<std::byte>(buf, buf + max_io) : std::vector<std::byte>();
    q.on_request(tag);
    ++served;
    size_t completions = 0;
    q.drain([&](uint16_t done_tag, int32_t res) {
      ++completions;
      if (done_tag != tag || res != want) std::abort();
    });
    if (completions != 1 || q.in_flight() != 0) std::abort();
    if (q.stats().requests != served) std::abort();
    if (!in_range) continue;

    // Only a successful read writes the buffer, and only its first `want` bytes.
    const size_t moved = want > 0 && op == 0 ? static_cast<size_t>(want) : 0;
    if (std::memcmp(buf + moved, mine.data() + moved, max_io - moved) != 0) std::abort();
    const std::byte* next = buf + max_io;
    if (tag + 1 < depth && std::memcmp(next, canary.data(), max_io) != 0) std::abort();
    if (want >= 0) {
      const uint64_t off = d.start_sector * 512, len = uint64_t{d.nr_sectors} * 512;
      if (op == 0 && std::memcmp(buf, shadow.data() + off, len) != 0) std::abort();
      if (op == 1) std::memcpy(shadow.data() + off, buf, len);
      if (op == 3 || op == 5) std::memset(shadow.data() + off, 0, len);
    }
    std::memset(buf, static_cast<int>(kCanary), max_io);
  }
  // The disk holds exactly the shadow: read it all back through the device.
  blk_mq::TagSet tags(info.tag_set);
  std::vector<std::byte> all(capacity);
  if (!blk_mq::execute(*disk, tags, 0, blk_mq::Op::Read, 0, all)) std::abort();
  if (std::memcmp(all.data(), shadow.data(), capacity) != 0) std::abort();
  return 0;
}
