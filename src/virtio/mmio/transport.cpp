// virtio-mmio v2 register file (virtio 1.2 section 4.2.2 and 4.2.3): register decoding, the
// status state machine and queue activation. Every value comes from an untrusted driver.
#include <cstring>
#include <string>

#include "pepita/core/format.hpp"
#include "pepita/virtio/mmio.hpp"

namespace pepita::virtio {
namespace {

namespace m = abi::virtio_mmio;
namespace v = abi::virtio;

std::string hex(uint64_t x) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), digits[x & 15]);
    x >>= 4;
  } while (x != 0);
  return "0x" + s;
}

constexpr uint64_t set_half(uint64_t whole, bool high, uint32_t half) {
  return high ? (whole & 0xffffffffull) | (uint64_t{half} << 32) : (whole & ~0xffffffffull) | half;
}

}  // namespace

MmioTransport::MmioTransport(std::unique_ptr<VirtioDevice> device, const GuestMemory& ram,
                             Interrupt* irq)
    : device_(std::move(device)), ram_(&ram), irq_(irq) {
  queues_.resize(device_->num_queues());
  reset();
  stats_.resets = 0;
}

uint8_t MmioTransport::status() const noexcept {
  uint8_t s = status_ | device_->status_bits();
  if (transport_broken_) s |= v::STATUS_NEEDS_RESET;
  return s;
}

void MmioTransport::refuse(std::string why) {
  ++stats_.bad_accesses;
  last_error_ = std::move(why);
}

void MmioTransport::needs_reset(std::string why) {
  transport_broken_ = true;
  last_error_ = std::move(why);
  // Spec 4.2.3.4: a device entering DEVICE_NEEDS_RESET sends a configuration change notification.
  interrupt_status_ |= m::INT_CONFIG;
  if (irq_ != nullptr) irq_->raise(interrupt_status_);
}

MmioTransport::QueueState* MmioTransport::selected() noexcept {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

void MmioTransport::reset() noexcept {
  device_->reset();
  for (auto& q : queues_) {
    q = QueueState{};
    q.num = device_->max_queue_size();
  }
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = shm_sel_ = 0;
  interrupt_status_ = 0;
  status_ = 0;
  transport_broken_ = false;
  ++stats_.resets;
}

uint64_t MmioTransport::read(uint64_t offset, unsigned width) noexcept {
  ++stats_.reads;
  if (offset >= m::CONFIG) {
    // Config space: naturally aligned 1/2/4-byte reads (64-bit fields are read as two halves).
    const auto config = device_->config();
    const uint64_t at = offset - m::CONFIG;
    if ((width != 1 && width != 2 && width != 4) || offset % width != 0 || at > config.size() ||
        width > config.size() - at) {
      refuse("config read of " + std::to_string(width) + " bytes at " + hex(offset) +
             " is outside the " + std::to_string(config.size()) + "-byte config or unaligned");
      return 0;
    }
    uint32_t value = 0;
    std::memcpy(&value, config.data() + at, width);  // little-endian host and guest
    return value;
  }
  if (width != 4 || offset % 4 != 0) {
    refuse("control register read of " + std::to_string(width) + " bytes at " + hex(offset) +
           ": only aligned 32-bit accesses are allowed");
    return 0;
  }
  return read_register(static_cast<uint32_t>(offset));
}

uint32_t MmioTransport::read_register(uint32_t offset) {
  switch (offset) {
    case m::MAGIC_VALUE: return m::MAGIC;
    case m::VERSION: return m::VERSION_MODERN;
    case m::DEVICE_ID: return device_->device_id();
    case m::VENDOR_ID: return kVendorId;
    case m::DEVICE_FEATURES:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_->features() >> (32 * device_features_sel_));
    case m::QUEUE_NUM_MAX: return selected() != nullptr ? device_->max_queue_size() : 0;
    case m::QUEUE_READY: {
      const QueueState* q = selected();
      return q != nullptr && q->queue.has_value() ? 1 : 0;
    }
    case m::INTERRUPT_STATUS: return interrupt_status_;
    case m::STATUS: return status();
    case m::SHM_LEN_LOW:
    case m::SHM_LEN_HIGH: return 0xffffffffu;  // no shared memory regions: length -1
    case m::SHM_BASE_LOW:
    case m::SHM_BASE_HIGH: return 0xffffffffu;
    case m::CONFIG_GENERATION: return config_generation_;
    // The queue address registers read back what was written (spec 4.2.2: R/W).
    case m::QUEUE_DESC_LOW:
    case m::QUEUE_DESC_HIGH:
    case m::QUEUE_AVAIL_LOW:
    case m::QUEUE_AVAIL_HIGH:
    case m::QUEUE_USED_LOW:
    case m::QUEUE_USED_HIGH: {
      const QueueState* q = selected();
      if (q == nullptr) return 0;
      const uint64_t addr = offset < m::QUEUE_AVAIL_LOW  ? q->desc
                            : offset < m::QUEUE_USED_LOW ? q->avail
                                                         : q->used;
      return static_cast<uint32_t>(offset % 8 == 4 ? addr >> 32 : addr);
    }
    default: refuse("read of write-only or unknown virtio-mmio register " + hex(offset)); return 0;
  }
}

