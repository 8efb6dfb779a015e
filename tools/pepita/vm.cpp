// `pepita vm run GUEST.elf`: runs a freestanding guest in a kernel-less micro-VM on KVM with memory
// and time limits, prints what it wrote and exits with its exit code (124 timeout, 125 fault).
// `pepita vm run --kernel PATH [--cmdline S] [--initrd PATH]` boots a Linux kernel instead
// (vmm/linux_boot.hpp) and prints its serial console as it arrives.
#include "pepita/vmm/vm.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "block_target.hpp"
#include "command.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/size.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/vmm/linux_boot.hpp"
#include "pepita/zram/block_target.hpp"

namespace pepita::cli {
namespace {

constexpr int kExitTimeout = 124;  // as timeout(1)
constexpr int kExitGuestFault = 125;

struct VmRunOptions {
  std::string guest;
  std::string mem;      // empty: 16M for a guest, 512M for a kernel
  std::string timeout;  // empty: 1s for a guest, 60s for a kernel
  std::string kernel;   // a bzImage or ELF vmlinux: boot Linux instead of GUEST.elf
  std::string cmdline = "earlyprintk=serial,ttyS0,115200 console=ttyS0";
  std::string initrd;
  std::string input;
  bool json = false;
  bool virtio_console = false;
  std::string virtio_blk;  // a block-target spec: "mem:SIZE", "file:PATH", "zram:1G,zstd"
  std::string vsock;       // Unix socket path of the vsock device's host side
  uint64_t vsock_cid = 3;
  uint32_t vcpus = 1;
};

// "1s", "250ms", "100us", "2m" -> duration; 0 on a malformed one.
std::chrono::nanoseconds parse_duration(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || value <= 0) return std::chrono::nanoseconds(0);
  const std::string unit(end);
  double ns = 0;
  if (unit == "s" || unit.empty())
    ns = value * 1e9;
  else if (unit == "ms")
    ns = value * 1e6;
  else if (unit == "us")
    ns = value * 1e3;
  else if (unit == "m")
    ns = value * 60e9;
  else
    return std::chrono::nanoseconds(0);
  if (ns > 3600e9) return std::chrono::nanoseconds(0);  // an hour is plenty for a sandbox task
  return std::chrono::nanoseconds(static_cast<long long>(ns));
}

int usage(const std::string& message) {
  std::fprintf(stderr, "pepita vm run: %s\n", message.c_str());
  return kExitUsage;
}

// --virtio-blk SPEC, the block-target spec (null:SIZE, mem:SIZE, file:PATH[,SIZE],
// zram:SIZE[,lz4|zstd]). file:PATH without a size takes an existing file, its size rounded down to
// whole sectors; what the guest writes stays in the file. InvalidArgument is the user's error.
Result<blk_mq::TargetSpec> disk_spec(const std::string& text) {
  using blk_mq::TargetKind;
  auto spec = parse_served_spec(
      text, {TargetKind::Mem, TargetKind::File, TargetKind::Zram, TargetKind::Null});
  if (!spec) return std::unexpected(std::move(spec.error()).with_context("--virtio-blk"));
  if (spec->kind == TargetKind::File && spec->size_bytes == 0) {
    std::error_code ec;
    spec->size_bytes = std::filesystem::file_size(spec->path, ec) / 512 * 512;
    if (ec || spec->size_bytes == 0) {
      return fail(ErrorCode::InvalidArgument,
                  "--virtio-blk " + text + ": needs an existing file of at least 512 bytes" +
                      (ec ? " (" + ec.message() + ")" : "") + ", or a size: file:PATH,SIZE");
    }
  }
  return spec;
}

nlohmann::json to_json(const vmm::RunResult& r) {
  nlohmann::json out = {
      {"kind", r.kind == vmm::ExitKind::Exited      ? "exited"
               : r.kind == vmm::ExitKind::TimedOut  ? "timed-out"
               : r.kind == vmm::ExitKind::Cancelled ? "cancelled"
               : r.kind == vmm::ExitKind::Stopped   ? "stopped"
                                                    : "fault"},
      {"exit_code", r.exit_code},
      {"output", r.output},
      {"exits", r.exits},
      {"vcpus", r.vcpus},
      {"elapsed_us", std::chrono::duration_cast<std::chrono::microseconds>(r.elapsed).count()},
      {"description", r.describe()},
  };
  for (const auto& d : r.virtio) {
    out["virtio"].push_back({{"device_id", d.device_id},
                             {"status", d.status},
                             {"mmio_exits", d.mmio_exits},
                             {"notifies", d.notifies},
                             {"bad_accesses", d.bad_accesses},
                             {"last_error", d.last_error}});
  }
  if (r.fault) {
    const auto& f = *r.fault;
    out["fault"] = {
        {"reason", f.reason}, {"vcpu", f.vcpu}, {"vector", f.vector}, {"error_code", f.error_code},
        {"rip", f.rip},       {"rsp", f.rsp},   {"rflags", f.rflags}, {"cr2", f.cr2},
        {"rax", f.rax},       {"rdi", f.rdi}};
  }
  return out;
}

int exit_code_of(const vmm::RunResult& r) {
  switch (r.kind) {
    case vmm::ExitKind::Exited: return r.exit_code & 0xff;
    case vmm::ExitKind::TimedOut:
    case vmm::ExitKind::Cancelled:
    case vmm::ExitKind::Stopped: return kExitTimeout;
    case vmm::ExitKind::Fault: return kExitGuestFault;
  }
  return kExitFailure;
}

// --kernel: boots Linux with the kernel's serial console (COM1) streamed to stdout.
int boot_kernel(const VmRunOptions& o, vmm::VmConfig config) {
  if (!o.guest.empty()) return usage("give either GUEST.elf or --kernel, not both");
  config.kernel_path = o.kernel;
  config.cmdline = o.cmdline;
  config.initrd = o.initrd;
  vmm::LinuxBootOptions boot;
  std::size_t printed = 0;
  if (!o.json) {
    boot.stop_when = [&printed](std::string_view out) {
      std::fwrite(out.data() + printed, 1, out.size() - printed, stdout);
      std::fflush(stdout);
      printed = out.size();
      return false;
    };
  }
  auto result = vmm::boot_linux(config, boot);
  if (!result) {
    std::fprintf(stderr, "pepita vm run: %s\n", result.error().to_string().c_str());
    return kExitFailure;
  }
  if (o.json) {
    std::printf("%s\n", to_json(*result).dump(2).c_str());
  } else {
    std::fwrite(result->output.data() + printed, 1, result->output.size() - printed, stdout);
    std::fflush(stdout);
    std::string where;
    if (result->fault) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " (last rip=0x%llx)",
                    static_cast<unsigned long long>(result->fault->rip));
      where = buf;
    }
    std::fprintf(stderr, "\npepita vm run: kernel %s%s\n", result->describe().c_str(),
                 where.c_str());
  }
  return exit_code_of(*result);
}

