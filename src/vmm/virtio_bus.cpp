// virtio-mmio devices of a micro-VM: device creation from VmConfig, KVM_EXIT_MMIO dispatch and
// the console's output joining the run's output. vsock serves its host sockets whenever the guest
// kicks one of its queues (the guest polls by kicking rxq).
#include "detail/virtio_bus.hpp"

#include <algorithm>
#include <cstring>

#include "pepita/blk_mq/block_device.hpp"
#include "pepita/core/format.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/vsock.hpp"
#include "pepita/vmm/guest_abi.hpp"

namespace pepita::vmm::detail {
namespace {

namespace ga = guest_abi;

// A BlockDevice that forwards to one the caller shares with the VM (VmConfig stays copyable and
// the caller can inspect the disk after the run).
class SharedDisk final : public blk_mq::BlockDevice {
 public:
  explicit SharedDisk(std::shared_ptr<blk_mq::BlockDevice> disk) : disk_(std::move(disk)) {}
  const blk_mq::DeviceInfo& info() const noexcept override { return disk_->info(); }
  void submit(uint32_t queue, const blk_mq::Request& req) noexcept override {
    disk_->submit(queue, req);
  }

 private:
  std::shared_ptr<blk_mq::BlockDevice> disk_;
};

}  // namespace

Result<memory::GuestMemory> device_view(const memory::GuestMemory& mem, const Layout& layout) {
  // What guest_may_access(layout, gpa, len, false) allows; the guard pages between keep them apart.
  std::vector<memory::GuestRange> ranges = {{layout.heap_base, layout.heap_size},
                                            {layout.stack_base, layout.stack_size},
                                            {layout.input_base, layout.input_capacity}};
  for (const auto& r : layout.image_regions) ranges.push_back({r.gpa, r.size});
  auto view = mem.view(ranges);
  if (!view)
    return fail(
        ErrorCode::Internal,
        std::string("guest layout does not fit guest memory: ").append(view.error().message()));
  return view;
}

Result<std::unique_ptr<VirtioBus>> VirtioBus::create(const memory::GuestMemory& mem,
                                                     const Layout& layout, const VmConfig& config) {
  auto bus = std::unique_ptr<VirtioBus>(new VirtioBus(PEPITA_TRY(device_view(mem, layout))));
  if (config.virtio_console) {
    auto con = virtio::console::ConsoleDevice::create({.output_limit = config.output_limit});
    bus->console_ = con.get();
    bus->slots_.push_back({std::make_unique<virtio::MmioTransport>(std::move(con), bus->ram_), 0});
  }
  if (config.virtio_blk) {
    auto blk = PEPITA_TRY(virtio::blk::BlkDevice::create(
        std::make_unique<SharedDisk>(config.virtio_blk), {.num_queues = 1}));
    bus->slots_.push_back({std::make_unique<virtio::MmioTransport>(std::move(blk), bus->ram_), 0});
  }
  if (!config.vsock_path.empty()) {
    auto vsock = virtio::vsock::VsockDevice::create(
        {.uds_path = config.vsock_path, .guest_cid = config.vsock_cid});
    if (!vsock)
      return std::unexpected(std::move(vsock.error()).with_context("VmConfig::vsock_path"));
    bus->slots_.push_back(
        {std::make_unique<virtio::MmioTransport>(std::move(*vsock), bus->ram_), 0});
  }
  if (bus->slots_.size() != layout.mmio_devices)
    return fail(ErrorCode::Internal, "virtio-mmio device count differs from the guest layout");
  return bus;
}

Result<VmConfig> restored_config(const VmConfig& snap, const VmConfig& given) {
  auto differs = [](const char* what, bool in_snap) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("the snapshot {} {} but the restored VM's config {}; a restored VM "
                            "needs the devices its snapshot was taken with",
                            in_snap ? "has" : "has no", what, in_snap ? "has none" : "has one"));
  };
  if (snap.virtio_console != given.virtio_console)
    return differs("virtio-console", snap.virtio_console);
  if ((snap.virtio_blk != nullptr) != (given.virtio_blk != nullptr))
    return differs("virtio-blk", snap.virtio_blk != nullptr);
  if (snap.vsock_path.empty() != given.vsock_path.empty())
    return differs("virtio-vsock", !snap.vsock_path.empty());
  if (!snap.vsock_path.empty() && snap.vsock_cid != given.vsock_cid)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("the snapshot's vsock guest CID is {}, the restored VM's config asks "
                            "for {}; the guest keeps the CID it read before the snapshot",
                            snap.vsock_cid, given.vsock_cid));
  VmConfig out = snap;
  out.virtio_blk = given.virtio_blk;
  out.vsock_path = given.vsock_path;
  out.timeout = given.timeout;
  out.output_limit = given.output_limit;
  return out;
}

Result<std::vector<virtio::MmioState>> VirtioBus::save() const {
  std::vector<virtio::MmioState> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto st = slots_[i].transport->save();
    if (!st)
      return std::unexpected(
          std::move(st).error().with_context(pepita::fmt("snapshot of virtio-mmio slot {}", i)));
    out.push_back(std::move(*st));
  }
  return out;
}

Result<void> VirtioBus::load(const std::vector<virtio::MmioState>& states) {
  if (states.size() != slots_.size())
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("the snapshot has {} virtio-mmio devices, the restored VM {}",
                            states.size(), slots_.size()));
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (auto ok = slots_[i].transport->load(states[i]); !ok)
      return std::unexpected(
          std::move(ok).error().with_context(pepita::fmt("restoring virtio-mmio slot {}", i)));
  }
  return {};
}

bool VirtioBus::serve(decltype(kvm_run::mmio)& mmio) {
  const uint64_t gpa = mmio.phys_addr;
  if (gpa < ga::kVirtioMmioGpa) return false;
  const uint64_t slot = (gpa - ga::kVirtioMmioGpa) / ga::kVirtioMmioStride;
  if (slot >= slots_.size()) return false;
  Slot& s = slots_[slot];
  ++s.exits;
  const uint64_t offset = (gpa - ga::kVirtioMmioGpa) % ga::kVirtioMmioStride;
  // KVM reports 1, 2, 4 or 8 bytes; anything else is treated as a bad width by the transport.
  const unsigned len = std::min<unsigned>(mmio.len, sizeof mmio.data);
  if (mmio.is_write) {
    uint64_t value = 0;
    std::memcpy(&value, mmio.data, len);  // little-endian guest and host
    s.transport->write(offset, len, value);
  } else {
    const uint64_t value = s.transport->read(offset, len);
    std::memcpy(mmio.data, &value, len);
  }
  return true;
}

void VirtioBus::feed_input(std::span<const std::byte> input) {
  if (console_ != nullptr && !input.empty()) console_->feed(input);
}

void VirtioBus::drain_console(std::string& out, uint64_t limit) {
  if (console_ == nullptr) return;
  std::string bytes = console_->take_output();
  if (bytes.empty()) return;
  const uint64_t room = limit - std::min<uint64_t>(out.size(), limit);
  out.append(bytes, 0, static_cast<size_t>(std::min<uint64_t>(room, bytes.size())));
}

std::vector<VirtioReport> VirtioBus::report() const {
  std::vector<VirtioReport> out;
  for (const auto& s : slots_) {
    const auto& t = *s.transport;
    out.push_back({.device_id = t.device().device_id(),
                   .status = t.status(),
                   .mmio_exits = s.exits,
                   .notifies = t.stats().notifies,
                   .bad_accesses = t.stats().bad_accesses,
                   .last_error = t.last_error()});
  }
  return out;
}

}  // namespace pepita::vmm::detail