void MmioTransport::write(uint64_t offset, unsigned width, uint64_t value) noexcept {
  ++stats_.writes;
  if (offset >= m::CONFIG) {
    // No pepita device has writable config fields (console emerg_wr, blk writeback are not
    // offered), so the spec lets the device ignore these.
    refuse("config space write at " + hex(offset) + " ignored: no writable config fields");
    return;
  }
  if (width != 4 || offset % 4 != 0) {
    refuse("control register write of " + std::to_string(width) + " bytes at " + hex(offset) +
           ": only aligned 32-bit accesses are allowed");
    return;
  }
  write_register(static_cast<uint32_t>(offset), static_cast<uint32_t>(value));
}

void MmioTransport::write_register(uint32_t offset, uint32_t value) {
  // Negotiation registers may change only between ACKNOWLEDGE|DRIVER and FEATURES_OK; queue
  // registers only before DRIVER_OK or on a not-ready queue (spec 3.1.1, 4.2.3.2).
  const bool features_locked = (status_ & v::STATUS_FEATURES_OK) != 0;
  switch (offset) {
    case m::DEVICE_FEATURES_SEL: device_features_sel_ = value; return;
    case m::DRIVER_FEATURES_SEL: driver_features_sel_ = value; return;
    case m::DRIVER_FEATURES:
      if (features_locked) return refuse("DriverFeatures written after FEATURES_OK");
      if (driver_features_sel_ > 1) {
        if (value != 0) refuse("DriverFeatures bits beyond 63 acknowledged");
        return;
      }
      driver_features_ = set_half(driver_features_, driver_features_sel_ == 1, value);
      return;
    case m::QUEUE_SEL: queue_sel_ = value; return;
    case m::QUEUE_NUM: {
      QueueState* q = selected();
      if (q == nullptr)
        return refuse("QueueNum for queue " + std::to_string(queue_sel_) +
                      " which the device does not have");
      if (q->queue) return refuse("QueueNum written while the queue is ready");
      // Checked against QueueNumMax and for a power of two when the queue becomes ready.
      q->num = static_cast<uint16_t>(value > 0xffff ? 0 : value);
      return;
    }
    case m::QUEUE_READY: return set_queue_ready(value);
    case m::QUEUE_DESC_LOW:
    case m::QUEUE_DESC_HIGH:
    case m::QUEUE_AVAIL_LOW:
    case m::QUEUE_AVAIL_HIGH:
    case m::QUEUE_USED_LOW:
    case m::QUEUE_USED_HIGH: {
      QueueState* q = selected();
      if (q == nullptr) return refuse("queue address for a queue the device does not have");
      if (q->queue) return refuse("queue address written while the queue is ready");
      uint64_t& addr = offset < m::QUEUE_AVAIL_LOW  ? q->desc
                       : offset < m::QUEUE_USED_LOW ? q->avail
                                                    : q->used;
      addr = set_half(addr, offset % 8 == 4, value);
      return;
    }
    case m::QUEUE_NOTIFY: return notify(value);
    case m::INTERRUPT_ACK: interrupt_status_ &= ~value; return;
    case m::STATUS: return write_status(value);
    case m::SHM_SEL: shm_sel_ = value; return;
    default: refuse("write to read-only or unknown virtio-mmio register " + hex(offset));
  }
}

void MmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    reset();  // spec 4.2.3.1: writing 0 resets the device
    last_error_.clear();
    return;
  }
  if (value > 0xff) return refuse("Status write with bits above 7: " + hex(value));
  const auto next = static_cast<uint8_t>(value & ~v::STATUS_NEEDS_RESET);  // device-owned bit
  if ((status_ & ~next) != 0)
    return refuse("Status write " + hex(value) + " clears bits; only a write of 0 resets");
  const uint8_t added = next & ~status_;
  uint8_t accepted = added;
  if ((added & v::STATUS_FEATURES_OK) != 0) {
    // Spec 2.2.2 / 3.1.1: the device refuses FEATURES_OK (leaves it clear) for features it does
    // not support; pepita devices are modern only, so VERSION_1 is required.
    if ((driver_features_ & v::feature_bit(v::F_VERSION_1)) == 0) {
      accepted &= ~v::STATUS_FEATURES_OK;
      last_error_ =
          "FEATURES_OK refused: the driver did not acknowledge VERSION_1 (legacy "
          "virtio-mmio is not supported)";
    } else if ((driver_features_ & ~device_->features()) != 0) {
      accepted &= ~v::STATUS_FEATURES_OK;
      last_error_ = "FEATURES_OK refused: the driver acknowledged features not offered (" +
                    hex(driver_features_ & ~device_->features()) + ")";
    } else if (auto ok = device_->activate(driver_features_); !ok) {
      accepted &= ~v::STATUS_FEATURES_OK;
      last_error_ = "FEATURES_OK refused: " + ok.error().to_string();
    }
  }
  if ((added & v::STATUS_DRIVER_OK) != 0 && ((status_ | accepted) & v::STATUS_FEATURES_OK) == 0) {
    accepted &= ~v::STATUS_DRIVER_OK;
    refuse("DRIVER_OK set before FEATURES_OK was accepted");
  }
  status_ |= accepted;
}

void MmioTransport::set_queue_ready(uint32_t value) {
  QueueState* q = selected();
  if (q == nullptr)
    return refuse("QueueReady for queue " + std::to_string(queue_sel_) +
                  " which the device does not have");
  if (value == 0) {
    q->queue.reset();  // the driver stops using the queue; its addresses are kept
    return;
  }
  if (q->queue) return;
  if ((status_ & v::STATUS_FEATURES_OK) == 0) return refuse("QueueReady set before FEATURES_OK");
  const QueueLayout layout{q->num, PhysAddr(q->desc), PhysAddr(q->avail), PhysAddr(q->used)};
  const QueueFeatures features{
      .event_idx = (driver_features_ & v::feature_bit(v::F_RING_EVENT_IDX)) != 0,
      .indirect = (driver_features_ & v::feature_bit(v::F_RING_INDIRECT_DESC)) != 0};
  auto queue = Queue::activate(layout, *ram_, features, 0, device_->max_queue_size());
  if (!queue) {
    return needs_reset("queue " + std::to_string(queue_sel_) +
                       " cannot be activated: " + queue.error().to_string());
  }
  q->queue = std::move(*queue);
}

void MmioTransport::notify(uint32_t index) {
  // Without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index.
  if (index >= queues_.size() || !queues_[index].queue)
    return refuse("QueueNotify for queue " + std::to_string(index) + " which is not ready");
  if ((status_ & v::STATUS_DRIVER_OK) == 0) return refuse("QueueNotify before DRIVER_OK");
  if ((status() & v::STATUS_NEEDS_RESET) != 0)
    return refuse("QueueNotify ignored: the device needs a reset (" + last_error_ + ")");
  ++stats_.notifies;
  auto served = device_->process(static_cast<uint16_t>(index), *queues_[index].queue);
  if (!served) {
    return needs_reset("queue " + std::to_string(index) +
                       " broke, device needs reset: " + served.error().to_string());
  }
  if (*served) {
    interrupt_status_ |= m::INT_VRING;
    if (irq_ != nullptr) irq_->raise(interrupt_status_);
  }
}

