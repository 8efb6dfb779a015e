// Host probes behind `pepita info`: io_uring via IORING_REGISTER_PROBE, KVM via its ioctls,
// ublk and zram via /dev and /sys, SIMD via the simd module's CPUID/XGETBV dispatch.
#include "host_probe.hpp"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/io_uring/probe.hpp"
#if PEPITA_HAVE_GPU
#include "pepita/gpu/device.hpp"
#endif
#include "pepita/simd/dispatch.hpp"

namespace pepita::cli {
namespace {

std::string read_first_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

IoUringReport probe_io_uring() {
  IoUringReport report;
  auto probe = pepita::io_uring::probe_supported_opcodes();
  if (!probe) {
    report.error = probe.error().message();
    return report;
  }
  report.available = true;
  report.last_opcode = probe->last_op;
  for (const auto& op : probe->list()) {
    if (!op.supported) continue;
    // Opcodes newer than our ABI header have no name yet; keep them countable and distinct.
    report.supported.emplace_back(op.name == "unknown" ? "opcode_" + std::to_string(op.code)
                                                       : std::string(op.name));
  }
  return report;
}

KvmReport probe_kvm() {
  KvmReport report;
  const int fd = sys::open("/dev/kvm", O_RDWR);
  if (fd < 0) {
    report.error = std::string("/dev/kvm: ") + std::strerror(-fd);
    return report;
  }
  UniqueFd kvm(fd);
  report.api_version = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (report.api_version != KVM_API_VERSION) {
    report.error = "unexpected KVM API version " + std::to_string(report.api_version);
    return report;
  }
  report.available = true;
  auto check = [&](long cap) { return ::ioctl(kvm.get(), KVM_CHECK_EXTENSION, cap); };
  report.max_vcpus = check(KVM_CAP_MAX_VCPUS);
  report.user_memory = check(KVM_CAP_USER_MEMORY) > 0;
  report.irqchip = check(KVM_CAP_IRQCHIP) > 0;
  report.pit2 = check(KVM_CAP_PIT2) > 0;
  report.ioeventfd = check(KVM_CAP_IOEVENTFD) > 0;
  report.irqfd = check(KVM_CAP_IRQFD) > 0;
  report.immediate_exit = check(KVM_CAP_IMMEDIATE_EXIT) > 0;
  return report;
}

std::vector<ZramDevice> probe_zram() {
  std::vector<ZramDevice> devices;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    const std::string name = entry.path().filename();
    if (!name.starts_with("zram")) continue;
    ZramDevice device;
    device.name = name;
    // comp_algorithm lists every algorithm, the selected one in brackets: "lzo [lz4] zstd".
    std::istringstream algorithms(read_first_line(entry.path() / "comp_algorithm"));
    for (std::string word; algorithms >> word;) {
      if (word.front() == '[' && word.back() == ']') {
        word = word.substr(1, word.size() - 2);
        device.algorithm = word;
      }
      device.algorithms.push_back(word);
    }
    device.disksize =
        std::strtoull(read_first_line(entry.path() / "disksize").c_str(), nullptr, 10);
    devices.push_back(std::move(device));
  }
  std::sort(devices.begin(), devices.end(),
            [](const ZramDevice& a, const ZramDevice& b) { return a.name < b.name; });
  return devices;
}

void probe_gpus(HostReport& report) {
#if PEPITA_HAVE_GPU
  auto devices = pepita::gpu::list_devices();
  if (!devices) {
    report.gpu_error = devices.error().message();
    return;
  }
  for (const auto& device : *devices) {
    report.gpus.push_back({device.name, std::string(pepita::gpu::to_string(device.type)),
                           device.unified, device.device_local_bytes});
  }
#else
  report.gpu_error = "pepita was built without Vulkan (install libvulkan-dev and rebuild)";
#endif
}

}  // namespace

HostReport probe_host() {
  HostReport report;
  utsname uts{};
  if (::uname(&uts) == 0) report.kernel = std::string(uts.sysname) + " " + uts.release;
  report.cores = std::thread::hardware_concurrency();
  struct sysinfo info {};
  if (::sysinfo(&info) == 0) report.memory_bytes = std::uint64_t{info.totalram} * info.mem_unit;
  report.io_uring = probe_io_uring();
  report.kvm = probe_kvm();
  report.ublk_control = ::access("/dev/ublk-control", F_OK) == 0;
  report.zram = probe_zram();
  probe_gpus(report);

  report.simd_level = std::string(pepita::simd::to_string(pepita::simd::detected_level()));
  const auto& cpu = pepita::simd::cpu_features();
  const std::pair<bool, const char*> features[] = {
      {__builtin_cpu_supports("sse4.2") != 0, "sse4.2"},
      {cpu.avx2, "avx2"},
      {cpu.fma, "fma"},
      {cpu.avx512f, "avx512f"},
      {cpu.avx512bw, "avx512bw"},
      {cpu.avx512vl, "avx512vl"},
      {cpu.avx512_vnni, "avx512_vnni"},
      {cpu.avx512_bf16, "avx512_bf16"}};
  for (const auto& [present, name] : features) {
    if (present) report.cpu_features.emplace_back(name);
  }
  return report;
}

}  // namespace pepita::cli
