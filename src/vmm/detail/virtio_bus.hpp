#pragma once
// The micro-VM's virtio-mmio devices: one MmioTransport per guest_abi::kVirtioMmioGpa page, the
// restricted view of guest RAM they use (device_view), and the glue that routes KVM_EXIT_MMIO to
// them and the console's output into the RunResult.

#include <linux/kvm.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "detail/layout.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/console.hpp"
#include "pepita/virtio/mmio.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm::detail {

/// Guest RAM as the VM's devices may touch it: a view of `mem` holding only memory the guest
/// itself may read (image segments, heap, stack, input window: guest_may_access with write
/// false). A driver that points a ring or buffer at the GDT, IDT or page tables gets an error
/// (the queue breaks, NEEDS_RESET), so device DMA can never hand the guest rights its page tables
/// deny.
Result<memory::GuestMemory> device_view(const memory::GuestMemory& mem, const Layout& layout);

/// The config a VM restored from a snapshot taken with `snap` runs with: the snapshot's, with the
/// devices (virtio_blk disk, vsock_path) and limits (timeout, output_limit) of `given`.
/// InvalidArgument, naming the difference, when `given` asks for other devices than the snapshot
/// has (console, blk, vsock present or not; another vsock guest CID). A disk of another size is
/// caught when the device state loads (VirtioBus::load).
Result<VmConfig> restored_config(const VmConfig& snap, const VmConfig& given);

class VirtioBus {
 public:
  /// Creates the devices `config` asks for (console, blk, vsock: slot order) over `mem`, borrowed.
  static Result<std::unique_ptr<VirtioBus>> create(const memory::GuestMemory& mem,
                                                   const Layout& layout, const VmConfig& config);

  /// Serves one KVM_EXIT_MMIO: false when the address is outside the device window (the caller
  /// reports a fault). Reads fill mmio.data before KVM_RUN resumes the guest.
  bool serve(decltype(kvm_run::mmio)& mmio);
  /// Feeds run()'s input to the console's receiveq.
  void feed_input(std::span<const std::byte> input);
  /// Moves new console output into `out`, keeping it within `limit` bytes.
  void drain_console(std::string& out, uint64_t limit);
  /// Every device's state for a snapshot, in slot order; Busy when one is not quiescent.
  Result<std::vector<virtio::MmioState>> save() const;
  /// Loads save()'s states into this bus, freshly created over RAM holding the snapshot's rings.
  Result<void> load(const std::vector<virtio::MmioState>& states);
  /// One VirtioReport per device.
  std::vector<VirtioReport> report() const;

 private:
  struct Slot {
    std::unique_ptr<virtio::MmioTransport> transport;
    uint64_t exits = 0;
  };
  explicit VirtioBus(memory::GuestMemory ram) : ram_(std::move(ram)) {}

  // Destroyed in reverse order: the transports (and their devices) go before the RAM view.
  memory::GuestMemory ram_;
  std::vector<Slot> slots_;
  virtio::console::ConsoleDevice* console_ = nullptr;  // owned by its slot's transport
};

}  // namespace pepita::vmm::detail