int run_vm(const VmRunOptions& o) {
  const bool kernel = !o.kernel.empty();
  if (!kernel && o.guest.empty()) return usage("give GUEST.elf, or --kernel PATH to boot Linux");
  // A file:PATH,SIZE disk this run creates is removed again unless the guest ran. Declared before
  // config, so the disk in config is closed before the file is removed.
  std::optional<NewBackingFile> backing;
  vmm::VmConfig config;
  const std::string mem = !o.mem.empty() ? o.mem : kernel ? "512M" : "16M";
  auto memory_bytes = parse_size(mem);
  if (!memory_bytes) return usage("--mem '" + mem + "': expected e.g. 16M or 1G");
  config.memory_bytes = *memory_bytes;
  const std::string timeout = !o.timeout.empty() ? o.timeout : kernel ? "60s" : "1s";
  config.timeout = parse_duration(timeout);
  if (config.timeout.count() == 0)
    return usage("--timeout '" + timeout + "': expected e.g. 1s, 250ms or 2m (at most 1h)");
  if (kernel) return boot_kernel(o, config);

  config.vcpus = o.vcpus;  // Vm::create says the host's limit when this exceeds it
  config.virtio_console = o.virtio_console;
  if (o.vsock_cid < 3 || o.vsock_cid >= 0xffffffffull)
    return usage("--vsock-cid: the guest's context id must be 3..4294967294 (0-2 are reserved)");
  config.vsock_path = o.vsock;
  config.vsock_cid = o.vsock_cid;
  if (!o.virtio_blk.empty()) {
    // Every argument is checked before the disk is created: a usage error creates nothing.
    auto spec = disk_spec(o.virtio_blk);
    if (!spec) return usage(spec.error().message());
    backing.emplace(*spec);
    auto disk = zram::make_target(*spec);
    if (!disk) {
      std::fprintf(stderr, "pepita vm run: --virtio-blk %s: %s\n", o.virtio_blk.c_str(),
                   disk.error().to_string().c_str());
      return kExitFailure;
    }
    config.virtio_blk = std::move(*disk);
  }

  std::vector<std::byte> input;
  if (!o.input.empty()) {
    const int fd = sys::open(o.input.c_str(), O_RDONLY);
    int64_t n = fd;
    const UniqueFd file(fd < 0 ? -1 : fd);
    std::byte buf[65536];
    while (n >= 0) {
      n = sys::read_full(file.get(), buf, sizeof buf);
      if (n > 0) input.insert(input.end(), buf, buf + n);
      if (n >= 0 && static_cast<std::size_t>(n) < sizeof buf) break;
    }
    if (n < 0) {
      std::fprintf(stderr, "pepita vm run: cannot open --input %s: %s\n", o.input.c_str(),
                   std::strerror(static_cast<int>(-n)));
      return kExitFailure;
    }
    // The input window must hold the input; leave the rest of memory to the guest.
    config.input_capacity = input.size();
  }

  auto image = vmm::GuestImage::load_file(o.guest);
  if (!image) {
    std::fprintf(stderr, "pepita vm run: %s\n", image.error().to_string().c_str());
    return kExitFailure;
  }
  auto result = vmm::run_guest(*image, input, config);
  if (!result) {
    std::fprintf(stderr, "pepita vm run: %s\n", result.error().to_string().c_str());
    return kExitFailure;
  }
  if (backing) backing->keep();  // what the guest wrote is the user's now
  if (o.json) {
    std::printf("%s\n", to_json(*result).dump(2).c_str());
  } else {
    std::fwrite(result->output.data(), 1, result->output.size(), stdout);
    std::fflush(stdout);
    if (result->kind != vmm::ExitKind::Exited)
      std::fprintf(stderr, "pepita vm run: guest %s\n", result->describe().c_str());
  }
  return exit_code_of(*result);
}