Result<MmioState> MmioTransport::save() const {
  const std::string name = pepita::fmt("virtio device {}", device_->device_id());
  if ((status() & v::STATUS_NEEDS_RESET) != 0)
    return fail(ErrorCode::Protocol,
                pepita::fmt("{} needs a reset ({}); a broken device is not snapshotted", name,
                            last_error_));
  MmioState st;
  st.device_id = device_->device_id();
  const auto config = device_->config();
  st.config.assign(config.begin(), config.end());
  st.status = status_;
  st.driver_features = driver_features_;
  st.device_features_sel = device_features_sel_;
  st.driver_features_sel = driver_features_sel_;
  st.queue_sel = queue_sel_;
  st.shm_sel = shm_sel_;
  st.interrupt_status = interrupt_status_;
  st.config_generation = config_generation_;
  for (size_t i = 0; i < queues_.size(); ++i) {
    const QueueState& q = queues_[i];
    MmioQueueState qs{.num = q.num, .desc = q.desc, .avail = q.avail, .used = q.used};
    if (q.queue) {
      qs.ready = true;
      qs.next_avail = q.queue->next_avail();
      qs.next_used = q.queue->next_used();
      // The avail index is the driver's, in guest RAM: anything it published that the device
      // has not taken is a request in flight.
      auto idx = ram_->read<uint16_t>(PhysAddr(q.avail + 2));
      if (!idx)
        return fail(ErrorCode::Protocol, pepita::fmt("{} queue {}: avail ring unreadable: {}", name,
                                                     i, idx.error().message()));
      if (*idx != qs.next_avail)
        return fail(ErrorCode::Busy,
                    pepita::fmt("{} queue {} has {} request(s) the driver made available "
                                "without a notify; a snapshot needs quiescent devices: the guest "
                                "must complete its I/O before its snapshot point",
                                name, i, static_cast<uint16_t>(*idx - qs.next_avail)));
    }
    st.queues.push_back(qs);
  }
  auto device_state = device_->save_state();
  if (!device_state)
    return std::unexpected(
        std::move(device_state).error().with_context(pepita::fmt("{} snapshot", name)));
  st.device_state = std::move(*device_state);
  return st;
}

Result<void> MmioTransport::load(const MmioState& state) {
  const std::string name = pepita::fmt("virtio device {}", device_->device_id());
  if (state.device_id != device_->device_id())
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("snapshot has virtio device {} where the restored VM has {}; give it "
                            "the same devices",
                            state.device_id, name));
  const auto config = device_->config();
  if (state.queues.size() != queues_.size() || state.config.size() != config.size() ||
      std::memcmp(state.config.data(), config.data(), config.size()) != 0)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("{} differs from the snapshot's (config space or queue count; for "
                            "virtio-blk the disk size, for vsock the guest CID): a restored VM "
                            "needs devices of the same shape",
                            name));
  reset();
  auto loaded = [&]() -> Result<void> {
    if ((state.status & v::STATUS_FEATURES_OK) != 0) {
      auto ok = device_->activate(state.driver_features);
      if (!ok)
        return std::unexpected(
            std::move(ok).error().with_context(pepita::fmt("{} snapshot features", name)));
    }
    const QueueFeatures features{
        .event_idx = (state.driver_features & v::feature_bit(v::F_RING_EVENT_IDX)) != 0,
        .indirect = (state.driver_features & v::feature_bit(v::F_RING_INDIRECT_DESC)) != 0};
    for (size_t i = 0; i < queues_.size(); ++i) {
      const MmioQueueState& qs = state.queues[i];
      QueueState& q = queues_[i];
      q.num = qs.num;
      q.desc = qs.desc;
      q.avail = qs.avail;
      q.used = qs.used;
      if (!qs.ready) continue;
      const QueueLayout layout{q.num, PhysAddr(q.desc), PhysAddr(q.avail), PhysAddr(q.used)};
      auto queue =
          Queue::activate(layout, *ram_, features, qs.next_avail, device_->max_queue_size());
      if (!queue)
        return std::unexpected(std::move(queue).error().with_context(
            pepita::fmt("{} queue {} from the snapshot", name, i)));
      if (queue->next_used() != qs.next_used)
        return fail(ErrorCode::InvalidArgument,
                    pepita::fmt("{} queue {}: guest RAM's used index {} is not the snapshot's {}; "
                                "load a device into the RAM it was saved with",
                                name, i, queue->next_used(), qs.next_used));
      q.queue = std::move(*queue);
    }
    PEPITA_TRY_VOID(device_->load_state(state.device_state));
    status_ = state.status;
    driver_features_ = state.driver_features;
    device_features_sel_ = state.device_features_sel;
    driver_features_sel_ = state.driver_features_sel;
    queue_sel_ = state.queue_sel;
    shm_sel_ = state.shm_sel;
    interrupt_status_ = state.interrupt_status;
    config_generation_ = state.config_generation;
    return {};
  }();
  if (!loaded) reset();
  stats_.resets = 0;
  return loaded;
}

}  // namespace pepita::virtio
