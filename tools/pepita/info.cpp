// `pepita info`: what this host offers pepita (io_uring, KVM, ublk, zram, SIMD, cores, memory),
// as text or, with --json, as one JSON object for scripts.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "host_probe.hpp"
#include "pepita/version.hpp"

namespace pepita::cli {
namespace {

struct InfoOptions {
  bool json = false;
};

nlohmann::json to_json(const HostReport& host) {
  nlohmann::json zram = nlohmann::json::array();
  for (const auto& device : host.zram) {
    zram.push_back({{"name", device.name},
                    {"algorithm", device.algorithm},
                    {"algorithms", device.algorithms},
                    {"disksize", device.disksize}});
  }
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& gpu : host.gpus) {
    gpus.push_back({{"name", gpu.name},
                    {"type", gpu.type},
                    {"unified", gpu.unified},
                    {"device_local_bytes", gpu.device_local_bytes}});
  }
  return {
      {"version", kVersion},
      {"kernel", host.kernel},
      {"cores", host.cores},
      {"memory_bytes", host.memory_bytes},
      {"io_uring",
       {{"available", host.io_uring.available},
        {"error", host.io_uring.error},
        {"last_opcode", host.io_uring.last_opcode},
        {"opcode_count", host.io_uring.supported.size()},
        {"opcodes", host.io_uring.supported}}},
      {"kvm",
       {{"available", host.kvm.available},
        {"error", host.kvm.error},
        {"api_version", host.kvm.api_version},
        {"max_vcpus", host.kvm.max_vcpus},
        {"user_memory", host.kvm.user_memory},
        {"irqchip", host.kvm.irqchip},
        {"pit2", host.kvm.pit2},
        {"ioeventfd", host.kvm.ioeventfd},
        {"irqfd", host.kvm.irqfd},
        {"immediate_exit", host.kvm.immediate_exit}}},
      {"ublk", {{"available", host.ublk_control}}},
      {"zram", zram},
      {"gpu", {{"devices", gpus}, {"error", host.gpu_error}}},
      {"simd", {{"level", host.simd_level}, {"features", host.cpu_features}}},
  };
}

const char* yes_no(bool value) { return value ? "yes" : "no"; }

void print_text(const HostReport& host) {
  std::printf("pepita %s on %s\n", kVersion, host.kernel.c_str());
  std::printf("cores      %u\n", host.cores);
  std::printf("memory     %.1f GiB\n", static_cast<double>(host.memory_bytes) / (1ull << 30));
  if (host.io_uring.available) {
    std::printf("io_uring   yes (%zu opcodes supported, last opcode %u)\n",
                host.io_uring.supported.size(), host.io_uring.last_opcode);
  } else {
    std::printf("io_uring   no (%s)\n", host.io_uring.error.c_str());
  }
  if (host.kvm.available) {
    std::printf(
        "kvm        yes (API %d, max vcpus %d, user memory %s, irqchip %s, pit2 %s, ioeventfd %s, "
        "irqfd %s)\n",
        host.kvm.api_version, host.kvm.max_vcpus, yes_no(host.kvm.user_memory),
        yes_no(host.kvm.irqchip), yes_no(host.kvm.pit2), yes_no(host.kvm.ioeventfd),
        yes_no(host.kvm.irqfd));
  } else {
    std::printf("kvm        no (%s)\n", host.kvm.error.c_str());
  }
  std::printf("ublk       %s\n", host.ublk_control
                                     ? "yes (/dev/ublk-control)"
                                     : "no (/dev/ublk-control missing; load the ublk_drv module)");
  if (host.zram.empty()) std::printf("zram       no devices (modprobe zram)\n");
  for (const auto& device : host.zram) {
    std::string all;
    for (const auto& name : device.algorithms) all += (all.empty() ? "" : " ") + name;
    std::printf("zram       %s: algorithm %s (available: %s), disksize %llu\n", device.name.c_str(),
                device.algorithm.c_str(), all.c_str(),
                static_cast<unsigned long long>(device.disksize));
  }
  if (host.gpus.empty()) std::printf("gpu        none (%s)\n", host.gpu_error.c_str());
  for (const auto& gpu : host.gpus) {
    std::printf("gpu        %s (%s%s)\n", gpu.name.c_str(), gpu.type.c_str(),
                gpu.unified ? ", unified memory" : "");
  }
  std::string features;
  for (const auto& name : host.cpu_features) features += (features.empty() ? "" : " ") + name;
  std::printf("simd       %s (%s)\n", host.simd_level.c_str(), features.c_str());
}

void add_info(CLI::App& app, Dispatch& dispatch) {
  auto* sub = app.add_subcommand("info", "Probe this host: io_uring, KVM, ublk, zram, SIMD, cores");
  auto options = std::make_shared<InfoOptions>();
  sub->add_flag("--json", options->json, "Print one JSON object instead of text");
  dispatch.on(sub, [options] {
    const HostReport host = probe_host();
    if (options->json) {
      std::printf("%s\n", to_json(host).dump(2).c_str());
    } else {
      print_text(host);
    }
    return kExitOk;
  });
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(info, pepita::cli::add_info);
