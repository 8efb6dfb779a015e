#pragma once
// The reference crate's vmm names over pepita's KVM micro-VM (vm.hpp): MicroVm is our Vm
// (VmConfig::vcpus vCPUs, a freestanding guest, run on the calling thread), ExitReason our
// ExitKind, and KVM_API_VERSION the KVM ABI version Vm::create insists on. VmConfig::builder() is
// config_builder.hpp; MemoryRegion slots, the register structs and Vcpu (raw KVM vCPUs of a
// BareVm) are vcpu_api.hpp; the Jailer is jailer.hpp. <linux/kvm.h> defines KVM_API_VERSION as a
// macro: include either it or this header in a translation unit.
//
//   auto vm = PEPITA_TRY(MicroVm::create(image, {.memory_bytes = 16 << 20}));
//   RunResult r = PEPITA_TRY(vm.run(input));       // vm.state() == VmState::Stopped after
//   std::printf("%llu exits\n", vm.exit_count());

#include "pepita/vmm/config_builder.hpp"
#include "pepita/vmm/vcpu_api.hpp"
#include "pepita/vmm/vm.hpp"

namespace pepita::vmm {

/// KVM_GET_API_VERSION's answer on every kernel since 2.6.22; Vm::create refuses any other.
inline constexpr int KVM_API_VERSION = 12;

using MicroVm = Vm;
using ExitReason = ExitKind;

}  // namespace pepita::vmm
