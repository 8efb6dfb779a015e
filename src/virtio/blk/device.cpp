// virtio-blk device: pops a batch of chains, submits them all to the BlockDevice (so a FileDisk
// or ZramDisk sees queue depth), then completes them in ring order and notifies once per batch.
#include <algorithm>
#include <cstring>

#include "pepita/virtio/blk.hpp"

namespace pepita::virtio::blk {
namespace vb = abi::virtio_blk;
namespace v = abi::virtio;
using blk_mq::Op;

struct BlkDevice::InFlight final : blk_mq::Completion {
  Request parsed;
  uint16_t head = 0;
  bool submitted = false;
  blk_mq::Request req;
  std::vector<std::byte> bounce;  // only for payloads split over several descriptors
  std::atomic<int> res{0};
  std::atomic<bool> done{false};

  void complete(int r) noexcept override {
    res.store(r, std::memory_order_relaxed);
    done.store(true, std::memory_order_release);
    done.notify_one();
  }
};

BlkDevice::BlkDevice(Token, std::unique_ptr<blk_mq::BlockDevice> disk, const BlkOptions& options)
    : disk_(std::move(disk)), options_(options), queues_(options.num_queues) {
  const auto& info = disk_->info();
  std::memcpy(serial_.data(), options.serial.data(),
              std::min<size_t>(options.serial.size(), serial_.size()));
  limits_.capacity_sectors = info.capacity_sectors;
  limits_.logical_block_size = info.logical_block_size;
  limits_.read_only = (info.features & blk_mq::features::kReadOnly) != 0;
  limits_.discard = (info.features & blk_mq::features::kDiscard) != 0;
  limits_.write_zeroes = (info.features & blk_mq::features::kWriteZeroes) != 0;
  // Linux's virtio_blk bounds a request by seg_max x size_max only (no sector limit), so pick
  // them so that no request exceeds what the disk takes in one go.
  const uint32_t max_bytes = std::min<uint32_t>(info.max_sectors, 1u << 13) * 512u;
  const uint32_t size_max = 4096;
  const uint32_t seg_max =
      std::max<uint32_t>(1, std::min<uint32_t>(options.max_queue_size - 2u, max_bytes / size_max));
  limits_.max_data_bytes = seg_max * size_max;

  features_ = v::feature_bit(v::F_VERSION_1) | v::feature_bit(v::F_RING_INDIRECT_DESC) |
              v::feature_bit(v::F_RING_EVENT_IDX) | v::feature_bit(vb::F_SIZE_MAX) |
              v::feature_bit(vb::F_SEG_MAX) | v::feature_bit(vb::F_BLK_SIZE) |
              v::feature_bit(vb::F_FLUSH) | v::feature_bit(vb::F_MQ);
  if (limits_.read_only) features_ |= v::feature_bit(vb::F_RO);
  if (limits_.discard) features_ |= v::feature_bit(vb::F_DISCARD);
  if (limits_.write_zeroes) features_ |= v::feature_bit(vb::F_WRITE_ZEROES);

  config_.capacity = info.capacity_sectors;
  config_.size_max = size_max;
  config_.seg_max = seg_max;
  config_.blk_size = info.logical_block_size;
  config_.num_queues = options.num_queues;
  config_.max_discard_sectors = info.max_sectors;
  config_.max_discard_seg = 1;
  config_.discard_sector_alignment = std::max<uint32_t>(info.discard_granularity, 512) / 512;
  config_.max_write_zeroes_sectors = info.max_sectors;
  config_.max_write_zeroes_seg = 1;
  config_.write_zeroes_may_unmap = 1;
}

BlkDevice::~BlkDevice() = default;

Result<std::unique_ptr<BlkDevice>> BlkDevice::create(std::unique_ptr<blk_mq::BlockDevice> disk,
                                                     const BlkOptions& options) {
  if (!disk) return fail(ErrorCode::InvalidArgument, "virtio-blk needs a block device");
  const auto& ts = disk->info().tag_set;
  if (options.num_queues == 0 || options.num_queues > ts.nr_hw_queues) {
    return fail(ErrorCode::InvalidArgument,
                "virtio-blk queues must be 1.." + std::to_string(ts.nr_hw_queues) +
                    " (one disk hardware queue per virtqueue); create the disk with more queues");
  }
  if (!abi::is_power_of_two(options.max_queue_size) || options.max_queue_size < 4) {
    return fail(ErrorCode::InvalidArgument,
                "virtio-blk max queue size must be a power of two >= 4");
  }
  return std::make_unique<BlkDevice>(Token{}, std::move(disk), options);
}

std::span<const std::byte> BlkDevice::config() const noexcept {
  return std::as_bytes(std::span(&config_, 1));
}

Result<void> BlkDevice::activate(uint64_t acked) {
  if ((acked & ~features_) != 0) {
    return fail(ErrorCode::InvalidArgument, "driver acknowledged virtio-blk features not offered");
  }
  if ((acked & v::feature_bit(v::F_VERSION_1)) == 0) {
    return fail(ErrorCode::Unsupported, "legacy (pre-1.0) virtio drivers are not supported");
  }
  clear_needs_reset();
  return {};
}

Result<bool> BlkDevice::process(uint16_t index, Queue& queue) {
  if (index >= queues_.size()) {
    return fail(ErrorCode::InvalidArgument, "virtio-blk queue index out of range");
  }
  PerQueue& pq = queues_[index];
  const size_t depth = disk_->info().tag_set.queue_depth;
  bool notify = false;
  for (;;) {
    size_t n = 0;
    Result<void> broke;
    while (n < depth) {
      auto got = queue.pop(pq.chain);
      if (!got) {
        broke = std::unexpected(std::move(got).error());
        break;
      }
      if (!*got) break;
      auto parsed = Request::parse(pq.chain, queue.ram(), limits_);
      if (!parsed) {
        broke = std::unexpected(std::move(parsed).error());
        break;
      }
      if (pq.batch.size() <= n) pq.batch.push_back(std::make_unique<InFlight>());
      InFlight& io = *pq.batch[n];
      io.parsed = std::move(*parsed);
      io.head = pq.chain.head;
      if (auto s = serve_batch(index, queue, pq, n); !s) {
        broke = std::unexpected(std::move(s).error());
        break;
      }
      ++n;
    }
    // Complete what was submitted even when the ring broke: the disk holds pointers into it.
    for (size_t i = 0; i < n; ++i) {
      if (auto c = complete(queue, *pq.batch[i], pq); !c && broke) broke = std::move(c);
    }
    if (!broke) {
      set_needs_reset();
      return std::unexpected(std::move(broke).error());
    }
    if (n > 0) {
      notify = PEPITA_TRY(queue.should_notify()) || notify;
      continue;
    }
    if (!PEPITA_TRY(queue.enable_kicks())) return notify;
  }
}

// Prepares and submits batch slot `slot` (its request already parsed) with tag = slot.
Result<void> BlkDevice::serve_batch(uint16_t index, Queue& queue, PerQueue& pq, size_t slot) {
  InFlight& io = *pq.batch[slot];
  const Request& r = io.parsed;
  io.submitted = false;
  io.done.store(false, std::memory_order_relaxed);
  io.res.store(0, std::memory_order_relaxed);
  if (r.status != vb::S_OK || r.type == vb::T_GET_ID) return {};
  io.req = blk_mq::Request{};
  io.req.tag = static_cast<uint32_t>(slot);
  io.req.completion = &io;
  io.req.sector = r.sector;
  io.req.nr_sectors = r.nr_sectors;
  switch (r.type) {
    case vb::T_IN:
    case vb::T_OUT: {
      io.req.op = r.type == vb::T_IN ? Op::Read : Op::Write;
      if (r.data.size() == 1) {
        // One descriptor: the disk reads/writes guest RAM in place (range checked at pop).
        io.req.data = PEPITA_TRY(queue.ram().span(r.data[0].gpa, r.data[0].len)).data();
      } else {
        io.bounce.resize(r.data_bytes);
        io.req.data = io.bounce.data();
        if (r.type == vb::T_OUT) {
          size_t off = 0;
          for (const auto& s : r.data) {
            auto src = PEPITA_TRY(queue.ram().span(s.gpa, s.len));
            std::memcpy(io.bounce.data() + off, src.data(), s.len);
            off += s.len;
          }
        }
      }
      break;
    }
    case vb::T_FLUSH:
      io.req.op = Op::Flush;
      io.req.nr_sectors = 0;
      io.req.sector = 0;
      break;
    case vb::T_DISCARD: io.req.op = Op::Discard; break;
    case vb::T_WRITE_ZEROES:
      io.req.op = Op::WriteZeroes;
      if (!r.unmap) io.req.flags |= blk_mq::req_flags::kNoUnmap;
      break;
    default: return {};
  }
  io.submitted = true;
  disk_->submit(index, io.req);
  return {};
}

Result<void> BlkDevice::complete(Queue& queue, InFlight& io, PerQueue& pq) {
  const Request& r = io.parsed;
  uint8_t status = r.status;
  uint32_t written = 0;
  if (io.submitted) {
    while (!io.done.load(std::memory_order_acquire)) io.done.wait(false, std::memory_order_acquire);
    const int res = io.res.load(std::memory_order_relaxed);
    if (res < 0) {
      status = vb::S_IOERR;
      ++pq.stats.failed;
    } else if (r.type == vb::T_IN) {
      if (r.data.size() > 1) {
        size_t off = 0;
        for (const auto& s : r.data) {
          auto dst = PEPITA_TRY(queue.ram().span(s.gpa, s.len));
          std::memcpy(dst.data(), io.bounce.data() + off, s.len);
          off += s.len;
        }
      }
      written = r.data_bytes;
    }
    if (res >= 0) {
      pq.stats.bytes += r.data_bytes;
      if (r.type == vb::T_IN) ++pq.stats.reads;
      if (r.type == vb::T_OUT) ++pq.stats.writes;
    }
  } else if (status == vb::S_OK && r.type == vb::T_GET_ID) {
    size_t off = 0;
    for (const auto& s : r.data) {
      const size_t n = std::min<size_t>(s.len, r.data_bytes - off);
      auto dst = PEPITA_TRY(queue.ram().span(s.gpa, n));
      std::memcpy(dst.data(), serial_.data() + off, n);
      off += n;
    }
    written = r.data_bytes;
  } else if (status != vb::S_OK) {
    ++pq.stats.refused;
  }
  ++pq.stats.requests;
  PEPITA_TRY_VOID(queue.ram().write(r.status_gpa, status));
  return queue.add_used(io.head, written + 1);
}

}  // namespace pepita::virtio::blk
