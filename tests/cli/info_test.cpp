// `pepita info` and the CLI's handling of bad arguments, run as a real process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "common/require.hpp"

namespace pepita::test {
namespace {

// `pepita info` loads the system's Vulkan driver to list GPUs; Mesa's lavapipe leaves allocations
// behind when it is unloaded (frames unnamed by then, so no suppression can match them). Leak
// checking stays on for every other pepita run; tests/gpu pins the driver to prove the leaks are
// Mesa's, not ours.
constexpr const char* kNoDriverLeakCheck = "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ";

nlohmann::json info_json() {
  CliRun run = run_pepita("info --json", kNoDriverLeakCheck);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  return nlohmann::json::parse(run.output);
}

TEST(CliInfo, JsonReportsRealProbes) {
  const nlohmann::json info = info_json();
  EXPECT_EQ(info["cores"].get<unsigned>(), static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN)));
  // The same figure the kernel gives in /proc/meminfo (MemTotal, in KiB).
  std::ifstream meminfo("/proc/meminfo");
  uint64_t mem_total_kib = 0;
  for (std::string key; meminfo >> key;) {
    if (key == "MemTotal:") {
      meminfo >> mem_total_kib;
      break;
    }
  }
  ASSERT_GT(mem_total_kib, 0u);
  EXPECT_EQ(info["memory_bytes"].get<uint64_t>(), mem_total_kib * 1024);

  // io_uring exists on every kernel pepita supports; the probe must list its opcodes.
  ASSERT_TRUE(info["io_uring"]["available"].get<bool>()) << info["io_uring"]["error"];
  EXPECT_GT(info["io_uring"]["opcode_count"].get<size_t>(), 40u);
  const auto& opcodes = info["io_uring"]["opcodes"];
  EXPECT_NE(std::find(opcodes.begin(), opcodes.end(), "uring_cmd"), opcodes.end());
  EXPECT_NE(std::find(opcodes.begin(), opcodes.end(), "read"), opcodes.end());

  EXPECT_EQ(info["ublk"]["available"].get<bool>(), ::access("/dev/ublk-control", F_OK) == 0);
}

TEST(CliInfo, KvmMatchesDevice) {
  const nlohmann::json info = info_json();
  if (!probe(Capability::kvm).present()) {
    EXPECT_FALSE(info["kvm"]["available"].get<bool>());
    PEPITA_REQUIRE_CAPABILITY(kvm);  // skips (or fails) here: KVM details not checked
  }
  ASSERT_TRUE(info["kvm"]["available"].get<bool>()) << info["kvm"]["error"];
  EXPECT_EQ(info["kvm"]["api_version"].get<int>(), 12);
  EXPECT_TRUE(info["kvm"]["user_memory"].get<bool>());
  EXPECT_GE(info["kvm"]["max_vcpus"].get<int>(), 1);
}

TEST(CliInfo, ZramMatchesSysfs) {
  const nlohmann::json info = info_json();
  PEPITA_REQUIRE_CAPABILITY(zram);
  ASSERT_FALSE(info["zram"].empty());
  EXPECT_EQ(info["zram"][0]["name"], "zram0");
  // sysfs lists every algorithm with the selected one in brackets: "[lzo-rle] lzo lz4".
  std::ifstream sysfs("/sys/block/zram0/comp_algorithm");
  std::string selected;
  std::vector<std::string> all;
  for (std::string word; sysfs >> word;) {
    if (word.size() > 2 && word.front() == '[' && word.back() == ']') {
      word = word.substr(1, word.size() - 2);
      selected = word;
    }
    all.push_back(word);
  }
  ASSERT_FALSE(selected.empty()) << "no selected algorithm in /sys/block/zram0/comp_algorithm";
  EXPECT_EQ(info["zram"][0]["algorithm"], selected);
  EXPECT_EQ(info["zram"][0]["algorithms"].get<std::vector<std::string>>(), all);
}

TEST(CliInfo, SimdLevelMatchesCpu) {
  const nlohmann::json info = info_json();
  __builtin_cpu_init();
  const std::string level = info["simd"]["level"];
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    EXPECT_EQ(level, "avx512");
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(level, "avx2");
  } else {
    EXPECT_EQ(level, "scalar");
  }
}

