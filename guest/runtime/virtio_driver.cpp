// Guest-side virtio-mmio driver: register access through uncached user pages that exit to the
// VMM, split rings in the heap, and polling instead of interrupts (there is no guest kernel).
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/virtio.hpp"

namespace ga = pepita::vmm::guest_abi;
namespace m = pepita::abi::virtio_mmio;
namespace v = pepita::abi::virtio;

namespace pepita::guest::virtio {
namespace {

// The VMM serves a queue synchronously inside the notify exit, so ordering only needs the
// compiler not to move ring stores across the register write.
inline void barrier() { asm volatile("" : : : "memory"); }

}  // namespace

uint32_t device_count() {
  // SAFETY: BootInfo is mapped read-only for the guest at kBootInfoGpa.
  const auto* boot = reinterpret_cast<const volatile ga::BootInfo*>(ga::kBootInfoGpa);
  const uint32_t n = boot->virtio_mmio_devices;
  return n > ga::kVirtioMmioMaxDevices ? ga::kVirtioMmioMaxDevices : n;
}

uint32_t Device::read32(uint32_t offset) const {
  // SAFETY: base_ is a mapped virtio-mmio page; the access exits to the VMM, which emulates it.
  return *reinterpret_cast<volatile uint32_t*>(base_ + offset);
}

void Device::write32(uint32_t offset, uint32_t value) const {
  barrier();
  // SAFETY: as read32.
  *reinterpret_cast<volatile uint32_t*>(base_ + offset) = value;
}

uint8_t Device::config8(uint32_t offset) const {
  // SAFETY: as read32; config fields take 8-bit reads.
  return *reinterpret_cast<volatile uint8_t*>(base_ + m::CONFIG + offset);
}

uint32_t Device::config32(uint32_t offset) const { return read32(m::CONFIG + offset); }

uint8_t Device::status() const { return static_cast<uint8_t>(read32(m::STATUS)); }

bool Device::attach(uint32_t slot) {
  if (slot >= device_count()) return false;
  base_ = ga::kVirtioMmioGpa + slot * ga::kVirtioMmioStride;
  return true;
}

bool Device::probe(uint32_t device_id) {
  for (uint32_t slot = 0; slot < device_count(); ++slot) {
    attach(slot);
    if (read32(m::MAGIC_VALUE) == m::MAGIC && read32(m::VERSION) == m::VERSION_MODERN &&
        read32(m::DEVICE_ID) == device_id)
      return true;
  }
  base_ = 0;
  return false;
}

bool Device::init(uint64_t wanted) {
  if (base_ == 0) return false;
  write32(m::STATUS, 0);  // reset
  write32(m::STATUS, v::STATUS_ACKNOWLEDGE);
  write32(m::STATUS, v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER);
  write32(m::DEVICE_FEATURES_SEL, 1);
  uint64_t offered = uint64_t{read32(m::DEVICE_FEATURES)} << 32;
  write32(m::DEVICE_FEATURES_SEL, 0);
  offered |= read32(m::DEVICE_FEATURES);
  // Polling driver: no EVENT_IDX or indirect descriptors needed.
  const uint64_t acked = (wanted & offered) | v::feature_bit(v::F_VERSION_1);
  if ((offered & v::feature_bit(v::F_VERSION_1)) == 0) return false;
  write32(m::DRIVER_FEATURES_SEL, 0);
  write32(m::DRIVER_FEATURES, static_cast<uint32_t>(acked));
  write32(m::DRIVER_FEATURES_SEL, 1);
  write32(m::DRIVER_FEATURES, static_cast<uint32_t>(acked >> 32));
  write32(m::STATUS, v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER | v::STATUS_FEATURES_OK);
  return (status() & v::STATUS_FEATURES_OK) != 0;
}

bool Device::setup_queue(uint32_t index, uint16_t size) {
  if (index >= kMaxQueues) return false;
  write32(m::QUEUE_SEL, index);
  if (read32(m::QUEUE_READY) != 0) return false;
  const uint32_t max = read32(m::QUEUE_NUM_MAX);
  if (max == 0) return false;
  while (size > max) size /= 2;
  Queue& q = queues_[index];
  if (!q.init(size)) return false;
  q.dev_ = this;
  q.index_ = static_cast<uint16_t>(index);
  write32(m::QUEUE_NUM, size);
  write32(m::QUEUE_DESC_LOW, static_cast<uint32_t>(q.desc_gpa()));
  write32(m::QUEUE_DESC_HIGH, static_cast<uint32_t>(q.desc_gpa() >> 32));
  write32(m::QUEUE_AVAIL_LOW, static_cast<uint32_t>(q.avail_gpa()));
  write32(m::QUEUE_AVAIL_HIGH, static_cast<uint32_t>(q.avail_gpa() >> 32));
  write32(m::QUEUE_USED_LOW, static_cast<uint32_t>(q.used_gpa()));
  write32(m::QUEUE_USED_HIGH, static_cast<uint32_t>(q.used_gpa() >> 32));
  write32(m::QUEUE_READY, 1);
  return read32(m::QUEUE_READY) == 1;
}

bool Device::driver_ok() {
  write32(m::STATUS,
          v::STATUS_ACKNOWLEDGE | v::STATUS_DRIVER | v::STATUS_FEATURES_OK | v::STATUS_DRIVER_OK);
  const uint8_t s = status();
  return (s & v::STATUS_DRIVER_OK) != 0 && (s & v::STATUS_NEEDS_RESET) == 0;
}

bool Queue::init(uint16_t size) {
  if (size == 0 || size > 256 || (size & (size - 1)) != 0) return false;
  void* desc = alloc(16ull * size, 16);
  void* avail = alloc(6 + 2ull * size, 2);
  void* used = alloc(6 + 8ull * size, 4);
  if (desc == nullptr || avail == nullptr || used == nullptr) return false;
  __builtin_memset(desc, 0, 16ull * size);
  __builtin_memset(avail, 0, 6 + 2ull * size);
  __builtin_memset(used, 0, 6 + 8ull * size);
  desc_ = static_cast<Desc*>(desc);
  avail_ = static_cast<volatile uint16_t*>(avail);
  used_ = static_cast<volatile uint16_t*>(used);
  size_ = size;
  for (uint16_t i = 0; i + 1 < size; ++i) desc_[i].next = static_cast<uint16_t>(i + 1);
  free_head_ = 0;
  num_free_ = size;
  avail_idx_ = last_used_ = 0;
  return true;
}

int Queue::submit(const Buf* bufs, uint32_t n) {
  if (n == 0 || n > num_free_) return -1;
  const uint16_t head = free_head_;
  uint16_t i = head;
  for (uint32_t k = 0; k < n; ++k) {
    Desc& d = desc_[i];
    d.addr = reinterpret_cast<uint64_t>(bufs[k].addr);
    d.len = bufs[k].len;
    d.flags = static_cast<uint16_t>((bufs[k].device_writes ? v::DESC_F_WRITE : 0) |
                                    (k + 1 < n ? v::DESC_F_NEXT : 0));
    if (k + 1 < n) i = d.next;
  }
  free_head_ = desc_[i].next;
  num_free_ = static_cast<uint16_t>(num_free_ - n);
  avail_[2 + avail_idx_ % size_] = head;
  barrier();  // the ring entry before the index the device reads
  avail_[1] = ++avail_idx_;
  return head;
}

void Queue::free_chain(uint16_t head) {
  uint16_t i = head;
  uint16_t n = 1;
  while ((desc_[i].flags & v::DESC_F_NEXT) != 0 && n < size_) {
    i = desc_[i].next;
    ++n;
  }
  desc_[i].next = free_head_;
  free_head_ = head;
  num_free_ = static_cast<uint16_t>(num_free_ + n);
}

bool Queue::poll(uint16_t* head, uint32_t* len) {
  if (used_[1] == last_used_) return false;
  barrier();  // the element after the index
  // SAFETY: used_ points at the used ring: elements start 4 bytes in, 8 bytes each.
  const auto* elem =
      reinterpret_cast<const volatile uint32_t*>(used_ + 2) + 2 * (last_used_ % size_);
  *head = static_cast<uint16_t>(elem[0]);
  *len = elem[1];
  ++last_used_;
  if (*head < size_) free_chain(*head);
  return true;
}

int64_t Queue::transfer(const Buf* bufs, uint32_t n) {
  const int head = submit(bufs, n);
  if (head < 0) return -1;
  dev_->write32(m::QUEUE_NOTIFY, index_);
  uint16_t got = 0;
  uint32_t len = 0;
  // Served inside the notify exit: the element is there now or the device could not complete it.
  while (poll(&got, &len))
    if (got == head) return len;
  return -1;
}

int blk_request(Device& blk, uint32_t type, uint64_t sector, void* data, uint32_t len) {
  namespace vb = pepita::abi::virtio_blk;
  static vb::RequestHeader hdr;
  static uint8_t status;
  hdr = vb::RequestHeader{type, 0, sector};
  status = 0xff;
  Buf bufs[3] = {{&hdr, sizeof hdr, false}, {data, len, type == vb::T_IN}, {&status, 1, true}};
  if (blk.queue(0).transfer(bufs, 3) < 0) return -1;
  return status;
}

bool console_write(Device& con, const void* data, uint32_t len) {
  Buf b{const_cast<void*>(data), len, false};
  return con.queue(1).transfer(&b, 1) >= 0;
}

bool console_print(Device& con, const char* s) {
  uint32_t n = 0;
  while (s[n] != 0) ++n;
  return console_write(con, s, n);
}

}  // namespace pepita::guest::virtio
