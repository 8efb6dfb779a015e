#pragma once
// Probes of what this host can do, for `pepita info`: every field comes from a real system call
// or kernel file, never from a compile-time guess.

#include <cstdint>
#include <string>
#include <vector>

namespace pepita::cli {

struct IoUringReport {
  bool available = false;
  std::string error;                   // why not, when unavailable
  unsigned last_opcode = 0;            // highest opcode the kernel knows
  std::vector<std::string> supported;  // names of supported opcodes
};

struct KvmReport {
  bool available = false;
  std::string error;
  int api_version = 0;
  int max_vcpus = 0;
  bool user_memory = false;
  bool irqchip = false;
  bool pit2 = false;
  bool ioeventfd = false;
  bool irqfd = false;
  bool immediate_exit = false;
};

struct ZramDevice {
  std::string name;                     // "zram0"
  std::string algorithm;                // the selected one
  std::vector<std::string> algorithms;  // all the kernel offers
  std::uint64_t disksize = 0;
};

struct GpuDevice {
  std::string name;
  std::string type;  // discrete, integrated, virtual, cpu, other
  bool unified = false;
  std::uint64_t device_local_bytes = 0;
};

struct HostReport {
  std::string kernel;
  unsigned cores = 0;
  std::uint64_t memory_bytes = 0;
  IoUringReport io_uring;
  KvmReport kvm;
  bool ublk_control = false;
  std::vector<ZramDevice> zram;
  std::vector<GpuDevice> gpus;
  std::string gpu_error;   // why no GPU list, when empty
  std::string simd_level;  // best level the CPU and OS support
  std::vector<std::string> cpu_features;
};

HostReport probe_host();

}  // namespace pepita::cli