TEST(CliInfo, GpuListsDevicesOrSaysWhyNot) {
  const nlohmann::json info = info_json();
  const auto& devices = info["gpu"]["devices"];
  if (!probe(Capability::vulkan).present()) {
    EXPECT_TRUE(devices.empty());
    EXPECT_FALSE(info["gpu"]["error"].get<std::string>().empty());
    PEPITA_REQUIRE_CAPABILITY(vulkan);  // skips (or fails) here: devices not checked
  }
  ASSERT_FALSE(devices.empty()) << "vulkaninfo lists a device, pepita info none: "
                                << info["gpu"]["error"];
  for (const auto& device : devices) {
    EXPECT_FALSE(device["name"].get<std::string>().empty());
    EXPECT_FALSE(device["type"].get<std::string>().empty());
  }
}

TEST(CliInfo, TextOutputNamesEverySection) {
  CliRun run = run_pepita("info", kNoDriverLeakCheck);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* section : {"io_uring", "kvm", "ublk", "gpu", "simd", "cores", "memory"}) {
    EXPECT_NE(run.output.find(section), std::string::npos) << section;
  }
}

// Without a usable /dev/kvm (here: /dev/null in its place, then no /dev/kvm at all, each in a
// mount namespace of its own) and without a Vulkan driver, `pepita info` still exits 0 and says
// what is missing.
TEST(CliInfo, WithoutKvmOrAVulkanDriverInfoSaysWhyNot) {
  PEPITA_REQUIRE_CAPABILITY(root);
  if (!detail::on_path("unshare")) GTEST_SKIP() << "util-linux's unshare is not installed";
  CliRun wrong = run_pepita("info", std::string(kNoDriverLeakCheck) +
                                        in_mount_namespace("mount --bind /dev/null /dev/kvm"));
  EXPECT_EQ(wrong.exit_code, 0) << wrong.output;
  EXPECT_NE(wrong.output.find("kvm        no (unexpected KVM API version -1)"), std::string::npos)
      << wrong.output;
  CliRun none = run_pepita(
      "info", std::string(kNoDriverLeakCheck) + in_mount_namespace("mount -t tmpfs none /dev"));
  EXPECT_EQ(none.exit_code, 0) << none.output;
  EXPECT_NE(none.output.find("kvm        no (/dev/kvm: No such file or directory)"),
            std::string::npos)
      << none.output;
  EXPECT_TRUE(std::filesystem::exists("/dev/null")) << "a mount left its namespace";

  CliRun no_gpu = run_pepita(
      "info --json", std::string(kNoDriverLeakCheck) + "VK_ICD_FILENAMES=/nonexistent.json ");
  ASSERT_EQ(no_gpu.exit_code, 0) << no_gpu.output;
  const auto info = nlohmann::json::parse(no_gpu.output);
  EXPECT_TRUE(info["gpu"]["devices"].empty()) << no_gpu.output;
  EXPECT_FALSE(info["gpu"]["error"].get<std::string>().empty()) << no_gpu.output;
}

TEST(CliArgs, UnknownFlagIsAUsageError) {
  CliRun run = run_pepita("--no-such-flag");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.output.find("--no-such-flag"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--help"), std::string::npos) << run.output;
}

TEST(CliArgs, UnknownSubcommandOptionIsAUsageError) {
  CliRun run = run_pepita("info --colour=maybe");
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

TEST(CliArgs, UnknownSubcommandIsAUsageError) {
  CliRun run = run_pepita("frobnicate");
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

TEST(CliArgs, VersionAndHelp) {
  CliRun version = run_pepita("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("pepita 0."), std::string::npos) << version.output;
  CliRun help = run_pepita("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("info"), std::string::npos) << help.output;
}

// `pepita` alone names no subcommand: it prints the help (every subcommand) and exits 0.
TEST(CliArgs, NoSubcommandPrintsTheHelp) {
  CliRun bare = run_pepita("");
  EXPECT_EQ(bare.exit_code, 0) << bare.output;
  for (const char* command : {"run", "worker", "journal", "info"}) {
    EXPECT_NE(bare.output.find(command), std::string::npos) << command << "\n" << bare.output;
  }
  EXPECT_EQ(bare.output, run_pepita("--help").output);
}

}  // namespace
}  // namespace pepita::test