void add_vm(CLI::App& app, Dispatch& dispatch) {
  auto* vm = app.add_subcommand("vm", "Kernel-less micro-VMs on KVM (freestanding guests)");
  vm->require_subcommand(1);
  auto options = std::make_shared<VmRunOptions>();
  auto* run = vm->add_subcommand(
      "run",
      "Run GUEST.elf (or boot a Linux --kernel) in a fresh micro-VM; exit code is the guest's "
      "(124 timeout, 125 guest fault)");
  run->add_option("guest", options->guest, "static ELF64 guest built against guest/runtime");
  run->add_option("--mem", options->mem,
                  "guest memory, the VM's hard limit (2M..4G; default 16M, 512M with --kernel)");
  run->add_option("--timeout", options->timeout,
                  "wall-clock limit, e.g. 1s or 250ms (default 1s, 60s with --kernel)");
  run->add_option("--kernel", options->kernel,
                  "boot this Linux kernel (bzImage or uncompressed ELF vmlinux) instead of a "
                  "guest; its serial console (8250 at 0x3f8) is printed as it arrives");
  run->add_option("--cmdline", options->cmdline, "kernel command line (with --kernel)")
      ->capture_default_str();
  run->add_option("--initrd", options->initrd, "initramfs to load (with --kernel)");
  run->add_option("--vcpus", options->vcpus,
                  "vCPUs, one thread each (1..the host's KVM limit); the guest runtime's "
                  "run_on_all_vcpus() spreads work over them")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  run->add_option("--input", options->input, "file mapped read-only into the guest as its input");
  run->add_flag("--virtio-console", options->virtio_console,
                "give the guest a virtio-console (virtio-mmio): input on its receiveq, its "
                "transmitq joins the output");
  run->add_option("--virtio-blk", options->virtio_blk,
                  "give the guest a virtio-blk device: " + std::string(blk_mq::kTargetForms) +
                      " (e.g. mem:1M, zram:64M,zstd)");
  run->add_option("--vsock", options->vsock,
                  "give the guest a virtio-vsock device; host programs connect to this Unix "
                  "socket and write \"CONNECT <port>\\n\", guest connections to port P reach "
                  "PATH_P (Firecracker's protocol)");
  run->add_option("--vsock-cid", options->vsock_cid, "the guest's vsock context id (3..2^32-2)")
      ->capture_default_str();
  run->add_flag("--json", options->json,
                "print the result (output, exit, fault registers) as JSON");
  dispatch.on(run, [options] { return run_vm(*options); });
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(vm, pepita::cli::add_vm);
