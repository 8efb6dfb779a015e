#pragma once
// virtio-blk (virtio 1.2 section 5.2) on a blk_mq::BlockDevice: request parsing as a pure
// function over a popped chain, and the device that serves IN, OUT, FLUSH, GET_ID, DISCARD and
// WRITE_ZEROES with one BlockDevice hardware queue per virtqueue.
//
//   auto disk = PEPITA_TRY(blk_mq::MemDisk::create({.capacity_bytes = 64 << 20, .queues = 2}));
//   auto dev = PEPITA_TRY(BlkDevice::create(std::move(disk), {.num_queues = 2}));
//   // transport: dev->features(), dev->config(), dev->activate(acked), dev->process(q, queue)

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "pepita/abi/virtio_blk.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/device.hpp"
#include "pepita/virtio/queue.hpp"

namespace pepita::virtio::blk {

/// What the device accepts; Request::parse checks each request against it.
struct Limits {
  uint64_t capacity_sectors = 0;
  uint32_t max_data_bytes = 1u << 20;  // largest IN/OUT payload
  uint32_t logical_block_size = 512;   // IN/OUT/DISCARD ranges align to it
  bool read_only = false;
  bool discard = false;
  bool write_zeroes = false;
};

/// One parsed virtio-blk request. When `status` is not S_OK the request is refused with that
/// status (no data touched); otherwise serve it. The data segments exclude the header and the
/// status byte and were range-checked when the chain was popped.
struct Request {
  uint32_t type = 0;    // abi::virtio_blk::T_*
  uint64_t sector = 0;  // IN/OUT: start; DISCARD/WRITE_ZEROES: the segment's start
  uint32_t nr_sectors = 0;
  uint32_t data_bytes = 0;  // IN/OUT/GET_ID payload size
  bool unmap = false;       // WRITE_ZEROES may deallocate
  uint8_t status = abi::virtio_blk::S_OK;
  std::string_view reason;  // why status != S_OK (static text)
  PhysAddr status_gpa{};
  std::vector<Segment> data;

  /// Parses `chain`: header (16 readable bytes, may span descriptors), payload, status byte (the
  /// last writable byte). Protocol error when the chain cannot carry a request at all (too short
  /// for a header, no writable status byte): the device must reset. Every other fault is a
  /// refused request: unknown type -> S_UNSUPP; data in the wrong direction, a length not a
  /// multiple of 512 (or the block size), over max_data_bytes, zero, a sector range past the
  /// capacity (checked arithmetic), a write to a read-only device, a malformed discard segment
  /// -> S_IOERR.
  static Result<Request> parse(const Chain& chain, const GuestMemory& ram, const Limits& limits);
};

struct BlkOptions {
  uint16_t num_queues = 1;             // <= the disk's hardware queues
  uint16_t max_queue_size = 256;       // largest virtqueue the driver may set up
  std::string_view serial = "pepita";  // GET_ID answer (up to 20 bytes)
};

/// The virtio-blk device. Queues are served independently (one thread per queue is fine).
class BlkDevice final : public VirtioDevice {
 public:
  /// InvalidArgument when num_queues is 0 or exceeds the disk's hardware queues.
  static Result<std::unique_ptr<BlkDevice>> create(std::unique_ptr<blk_mq::BlockDevice> disk,
                                                   const BlkOptions& options);

  uint32_t device_id() const noexcept override { return abi::virtio::ID_BLOCK; }
  uint64_t features() const noexcept override { return features_; }
  uint16_t num_queues() const noexcept override { return options_.num_queues; }
  uint16_t max_queue_size() const noexcept override { return options_.max_queue_size; }
  std::span<const std::byte> config() const noexcept override;
  Result<void> activate(uint64_t acked) override;
  void reset() noexcept override { clear_needs_reset(); }
  Result<bool> process(uint16_t index, Queue& queue) override;

  const Limits& limits() const noexcept { return limits_; }
  blk_mq::BlockDevice& disk() noexcept { return *disk_; }

  /// Per-queue counters (updated by that queue's thread only).
  struct Stats {
    uint64_t requests = 0;
    uint64_t refused = 0;
    uint64_t failed = 0;
    uint64_t bytes = 0;
    uint64_t reads = 0;   // IN requests the disk served (the crate's VirtioBlock::read_count)
    uint64_t writes = 0;  // OUT requests the disk served (the crate's write_count)
  };
  Stats stats(uint16_t index) const noexcept { return queues_[index].stats; }

 private:
  struct InFlight;
  struct PerQueue {
    Chain chain;  // reused across pops
    std::vector<std::unique_ptr<InFlight>> batch;
    Stats stats;
  };
  struct Token {};

 public:
  BlkDevice(Token, std::unique_ptr<blk_mq::BlockDevice> disk, const BlkOptions& options);
  ~BlkDevice() override;

 private:
  Result<void> complete(Queue& queue, InFlight& io, PerQueue& pq);
  Result<void> serve_batch(uint16_t index, Queue& queue, PerQueue& pq, size_t count);

  std::unique_ptr<blk_mq::BlockDevice> disk_;
  BlkOptions options_;
  std::array<char, abi::virtio_blk::ID_BYTES> serial_{};
  Limits limits_;
  uint64_t features_ = 0;
  abi::virtio_blk::Config config_{};
  std::vector<PerQueue> queues_;
};

}  // namespace pepita::virtio::blk
