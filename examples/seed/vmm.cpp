// The reference crate's vmm module example (vmm.rs) in C++: VmConfig::builder() with 2 vCPUs and
// 256 MiB, MicroVm::create(config), vm.run(). The crate's example also names a kernel
// (kernel_path("/path/to/vmlinux")): build() checks that file for real, so that path is refused
// here, and booting a real Linux kernel to its banner takes 30-75 s on this host's KVM (guest
// kernel code is emulated; vmm::boot_linux, tests/vmm/linux_boot_test.cpp). So the VM this
// example creates from the built config runs pepita's freestanding hello guest (guest/).
#include <cstdio>
#include <string>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita::vmm;
  if (auto kvm = kvm_available(); !kvm) {
    std::printf("KVM unavailable: %s\n", kvm.error().to_string().c_str());
    return 0;
  }
  // As written in the crate: a kernel path that does not exist here is a clear error.
  auto with_kernel =
      VmConfig::builder().vcpus(2).memory_mb(256).kernel_path("/path/to/vmlinux").build();
  std::printf("kernel_path /path/to/vmlinux refused %d (%s)\n", !with_kernel,
              with_kernel ? "built" : std::string(to_string(with_kernel.error().code())).c_str());

  auto config = VmConfig::builder().vcpus(2).memory_mb(256).build();
  if (!config) {
    std::fprintf(stderr, "build: %s\n", config.error().to_string().c_str());
    return 1;
  }
  std::printf("config: vcpus %u, memory %llu MiB\n", config->vcpus,
              static_cast<unsigned long long>(config->memory_bytes >> 20));
  auto image = GuestImage::load_file(std::string(PEPITA_GUEST_DIR) + "/hello.elf");
  if (!image) {
    std::fprintf(stderr, "guest: %s\n", image.error().to_string().c_str());
    return 1;
  }
  auto vm = MicroVm::create(*image, *config);
  if (!vm) {
    std::fprintf(stderr, "create: %s\n", vm.error().to_string().c_str());
    return 1;
  }
  auto r = vm->run({});
  if (!r) {
    std::fprintf(stderr, "run: %s\n", r.error().to_string().c_str());
    return 1;
  }
  std::printf("%s%s, vcpus %u, stopped %d\n", r->output.c_str(), r->describe().c_str(),
              vm->vcpu_count(), vm->state() == VmState::Stopped);
  return r->kind == ExitReason::Exited && r->exit_code == 0 ? 0 : 1;
}
